// Package redisstore keeps msalcache values in Redis through go-redis/v9, so
// that every instance of an application shares one token cache.
//
// New takes any redis.UniversalClient: a *redis.Client for a single node, a
// *redis.ClusterClient for Redis Cluster, or the client returned by
// redis.NewFailoverClient (or redis.NewUniversalClient with MasterName) for
// Sentinel. The store only ever touches one key per command, so it works
// unchanged on Cluster.
//
//	rdb := redis.NewClient(&redis.Options{Addr: "localhost:6379"})
//	defer rdb.Close()
//	store := redisstore.New(rdb, redisstore.WithPrefix("myapp:"))
//	adapter, err := msalcache.New(store, msalcache.WithProtector(ring))
//
// # Records and compare-and-set
//
// Each key holds one Redis string: an 8-byte big-endian version followed by
// the value. Load is a single GET. Save runs a short Lua script (EVALSHA,
// falling back to EVAL after a server restart) that reads the first 8 bytes
// of the key and writes the new record with SET PX only if they match the
// version the caller read, and then publishes the write to the store's
// watchers (see Watching changes). Because the version lives inside the
// key, it survives a restart of a persistent server, and a key that expired
// or was deleted is simply absent.
//
// A key under the prefix that holds no such record (a value shorter than 8
// bytes, a version of 0, which no store writes, or a Redis type other than
// a string: something else wrote it, or it was damaged) is corrupt: Load
// fails with an error wrapping driver.ErrCorrupt, and the script treats
// it as absent, so a Save with driver.NoVersion replaces it and a Save
// with any other version conflicts. The Adapter's next write therefore
// repairs such a key without anyone deleting it first.
//
// Versions are random 64-bit numbers picked by the writer, not counters. A
// counter restarts when a key is deleted and created again, so a writer that
// read the old key could overwrite the new one (the ABA problem); a random
// version is, in practice, never reused (two writes collide with
// probability 2^-64). The writer also sends the version it is about to
// write, and the script answers success when the key already carries it:
// go-redis retries a command whose reply timed out, and that retry must not
// report a conflict against the write it made itself.
//
// # Watching changes
//
// Every successful Save and every Delete publishes, from the same Lua
// script as the write, the key and its new version on a channel named
// after the prefix ("msalcache:changes:" followed by it). Store.Watch
// subscribes to that channel, once per Store whatever the number of
// watchers (on a Cluster once per master, so that a message is heard from
// the node that published it rather than across the cluster bus, whose
// delivery put about 1 message in 100 some 40 ms late), so that an
// Adapter built with msalcache.WithL1 drops what it holds in memory as
// soon as any instance writes it: measured on loopback, the change
// reaches the other instance's watcher in about 0.1 ms (p99 0.25 ms)
// after its Save began on a single node or Sentinel, p50 0.18 ms and p99
// 0.3–0.5 ms on a 3-master Cluster. A dropped or stalled
// subscription, or a Sentinel failover, is reported (ChangeWatchDown)
// within about 2 s, and the L1 is bypassed until the store has subscribed
// again. Store.Version reads a key's version header alone, which the L1
// uses to revalidate an entry older than its MaxStale.
//
// With Redis ACLs, the store's user needs the channel besides the keys:
// Redis 7 gives a new user no channel, and then every Save and Delete
// fails, writing nothing, with an error that names the grant (ACL SETUSER
// <user> &msalcache:changes:*), and a watch never comes up. INFO, which
// the watch uses to notice a failover, is optional: without it the watch
// relies on its PINGs.
//
// # Deadlines
//
// go-redis ignores ctx for network I/O unless the client was built with
// Options.ContextTimeoutEnabled, and the store does not own the client's
// options. So a call whose ctx can be cancelled runs the command on a
// goroutine of its own and returns as soon as ctx is done, with an error
// that wraps ctx.Err(); the command itself finishes in the background within
// the client's ReadTimeout. Network timeouts that go-redis reports are
// wrapped with context.DeadlineExceeded too, so one check covers both:
// errors.Is(err, context.DeadlineExceeded). As with any network store, a
// Save that fails this way may still have been applied; the next Load tells.
//
// The hand-off to that goroutine costs about 10 µs per call on a loopback
// server (BenchmarkLoad, in the module's benchmarks directory). A client
// built with ContextTimeoutEnabled puts the ctx deadline on the socket
// itself, so for a ctx with a deadline every call of the store (Load,
// Save, Delete, Version, Ping, List) calls it directly, with no goroutine,
// and saves that cost: build the client with ContextTimeoutEnabled for the
// fastest path. The one difference: a ctx cancelled
// before its deadline then ends the call when the reply in flight arrives
// (for a healthy server, microseconds later) or at the deadline, not at
// once. A ctx that can never be done (context.Background) is always called
// directly.
//
// # Replicas
//
// With ClusterOptions.ReadOnly, RouteByLatency or RouteRandomly, Load may
// read a replica that lags behind its master. The compare-and-set always
// runs on the master, so a stale read costs an ErrConflict on the next
// Save, never a lost update.
//
// # Durability
//
// A token cache tolerates losing keys: the next token call refetches. The
// protect package's key ring does not: a lost ring makes every stored token
// unreadable. If the ring lives in Redis, run that database with persistence
// (appendonly yes, or RDB snapshots at the least) and never with an eviction
// policy other than noeviction or volatile-*, because the ring is written
// without a TTL. Redis replicates asynchronously: on a Sentinel or Cluster
// failover the writes the old master acknowledged during the failover window
// can be lost, not just the last one: clients keep writing to the old master
// until the sentinels announce the new one, and the old master drops those
// writes when it resyncs as a replica (measured here: about 80% of the
// writes made during a 1.2 s Sentinel failover; none made after it). For
// tokens that means a refetch; for the ring, keep a backup of the database
// (a ring that loses a rotation writes it back from any server that still
// holds it).
//
// A write that must survive a failover (the Adapter's record of a
// sign-out, which a lost write would undo) goes through Store.SaveDurable
// (driver.DurableSaver): the compare-and-set and a WAIT for a replica
// in one pipeline on the key's master, bounded by the call's deadline. It
// returns driver.ErrNotReplicated when no replica confirmed in time (the
// write stands on the master). By default it waits for one replica where
// the master has any and not at all on a single node; WithReplicaWait sets
// the number, or turns the wait off. WAIT narrows the window, it does not
// close it: Redis may still promote a replica that had not received a
// write confirmed by another one.
package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/internal/ctxrun"
	"github.com/msalcache/msalcache/internal/netstore"
	"github.com/msalcache/msalcache/internal/record"
	"github.com/msalcache/msalcache/internal/storeopt"
	"github.com/redis/go-redis/v9"
)

