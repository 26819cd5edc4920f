package entratest

import (
	"fmt"
	"slices"
	"strings"
)

// Tenant administrators, admin consent and app roles: what a multitenant
// application's sign-up and authorization rest on. An administrator grants
// an application consent for the whole tenant on the admin-consent page
// ([Server.AdminConsentURL]); app roles assigned to a user for a resource
// travel in the roles claim of that user's access tokens for it.

// WithAdminConsentRequired makes clientID a multitenant application that
// exists in a tenant only once an administrator of that tenant consented
// to it on the admin-consent page: until then its client-credentials
// requests for the tenant fail with invalid_client (AADSTS700016), as the
// service answers for an application without a service principal there.
// An application uses exactly that request to check a sign-up, since the
// tenant named in the consent redirect is not signed. User sign-ins are
// not refused: whether a tenant may use the application is the
// application's decision. The option may be repeated for several clients.
func WithAdminConsentRequired(clientID string) Option {
	return func(o *options) {
		if o.consentRequired == nil {
			o.consentRequired = make(map[string]bool)
		}
		o.consentRequired[clientID] = true
	}
}

// AddAdmin is [Server.AddUser] for a tenant administrator: a user who may
// grant admin consent for the tenant. password may be empty, for a user
// who signs in by picking the account on the sign-in page.
func (s *Server) AddAdmin(tenant, username, password string) User {
	u := s.AddUser(tenant, username, password)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.users[userKey(tenant, username)].admin = true
	return u
}

// AssignRoles assigns app roles of resource (an application ID URI such as
// "api://surveys", the aud of the tokens for it) to a user: the access
// tokens the user gets for resource from then on carry them in the roles
// claim ([Claims.Roles]). Assigning again replaces the user's roles for
// resource; no roles removes them. It fails for a user never added.
func (s *Server) AssignRoles(tenant, username, resource string, roles ...string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.users[userKey(tenant, username)]
	if u == nil {
		return fmt.Errorf("entratest: AssignRoles: no user %s in tenant %s: add it with AddUser first", username, strings.ToLower(tenant))
	}
	if u.roles == nil {
		u.roles = make(map[string][]string)
	}
	if len(roles) == 0 {
		delete(u.roles, resource)
	} else {
		u.roles[resource] = slices.Clone(roles)
	}
	return nil
}

// rolesFor returns the roles of the user with object id oid in tenant for
// resource.
func (s *Server) rolesFor(tenant, username, resource string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if u := s.users[userKey(tenant, username)]; u != nil {
		return slices.Clone(u.roles[resource])
	}
	return nil
}

// Consented reports whether an administrator of tenant has granted
// clientID admin consent.
func (s *Server) Consented(tenant, clientID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.consents[userKey(tenant, clientID)]
}

func (s *Server) grantConsent(tenant, clientID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.consents == nil {
		s.consents = make(map[string]bool)
	}
	s.consents[userKey(tenant, clientID)] = true
}

// checkConsent refuses an app token for a client that needs admin consent
// in a tenant that has not given it.
func (s *Server) checkConsent(tenant, clientID string) *oauthError {
	if !s.opts.consentRequired[clientID] || s.Consented(tenant, clientID) {
		return nil
	}
	return errInvalidClient(700016, fmt.Sprintf("Application with identifier '%s' was not found in the directory '%s'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant.", clientID, tenant))
}
