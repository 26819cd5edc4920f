package msalcache

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"slices"
	"strings"
)

// Sign-in sessions tell a new sign-in from the session a removal ended.
//
// An ID token names the sign-in session it belongs to in its sid claim
// (an optional claim of Entra ID: add it to the app registration's ID
// token): a refresh keeps it, a new sign-in gets a new one. A removal
// record lists (hashed) the sessions of the partition it replaced, so that
// what a write would store over it is judged by what it is, whichever
// instance, call or context wrote it: tokens of a removed session are the
// signed-out user coming back, tokens of another session are a new
// sign-in. Without sid claims the Adapter judges by the call (see
// removal.go).

// sessionID is the SHA-256 of a sid claim: a removal record names sessions
// without storing what the identity provider issued.
type sessionID [32]byte

func hashSession(sid string) sessionID {
	return sha256.Sum256([]byte("msalcache sid\x00" + sid))
}

// sessions returns the sessions of d's ID tokens, without duplicates.
func (d *document) sessions() []sessionID {
	var out []sessionID
	for _, raw := range d.sections[secIDToken] {
		if sid := idTokenSession(raw); sid != "" {
			if h := hashSession(sid); !slices.Contains(out, h) {
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

// removalMarker starts every removal record. It is not JSON, so that a
// version of this module from before removal records reads one as a
// corrupt partition, which is a miss.
var removalMarker = []byte("\x00msalcache:removed:v1\n")

// encodeRemoval returns the removal record of a partition whose sessions
// were sessions: the marker, then one hex hash per line.
func encodeRemoval(sessions []sessionID) []byte {
	b := make([]byte, 0, len(removalMarker)+len(sessions)*(2*len(sessionID{})+1))
	b = append(b, removalMarker...)
	for _, s := range sessions {
		b = hex.AppendEncode(b, s[:])
		b = append(b, '\n')
	}
	return b
}

// isRemoval reports whether plain, a decrypted stored blob, is a removal
// record.
func isRemoval(plain []byte) bool { return bytes.HasPrefix(plain, removalMarker) }

// decodeRemoval returns the sessions a removal record names; a line it
// cannot read is skipped (the record is still a removal).
func decodeRemoval(plain []byte) []sessionID {
	var out []sessionID
	rest := plain[len(removalMarker):]
	for len(rest) > 0 {
		line, after, _ := bytes.Cut(rest, []byte{'\n'})
		rest = after
		var s sessionID
		if n, err := hex.Decode(s[:], line); err == nil && n == len(s) && len(line) == 2*len(s) {
			out = append(out, s)
		}
	}
	return out
}

// revives judges doc, to be stored over a removal record of the sessions
// removed: known reports whether the sessions tell (doc's ID tokens name
// sessions and the record names some), and then ok whether doc is a new
// sign-in (none of its sessions removed).
func revives(doc *document, removed []sessionID) (ok, known bool) {
	if doc == nil || len(removed) == 0 {
		return false, false
	}
	ss := doc.sessions()
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

// mayStoreOver reports whether doc may be stored over a removal record of
// the sessions removed, by a call that fenced says began before the
// removal (or cannot be told from one that did). App tokens end no user's
// sign-in: a removal of app tokens holds only until the next token. A
// user's cache is a new sign-in when its sessions say so; failing that,
// when the call is not fenced.
func mayStoreOver(doc *document, removed []sessionID, fenced bool) bool {
	if doc != nil && !doc.isUserCache() {
		return true
	}
	if ok, known := revives(doc, removed); known {
		return ok
	}
	return !fenced
}

// unionSessions returns a with those of b it lacks.
func unionSessions(a, b []sessionID) []sessionID {
	for _, s := range b {
		if !slices.Contains(a, s) {
			a = append(a, s)
		}
	}
	return a
}
