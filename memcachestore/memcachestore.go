// Package memcachestore keeps msalcache values in memcached through
// github.com/bradfitz/gomemcache, so that every instance of an application
// shares one token cache.
//
//	mc := memcache.New("10.0.0.1:11211", "10.0.0.2:11211")
//	mc.Timeout = 200 * time.Millisecond
//	store := memcachestore.New(mc, memcachestore.WithPrefix("myapp:"))
//	defer store.Close()
//	adapter, err := msalcache.New(store, msalcache.WithProtector(ring))
//
// # What memcached promises, and what it does not
//
// memcached is a cache, and this store inherits its limits:
//
//   - It evicts. Under memory pressure a key can vanish long before its TTL;
//     Load then reports driver.ErrNotFound, exactly as for a key never
//     written. The store says so by implementing driver.Volatile.
//   - It keeps nothing on disk. A server that restarts comes back empty.
//   - It does not replicate. With several servers, gomemcache puts each key
//     on one of them (crc32 of the key modulo the number of servers): a server
//     that goes down takes its share of the keys with it, and calls for those
//     keys fail (quickly when the host refuses connections, within the
//     client's Timeout when it does not answer) until it is back, empty.
//     Changing the server list moves most keys to another server, where they
//     are absent.
//   - Compare-and-set is consistent per key, because each key lives on one
//     server; there is nothing across keys or servers.
//
// For tokens all of that costs at most a refetch from Entra ID: the Adapter
// treats a miss as an empty cache. The protect package's key ring must not
// live here: an evicted ring makes every stored token unreadable. The ring
// refuses a store that reports driver.IsVolatile.
//
// memcached cannot enumerate its keys, so the store does not implement
// driver.Lister: nothing can walk its keys to inspect them or copy them
// elsewhere. To move to another store, let the new one fill from token
// misses.
//
// # With an L1: bounded staleness, not coherence
//
// memcached cannot push: it has no publish, no notification of a changed
// key, nothing a client can subscribe to. So the Store is not an
// driver.Watcher, and an Adapter with msalcache.WithL1 over it is not
// told when another instance writes or deletes a partition. It serves what
// it confirmed for at most MaxStale, then reloads it from memcached before
// serving it again: a new token, a sign-out (Adapter.Remove) or a rewrap on
// another instance is seen within MaxStale, not at once. Choose MaxStale as
// the staleness the application accepts; for coherence across instances
// use redisstore.
//
// Nor is the Store an driver.Versioner, so that reload is a full gets
// rather than a version-only probe. memcached cannot read part of a value,
// and the store's version lives in the value's first 8 bytes; its only
// cheap read, a meta get of the item's CAS id ("mg <key> c"), returns
// memcached's own counter, which is not the store's version and restarts
// from 1 with the server. Mapping CAS ids to versions would let a reused CAS
// id vouch for a partition written after a restart, serving it stale for
// longer than MaxStale: the bound the L1 promises on every store. (It would
// also need a second connection pool that bypasses the client's own, and a
// copy of its server selection, which memcache.Client does not expose.) The
// saving is small besides: measured on loopback, p50 of 20,000 calls, a
// gets of a 4 KiB value took 31.5 µs against 27.8 µs for "mg <key> c"
// (40 KiB: 44.6 against 28.7 µs), paid once per MaxStale per partition.
//
// # Records, versions and compare-and-set
//
// Each key holds one memcached item whose value is an 8-byte big-endian
// version followed by the caller's value, with the item flags set to a
// format marker. Versions are random 64-bit numbers picked by the writer;
// memcached's own CAS id is used only inside a Save, never handed out.
// gomemcache's Add and CompareAndSwap do not return the CAS id they created,
// so handing it out would cost a second round trip after every write and
// would be racy (another writer may come in between, and its CAS id would
// be returned as ours). Worse, memcached's CAS counter starts again from 1
// when a server restarts, so an old CAS id can match a new item (the ABA
// problem), while a random version is never reused.
//
// Load is one "gets". Save with driver.NoVersion is one "add" (an item
// already there means ErrConflict). Save with a version is a "gets" that
// checks the embedded version, then a "cas" with the CAS id that gets
// returned: two round trips, and the old value travels back once. An item
// under the prefix that this store did not write or that was damaged
// (other flags, shorter than a version, version 0) is corrupt: Load fails
// with an error wrapping driver.ErrCorrupt, a Save with NoVersion
// replaces it (its "add" fails, and the "gets" finds no version, which is
// what NoVersion expects), a Save with any other version conflicts, and
// Delete removes it. So a foreign or older format cannot wedge a key, and
// the Adapter's next write repairs it.
//
// # Keys
//
// The memcached key is the prefix (DefaultPrefix unless WithPrefix) followed
// by the store key. memcached keys are at most 250 bytes with no bytes at or
// below 0x20 (space, control characters) or 0x7f. A key with such a byte,
// or a prefix with one or longer than MaxPrefixLen, fails with an error
// wrapping ErrInvalidKey before anything is sent. A key that would make the
// memcached key longer than 250 bytes is shortened deterministically: as
// much of its start as fits, then '#' and the base64url SHA-256 of the whole
// key. Keys from this module never contain '#', so a shortened key cannot
// meet one of them.
//
// # Values
//
// memcached's default item limit (-I) is 1 MiB, and it counts the item
// header, the key and the CAS id as well as the value: with a 250-byte key
// memcached 1.6 stores at most 1 MiB - 313 bytes of data. This store adds
// its 8-byte version, so DefaultMaxValueSize is 1 MiB - 512, which fits with
// room to spare. Larger values fail with driver.ErrTooLarge before
// anything is sent; set WithMaxValueSize to match a server run with a larger
// -I (memcached takes at most -I 1024m, hence MaxValueSize, 1 GiB - 512).
// If the server still refuses an item ("SERVER_ERROR object too large for
// cache"), that error wraps driver.ErrTooLarge too.
//
// # Expiry
//
// memcached counts expiry in whole seconds on a clock that ticks once a
// second, and an item set to live n seconds is gone after between n-1 and n
// seconds. Save rounds a TTL up to whole seconds, and up to at least 2
// seconds, so a short TTL never makes an item that expires at once: 1ms,
// 1s and 1.5s all become 2s, 2.1s becomes 3s. A TTL up to 30 days is sent as
// a relative number of seconds; a longer one is sent as an absolute Unix
// time (that is how memcached reads values over 30 days), computed from the
// local clock, so keep clocks in sync. A TTL of zero means no expiry.
//
// # Deadlines
//
// gomemcache has no context support. A call whose ctx can be cancelled runs
// on its own goroutine, and returns as soon as ctx is done with an error
// wrapping ctx.Err(); the abandoned goroutine finishes on its own within the
// client's Timeout (memcache.Client.Timeout, 500ms when zero), which bounds
// the dial and then each network exchange: set it to the latency you are
// prepared to wait for. A Save whose ctx ends after its gets does not send
// its cas; a Save whose ctx ends while the cas is in flight may still have
// written. Close waits for abandoned calls to finish, so no goroutine of the
// store outlives Close. Network timeouts reported by gomemcache are wrapped
// with context.DeadlineExceeded, so one errors.Is check covers both.
package memcachestore

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/internal/ctxrun"
	"github.com/msalcache/msalcache/internal/netstore"
	"github.com/msalcache/msalcache/internal/record"
	"github.com/msalcache/msalcache/internal/storeopt"
)

