package entratest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

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

type user struct {
	User
	password string
}

// displayName is the name claim: the part of the username before "@".
func (u *user) displayName() string {
	name, _, _ := strings.Cut(u.Username, "@")
	return name
}

type authCode struct {
	tenant, username string
	// Set when the code was minted by the authorize endpoint.
	clientID, redirectURI string
	challenge, method     string
	nonce                 string
	expires               time.Time
	redeemed              bool
}

type refreshGrant struct {
	user     User
	clientID string
	scopes   []string
	expires  time.Time
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

// AuthCode mints a single-use authorization code for username in tenant, as
// if the user had just signed in at the authorize endpoint; redeem it with
// confidential.Client.AcquireTokenByAuthCode (or the public client's) against
// the same tenant's authority. The code is valid for 10 minutes, for any
// client and redirect URI, without PKCE. The user is looked up when the code
// is redeemed: a code for a username never added is refused with
// invalid_grant.
func (s *Server) AuthCode(tenant, username string) string {
	return s.storeCode(&authCode{tenant: strings.ToLower(tenant), username: username})
}

func (s *Server) storeCode(c *authCode) string {
	code := "entratest-code." + randomID(24)
	c.expires = time.Now().Add(authCodeLifetime)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.codes[code] = c
	return code
}

// redeemCode marks code redeemed and returns it. Codes are single use:
// redeemed reports whether the code had been redeemed before.
func (s *Server) redeemCode(code string) (c authCode, found, redeemed bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.codes[code]
	if p == nil {
		return authCode{}, false, false
	}
	redeemed = p.redeemed
	p.redeemed = true
	return *p, true, redeemed
}

func (s *Server) storeRefresh(g *refreshGrant) string {
	rt := "entratest-rt." + randomID(32)
	g.expires = time.Now().Add(refreshTokenLifetime)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refresh[rt] = g
	return rt
}

func (s *Server) lookupRefresh(rt string) *refreshGrant {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refresh[rt]
}

// authorize runs the authorize endpoint's logic for tenant and the request
// parameters q, returning a code for the user named by login_hint.
func (s *Server) authorize(tenant string, q url.Values) (string, *oauthError) {
	if q.Get("client_id") == "" {
		return "", errInvalidRequest(900144, "The request body must contain the following parameter: 'client_id'.")
	}
	if rt := q.Get("response_type"); rt != "code" {
		return "", &oauthError{status: http.StatusBadRequest, code: "unsupported_response_type",
			desc: fmt.Sprintf("AADSTS700054: response_type %q is not supported; the emulator issues codes only.", rt), codes: []int{700054}}
	}
	method := q.Get("code_challenge_method")
	if q.Get("code_challenge") != "" && method != "" && method != "S256" && method != "plain" {
		return "", errInvalidRequest(501491, fmt.Sprintf("Invalid code_challenge_method %q.", method))
	}
	hint := q.Get("login_hint")
	if hint == "" {
		return "", &oauthError{status: http.StatusBadRequest, code: "login_required",
			desc: "AADSTS50058: No user is signed in. The emulator signs in the user named by login_hint (see entratest.Server.OpenURL).", codes: []int{50058}}
	}
	u := s.lookupUser(tenant, hint)
	if u == nil {
		return "", &oauthError{status: http.StatusBadRequest, code: "login_required",
			desc: fmt.Sprintf("AADSTS50034: The user account %s does not exist in the %s directory.", hint, tenant), codes: []int{50034}}
	}
	return s.storeCode(&authCode{
		tenant:      u.Tenant,
		username:    u.Username,
		clientID:    q.Get("client_id"),
		redirectURI: q.Get("redirect_uri"),
		challenge:   q.Get("code_challenge"),
		method:      method,
		nonce:       q.Get("nonce"),
	}), nil
}

// OpenURL returns a function to pass to public.WithOpenURL that stands in
// for the browser in public.Client.AcquireTokenInteractive: given the
// authorize URL MSAL would open, it signs username in (as if with
// login_hint) and delivers the code, or the error, to MSAL's local redirect
// listener. It returns an error if the URL is not this server's authorize
// endpoint or the user does not exist.
func (s *Server) OpenURL(username string) func(authURL string) error {
	return func(authURL string) error {
		u, err := url.Parse(authURL)
		if err != nil {
			return fmt.Errorf("entratest: parse authorize URL: %w", err)
		}
		parts := strings.Split(strings.Trim(u.Path, "/"), "/")
		if len(parts) != 4 || parts[1] != "oauth2" || parts[2] != "v2.0" || parts[3] != "authorize" {
			return fmt.Errorf("entratest: %s is not an authorize endpoint", authURL)
		}
		q := u.Query()
		q.Set("login_hint", username)
		redirect := q.Get("redirect_uri")
		if redirect == "" {
			return errors.New("entratest: authorize URL has no redirect_uri")
		}
		resp := url.Values{}
		if st := q.Get("state"); st != "" {
			resp.Set("state", st)
		}
		code, oerr := s.authorize(strings.ToLower(parts[0]), q)
		if oerr != nil {
			resp.Set("error", oerr.code)
			resp.Set("error_description", oerr.desc)
		} else {
			resp.Set("code", code)
		}
		if err := deliver(redirect, q.Get("response_mode"), resp); err != nil {
			return err
		}
		if oerr != nil {
			return fmt.Errorf("entratest: sign-in of %s failed: %s: %s", username, oerr.code, oerr.desc)
		}
		return nil
	}
}

// deliver sends an authorization response to redirect, by POST for
// response_mode=form_post and by GET otherwise.
func deliver(redirect, mode string, resp url.Values) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var req *http.Request
	var err error
	if mode == "form_post" {
		req, err = http.NewRequestWithContext(ctx, http.MethodPost, redirect, strings.NewReader(resp.Encode()))
		if err == nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
	} else {
		var u *url.URL
		if u, err = url.Parse(redirect); err == nil {
			q := u.Query()
			for k, v := range resp {
				q[k] = v
			}
			u.RawQuery = q.Encode()
			req, err = http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
		}
	}
	if err != nil {
		return fmt.Errorf("entratest: redirect to %s: %w", redirect, err)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("entratest: redirect to %s: %w", redirect, err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	_ = res.Body.Close()
	return nil
}
