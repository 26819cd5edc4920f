package msalcache

import (
	"context"
	"errors"
	"time"
)

// Version identifies one stored value of a key, for compare-and-set. A store
// hands out a new Version every time it writes a key, never hands out
// NoVersion, and never hands out a version again for the same key, even
// after a Delete or an expiry (or a stale writer could overwrite newer
// data). Versions are opaque: compare them for equality only.
type Version uint64

// NoVersion is the version of a key that does not exist. Passing it to
// Store.Save means "create: fail with ErrConflict if the key exists".
const NoVersion driver.Version = 0

// Sentinel errors shared by every Store and by the Adapter. Stores wrap them
// with context (never with the key's partition, which names a user), so test
// them with errors.Is.
var (
	// ErrNotFound reports that a key is absent or expired.
	ErrNotFound = errors.New("msalcache: not found")
	// ErrConflict reports that a compare-and-set lost: the key's version is
	// not the one the writer read.
	ErrConflict = errors.New("msalcache: version conflict")
	// ErrTooLarge reports that a value is larger than the store accepts.
	ErrTooLarge = errors.New("msalcache: value too large")
	// ErrClosed reports a call on a store that was closed.
	ErrClosed = errors.New("msalcache: store closed")
	// ErrCorrupt reports a stored record that the store cannot decode (a
	// truncated value, a value written by another program, a damaged
	// disk). Load returns it instead of a value; Save with NoVersion
	// replaces such a record, so that a writer can always repair its key
	// without deleting it first.
	ErrCorrupt = errors.New("msalcache: stored record is corrupt")
)

// Store is the contract between the Adapter (and the protect key ring) and a
// backend. Implementations live in their own packages (memstore, boltstore,
// redisstore, memcachestore); conformance.RunStoreTests checks any of them.
//
// Keys passed by this module are 1 to 200 bytes of printable ASCII with no
// space (letters, digits and "-_.:/"), so every backend can use them as is
// after adding its own prefix. Values are opaque bytes, possibly binary.
//
// Every method is safe for concurrent use and honours ctx: when ctx is done
// the call returns promptly with an error that wraps ctx.Err(), and a call
// whose ctx is done before it starts changes nothing.
type Store interface {
	// Load returns the value stored under key and its version, or an error
	// wrapping ErrNotFound when the key is absent or expired, or wrapping
	// ErrCorrupt when the store holds a record under key that it cannot
	// decode. The returned slice belongs to the caller.
	Load(ctx context.Context, key string) ([]byte, driver.Version, error)

	// Save writes value under key if the key's current version is
	// ifVersion (NoVersion: only if the key is absent, expired or holds a
	// record that Load reports as ErrCorrupt), and
	// returns the new version. It fails with ErrConflict when the version
	// differs and with ErrTooLarge when the store cannot hold value. A ttl
	// greater than zero makes the key expire after ttl; zero (or less)
	// means no expiry, replacing any earlier one. Load may return an empty
	// value as nil. The store does not retain value after Save returns.
	Save(ctx context.Context, key string, value []byte, ifVersion driver.Version, ttl time.Duration) (driver.Version, error)

	// Delete removes key. Deleting an absent key is not an error.
	Delete(ctx context.Context, key string) error

	// Close releases the store's resources. Calls after Close fail with
	// ErrClosed; a second Close returns nil or ErrClosed. Close does not
	// close a client the caller passed in.
	Close() error
}

// Lister is implemented by stores that can enumerate their keys (every
// store here except memcached), so that operator tooling can inspect and
// migrate a store key by key.
type Lister interface {
	// List calls fn for every live key that starts with prefix, in no
	// particular order, and stops at the first error fn returns. fn may
	// call the store's other methods (an operator rewrites keys while
	// listing them).
	List(ctx context.Context, prefix string, fn func(key string) error) error
}

// Pinger is implemented by stores that can check their connection cheaply.
type Pinger interface {
	// Ping reports whether the store answers.
	Ping(ctx context.Context) error
}

// Volatile is implemented by stores that may drop a key before its TTL
// (memcached evicts under memory pressure). Such a store is fine for token
// caches, which are rebuilt on a miss, and refused as the home of anything
// that must not vanish, such as the protect key ring.
type Volatile interface {
	// Volatile reports whether the store may lose keys before they expire.
	Volatile() bool
}

// IsVolatile reports whether s declares that it may lose keys early.
func IsVolatile(s driver.Store) bool {
	v, ok := s.(driver.Volatile)
	return ok && v.Volatile()
}