// DefaultPrefix is put in front of every key when WithPrefix is not given,
// so the cache can share servers with other data.
const DefaultPrefix = "msalcache:"

// DefaultMaxValueSize is the largest value Save accepts unless
// WithMaxValueSize says otherwise: memcached's default 1 MiB item limit
// minus room for the item header, a 250-byte key, the CAS id and the
// store's 8-byte version (see the package documentation).
const DefaultMaxValueSize = 1<<20 - itemOverhead

// MaxValueSize is the largest limit WithMaxValueSize accepts: memcached
// refuses an item limit (-I) above 1 GiB, less the same room for the item
// header, the key, the CAS id and the version.
const MaxValueSize = 1<<30 - itemOverhead

// itemOverhead is the room a value leaves in an item for what memcached
// and the store add to it.
const itemOverhead = 512

// MaxKeyLen is the longest key memcached accepts.
const MaxKeyLen = 250

// MaxPrefixLen is the longest prefix WithPrefix accepts: it leaves room for
// the '#' and the 43-byte hash of a shortened key.
const MaxPrefixLen = MaxKeyLen - 1 - hashLen

// ErrInvalidKey reports a key or prefix that cannot be a memcached key (a
// byte at or below 0x20, 0x7f, an empty key, or a prefix too long). The
// error says which byte offset is wrong, never the key itself.
var ErrInvalidKey = errors.New("memcachestore: invalid key")

