package entratest

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// oauthError is an OAuth 2.0 error response.
type oauthError struct {
	status int
	code   string // error
	desc   string // error_description
	codes  []int  // AADSTS codes
}

func newOAuthError(status int, code string, aadsts int, msg string) *oauthError {
	e := &oauthError{status: status, code: code, desc: msg}
	if aadsts != 0 {
		e.desc = fmt.Sprintf("AADSTS%d: %s", aadsts, msg)
		e.codes = []int{aadsts}
	}
	return e
}

func errInvalidRequest(aadsts int, msg string) *oauthError {
	return newOAuthError(http.StatusBadRequest, "invalid_request", aadsts, msg)
}

func errInvalidGrant(aadsts int, msg string) *oauthError {
	return newOAuthError(http.StatusBadRequest, "invalid_grant", aadsts, msg)
}

func errInvalidClient(aadsts int, msg string) *oauthError {
	return newOAuthError(http.StatusUnauthorized, "invalid_client", aadsts, msg)
}

func errInvalidScope(aadsts int, msg string) *oauthError {
	return newOAuthError(http.StatusBadRequest, "invalid_scope", aadsts, msg)
}

func (s *Server) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /common/discovery/instance", s.handleInstanceDiscovery)
	mux.HandleFunc("GET /common/UserRealm/{user...}", s.handleUserRealm)
	mux.HandleFunc("GET /{tenant}/v2.0/.well-known/openid-configuration", s.handleOpenIDConfig)
	mux.HandleFunc("GET /{tenant}/discovery/v2.0/keys", s.handleKeys)
	mux.HandleFunc("/{tenant}/oauth2/v2.0/authorize", s.handleAuthorize)
	mux.HandleFunc("/{tenant}/oauth2/v2.0/token", s.handleToken)
	mux.HandleFunc("/{tenant}/oauth2/v2.0/devicecode", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, r, errInvalidRequest(0, "entratest: the device code flow is not supported"))
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, r, newOAuthError(http.StatusNotFound, "not_found", 0,
			fmt.Sprintf("entratest: no endpoint at %s %s", r.Method, r.URL.Path)))
	})
	return recoverer(mux)
}

// recoverer turns a panic in a handler into a server_error response, so a
// bug in the emulator shows up as a failed token call, not a dead server.
func recoverer(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				writeError(w, r, newOAuthError(http.StatusInternalServerError, "server_error", 0,
					fmt.Sprintf("entratest: internal error: %v", v)))
			}
		}()
		h.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"error":"server_error","error_description":"entratest: cannot encode response"}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store, no-cache")
	h.Set("Pragma", "no-cache")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func writeError(w http.ResponseWriter, r *http.Request, e *oauthError) {
	now := time.Now().UTC()
	trace := stableUUID("trace", randomID(16))
	corr := r.Header.Get("client-request-id")
	if corr == "" {
		corr = stableUUID("correlation", randomID(16))
	}
	desc := fmt.Sprintf("%s Trace ID: %s Correlation ID: %s Timestamp: %s",
		e.desc, trace, corr, now.Format("2006-01-02 15:04:05Z"))
	codes := e.codes
	if codes == nil {
		codes = []int{}
	}
	writeJSON(w, e.status, map[string]any{
		"error":             e.code,
		"error_description": desc,
		"error_codes":       codes,
		"timestamp":         now.Format("2006-01-02 15:04:05Z"),
		"trace_id":          trace,
		"correlation_id":    corr,
	})
}

// baseURL is the scheme and host the request was sent to: the server's own
// address, or a Microsoft login host when the request came through the
// Client's redirection.
func (s *Server) baseURL(r *http.Request) string {
	if r.Host == "" || strings.ContainsAny(r.Host, "/?#@ ") {
		return s.url
	}
	return "https://" + strings.ToLower(r.Host)
}