// ContextBounder is implemented by stores (and Protectors) whose every call
// returns promptly once ctx is done, whatever the server does: they bound
// their I/O by ctx themselves. The Adapter calls them directly; any other
// store it calls on a goroutine that it abandons when ctx ends, since MSAL
// holds its client lock across the call and one call that ignored ctx would
// stall every token call of the client. Every store of this module
// declares it: redisstore puts the deadline on the socket (with
// ContextTimeoutEnabled) or watches ctx itself, memcachestore watches ctx
// itself, memstore and boltstore never wait on a network.
type ContextBounder interface {
	// BoundsContext reports whether every call returns promptly once its
	// ctx is done.
	BoundsContext() bool
}

// boundsContext reports whether v declares that it bounds its calls by ctx.
func boundsContext(v any) bool {
	b, ok := v.(driver.ContextBounder)
	return ok && b.BoundsContext()
}

// Watcher is implemented by stores that can tell their users that a key
// changed, through any handle or instance, soon after it did: Redis
// publishes from its compare-and-set script, memstore and boltstore tell
// every Adapter in the process. An Adapter with WithL1 watches such a
// store, so that the data it keeps in memory is dropped as soon as another
// instance writes or deletes it, instead of being trusted for MaxStale.
type Watcher interface {
	// Watch calls fn for every Change until stop is called. The first
	// call says ChangeWatchUp once the store sees every change; until
	// then, and after a ChangeWatchDown until the next ChangeWatchUp,
	// the caller trusts nothing it learned from the store. fn runs on the
	// store's goroutine or inside the writer's call: it must be quick and
	// must not call the store. stop waits for fn's last call to return.
	Watch(ctx context.Context, fn func(driver.Change)) (stop func(), err error)
}

// Change is one notification of a Watcher.
type Change struct {
	Kind driver.ChangeKind
	// Key is the changed key (ChangeKey only).
	Key string
	// Version is the key's version after the change, or NoVersion when
	// the key was deleted or the store cannot tell.
	Version driver.Version
	// Err says why (ChangeWatchDenied only): an error wrapping
	// ErrWatchDenied that names the missing permission.
	Err error
}

// ChangeKind says what a Change reports.
type ChangeKind uint8

const (
	// ChangeKey reports that Key was written or deleted.
	ChangeKey driver.ChangeKind = iota
	// ChangeWatchUp reports that the store sees every change from now on
	// (when the watch starts, and after it recovers).
	ChangeWatchUp
	// ChangeWatchDown reports that changes may be missed (a dropped
	// connection, a failover): forget what was learned, trust nothing
	// until ChangeWatchUp.
	ChangeWatchDown
	// ChangeWatchDenied reports that the store refused the watch for
	// lack of permission (Err wraps ErrWatchDenied) and will not retry:
	// no change will be reported, so trust nothing learned from the
	// store. It comes once, at any time, instead of a first
	// ChangeWatchUp.
	ChangeWatchDenied
)

// Versioner is implemented by stores that can read a key's version without
// its value, for less than a Load (a record header: bbolt, memstore, a few bytes of a
// Redis record). An Adapter with WithL1 uses it to revalidate an entry
// older than MaxStale instead of loading the partition again.
type Versioner interface {
	// Version returns key's current version, or an error wrapping
	// ErrNotFound when the key is absent or expired.
	Version(ctx context.Context, key string) (driver.Version, error)
}

// ErrNotReplicated reports a write that the store made on its primary but
// could not confirm on a replica before ctx ended: a failover now could
// still lose it. The write itself happened.
var ErrNotReplicated = errors.New("msalcache: write not confirmed by a replica")

// DurableSaver is implemented by stores that replicate asynchronously and
// can wait for a write to reach a replica (redisstore on a Redis with
// replicas: WAIT). The Adapter stores removals through it, so that a
// failover right after a sign-out cannot bring the user's tokens back.
type DurableSaver interface {
	// SaveDurable is Save, then a wait, bounded by ctx, until at least one
	// replica holds the write. Where the store has no replica (or the
	// wait is configured off) it is Save. When the write landed but no
	// replica confirmed it before ctx ended, it returns the new version
	// with an error wrapping ErrNotReplicated.
	SaveDurable(ctx context.Context, key string, value []byte, ifVersion driver.Version, ttl time.Duration) (driver.Version, error)
}