// DefaultPrefix is put in front of every key when WithPrefix is not given,
// so the cache can share a database with other data.
const DefaultPrefix = "msalcache:"

// MaxValueSize is the largest value Redis can hold under this store's record
// layout: Redis caps a string at 512 MiB (proto-max-bulk-len) and each record
// carries an 8-byte version.
const MaxValueSize = 512<<20 - headerSize

// DefaultMaxValueSize is the limit Save enforces unless WithMaxValueSize
// says otherwise. An MSAL cache is a few kilobytes; a value of tens of
// megabytes is a bug upstream, and Redis would copy it several times (into
// the script, into the keyspace, to every replica) while blocking every
// other client. 64 MiB leaves ample room and stops runaway writes early.
const DefaultMaxValueSize = 64 << 20

// headerSize is the length of the version in front of every record.
const headerSize = record.HeaderSize

// Store is an driver.Store backed by Redis. It also implements
// driver.Lister, driver.Pinger, driver.Watcher (changes published
// from the compare-and-set script, see Watch) and driver.Versioner (a
// version-only read, see Version), so an Adapter with msalcache.WithL1
// stays coherent across a farm. It is safe for concurrent use.
type Store struct {
	c        redis.UniversalClient
	ctxAware bool // c bounds its I/O by ctx deadlines (ContextTimeoutEnabled)
	config
	cfgErr  error  // the first invalid option (or a nil client): every call fails with it
	channel string // where changes are published (see Watch)
	closed  atomic.Bool
	watch   watchHub
	replica replicaCache // connected replicas per master, for SaveDurable
}

