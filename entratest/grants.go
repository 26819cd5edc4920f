package entratest

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// The token endpoint and its grants: client credentials, authorization
// code, refresh token, password and on-behalf-of, each checked as the
// service checks it, so that what MSAL (or a cache in front of it) does
// with a refusal is tested too. A grant that passes ends in issue
// (issue.go), which mints the tokens. The device code flow is not modelled.

// handleDeviceCode refuses the device code flow with an OAuth error, so
// that a client trying it fails at once instead of polling.
func (s *Server) handleDeviceCode(w http.ResponseWriter, r *http.Request) {
	writeError(w, r, errInvalidRequest(0, "entratest: the device code flow is not supported"))
}

// delay waits out WithLatency's latency; it reports false if ctx ended
// first, when nobody is left to read a response.
func (s *Server) delay(ctx context.Context) bool {
	if s.opts.latency <= 0 {
		return true
	}
	t := time.NewTimer(s.opts.latency)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// handleToken counts every request before anything else, even one it then
// refuses or whose client gives up during the latency: a test counts what
// reached the endpoint, as the service's bill would.
func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) {
	s.total.Add(1)
	var form url.Values
	var parseErr error
	if r.Method == http.MethodPost {
		r.Body = http.MaxBytesReader(w, r.Body, maxRequestBody)
		parseErr = r.ParseForm()
		form = r.PostForm
		s.countRequest(form.Get("grant_type"))
	}
	if !s.delay(r.Context()) {
		return
	}
	var (
		resp map[string]any
		oerr *oauthError
	)
	tenant, oerr := tenantOf(r)
	switch {
	case oerr != nil:
	case r.Method != http.MethodPost:
		oerr = newOAuthError(http.StatusMethodNotAllowed, "invalid_request", 900561, "The endpoint only accepts POST requests.")
	case parseErr != nil:
		oerr = errInvalidRequest(900144, "Cannot parse the request body: "+parseErr.Error())
	default:
		resp, oerr = s.token(r, tenant, form)
	}
	if oerr != nil {
		writeError(w, r, oerr)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// token checks what every grant needs (a known grant type, a client and its
// credentials) and hands the request to the grant.
func (s *Server) token(r *http.Request, tenant string, form url.Values) (map[string]any, *oauthError) {
	grant := form.Get("grant_type")
	if grant == "" {
		return nil, errMissing("grant_type")
	}
	switch grant {
	case GrantClientCredentials, GrantAuthorizationCode, GrantRefreshToken, GrantPassword, GrantOnBehalfOf:
	default:
		return nil, newOAuthError(http.StatusBadRequest, "unsupported_grant_type", 70003,
			fmt.Sprintf("The app requested an unsupported grant type '%s'.", grant))
	}
	clientID := form.Get("client_id")
	if clientID == "" {
		return nil, errMissing("client_id")
	}
	confidentialOnly := grant == GrantClientCredentials || grant == GrantOnBehalfOf
	azpacr, oerr := s.authenticateClient(clientID, form, confidentialOnly)
	if oerr != nil {
		return nil, oerr
	}
	req := tokenRequest{
		base:       s.baseURL(r),
		tenant:     tenant,
		clientID:   clientID,
		azpacr:     azpacr,
		grant:      grant,
		scopes:     parseScopes(form.Get("scope")),
		clientInfo: form.Get("client_info") == "1",
	}
	switch grant {
	case GrantClientCredentials:
		return s.clientCredentials(req)
	case GrantAuthorizationCode:
		return s.authorizationCode(req, form)
	case GrantRefreshToken:
		return s.refreshToken(req, form)
	case GrantPassword:
		return s.password(req, form)
	default:
		return s.onBehalfOf(req, form)
	}
}

// authenticateClient checks the client's credentials and returns the
// azpacr claim: "0" public client, "1" secret, "2" assertion. required is
// set for the grants only confidential clients may use.
func (s *Server) authenticateClient(clientID string, form url.Values, required bool) (string, *oauthError) {
	secret := form.Get("client_secret")
	assertion := form.Get("client_assertion")
	if want, registered := s.opts.secrets[clientID]; registered {
		if secret == "" {
			if assertion != "" {
				return "", errInvalidClient(700027, "Client assertion failed: the application is registered with a client secret in this emulator.")
			}
			return "", errNoClientCredential
		}
		if subtle.ConstantTimeCompare([]byte(secret), []byte(want)) != 1 {
			return "", errInvalidClient(7000215, "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '"+clientID+"'.")
		}
		return "1", nil
	}
	switch {
	case secret != "":
		return "1", nil
	case assertion != "":
		if t := form.Get("client_assertion_type"); t != clientAssertionTypeJWT {
			return "", errInvalidClient(700023, fmt.Sprintf("Invalid client_assertion_type %q.", t))
		}
		_, payload, _, err := splitJWT(assertion)
		if err != nil {
			return "", errInvalidClient(50027, "JWT token is invalid or malformed.")
		}
		if c, err := claimsFromPayload(payload); err == nil {
			if !c.ExpiresAt.IsZero() && time.Now().After(c.ExpiresAt) {
				return "", errInvalidClient(700024, "Client assertion is not within its valid time range.")
			}
			if c.Subject != "" && c.Subject != clientID {
				return "", errInvalidClient(700021, "Client assertion application identifier doesn't match 'client_id' parameter.")
			}
		}
		return "2", nil
	case required:
		return "", errNoClientCredential
	}
	return "0", nil
}

// errNoClientCredential refuses a confidential client's request that
// carries neither a secret nor an assertion.
var errNoClientCredential = errInvalidClient(7000218, "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.")

// notDotDefault is why the service refuses an app token for scopes that
// are not a resource's /.default: an app holds the permissions it was
// granted, and cannot ask for a part of them.
const notDotDefault = "Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."

// clientCredentials issues an app token. It needs a real tenant, since an
// application is registered in one, not in "common".
func (s *Server) clientCredentials(req tokenRequest) (map[string]any, *oauthError) {
	if isMultiTenant(req.tenant) {
		return nil, errInvalidRequest(700016, fmt.Sprintf("The client credentials grant needs a tenant-specific authority, not '%s'.", req.tenant))
	}
	res := resourceScopes(req.scopes)
	if len(res) == 0 {
		return nil, errInvalidScope(1002012, "The provided value for scope is not valid. "+notDotDefault)
	}
	for _, sc := range res {
		if !strings.HasSuffix(sc, "/.default") {
			return nil, errInvalidScope(1002012, fmt.Sprintf("The provided value for scope %s is not valid. %s", sc, notDotDefault))
		}
	}
	if oerr := s.checkConsent(req.tenant, req.clientID); oerr != nil {
		return nil, oerr
	}
	req.scopes = res
	return s.issue(req)
}

// authorizationCode redeems a code from the authorize flow or AuthCode.
// The user is looked up only now, so a code minted for a user never added
// fails here, where MSAL sees it.
func (s *Server) authorizationCode(req tokenRequest, form url.Values) (map[string]any, *oauthError) {
	code := form.Get("code")
	if code == "" {
		return nil, errMissing("code")
	}
	c, found, redeemed := s.redeemCode(code)
	switch {
	case !found:
		return nil, errInvalidGrant(9002313, "Invalid request. Request is malformed or invalid: unknown authorization code.")
	case redeemed:
		return nil, errInvalidGrant(54005, "OAuth2 Authorization code was already redeemed, please retry with a new valid code or use an existing refresh token.")
	case time.Now().After(c.expires):
		return nil, errInvalidGrant(70008, "The provided authorization code or refresh token has expired due to inactivity. Send a new interactive authorization request for this user and resource.")
	case c.clientID != "" && c.clientID != req.clientID:
		return nil, errInvalidGrant(70000, "The provided authorization code was issued to a different client.")
	case c.redirectURI != "" && c.redirectURI != form.Get("redirect_uri"):
		return nil, errInvalidGrant(500112, "The reply address in the token request does not match the one in the authorization request.")
	}
	if c.challenge != "" {
		verifier := form.Get("code_verifier")
		ok := false
		if c.method == "plain" {
			ok = verifier == c.challenge
		} else {
			sum := sha256.Sum256([]byte(verifier))
			ok = base64.RawURLEncoding.EncodeToString(sum[:]) == c.challenge
		}
		if !ok {
			return nil, errInvalidGrant(501481, "The Code_Verifier does not match the code_challenge supplied in the authorization request.")
		}
	}
	if !isMultiTenant(req.tenant) && !isMultiTenant(c.tenant) && c.tenant != req.tenant {
		return nil, errInvalidGrant(70000, fmt.Sprintf("The authorization code was issued in tenant '%s', not '%s'.", c.tenant, req.tenant))
	}
	lookupTenant := c.tenant
	if isMultiTenant(lookupTenant) {
		lookupTenant = req.tenant
	}
	u := s.lookupUser(lookupTenant, c.username)
	if u == nil {
		return nil, errUnknownUser("invalid_grant", c.username, lookupTenant)
	}
	req.nonce = c.nonce
	return s.issueTo(req, u.User)
}

// password is the resource owner password grant, which MSAL-Go's
// deprecated AcquireTokenByUsernamePassword still sends.
func (s *Server) password(req tokenRequest, form url.Values) (map[string]any, *oauthError) {
	name, pw := form.Get("username"), form.Get("password")
	if name == "" {
		return nil, errMissing("username")
	}
	if pw == "" {
		return nil, errMissing("password")
	}
	u := s.lookupUser(req.tenant, name)
	if u == nil {
		return nil, errUnknownUser("invalid_grant", name, req.tenant)
	}
	if subtle.ConstantTimeCompare([]byte(pw), []byte(u.password)) != 1 {
		return nil, errInvalidGrant(50126, "Error validating credentials due to invalid username or password.")
	}
	return s.issueTo(req, u.User)
}

// refreshGrant is what a refresh token grants: new tokens for the same
// user and client, for the scopes first granted unless others are asked.
type refreshGrant struct {
	user     User
	clientID string
	scopes   []string
	session  string // the sign-in's sid, kept by every refresh
	expires  time.Time
}

func (s *Server) storeRefresh(g *refreshGrant) string {
	g.expires = time.Now().Add(refreshTokenLifetime)
	return storeSecret(s, s.refresh, "entratest-rt.", 32, g)
}

func (s *Server) lookupRefresh(rt string) *refreshGrant {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refresh[rt]
}

// refreshToken redeems a refresh token, which MSAL does for a silent
// acquisition whose access token is missing or expired.
func (s *Server) refreshToken(req tokenRequest, form url.Values) (map[string]any, *oauthError) {
	rt := form.Get("refresh_token")
	if rt == "" {
		return nil, errMissing("refresh_token")
	}
	g := s.lookupRefresh(rt)
	switch {
	case g == nil:
		return nil, errInvalidGrant(9002313, "Invalid request. Request is malformed or invalid: unknown refresh token.")
	case time.Now().After(g.expires):
		return nil, errInvalidGrant(700082, "The refresh token has expired due to inactivity.")
	case g.clientID != req.clientID:
		return nil, errInvalidGrant(70000, "The refresh token was issued to a different client.")
	case !isMultiTenant(req.tenant) && req.tenant != g.user.Tenant:
		return nil, errInvalidGrant(50020, fmt.Sprintf("The refresh token was issued in tenant '%s', not '%s'.", g.user.Tenant, req.tenant))
	}
	if len(req.scopes) == 0 {
		req.scopes = g.scopes
	}
	req.session = g.session
	return s.issueTo(req, g.user)
}

// onBehalfOf issues a middle tier a token for the user of the assertion.
// Any unexpired JWT naming a user is accepted, so a test can hand the
// emulator a token from elsewhere; the user is one of the Server's if the
// assertion's tenant, username and object id match one.
func (s *Server) onBehalfOf(req tokenRequest, form url.Values) (map[string]any, *oauthError) {
	if use := form.Get("requested_token_use"); use != "on_behalf_of" {
		return nil, errInvalidRequest(900144, fmt.Sprintf("The request body must contain requested_token_use=on_behalf_of (got %q).", use))
	}
	assertion := form.Get("assertion")
	if assertion == "" {
		return nil, errMissing("assertion")
	}
	c, err := ParseToken(assertion)
	if err != nil {
		return nil, errInvalidGrant(50027, "JWT token is invalid or malformed.")
	}
	oid := c.ObjectID
	if oid == "" {
		oid = c.Subject
	}
	switch {
	case c.App:
		return nil, errInvalidGrant(500131, "The assertion is an app-only token; on-behalf-of needs a user's token.")
	case oid == "":
		return nil, errInvalidGrant(50027, "The assertion names no user (no oid or sub claim).")
	case !c.ExpiresAt.IsZero() && time.Now().After(c.ExpiresAt):
		return nil, errInvalidGrant(500133, "Assertion is not within its valid time range.")
	}
	home := strings.ToLower(c.Tenant)
	if home == "" {
		home = req.tenant
	}
	if isMultiTenant(home) {
		return nil, errInvalidGrant(50027, "The assertion names no tenant (no tid claim) and the authority is not tenant-specific.")
	}
	user := User{Tenant: home, Username: c.Username, ObjectID: oid, HomeAccountID: oid + "." + home}
	if u := s.lookupUser(home, c.Username); u != nil && u.ObjectID == oid {
		user = u.User
	}
	req.user = &user
	if isMultiTenant(req.tenant) {
		req.tenant = home
	}
	return s.issue(req)
}
