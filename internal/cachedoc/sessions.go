package cachedoc

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"slices"
	"strings"
)

// SessionID is the SHA-256 of a sid claim: a removal record names sessions
// without storing what the identity provider issued.
type SessionID [32]byte

func HashSession(sid string) SessionID {
	return sha256.Sum256([]byte("msalcache sid\x00" + sid))
}

// Sessions returns the sessions of d's ID tokens, without duplicates.
func (d *Document) Sessions() []SessionID {
	var out []SessionID
	for _, raw := range d.sections[secIDToken] {
		if sid := idTokenSession(raw); sid != "" {
			if h := HashSession(sid); !slices.Contains(out, h) {
				out = append(out, h)
			}
		}
	}
	return out
}

// idTokenSession returns the sid claim of the ID token that raw, an MSAL
// IdToken cache entry, holds as its secret, or "".
func idTokenSession(raw json.RawMessage) string {
	var e struct {
		Secret string `json:"secret"`
	}
	if json.Unmarshal(raw, &e) != nil {
		return ""
	}
	parts := strings.Split(e.Secret, ".")
	if len(parts) != 3 {
		return ""
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return ""
	}
	var c struct {
		SID string `json:"sid"`
	}
	if json.Unmarshal(payload, &c) != nil {
		return ""
	}
	return c.SID
}

// Revives judges doc, to be stored over a removal record of the sessions
// removed: known reports whether the sessions tell (doc's ID tokens name
// Sessions and the record names some), and then ok whether doc is a new
// sign-in (none of its sessions removed).
func Revives(doc *Document, removed []SessionID) (ok, known bool) {
	if doc == nil || len(removed) == 0 {
		return false, false
	}
	ss := doc.Sessions()
	if len(ss) == 0 {
		return false, false
	}
	for _, s := range ss {
		if slices.Contains(removed, s) {
			return false, true
		}
	}
	return true, true
}