type config struct {
	prefix      string
	maxValue    int
	closeClient bool
	replicaWait int // replicas SaveDurable waits for; replicaWaitAuto: 1 where the master has any
}

// Option configures a Store. New returns no error, like redis.NewClient, so
// an invalid option makes every call of the Store fail with an error that
// names the option and what to pass instead.
type Option func(*config) error

// WithPrefix sets the string put in front of every key (default
// DefaultPrefix), so that several applications or environments can share one
// database without seeing each other's keys. An empty prefix means no
// prefix at all: the store's keys are the Redis keys, which suits a
// database that holds the cache alone (List then walks, and Load reads as
// corrupt, whatever else the database holds). On Redis Cluster, a prefix
// holding a hash tag such as "{cache}:" puts every key in one slot, on one
// master; leave braces out unless that is what you want.
func WithPrefix(p string) Option {
	return func(c *config) error {
		c.prefix = p
		return nil
	}
}

// WithMaxValueSize sets the largest value Save accepts, 1 to MaxValueSize
// bytes; larger values fail with driver.ErrTooLarge before anything is
// sent. A server configured with a smaller proto-max-bulk-len drops the
// connection in the middle of a larger write, which go-redis reports as a
// network error; set the limit below the server's so that such values fail
// cleanly with ErrTooLarge instead.
func WithMaxValueSize(n int) Option {
	return func(c *config) error {
		if err := storeopt.Size("WithMaxValueSize", n, MaxValueSize,
			"Redis holds at most MaxValueSize bytes per value in this store's records", fmt.Sprintf("%d MiB", DefaultMaxValueSize>>20)); err != nil {
			return err
		}
		c.maxValue = n
		return nil
	}
}

// WithCloseClient makes Close close the redis client too. Without it the
// caller keeps ownership of the client, which is what you want when the same
// client serves other parts of the program.
func WithCloseClient() Option {
	return func(c *config) error {
		c.closeClient = true
		return nil
	}
}

// New returns a Store that keeps its keys in the database c points at. The
// store does not take ownership of c: Close leaves it open unless
// WithCloseClient is given. New does no I/O; call Ping to check the
// connection. A nil c or an invalid option does not make New fail: every
// call of the Store fails instead, with an error that says what to pass.
func New(c redis.UniversalClient, opts ...Option) *Store {
	s := &Store{c: c, config: config{prefix: DefaultPrefix, maxValue: DefaultMaxValueSize, replicaWait: replicaWaitAuto}}
	s.cfgErr = storeopt.Apply(&s.config, opts)
	s.channel = channelPrefix + s.prefix
	if c == nil {
		s.cfgErr = errNilClient
	} else {
		s.ctxAware = contextTimeoutEnabled(c)
	}
	return s
}

// contextTimeoutEnabled reports whether c was built to apply ctx deadlines
// to its socket I/O. Unknown implementations of UniversalClient are
// assumed not to.
func contextTimeoutEnabled(c redis.UniversalClient) bool {
	switch c := c.(type) {
	case *redis.Client:
		return c.Options().ContextTimeoutEnabled
	case *redis.ClusterClient:
		return c.Options().ContextTimeoutEnabled
	case *redis.Ring:
		return c.Options().ContextTimeoutEnabled
	}
	return false
}

// MaxValueSize reports the largest value Save accepts: DefaultMaxValueSize
// or the size given to WithMaxValueSize.
func (s *Store) MaxValueSize() int { return s.maxValue }

