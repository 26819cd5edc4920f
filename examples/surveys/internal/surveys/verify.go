package surveys

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// Token validation, as the Survey API (access tokens) and the web app (ID
// tokens) do it: signature against the issuer's published keys (JWKS),
// issuer, audience, lifetime. Entra ID signs with RS256; the emulator with
// ES256, which is what this checks. A production app would use a JOSE
// library; this file shows what such a library checks.

// errInvalidToken is the reason given for every token the validator
// refuses; the detail is logged by nobody, since it could help a forger.
var errInvalidToken = errors.New("invalid token")

// keySet fetches and caches the signing keys of the issuer's tenants.
type keySet struct {
	base   string // https://HOST of the identity provider
	client *http.Client

	mu   sync.Mutex
	keys map[string]*ecdsa.PublicKey // kid -> key
	last time.Time
}

func newKeySet(base string, client *http.Client) *keySet {
	return &keySet{base: base, client: client, keys: map[string]*ecdsa.PublicKey{}}
}

// key returns the key kid, fetching the JWKS when it is unknown, at most
// once every 10 s so that tokens with made-up key ids cannot make us
// hammer the provider.
func (k *keySet) key(ctx context.Context, kid string) (*ecdsa.PublicKey, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if pk := k.keys[kid]; pk != nil {
		return pk, nil
	}
	if time.Since(k.last) < 10*time.Second {
		return nil, errInvalidToken
	}
	k.last = time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.base+"/common/discovery/v2.0/keys", nil)
	if err != nil {
		return nil, err
	}
	resp, err := k.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch signing keys: %w", err)
	}
	defer resp.Body.Close()
	var set struct {
		Keys []struct {
			Kty, Crv, Kid, X, Y string
		} `json:"keys"`
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch signing keys: %s", resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		return nil, fmt.Errorf("fetch signing keys: %w", err)
	}
	for _, j := range set.Keys {
		if j.Kty != "EC" || j.Crv != "P-256" {
			continue
		}
		x, errX := base64.RawURLEncoding.DecodeString(j.X)
		y, errY := base64.RawURLEncoding.DecodeString(j.Y)
		if errX != nil || errY != nil {
			continue
		}
		if len(x) != 32 || len(y) != 32 {
			continue
		}
		// The parse checks that the point is on the curve, which a key
		// from the network must be before ecdsa uses it.
		pk, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
		if err != nil {
			continue
		}
		k.keys[j.Kid] = pk
	}
	if pk := k.keys[kid]; pk != nil {
		return pk, nil
	}
	return nil, errInvalidToken
}

// claims are the claims the app and the API read.
type claims struct {
	Iss      string   `json:"iss"`
	Aud      string   `json:"aud"`
	Tid      string   `json:"tid"`
	Oid      string   `json:"oid"`
	Azp      string   `json:"azp"`
	Name     string   `json:"name"`
	Username string   `json:"preferred_username"`
	Nonce    string   `json:"nonce"`
	Roles    []string `json:"roles"`
	Exp      int64    `json:"exp"`
	Nbf      int64    `json:"nbf"`
}

func (c claims) hasRole(roles ...string) bool {
	for _, r := range roles {
		if slices.Contains(c.Roles, r) {
			return true
		}
	}
	return false
}

// verify checks token's signature, lifetime (with 5 minutes of clock skew),
// audience, and that its issuer is the provider's issuer of the tenant it
// names; which tenants are acceptable is the caller's decision.
func (k *keySet) verify(ctx context.Context, token, audience string) (claims, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return claims{}, errInvalidToken
	}
	hb, err1 := base64.RawURLEncoding.DecodeString(parts[0])
	pb, err2 := base64.RawURLEncoding.DecodeString(parts[1])
	sig, err3 := base64.RawURLEncoding.DecodeString(parts[2])
	if err1 != nil || err2 != nil || err3 != nil || len(sig) != 64 {
		return claims{}, errInvalidToken
	}
	var h struct{ Alg, Kid string }
	if json.Unmarshal(hb, &h) != nil || h.Alg != "ES256" {
		return claims{}, errInvalidToken
	}
	pk, err := k.key(ctx, h.Kid)
	if err != nil {
		return claims{}, err
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if !ecdsa.Verify(pk, digest[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
		return claims{}, errInvalidToken
	}
	var c claims
	if json.Unmarshal(pb, &c) != nil {
		return claims{}, errInvalidToken
	}
	const skew = 5 * 60
	now := time.Now().Unix()
	switch {
	case c.Exp == 0 || now > c.Exp+skew, c.Nbf != 0 && now+skew < c.Nbf:
		return claims{}, errInvalidToken
	case c.Aud != audience:
		return claims{}, errInvalidToken
	case c.Tid == "" || c.Iss != k.base+"/"+c.Tid+"/v2.0":
		return claims{}, errInvalidToken
	}
	return c, nil
}