const (
	// recordFlags marks an item written by this store ("MS", format 1), so
	// that an item some other program left under the prefix is not read
	// as a token cache.
	recordFlags uint32 = 0x4d53_0001
	// hashLen is the length of an unpadded base64url SHA-256.
	hashLen = 43
	// maxRelativeExpiry is the largest expiration memcached reads as
	// seconds from now (30 days); anything larger is a Unix time.
	maxRelativeExpiry = 30 * 24 * 60 * 60
	// minExpiry is the shortest expiry sent: an item set to live one
	// second may be gone at the server's next clock tick, a moment later.
	minExpiry = 2
)

// Store is an driver.Store backed by memcached. It also implements
// driver.Pinger and driver.Volatile. It is safe for concurrent use.
//
// It implements neither driver.Watcher nor driver.Versioner, because
// memcached cannot push changes nor read a version without its value: with
// msalcache.WithL1, an Adapter serves a partition for at most MaxStale and
// then loads it again, so another instance's write is seen within MaxStale
// (bounded staleness, not coherence; see the package documentation).
type Store struct {
	c *memcache.Client
	config
	cfgErr error // the first invalid option (or a nil client): every call fails with it

	mu     sync.RWMutex // guards closed against wg.Add racing Close's Wait
	closed bool
	wg     sync.WaitGroup // calls in progress, including abandoned ones
}

type config struct {
	prefix   string
	maxValue int
	servers  memcache.ServerSelector // for Lifetime; nil: not given (see WithServerList)
}

// Option configures a Store. New returns no error, like memcache.New, so an
// invalid option makes every call of the Store fail with an error that
// names the option and what to pass instead.
type Option func(*config) error

// WithPrefix sets the string put in front of every key (default
// DefaultPrefix), so that several applications or environments can share
// servers without seeing each other's keys. An empty prefix means no
// prefix at all: the store's keys are the memcached keys (and the empty
// key, which memcached cannot hold, fails with ErrInvalidKey). A prefix
// with a byte at or below 0x20 or 0x7f, or longer than MaxPrefixLen, is
// refused: every call fails with an error wrapping ErrInvalidKey.
func WithPrefix(p string) Option {
	return func(c *config) error {
		if len(p) > MaxPrefixLen {
			return fmt.Errorf("WithPrefix: the prefix is %d bytes; pass at most MaxPrefixLen (%d), which leaves room for a shortened key (%w)", len(p), MaxPrefixLen, ErrInvalidKey)
		}
		if i := badByte(p); i >= 0 {
			return fmt.Errorf("WithPrefix(%q): byte %d is 0x%02x, and memcached keys have no spaces or control characters; pass a prefix without them (%w)", p, i, p[i], ErrInvalidKey)
		}
		c.prefix = p
		return nil
	}
}

