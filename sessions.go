package msalcache

import (
	"bytes"
	"encoding/hex"
	"slices"

	"github.com/msalcache/msalcache/internal/cachedoc"
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

// removalMarker starts every removal record. It is not JSON, so that a
// version of this module from before removal records reads one as a
// corrupt partition, which is a miss.
var removalMarker = []byte("\x00msalcache:removed:v1\n")

// encodeRemoval returns the removal record of a partition whose sessions
// were sessions: the marker, then one hex hash per line.
func encodeRemoval(sessions []cachedoc.SessionID) []byte {
	b := make([]byte, 0, len(removalMarker)+len(sessions)*(2*len(cachedoc.SessionID{})+1))
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
func decodeRemoval(plain []byte) []cachedoc.SessionID {
	var out []cachedoc.SessionID
	rest := plain[len(removalMarker):]
	for len(rest) > 0 {
		line, after, _ := bytes.Cut(rest, []byte{'\n'})
		rest = after
		var s cachedoc.SessionID
		if n, err := hex.Decode(s[:], line); err == nil && n == len(s) && len(line) == 2*len(s) {
			out = append(out, s)
		}
	}
	return out
}

// mayStoreOver reports whether doc may be stored over a removal record of
// the sessions removed, by a call that fenced says began before the
// removal (or cannot be told from one that did). App tokens end no user's
// sign-in: a removal of app tokens holds only until the next token. A
// user's cache is a new sign-in when its sessions say so; failing that,
// when the call is not fenced.
func mayStoreOver(doc *cachedoc.Document, removed []cachedoc.SessionID, fenced bool) bool {
	if doc != nil && !doc.IsUserCache() {
		return true
	}
	if ok, known := cachedoc.Revives(doc, removed); known {
		return ok
	}
	return !fenced
}

// unionSessions returns a with those of b it lacks.
func unionSessions(a, b []cachedoc.SessionID) []cachedoc.SessionID {
	for _, s := range b {
		if !slices.Contains(a, s) {
			a = append(a, s)
		}
	}
	return a
}
