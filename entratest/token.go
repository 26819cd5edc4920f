package entratest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"
)

// Claims are the claims of a token issued by a [Server], as decoded by
// [ParseToken]. Tokens from elsewhere decode too, as far as they carry the
// same standard claims.
type Claims struct {
	// ID is the token's unique identifier (jti). Every token the Server
	// issues has a new one.
	ID string
	// Issuer is the iss claim, https://HOST/TENANT/v2.0.
	Issuer string
	// Tenant is the tenant the token was issued in (tid).
	Tenant string
	// Subject is the sub claim: the user's object id for user tokens, the
	// application's service principal id for app tokens.
	Subject string
	// ObjectID is the oid claim: the user's object id, or the application's
	// service principal id for app tokens.
	ObjectID string
	// Username is the user's sign-in name (preferred_username); empty for
	// app tokens.
	Username string
	// Name is the user's display name; empty for app tokens.
	Name string
	// ClientID is the application the token was issued to (azp or appid).
	ClientID string
	// Audience is the resource the token is for (aud): the part of the first
	// requested scope before its last "/", or https://graph.microsoft.com
	// for bare scopes such as "User.Read". For ID tokens it is the client id.
	Audience string
	// Scopes are the resource scopes requested, as requested
	// ("api://backend/.default", "https://graph.microsoft.com/User.Read"),
	// without openid, profile, email and offline_access. For tokens not
	// issued by a Server, the space-separated scp claim.
	Scopes []string
	// Grant is the grant_type of the token request that produced the token,
	// such as [GrantAuthorizationCode]; empty for tokens not issued by a
	// Server and for ID tokens.
	Grant string
	// Roles are the app roles of the roles claim: for a user, those
	// assigned with [Server.AssignRoles] for the token's audience.
	Roles []string
	// App is true for app-only tokens (client credentials).
	App bool
	// IssuedAt and ExpiresAt are the iat and exp claims.
	IssuedAt, ExpiresAt time.Time
	// Raw holds every claim of the token as decoded from JSON (numbers as
	// json.Number).
	Raw map[string]any
}

// HomeAccountID returns MSAL's home account id for the user the token was
// issued to, "OID.TENANT", or "" for app tokens. It is the account id MSAL
// reports for accounts signed in at a Server, and the cache partition key
// MSAL-Go's confidential clients use for that user.
func (c Claims) HomeAccountID() string {
	if c.App || c.ObjectID == "" {
		return ""
	}
	return c.ObjectID + "." + c.Tenant
}

// Claim names private to this package.
const (
	claimScopes = "entratest_scopes"
	claimGrant  = "entratest_grant"
)

// ErrMalformedToken is returned (wrapped) by [ParseToken] and
// [Server.VerifyToken] for strings that are not JWTs with a JSON payload,
// so a test can tell a token that is not one from one that fails
// verification.
var ErrMalformedToken = errors.New("entratest: malformed token")

// ParseToken decodes the claims of accessToken, a JWT such as the access and
// ID tokens a [Server] issues. It does not check the signature or the
// expiry (use [Server.VerifyToken] for that), so it works on tokens from a
// cache written by an earlier run.
func ParseToken(accessToken string) (Claims, error) {
	_, payload, _, err := splitJWT(accessToken)
	if err != nil {
		return Claims{}, err
	}
	return claimsFromPayload(payload)
}

// VerifyToken checks that token was signed by this server and has not
// expired, and returns its claims.
func (s *Server) VerifyToken(token string) (Claims, error) {
	header, payload, sig, err := splitJWT(token)
	if err != nil {
		return Claims{}, err
	}
	var h struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
	}
	if err := json.Unmarshal(header, &h); err != nil {
		return Claims{}, fmt.Errorf("%w: header: %v", ErrMalformedToken, err)
	}
	if h.Alg != "ES256" || h.Kid != s.kid {
		return Claims{}, fmt.Errorf("entratest: token not signed by this server (alg %q, kid %q)", h.Alg, h.Kid)
	}
	i := strings.LastIndexByte(token, '.')
	digest := sha256.Sum256([]byte(token[:i]))
	if len(sig) != 64 ||
		!ecdsa.Verify(&s.signKey.PublicKey, digest[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
		return Claims{}, errors.New("entratest: invalid token signature")
	}
	c, err := claimsFromPayload(payload)
	if err != nil {
		return Claims{}, err
	}
	if !c.ExpiresAt.IsZero() && time.Now().After(c.ExpiresAt) {
		return c, fmt.Errorf("entratest: token expired at %s", c.ExpiresAt.Format(time.RFC3339))
	}
	return c, nil
}