// tenantOf returns the request's {tenant} path segment, lower-cased.
func tenantOf(r *http.Request) (string, *oauthError) {
	t := strings.ToLower(r.PathValue("tenant"))
	ok := t != "" && len(t) <= 128
	for _, c := range t {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_') {
			ok = false
			break
		}
	}
	if !ok {
		return "", newOAuthError(http.StatusBadRequest, "invalid_tenant", 90002,
			fmt.Sprintf("Tenant '%s' not found. Check to make sure you have the correct tenant ID.", r.PathValue("tenant")))
	}
	return t, nil
}

func (s *Server) handleInstanceDiscovery(w http.ResponseWriter, r *http.Request) {
	ae, err := url.Parse(r.URL.Query().Get("authorization_endpoint"))
	if err != nil || ae.Host == "" || ae.Scheme != "https" {
		writeError(w, r, errInvalidRequest(50049, "Unknown or invalid instance: authorization_endpoint is missing or not an https URL."))
		return
	}
	host := strings.ToLower(ae.Host)
	tenant, _, _ := strings.Cut(strings.TrimPrefix(ae.Path, "/"), "/")
	if tenant == "" {
		tenant = "common"
	}
	aliases := []string{host}
	for _, a := range publicCloudAliases {
		if a == host {
			aliases = publicCloudAliases
			break
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"tenant_discovery_endpoint": "https://" + host + "/" + tenant + "/v2.0/.well-known/openid-configuration",
		"api-version":               "1.1",
		"metadata": []map[string]any{{
			"preferred_network": host,
			"preferred_cache":   host,
			"aliases":           aliases,
		}},
	})
}

func (s *Server) handleUserRealm(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("user")
	_, domain, ok := strings.Cut(name, "@")
	if !ok || domain == "" {
		domain = "entratest.invalid"
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"ver":                 "1.0",
		"account_type":        "Managed",
		"domain_name":         domain,
		"cloud_instance_name": "microsoftonline.com",
		"cloud_audience_urn":  "urn:federation:MicrosoftOnline",
	})
}

func (s *Server) handleOpenIDConfig(w http.ResponseWriter, r *http.Request) {
	tenant, oerr := tenantOf(r)
	if oerr != nil {
		writeError(w, r, oerr)
		return
	}
	base := s.baseURL(r)
	issuerTenant := tenant
	if isMultiTenant(tenant) {
		issuerTenant = "{tenantid}"
	}
	t := base + "/" + tenant
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                base + "/" + issuerTenant + "/v2.0",
		"authorization_endpoint":                t + "/oauth2/v2.0/authorize",
		"token_endpoint":                        t + "/oauth2/v2.0/token",
		"device_authorization_endpoint":         t + "/oauth2/v2.0/devicecode",
		"end_session_endpoint":                  t + "/oauth2/v2.0/logout",
		"jwks_uri":                              t + "/discovery/v2.0/keys",
		"token_endpoint_auth_methods_supported": []string{"client_secret_post", "private_key_jwt"},
		"response_modes_supported":              []string{"query", "form_post"},
		"response_types_supported":              []string{"code"},
		"grant_types_supported":                 []string{GrantAuthorizationCode, GrantRefreshToken, GrantClientCredentials, GrantPassword, GrantOnBehalfOf},
		"code_challenge_methods_supported":      []string{"S256", "plain"},
		"subject_types_supported":               []string{"pairwise"},
		"id_token_signing_alg_values_supported": []string{"ES256"},
		"scopes_supported":                      []string{"openid", "profile", "email", "offline_access"},
		"claims_supported": []string{"sub", "iss", "aud", "exp", "iat", "nbf", "name", "nonce",
			"oid", "tid", "preferred_username", "ver"},
		"request_uri_parameter_supported": false,
		"tenant_region_scope":             nil,
		"cloud_instance_name":             "microsoftonline.com",
		"cloud_graph_host_name":           "graph.windows.net",
		"msgraph_host":                    "graph.microsoft.com",
	})
}

func (s *Server) handleKeys(w http.ResponseWriter, r *http.Request) {
	if _, oerr := tenantOf(r); oerr != nil {
		writeError(w, r, oerr)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"keys": []any{s.jwk()}})
}