// WithMaxValueSize sets the largest value Save accepts, 1 to MaxValueSize
// bytes; larger values fail with driver.ErrTooLarge before anything is
// sent. Use it to match a server run with a different -I, and keep it
// about 512 bytes below the server's -I: the server counts the key and the
// item header against its limit too.
func WithMaxValueSize(n int) Option {
	return func(c *config) error {
		if err := storeopt.Size("WithMaxValueSize", n, MaxValueSize,
			"memcached holds at most 1 GiB per item (-I 1024m), key and item header included", fmt.Sprintf("of 1 MiB less %d bytes", itemOverhead)); err != nil {
			return err
		}
		c.maxValue = n
		return nil
	}
}

// New returns a Store that keeps its keys on the servers of c. The store
// does not take ownership of c: Close leaves its connections alone. New does
// no I/O; call Ping to check the servers. Set c.Timeout: it bounds every
// call, including those whose ctx has no deadline. A nil c or an invalid
// option does not make New fail: every call of the Store fails instead,
// with an error that says what to pass.
func New(c *memcache.Client, opts ...Option) *Store {
	s := &Store{c: c, config: config{prefix: DefaultPrefix, maxValue: DefaultMaxValueSize}}
	s.cfgErr = storeopt.Apply(&s.config, opts)
	if c == nil {
		s.cfgErr = errNilClient
	}
	return s
}

var errNilClient = errors.New(`New(nil): pass a *memcache.Client, such as the one memcache.New("host:11211") returns`)

// MaxValueSize reports the largest value Save accepts: DefaultMaxValueSize
// or the size given to WithMaxValueSize.
func (s *Store) MaxValueSize() int { return s.maxValue }

// Volatile implements driver.Volatile: memcached evicts keys under
// memory pressure and forgets them all when it restarts.
func (s *Store) Volatile() bool { return true }

// badByte returns the offset of the first byte memcached refuses in a key,
// or -1.
func badByte(s string) int {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c == 0x7f {
			return i
		}
	}
	return -1
}

// callKey checks that a call on key may proceed as far as the store's
// configuration and the key go, and returns the memcached key.
func (s *Store) callKey(op, key string) (string, error) {
	if s.cfgErr != nil {
		return "", fmt.Errorf("memcachestore: %s: %w", op, s.cfgErr)
	}
	ikey, err := s.itemKey(key)
	if err != nil {
		return "", fmt.Errorf("memcachestore: %s: %w", op, err)
	}
	return ikey, nil
}

// itemKey turns a store key into the memcached key, shortening it as the
// package documentation describes when it would be too long.
func (s *Store) itemKey(key string) (string, error) {
	if i := badByte(key); i >= 0 {
		return "", fmt.Errorf("%w: key byte %d is 0x%02x; memcached keys have no spaces or control characters", ErrInvalidKey, i, key[i])
	}
	if len(s.prefix)+len(key) == 0 {
		return "", fmt.Errorf("%w: empty key with an empty prefix", ErrInvalidKey)
	}
	if len(s.prefix)+len(key) <= MaxKeyLen {
		return s.prefix + key, nil
	}
	sum := sha256.Sum256([]byte(key))
	head := key[:MaxKeyLen-len(s.prefix)-1-hashLen]
	var b strings.Builder
	b.Grow(MaxKeyLen)
	b.WriteString(s.prefix)
	b.WriteString(head)
	b.WriteByte('#')
	b.WriteString(base64.RawURLEncoding.EncodeToString(sum[:]))
	return b.String(), nil
}