var errNilClient = errors.New("New(nil): pass a redis.UniversalClient, such as the *redis.Client of redis.NewClient")

// errWrongType reports a key under the store's prefix that holds a hash, a
// list or another type that is not a string: something else wrote it.
var errWrongType = fmt.Errorf("the key holds a Redis type other than a string: %w", driver.ErrCorrupt)

// start checks that a call may proceed.
func (s *Store) start(ctx context.Context, op string) error {
	if s.cfgErr != nil {
		return fmt.Errorf("redisstore: %s: %w", op, s.cfgErr)
	}
	if s.closed.Load() {
		return fmt.Errorf("redisstore: %s: %w", op, driver.ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("redisstore: %s: %w", op, err)
	}
	return nil
}

// Load implements driver.Store with one GET. A key that does not hold a
// record of this store fails with an error wrapping driver.ErrCorrupt
// (see the package documentation).
func (s *Store) Load(ctx context.Context, key string) ([]byte, driver.Version, error) {
	if err := s.start(ctx, "load"); err != nil {
		return nil, driver.NoVersion, err
	}
	var rec []byte
	err := s.run(ctx, func(ctx context.Context) error {
		var err error
		// Bytes hands out, without copying, the buffer go-redis allocated
		// for this reply alone, so the caller may keep and modify it.
		rec, err = s.c.Get(ctx, s.prefix+key).Bytes()
		return err
	})
	if redis.HasErrorPrefix(err, "WRONGTYPE") {
		return nil, driver.NoVersion, fmt.Errorf("redisstore: load: %w", errWrongType)
	}
	if err != nil {
		return nil, driver.NoVersion, s.wrap(ctx, "load", err)
	}
	value, v, err := record.Decode(rec)
	if err != nil {
		return nil, driver.NoVersion, fmt.Errorf("redisstore: load: %w", err)
	}
	return value, v, nil
}

// Version implements driver.Versioner: it reads the record's 8-byte
// version header alone, with GETRANGE, so that an Adapter with WithL1
// revalidates an entry without moving the partition over the network
// (measured on loopback: 16–17.5 µs against a GET's 18–20 µs for 4 KiB and
// 49–51 µs for 40 KiB). An absent key fails with an error wrapping
// driver.ErrNotFound, a header Load could not decode with one wrapping
// driver.ErrCorrupt. GETRANGE answers the same empty string for an
// absent key and an empty one, so a key holding an empty string (which no
// store writes) reads as absent here, where Load reports it as corrupt.
func (s *Store) Version(ctx context.Context, key string) (driver.Version, error) {
	if err := s.start(ctx, "version"); err != nil {
		return driver.NoVersion, err
	}
	var head []byte
	err := s.run(ctx, func(ctx context.Context) error {
		var err error
		head, err = s.c.GetRange(ctx, s.prefix+key, 0, headerSize-1).Bytes()
		return err
	})
	if redis.HasErrorPrefix(err, "WRONGTYPE") {
		return driver.NoVersion, fmt.Errorf("redisstore: version: %w", errWrongType)
	}
	if err != nil {
		return driver.NoVersion, s.wrap(ctx, "version", err)
	}
	if len(head) == 0 {
		return driver.NoVersion, fmt.Errorf("redisstore: version: %w", driver.ErrNotFound)
	}
	_, v, err := record.Decode(head)
	if err != nil {
		return driver.NoVersion, fmt.Errorf("redisstore: version: %w", err)
	}
	return v, nil
}

// Save implements driver.Store with the compare-and-set script described
// in the package documentation. A key that Load reports as corrupt counts
// as absent: Save with driver.NoVersion replaces it, any other version
// conflicts.
func (s *Store) Save(ctx context.Context, key string, value []byte, ifVersion driver.Version, ttl time.Duration) (driver.Version, error) {
	if err := s.start(ctx, "save"); err != nil {
		return driver.NoVersion, err
	}
	if len(value) > s.maxValue {
		return driver.NoVersion, fmt.Errorf("redisstore: save: %d bytes, limit %d: %w", len(value), s.maxValue, driver.ErrTooLarge)
	}
	v := netstore.NewVersion()
	rec := record.Encode(v, value)
	var res int64
	err := s.run(ctx, func(ctx context.Context) error {
		var err error
		res, err = s.cas(ctx, s.prefix+key, ifVersion, rec, ttl)
		return err
	})
	if err != nil {
		if perr := s.publishDenied("save", err); perr != nil {
			return driver.NoVersion, perr
		}
		return driver.NoVersion, s.wrap(ctx, "save", err)
	}
	if res == casConflict {
		return driver.NoVersion, fmt.Errorf("redisstore: save: %w", driver.ErrConflict)
	}
	return v, nil
}

// Delete implements driver.Store. It runs a short script that deletes
// the key and publishes the delete to the store's watchers (see Watch), in
// one atomic step.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := s.start(ctx, "delete"); err != nil {
		return err
	}
	err := s.run(ctx, func(ctx context.Context) error {
		return s.del(ctx, s.prefix+key)
	})
	if err != nil {
		if perr := s.publishDenied("delete", err); perr != nil {
			return perr
		}
		return s.wrap(ctx, "delete", err)
	}
	return nil
}