func (s *Server) handleAuthorize(w http.ResponseWriter, r *http.Request) {
	tenant, oerr := tenantOf(r)
	if oerr != nil {
		writeError(w, r, oerr)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		writeError(w, r, newOAuthError(http.StatusMethodNotAllowed, "invalid_request", 0, "The authorize endpoint accepts GET and POST."))
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxRequestBody)
	if err := r.ParseForm(); err != nil {
		writeError(w, r, errInvalidRequest(0, "cannot parse request: "+err.Error()))
		return
	}
	q := r.Form
	redirect, err := url.Parse(q.Get("redirect_uri"))
	if err != nil || !redirect.IsAbs() {
		// Nowhere to send the user back to: the service shows an error page.
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprintln(w, "AADSTS900971: No reply address provided (redirect_uri missing or not absolute).")
		return
	}
	resp := url.Values{}
	if st := q.Get("state"); st != "" {
		resp.Set("state", st)
	}
	code, oerr := s.authorize(tenant, q)
	if oerr != nil {
		resp.Set("error", oerr.code)
		resp.Set("error_description", oerr.desc)
	} else {
		resp.Set("code", code)
	}
	if q.Get("response_mode") == "form_post" {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<html><head><title>Working...</title></head><body onload="document.forms[0].submit()"><form method="POST" action="%s">`,
			html.EscapeString(redirect.String()))
		for k, vs := range resp {
			for _, v := range vs {
				fmt.Fprintf(w, `<input type="hidden" name="%s" value="%s"/>`, html.EscapeString(k), html.EscapeString(v))
			}
		}
		fmt.Fprint(w, `<noscript><input type="submit" value="Continue"/></noscript></form></body></html>`)
		return
	}
	rq := redirect.Query()
	for k, v := range resp {
		rq[k] = v
	}
	redirect.RawQuery = rq.Encode()
	http.Redirect(w, r, redirect.String(), http.StatusFound)
}

// delay waits out the configured latency; it reports false if ctx ended
// first.
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

// tokenRequest is what an access token is minted from.
type tokenRequest struct {
	base     string
	tenant   string // tid of the access token
	clientID string
	azpacr   string
	grant    string
	scopes   []string // as requested, deduplicated
	user     *User    // nil for app tokens
	nonce    string
	// clientInfo asks for client_info in the response (client_info=1).
	clientInfo bool
}

func (s *Server) token(r *http.Request, tenant string, form url.Values) (map[string]any, *oauthError) {
	grant := form.Get("grant_type")
	if grant == "" {
		return nil, errInvalidRequest(900144, "The request body must contain the following parameter: 'grant_type'.")
	}
	switch grant {
	case GrantClientCredentials, GrantAuthorizationCode, GrantRefreshToken, GrantPassword, GrantOnBehalfOf:
	default:
		return nil, newOAuthError(http.StatusBadRequest, "unsupported_grant_type", 70003,
			fmt.Sprintf("The app requested an unsupported grant type '%s'.", grant))
	}
	clientID := form.Get("client_id")
	if clientID == "" {
		return nil, errInvalidRequest(900144, "The request body must contain the following parameter: 'client_id'.")
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
// azpacr claim: "0" public client, "1" secret, "2" assertion.
func (s *Server) authenticateClient(clientID string, form url.Values, required bool) (string, *oauthError) {
	secret := form.Get("client_secret")
	assertion := form.Get("client_assertion")
	if want, registered := s.opts.secrets[clientID]; registered {
		if secret == "" {
			if assertion != "" {
				return "", errInvalidClient(700027, "Client assertion failed: the application is registered with a client secret in this emulator.")
			}
			return "", errInvalidClient(7000218, "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.")
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
		return "", errInvalidClient(7000218, "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.")
	}
	return "0", nil
}

func (s *Server) clientCredentials(req tokenRequest) (map[string]any, *oauthError) {
	if isMultiTenant(req.tenant) {
		return nil, errInvalidRequest(700016, fmt.Sprintf("The client credentials grant needs a tenant-specific authority, not '%s'.", req.tenant))
	}
	res := resourceScopes(req.scopes)
	if len(res) == 0 {
		return nil, errInvalidScope(1002012, "The provided value for scope is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).")
	}
	for _, sc := range res {
		if !strings.HasSuffix(sc, "/.default") {
			return nil, errInvalidScope(1002012, fmt.Sprintf("The provided value for scope %s is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).", sc))
		}
	}
	req.scopes = res
	return s.issue(req)
}

func (s *Server) authorizationCode(req tokenRequest, form url.Values) (map[string]any, *oauthError) {
	code := form.Get("code")
	if code == "" {
		return nil, errInvalidRequest(900144, "The request body must contain the following parameter: 'code'.")
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
		return nil, errInvalidGrant(50034, fmt.Sprintf("The user account %s does not exist in the %s directory.", c.username, lookupTenant))
	}
	user := u.User
	req.user = &user
	req.tenant = user.Tenant
	req.nonce = c.nonce
	return s.issue(req)
}

func (s *Server) password(req tokenRequest, form url.Values) (map[string]any, *oauthError) {
	name, pw := form.Get("username"), form.Get("password")
	if name == "" {
		return nil, errInvalidRequest(900144, "The request body must contain the following parameter: 'username'.")
	}
	if pw == "" {
		return nil, errInvalidRequest(900144, "The request body must contain the following parameter: 'password'.")
	}
	u := s.lookupUser(req.tenant, name)
	if u == nil {
		return nil, errInvalidGrant(50034, fmt.Sprintf("The user account %s does not exist in the %s directory.", name, req.tenant))
	}
	if subtle.ConstantTimeCompare([]byte(pw), []byte(u.password)) != 1 {
		return nil, errInvalidGrant(50126, "Error validating credentials due to invalid username or password.")
	}
	user := u.User
	req.user = &user
	req.tenant = user.Tenant
	return s.issue(req)
}

func (s *Server) refreshToken(req tokenRequest, form url.Values) (map[string]any, *oauthError) {
	rt := form.Get("refresh_token")
	if rt == "" {
		return nil, errInvalidRequest(900144, "The request body must contain the following parameter: 'refresh_token'.")
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
	user := g.user
	req.user = &user
	req.tenant = user.Tenant
	return s.issue(req)
}

func (s *Server) onBehalfOf(req tokenRequest, form url.Values) (map[string]any, *oauthError) {
	if use := form.Get("requested_token_use"); use != "on_behalf_of" {
		return nil, errInvalidRequest(900144, fmt.Sprintf("The request body must contain requested_token_use=on_behalf_of (got %q).", use))
	}
	assertion := form.Get("assertion")
	if assertion == "" {
		return nil, errInvalidRequest(900144, "The request body must contain the following parameter: 'assertion'.")
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

// issue mints the tokens for req and returns the token response.
func (s *Server) issue(req tokenRequest) (map[string]any, *oauthError) {
	now := time.Now()
	lifetime := s.opts.tokenLifetime
	res := resourceScopes(req.scopes)
	aud, scp := audience(res)
	iss := req.base + "/" + req.tenant + "/v2.0"
	jti := randomID(16)
	at := map[string]any{
		"aud":       aud,
		"iss":       iss,
		"iat":       now.Unix(),
		"nbf":       now.Unix(),
		"exp":       now.Add(lifetime).Unix(),
		"azp":       req.clientID,
		"appid":     req.clientID,
		"azpacr":    req.azpacr,
		"tid":       req.tenant,
		"jti":       jti,
		"uti":       jti,
		"ver":       "2.0",
		claimScopes: res,
		claimGrant:  req.grant,
	}
	if req.user == nil {
		spid := stableUUID("app", req.tenant, req.clientID)
		at["oid"], at["sub"], at["idtyp"] = spid, spid, "app"
	} else {
		u := req.user
		at["oid"], at["sub"], at["idtyp"] = u.ObjectID, u.ObjectID, "user"
		if u.Username != "" {
			at["preferred_username"] = u.Username
			at["name"] = (&user{User: *u}).displayName()
		}
		if scp != "" {
			at["scp"] = scp
		}
	}
	token, err := s.sign(at)
	if err != nil {
		return nil, newOAuthError(http.StatusInternalServerError, "server_error", 0, "entratest: sign token: "+err.Error())
	}
	secs := int64(lifetime / time.Second)
	resp := map[string]any{
		"token_type":     "Bearer",
		"expires_in":     secs,
		"ext_expires_in": secs,
		"access_token":   token,
	}
	if req.user == nil {
		return resp, nil
	}
	u := req.user
	resp["scope"] = strings.Join(req.scopes, " ")
	if hasScope(req.scopes, "offline_access") {
		resp["refresh_token"] = s.storeRefresh(&refreshGrant{user: *u, clientID: req.clientID, scopes: req.scopes})
	}
	if hasScope(req.scopes, "openid") {
		idt := map[string]any{
			"aud":                req.clientID,
			"iss":                iss,
			"iat":                now.Unix(),
			"nbf":                now.Unix(),
			"exp":                now.Add(time.Hour).Unix(),
			"oid":                u.ObjectID,
			"sub":                u.ObjectID,
			"tid":                req.tenant,
			"preferred_username": u.Username,
			"name":               (&user{User: *u}).displayName(),
			"ver":                "2.0",
			"uti":                randomID(16),
		}
		if req.nonce != "" {
			idt["nonce"] = req.nonce
		}
		if resp["id_token"], err = s.sign(idt); err != nil {
			return nil, newOAuthError(http.StatusInternalServerError, "server_error", 0, "entratest: sign id token: "+err.Error())
		}
	}
	if req.clientInfo {
		ci, _ := json.Marshal(map[string]string{"uid": u.ObjectID, "utid": u.Tenant})
		resp["client_info"] = base64.RawURLEncoding.EncodeToString(ci)
	}
	return resp, nil
}

// oidcScopes are the scopes that ask for sign-in artifacts, not for access
// to a resource.
var oidcScopes = map[string]bool{"openid": true, "profile": true, "email": true, "offline_access": true}

// parseScopes splits a scope parameter, dropping duplicates
// (case-insensitively) and keeping the order.
func parseScopes(scope string) []string {
	var out []string
	seen := map[string]bool{}
	for _, sc := range strings.Fields(scope) {
		k := strings.ToLower(sc)
		if !seen[k] {
			seen[k] = true
			out = append(out, sc)
		}
	}
	return out
}

func resourceScopes(scopes []string) []string {
	out := []string{}
	for _, sc := range scopes {
		if !oidcScopes[strings.ToLower(sc)] {
			out = append(out, sc)
		}
	}
	return out
}

func hasScope(scopes []string, want string) bool {
	for _, sc := range scopes {
		if strings.EqualFold(sc, want) {
			return true
		}
	}
	return false
}

// splitScope splits a scope into resource and permission:
// "api://backend/.default" is ("api://backend", ".default"), and a bare
// "User.Read" is Microsoft Graph's.
func splitScope(sc string) (resource, name string) {
	if i := strings.LastIndexByte(sc, '/'); i > 0 && !strings.HasSuffix(sc[:i+1], "://") {
		return sc[:i], sc[i+1:]
	}
	if strings.Contains(sc, "://") {
		return sc, ""
	}
	return "https://graph.microsoft.com", sc
}

// audience returns the aud claim for resource scopes (from the first) and
// the scp claim (the permission names, without .default).
func audience(res []string) (aud, scp string) {
	var names []string
	for i, sc := range res {
		r, n := splitScope(sc)
		if i == 0 {
			aud = r
		}
		if n != "" && n != ".default" {
			names = append(names, n)
		}
	}
	if aud == "" {
		aud = "https://graph.microsoft.com"
	}
	return aud, strings.Join(names, " ")
}
