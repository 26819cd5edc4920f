package entratest

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"time"
)

// Minting: what a grant that passed turns into, the token response with its
// access token, and for a user the ID token, refresh token and client_info
// MSAL asks for. The claims are those of the service's v2.0 tokens, plus two
// of the emulator's own (claimScopes, claimGrant) that let a test see which
// request a cached token came from.

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
	// session is the sign-in session the tokens belong to (the ID
	// token's sid): new for each sign-in, kept by a refresh.
	session string
	// clientInfo asks for client_info in the response (client_info=1).
	clientInfo bool
}

// issueTo issues req's tokens to the signed-in user u, in u's home tenant:
// a user who signs in at "common" gets tokens of the tenant they belong to.
func (s *Server) issueTo(req tokenRequest, u User) (map[string]any, *oauthError) {
	req.user = &u
	req.tenant = u.Tenant
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
			at["name"] = u.displayName()
		}
		if scp != "" {
			at["scp"] = scp
		}
		if roles := s.rolesFor(u.Tenant, u.Username, aud); len(roles) > 0 {
			at["roles"] = roles
		}
	}
	token, err := s.sign(at)
	if err != nil {
		return nil, errServer("entratest: sign token: " + err.Error())
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
	if req.session == "" {
		req.session = stableUUID("session", randomID(16))
	}
	resp["scope"] = strings.Join(req.scopes, " ")
	if hasScope(req.scopes, "offline_access") {
		resp["refresh_token"] = s.storeRefresh(&refreshGrant{user: *u, clientID: req.clientID, scopes: req.scopes, session: req.session})
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
			"name":               u.displayName(),
			"ver":                "2.0",
			"uti":                randomID(16),
			// The session, as the service's optional sid claim: the
			// same for every token a refresh of this sign-in brings.
			"sid": req.session,
		}
		if req.nonce != "" {
			idt["nonce"] = req.nonce
		}
		if resp["id_token"], err = s.sign(idt); err != nil {
			return nil, errServer("entratest: sign id token: " + err.Error())
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