// begin checks that a call may proceed and counts it in s.wg; on success
// the caller must call s.wg.Done once the call, including any goroutine
// it started, is over.
func (s *Store) begin(ctx context.Context, op string) error {
	if s.cfgErr != nil {
		return fmt.Errorf("memcachestore: %s: %w", op, s.cfgErr)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return fmt.Errorf("memcachestore: %s: %w", op, driver.ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memcachestore: %s: %w", op, err)
	}
	s.wg.Add(1)
	return nil
}

// run calls fn, but returns as soon as ctx is done even though fn, blocked
// in gomemcache, cannot see ctx. fn must write its results only to
// variables the caller reads after run returns nil. run ends the call begun
// by begin.
func (s *Store) run(ctx context.Context, fn func() error) error {
	return ctxrun.Do(ctx, func() error {
		defer s.wg.Done()
		return fn()
	})
}

// Load implements driver.Store with one gets. An item this store cannot
// decode fails with an error wrapping driver.ErrCorrupt.
func (s *Store) Load(ctx context.Context, key string) ([]byte, driver.Version, error) {
	ikey, err := s.callKey("load", key)
	if err != nil {
		return nil, driver.NoVersion, err
	}
	if err := s.begin(ctx, "load"); err != nil {
		return nil, driver.NoVersion, err
	}
	var it *memcache.Item
	err = s.run(ctx, func() error {
		var err error
		it, err = s.c.Get(ikey)
		return err
	})
	if err != nil {
		return nil, driver.NoVersion, s.wrap(ctx, "load", ikey, err)
	}
	value, v, err := decode(it)
	if err != nil {
		return nil, driver.NoVersion, fmt.Errorf("memcachestore: load: %w", err)
	}
	// gomemcache allocated it.Value for this call: the caller may keep it.
	return value, v, nil
}

// decode splits an item into its value and version. An item this store did
// not write, or a damaged one, fails with an error wrapping
// driver.ErrCorrupt that quotes none of its bytes.
func decode(it *memcache.Item) ([]byte, driver.Version, error) {
	if it.Flags != recordFlags {
		return nil, driver.NoVersion, fmt.Errorf("%w: item flags %#x are not this store's (%#x)", driver.ErrCorrupt, it.Flags, recordFlags)
	}
	return record.Decode(it.Value)
}

// Save implements driver.Store with add (ifVersion is NoVersion) or
// gets and cas, as the package documentation describes.
func (s *Store) Save(ctx context.Context, key string, value []byte, ifVersion driver.Version, ttl time.Duration) (driver.Version, error) {
	ikey, err := s.callKey("save", key)
	if err != nil {
		return driver.NoVersion, err
	}
	if len(value) > s.maxValue {
		return driver.NoVersion, fmt.Errorf("memcachestore: save: %d bytes, limit %d: %w", len(value), s.maxValue, driver.ErrTooLarge)
	}
	if err := s.begin(ctx, "save"); err != nil {
		return driver.NoVersion, err
	}
	v := netstore.NewVersion()
	rec := record.Encode(v, value)
	item := &memcache.Item{Key: ikey, Value: rec, Flags: recordFlags, Expiration: expiration(ttl, time.Now())}
	err = s.run(ctx, func() error { return s.cas(ctx, item, ifVersion) })
	if err != nil {
		return driver.NoVersion, s.wrap(ctx, "save", ikey, err)
	}
	return v, nil
}

// errConflict is what cas returns when the compare fails; wrap passes it on.
var errConflict = fmt.Errorf("memcachestore: save: %w", driver.ErrConflict)

// cas writes item if the key's current version is ifVersion. It runs on
// the call's goroutine and checks ctx between round trips, so that a Save
// whose caller has gone does not write.
func (s *Store) cas(ctx context.Context, item *memcache.Item, ifVersion driver.Version) error {
	if ifVersion == driver.NoVersion {
		err := s.c.Add(item)
		if !errors.Is(err, memcache.ErrNotStored) {
			return err
		}
		// Something is there. It wins unless it is not ours: then it
		// counts as absent and is replaced below.
	}
	cur, err := s.c.Get(item.Key)
	if errors.Is(err, memcache.ErrCacheMiss) {
		return errConflict // absent (or gone since the add): no version matches
	}
	if err != nil {
		return err
	}
	// A corrupt item decodes to NoVersion: a create replaces it, an
	// update conflicts.
	if _, v, _ := decode(cur); v != ifVersion {
		return errConflict
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	item.CasID = cur.CasID
	err = s.c.CompareAndSwap(item)
	if errors.Is(err, memcache.ErrCASConflict) || errors.Is(err, memcache.ErrNotStored) || errors.Is(err, memcache.ErrCacheMiss) {
		return errConflict // changed, evicted or deleted since the gets
	}
	return err
}

// expiration converts a TTL to memcached's expiration field, as the package
// documentation describes: whole seconds rounded up, at least minExpiry,
// relative up to 30 days and an absolute Unix time (from now) beyond; 0 for
// no expiry. An absolute time past 2038 is clamped to the largest int32.
func expiration(ttl time.Duration, now time.Time) int32 {
	if ttl <= 0 {
		return 0
	}
	secs := int64(ttl / time.Second)
	if ttl%time.Second != 0 {
		secs++
	}
	secs = max(secs, minExpiry)
	if secs <= maxRelativeExpiry {
		return int32(secs)
	}
	abs := now.Unix() + secs
	if abs > math.MaxInt32 {
		return math.MaxInt32
	}
	return int32(abs)
}

// Delete implements driver.Store.
func (s *Store) Delete(ctx context.Context, key string) error {
	ikey, err := s.callKey("delete", key)
	if err != nil {
		return err
	}
	if err := s.begin(ctx, "delete"); err != nil {
		return err
	}
	err = s.run(ctx, func() error { return s.c.Delete(ikey) })
	if err != nil && !errors.Is(err, memcache.ErrCacheMiss) {
		return s.wrap(ctx, "delete", ikey, err)
	}
	return nil
}

// Ping implements driver.Pinger: it asks every server for its version
// and fails if any does not answer, since each one holds a share of the
// keys.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.begin(ctx, "ping"); err != nil {
		return err
	}
	if err := s.run(ctx, s.c.Ping); err != nil {
		return s.wrap(ctx, "ping", "", err)
	}
	return nil
}