// Ping implements driver.Pinger. On Cluster it asks one node.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.start(ctx, "ping"); err != nil {
		return err
	}
	err := s.run(ctx, func(ctx context.Context) error {
		return s.c.Ping(ctx).Err()
	})
	if err != nil {
		return s.wrap(ctx, "ping", err)
	}
	return nil
}

// Close implements driver.Store. Calls made after Close fail with
// driver.ErrClosed. It closes the redis client only when the store was
// built WithCloseClient.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.closeWatch()
	if s.closeClient && s.c != nil {
		if err := s.c.Close(); err != nil {
			return fmt.Errorf("redisstore: close: %w", err)
		}
	}
	return nil
}

// run calls fn, but returns as soon as ctx is done even if fn is blocked in
// network I/O that go-redis does not bound by ctx. fn must write its results
// only to variables the caller reads after run returns nil.
func (s *Store) run(ctx context.Context, fn func(context.Context) error) error {
	if _, ok := ctx.Deadline(); ok && s.ctxAware {
		return fn(ctx) // go-redis puts the deadline on the socket
	}
	return ctxrun.Do(ctx, func() error { return fn(ctx) })
}

// wrap turns a go-redis error into one that callers can test with
// errors.Is against the msalcache sentinels and the context errors (see
// netstore.Wrap). The message never names the key.
func (s *Store) wrap(ctx context.Context, op string, err error) error {
	var kind error
	switch {
	case errors.Is(err, redis.Nil):
		kind = driver.ErrNotFound
	case netstore.IsTimeout(err), errors.Is(err, redis.ErrPoolTimeout):
		// Socket deadlines from ReadTimeout/WriteTimeout, and waiting
		// for a pooled connection.
		kind = context.DeadlineExceeded
	case errors.Is(err, redis.ErrClosed):
		kind = driver.ErrClosed
	}
	return netstore.Wrap(ctx, "redisstore: "+op, err, kind)
}

// ttlArg renders ttl as Redis milliseconds; "0" means no expiry. A positive
// ttl below one millisecond rounds up so that it still expires.
func ttlArg(ttl time.Duration) string {
	if ttl <= 0 {
		return "0"
	}
	ms := ttl.Milliseconds()
	if time.Duration(ms)*time.Millisecond < ttl {
		ms++
	}
	return strconv.FormatInt(ms, 10)
}

// SystemName implements driver.SystemNamer: "redis", the db.system.name of
// the metrics and traces built on msalcache.WithObserver.
func (s *Store) SystemName() string { return "redis" }
