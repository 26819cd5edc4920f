package entratest

import "strings"

// A User is an account added to a [Server] with [Server.AddUser].
type User struct {
	// Tenant is the user's home tenant, lower-cased.
	Tenant string
	// Username is the sign-in name as given to AddUser.
	Username string
	// ObjectID is the user's object id (the oid and sub claims, and the uid
	// of client_info). It is derived from tenant and username, so it is the
	// same in every run.
	ObjectID string
	// HomeAccountID is MSAL's id for the account, "ObjectID.Tenant": what
	// Account.HomeAccountID reports after a sign-in at the Server, and the
	// cache partition key MSAL-Go's confidential clients use for the user.
	HomeAccountID string
}

// user is a User with what only the server may know.
type user struct {
	User
	password string
	admin    bool                // AddAdmin: may grant admin consent
	roles    map[string][]string // AssignRoles: resource -> app roles
}

// displayName is the name claim: the part of the username before "@", as
// the service has no display names for the emulator's users.
func (u User) displayName() string {
	name, _, _ := strings.Cut(u.Username, "@")
	return name
}

func userKey(tenant, username string) string {
	return strings.ToLower(tenant) + "\x00" + strings.ToLower(username)
}

// isMultiTenant reports whether tenant is one of the aliases that are not a
// tenant: users signing in there land in their home tenant.
func isMultiTenant(tenant string) bool {
	switch tenant {
	case "common", "organizations", "consumers":
		return true
	}
	return false
}

// AddUser adds (or, for an existing username in tenant, updates the password
// of) a user who can then sign in to tenant with the password grant, an
// authorization code from [Server.AuthCode], or the authorize endpoint with
// login_hint. Usernames are matched case-insensitively. Signing in at
// "common" or "organizations" finds the user most recently added under that
// name in any tenant.
func (s *Server) AddUser(tenant, username, password string) User {
	tenant = strings.ToLower(tenant)
	oid := stableUUID("user", tenant, strings.ToLower(username))
	u := &user{
		User: User{
			Tenant:        tenant,
			Username:      username,
			ObjectID:      oid,
			HomeAccountID: oid + "." + tenant,
		},
		password: password,
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.users[userKey(tenant, username)] = u
	s.byName[strings.ToLower(username)] = u
	return u.User
}

// lookupUser finds username in tenant (any tenant for "common" and
// "organizations").
func (s *Server) lookupUser(tenant, username string) *user {
	s.mu.Lock()
	defer s.mu.Unlock()
	if isMultiTenant(tenant) {
		return s.byName[strings.ToLower(username)]
	}
	return s.users[userKey(tenant, username)]
}