// Close implements driver.Store. Calls made after Close fail with
// driver.ErrClosed. Close waits for calls abandoned by their ctx to
// finish (each within the client's Timeout), and leaves the memcache client
// and its connections to the caller.
func (s *Store) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

// wrap turns a gomemcache error into one that callers can test with
// errors.Is against the msalcache sentinels and the context errors (see
// netstore.Wrap). The message never names the key, not even when
// gomemcache's does.
func (s *Store) wrap(ctx context.Context, op, ikey string, err error) error {
	if err == errConflict {
		return err
	}
	if ikey != "" && strings.Contains(err.Error(), ikey) {
		err = &redacted{err: err, msg: strings.ReplaceAll(err.Error(), ikey, "<key>")}
	}
	var kind error
	switch {
	case errors.Is(err, memcache.ErrCacheMiss):
		kind = driver.ErrNotFound
	case netstore.IsTimeout(err), errors.As(err, new(*memcache.ConnectTimeoutError)):
		// The client's Timeout: a socket deadline, or a dial that took
		// too long.
		kind = context.DeadlineExceeded
	case isTooLarge(err):
		kind = driver.ErrTooLarge
	}
	return netstore.Wrap(ctx, "memcachestore: "+op, err, kind)
}

// redacted hides the memcached key, which holds a partition key, from an
// error's text while keeping the error for errors.Is and errors.As.
type redacted struct {
	err error
	msg string
}

func (r *redacted) Error() string { return r.msg }
func (r *redacted) Unwrap() error { return r.err }

// isTooLarge reports the server refusing an item over its -I limit.
// gomemcache hands this reply back only as text ("unexpected response
// line ... SERVER_ERROR object too large for cache").
func isTooLarge(err error) bool {
	return strings.Contains(err.Error(), "object too large")
}

// SystemName implements driver.SystemNamer: "memcached", the db.system.name of
// the metrics and traces built on msalcache.WithObserver.
func (s *Store) SystemName() string { return "memcached" }
