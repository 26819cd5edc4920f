package protect

import (
	"errors"
	"fmt"
	"strings"
)

// Errors reported by the KeyRing. Test them with errors.Is.
var (
	// errNotProtected reports input that is not a payload of this package:
	// too short, no magic, or an unknown suite.
	errNotProtected = errors.New("protect: not a protected payload")
	// errKeyNotFound reports a payload sealed under a key id the ring does
	// not hold, even after reloading its record.
	errKeyNotFound = errors.New("protect: key not found in the key ring")
	// ErrKeyRevoked reports a payload sealed under a revoked key.
	ErrKeyRevoked = errors.New("protect: key revoked")
	// errDecrypt reports a payload that fails authentication: altered,
	// truncated, or bound to other associated data. It says no more, on
	// purpose.
	errDecrypt = errors.New("protect: decryption failed")
	// ErrVolatileStore reports a store that may evict keys: losing the ring
	// loses every token it protects, so it must live in a durable store.
	ErrVolatileStore = errors.New("protect: the key ring needs a durable store (bbolt, or Redis with persistence); this store may evict keys (memcached)")
	// ErrRingMissing reports that the ring's record is gone from the store
	// while its marker shows that a ring existed. The ring refuses to mint
	// a new one in its place; see the package documentation.
	ErrRingMissing = errors.New("protect: key ring record is missing from the store although a ring existed (deleted or flushed)")
	// ErrInvalidRing reports a ring record this ring rejects: damaged
	// (then the error also wraps ErrRingDamaged), wrapped by a KEK this
	// ring lacks, written by a newer version of this package, or holding
	// a key that contradicts the copy this ring verified before. Only
	// damage is ever overwritten.
	ErrInvalidRing = errors.New("protect: key ring record rejected")
	// errNoKey reports that no key may encrypt now and none could be
	// created (the store is unreachable).
	errNoKey = errors.New("protect: no usable key to encrypt with")
	// ErrRingDamaged reports a ring record that a newcomer cannot decode
	// or authenticate: altered at rest (a damaged disk, a partial write,
	// an edit), or reported corrupt by the store. Errors that wrap it also
	// wrap ErrInvalidRing. A running server that holds the ring rewrites
	// such a record from its verified copy at its next refresh; the
	// error's text says how to reset the ring if none runs. A ring never
	// mints a new ring over a damaged record.
	ErrRingDamaged = errors.New("protect: key ring record is damaged")
	// errRingClosed reports a call on a KeyRing after its Close. It is not
	// driver.ErrClosed on purpose: the store may well be open, and an
	// operator reading "store closed" would look in the wrong place.
	errRingClosed = errors.New("protect: key ring closed")
)

// damagedError is what a newcomer reports for a record it cannot verify.
// It wraps ErrRingDamaged and, since a damaged record is a rejected one,
// ErrInvalidRing.
type damagedError struct {
	msg   string
	cause error
}

func (e *damagedError) Error() string { return e.msg }

func (e *damagedError) Unwrap() []error { return []error{ErrRingDamaged, ErrInvalidRing, e.cause} }

func (r *KeyRing) damagedError(damage error, verified *working) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: record %q cannot be verified (%v). ", ErrRingDamaged.Error(), r.cfg.ringKey, damage)
	if verified == nil || len(verified.keys)+len(verified.revoked) == 0 {
		fmt.Fprintf(&b, "If every server fails like this one, check first that this server has the farm's KEK %q: a ring wrapped by another key under the same KEK id fails the same way. ", r.primary.ID())
	}
	fmt.Fprintf(&b, "Otherwise any running server that still holds the ring rewrites the record from its copy within its refresh interval (%v by default; WithRefreshInterval): retry then. "+
		"If no such server runs, reset the ring by deleting %q and its marker %q from the store; every token stored under the old ring then becomes unreadable (a cache miss: each is acquired again from Entra ID and shared again)",
		defaultRefreshInterval, r.cfg.ringKey, r.marker)
	return &damagedError{msg: b.String(), cause: damage}
}