// splitJWT decodes the header, payload and signature of a compact JWS.
func splitJWT(token string) (header, payload, sig []byte, err error) {
	parts := strings.Split(strings.TrimSpace(token), ".")
	if len(parts) != 3 {
		return nil, nil, nil, fmt.Errorf("%w: want 3 dot-separated parts, got %d", ErrMalformedToken, len(parts))
	}
	dec := func(s string) ([]byte, error) {
		return base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
	}
	if header, err = dec(parts[0]); err != nil {
		return nil, nil, nil, fmt.Errorf("%w: header: %v", ErrMalformedToken, err)
	}
	if payload, err = dec(parts[1]); err != nil {
		return nil, nil, nil, fmt.Errorf("%w: payload: %v", ErrMalformedToken, err)
	}
	if sig, err = dec(parts[2]); err != nil {
		return nil, nil, nil, fmt.Errorf("%w: signature: %v", ErrMalformedToken, err)
	}
	return header, payload, sig, nil
}

func claimsFromPayload(payload []byte) (Claims, error) {
	var raw map[string]any
	d := json.NewDecoder(bytes.NewReader(payload))
	d.UseNumber()
	if err := d.Decode(&raw); err != nil || raw == nil {
		return Claims{}, fmt.Errorf("%w: payload is not a JSON object", ErrMalformedToken)
	}
	str := func(k string) string {
		s, _ := raw[k].(string)
		return s
	}
	first := func(keys ...string) string {
		for _, k := range keys {
			if v := str(k); v != "" {
				return v
			}
		}
		return ""
	}
	unix := func(k string) time.Time {
		if n, ok := raw[k].(json.Number); ok {
			if f, err := n.Float64(); err == nil {
				return time.Unix(int64(f), 0)
			}
		}
		return time.Time{}
	}
	c := Claims{
		ID:        first("jti", "uti"),
		Issuer:    str("iss"),
		Tenant:    str("tid"),
		Subject:   str("sub"),
		ObjectID:  str("oid"),
		Username:  first("preferred_username", "upn", "unique_name", "email"),
		Name:      str("name"),
		ClientID:  first("azp", "appid"),
		Grant:     str(claimGrant),
		IssuedAt:  unix("iat"),
		ExpiresAt: unix("exp"),
		Raw:       raw,
	}
	switch aud := raw["aud"].(type) {
	case string:
		c.Audience = aud
	case []any:
		if len(aud) > 0 {
			c.Audience, _ = aud[0].(string)
		}
	}
	if list, ok := raw[claimScopes].([]any); ok {
		for _, v := range list {
			if s, ok := v.(string); ok {
				c.Scopes = append(c.Scopes, s)
			}
		}
	} else if scp := str("scp"); scp != "" {
		c.Scopes = strings.Fields(scp)
	}
	if list, ok := raw["roles"].([]any); ok {
		for _, v := range list {
			if s, ok := v.(string); ok {
				c.Roles = append(c.Roles, s)
			}
		}
	}
	c.App = str("idtyp") == "app"
	return c, nil
}

// sign returns claims as a compact ES256 JWS.
func (s *Server) sign(claims map[string]any) (string, error) {
	header, err := json.Marshal(map[string]string{"typ": "JWT", "alg": "ES256", "kid": s.kid})
	if err != nil {
		return "", err
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	input := base64.RawURLEncoding.EncodeToString(header) + "." + base64.RawURLEncoding.EncodeToString(payload)
	digest := sha256.Sum256([]byte(input))
	r, sv, err := ecdsa.Sign(rand.Reader, s.signKey, digest[:])
	if err != nil {
		return "", err
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	sv.FillBytes(sig[32:])
	return input + "." + base64.RawURLEncoding.EncodeToString(sig), nil
}

// randomID returns n random bytes, base64url encoded.
func randomID(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b)
}

// stableUUID derives a UUID-shaped id from parts, so the same user or app in
// the same tenant gets the same object id on every run.
func stableUUID(parts ...string) string {
	h := sha256.Sum256([]byte("entratest\x00" + strings.Join(parts, "\x00")))
	b := h[:16]
	b[6] = b[6]&0x0f | 0x80 // version 8: custom
	b[8] = b[8]&0x3f | 0x80 // RFC 9562 variant
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
