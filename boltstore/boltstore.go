// Package boltstore is an driver.Store kept in a single bbolt file: the
// default for an application that runs as one process and wants its tokens
// to survive a restart without running a server.
//
// Open creates the file (mode 0600, since it holds refresh tokens even when
// they are encrypted) or opens an existing one, tightening its mode to 0600
// if group or others could read it:
//
//	store, err := boltstore.Open(filepath.Join(dir, "msalcache.db"))
//	if err != nil {
//		return err
//	}
//	defer store.Close()
//	adapter, err := msalcache.New(store, msalcache.WithProtector(ring))
//
// # One process per file
//
// bbolt takes an exclusive lock on the file for as long as it is open, so
// only one process, and only one Store within it, can use a file at a time.
// A second Open waits for the lock for a short while (WithLockTimeout,
// 2 seconds by default) and then fails with an error that wraps ErrLocked
// and names the file; it never hangs. Several instances of an application
// that must share tokens need a shared store such as redisstore.
//
// A tool that only reads a file (to inspect or check it) opens it with
// WithReadOnly: bbolt's shared lock, no file created, nothing written.
// Check runs bbolt's consistency check over a file, bounded in time.
//
// # Damaged files
//
// bbolt trusts its file: a damaged page makes it panic, loop, or read past
// its memory map, and none of that may reach the application. Open checks
// an existing file before bbolt walks it (its pages read with bounds
// checks, then bbolt's own consistency check, within DefaultCheckTimeout)
// and, since the store is a cache whose tokens can be bought again, moves
// a damaged one aside as path.damaged-<UTC time> (mode 0600) and starts an
// empty file, logging at ERROR what was lost (WithLogger); WithRefuseDamaged
// makes it fail instead. A file that is not a bbolt file at all is never
// moved. Every call into bbolt, in the caller's goroutine and in the
// writer and sweeper, recovers a panic (and a fault reading the map): the
// store then fails every call with an error wrapping ErrDamaged, as a
// failed store does, until the application restarts.
//
// # Records, versions and expiry
//
// Every key in the store's bucket holds a small header (a format byte, the
// version, the expiry) followed by the value. Versions come from the
// bucket's persisted sequence, so they never repeat, not even across a
// restart, and a compare-and-set made with a version read before a
// restart cannot succeed by accident. bbolt has no TTL: an expired record
// reads as absent at once, and a background sweeper (WithSweepInterval)
// deletes it from the file later.
//
// A record that cannot be decoded (a damaged file, or a bucket shared with
// something else) makes Load fail with an error wrapping
// driver.ErrCorrupt (ErrCorrupt here is the same error) that gives what
// is wrong but none of the record's bytes; Save with driver.NoVersion
// replaces it, Save with any other version conflicts, List lists it and
// Delete removes it, so the Adapter heals it on its next write.
//
// # Writes
//
// Each bbolt write transaction ends with an fsync, which dominates the cost
// of a Save. Concurrent Saves and Deletes are therefore committed together:
// a single writer goroutine takes every write waiting for it and applies
// them in one transaction, so N concurrent writers pay for about one fsync
// instead of N, while a lone writer pays for exactly one and waits for no
// timer. Each write still compares versions inside the transaction, so
// batching never weakens compare-and-set.
//
// # Watching
//
// A Store is an driver.Watcher, exact within the process (the only place
// its file can be written from while it is open): the writer goroutine
// tells every function registered with Watch of each Save (with its new
// version) and Delete it committed, before any of those calls returns, and
// the sweeper tells of each expired record it deletes. So once a write
// through one Adapter has returned, no Adapter with msalcache.WithL1 over
// the same Store serves what it overwrote or deleted. An expiry is told
// only when the sweeper deletes the record (a Load reports it absent at
// once), so it is left to the L1's MaxStale. A Store is also an
// driver.Versioner, whose Version reads only a record's header.
package boltstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/msalcache/msalcache/driver"
	"github.com/msalcache/msalcache/internal/storeopt"
	bolt "go.etcd.io/bbolt"
)

// MaxValueSize is the largest value a Store accepts; Save fails with
// driver.ErrTooLarge past it. bbolt itself allows values of up to about
// 2 GiB, but every write copies the value into a transaction and an fsync,
// and MSAL token caches are kilobytes, so a value this large is a bug
// better reported than stored.
const MaxValueSize = 64 << 20

// maxKeySize is bbolt's own limit; the msalcache contract stays far below it.
const maxKeySize = bolt.MaxKeySize

const (
	// DefaultBucket is the bucket that holds the records unless WithBucket
	// names another.
	DefaultBucket = "msalcache"
	// DefaultLockTimeout is how long Open waits for another holder of the
	// file: long enough for a restarting process to see its predecessor
	// exit, short enough that a misconfigured second process fails fast.
	DefaultLockTimeout = 2 * time.Second
	// DefaultSweepInterval is how often expired records are deleted.
	DefaultSweepInterval = time.Minute
)

var (
	// ErrLocked reports that Open could not take the file's lock within the
	// lock timeout because another process, or another Store in this one,
	// has the file open. Close the other user or give each its own file.
	ErrLocked = errors.New("boltstore: database file is locked")

	// ErrCorrupt reports a record that this package cannot decode: the file
	// was damaged or something else wrote into the store's bucket. It is
	// driver.ErrCorrupt itself, which the Store contract names, so that
	// code written against either name keeps working.
	ErrCorrupt = driver.ErrCorrupt

	// ErrReadOnly is the error of Save and Delete on a Store opened
	// WithReadOnly: it never writes its file.
	ErrReadOnly = errors.New("boltstore: the store was opened read-only (WithReadOnly)")

	// errInvalidKey reports a key bbolt cannot hold. It names no key,
	// since keys derive from user identities.
	errInvalidKey = fmt.Errorf("boltstore: key must be 1 to %d bytes", maxKeySize)
)

// Option configures Open. Open fails with the first invalid option's
// error, which names the option and what to pass instead.
type Option func(*config) error

type config struct {
	bucket        string
	lockTimeout   time.Duration
	sweepInterval time.Duration
	now           func() time.Time
	readOnly      bool
	refuseDamaged bool
	logger        *slog.Logger
	skipCheck     bool // tests only: reach the run-time guards with a damaged file
}

// WithBucket keeps the store's records in the named bucket instead of
// DefaultBucket. It lets a file that an application already keeps its own
// buckets in hold the token cache too, provided the application opens it
// through this package only. A name is 1 to bolt.MaxKeySize bytes.
func WithBucket(name string) Option {
	return func(c *config) error {
		switch {
		case name == "":
			return fmt.Errorf(`WithBucket(""): pass a bucket name, or omit the option for the default %q`, DefaultBucket)
		case len(name) > maxKeySize:
			return fmt.Errorf("WithBucket: the name is %d bytes; pass at most %d, bbolt's limit", len(name), maxKeySize)
		}
		c.bucket = name
		return nil
	}
}

// WithLockTimeout sets how long Open waits for another holder of the file
// to let go before it fails with ErrLocked. A process restarting while its
// predecessor still shuts down may want longer than DefaultLockTimeout; a
// short-lived program that must not stall may want shorter. It must be
// positive: bbolt's own default, waiting forever, is never used.
func WithLockTimeout(d time.Duration) Option {
	return func(c *config) error {
		if err := storeopt.Duration("WithLockTimeout", d, DefaultLockTimeout); err != nil {
			return err
		}
		c.lockTimeout = d
		return nil
	}
}

// WithSweepInterval sets how often the background sweeper deletes expired
// records from the file (default DefaultSweepInterval); it must be
// positive. Expired records read as absent whether or not they were swept;
// sweeping only reclaims space.
func WithSweepInterval(d time.Duration) Option {
	return func(c *config) error {
		if err := storeopt.Duration("WithSweepInterval", d, DefaultSweepInterval); err != nil {
			return err
		}
		c.sweepInterval = d
		return nil
	}
}

// withClock makes the store read the time from now instead of time.Now, so
// tests can step past a TTL without sleeping. It governs expiry on Save,
// Load, List and the sweeper.
// It is a hook for this package's tests (export_test.go exports it to
// them), not an option: a program has no use for a clock other than the
// machine's.
func withClock(now func() time.Time) Option {
	return func(c *config) error {
		if now == nil {
			return storeopt.ErrNilClock
		}
		c.now = now
		return nil
	}
}

// WithReadOnly opens the file for reading only, for tools that inspect a
// store and must leave it as they found it (the msalcache command's
// stats, inspect and doctor). The file is opened with bbolt's ReadOnly
// option, which takes a shared lock: other read-only Stores may hold it at
// the same time, a writable one waits (see WithLockTimeout). A missing file
// is an error that wraps fs.ErrNotExist, never a new file; the mode of an
// existing one is left as it is; no bucket is created and no sweeper runs.
// Save and Delete fail with ErrReadOnly.
func WithReadOnly() Option {
	return func(c *config) error {
		c.readOnly = true
		return nil
	}
}

// WithRefuseDamaged makes Open fail on a damaged file, with an error that
// wraps ErrDamaged, names the file and says what to do, instead of moving
// it aside and starting an empty one. For a file that holds more than a
// cache, or where an operator would rather look first.
func WithRefuseDamaged() Option {
	return func(c *config) error {
		c.refuseDamaged = true
		return nil
	}
}

// WithLogger sets where the store logs (default slog.Default()): an ERROR
// when Open moves a damaged file aside or when bbolt panics on a damaged
// page at run time. Lines name the file, the damage and how many records
// were lost, never a key or a value.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error {
		if l == nil {
			return errors.New("WithLogger(nil): pass a logger, e.g. slog.New(slog.DiscardHandler), or omit the option for slog.Default()")
		}
		c.logger = l
		return nil
	}
}

// Store is an driver.Store, driver.Lister, driver.Pinger,
// driver.Watcher and driver.Versioner backed by a bbolt file, so
// that the Adapters of a process can share it with an L1 that is never
// stale. It is safe for concurrent use. The zero value is not usable; call
// Open.
type Store struct {
	db       *bolt.DB
	path     string
	bucket   []byte
	now      func() time.Time
	readOnly bool
	logger   *slog.Logger

	// broken holds the first panic bbolt raised on this file: from then on
	// every call fails at once with it (see guard).
	broken atomic.Pointer[panicError]

	mu     sync.RWMutex // guards closed against calls entering
	closed bool
	calls  sync.WaitGroup // calls in progress; Close waits for them

	writes chan *writeOp
	stop   chan struct{}  // closed by Close to end the background goroutines
	bg     sync.WaitGroup // writer and sweeper

	// tellMu is held by the writer and the sweeper from their write
	// transaction until every watcher has been told of it, and while
	// watchers are added or removed: so each watcher hears the changes of
	// a key in commit order, and stop waits for a call in progress.
	tellMu   sync.Mutex
	watchers []*watcher
}

// watcher is one registration of Watch.
type watcher struct {
	fn func(driver.Change)
}

var (
	_ driver.Store     = (*Store)(nil)
	_ driver.Lister    = (*Store)(nil)
	_ driver.Pinger    = (*Store)(nil)
	_ driver.Watcher   = (*Store)(nil)
	_ driver.Versioner = (*Store)(nil)
)

// Open opens the bbolt file at path, creating it with mode 0600 if it does
// not exist (its directory must), and returns a Store over it. An existing
// file that group or others may access is changed to mode 0600; if that
// fails, Open fails and says how to fix it. The Store holds the file's lock
// until Close: see the package documentation.
func Open(path string, opts ...Option) (*Store, error) {
	c := config{
		bucket:        DefaultBucket,
		lockTimeout:   DefaultLockTimeout,
		sweepInterval: DefaultSweepInterval,
		now:           time.Now,
		logger:        slog.Default(),
	}
	if err := storeopt.Apply(&c, opts); err != nil {
		return nil, fmt.Errorf("boltstore: open %s: %w", path, err)
	}
	if path == "" {
		return nil, errors.New("boltstore: open: empty path")
	}
	dir := filepath.Dir(path)
	if fi, err := os.Stat(dir); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("boltstore: open %s: directory %s does not exist; create it first: %w", path, dir, err)
		}
		return nil, fmt.Errorf("boltstore: open %s: %w", path, err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("boltstore: open %s: %s is not a directory", path, dir)
	}
	if c.readOnly {
		if _, err := os.Stat(path); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("boltstore: open %s read-only: the file does not exist (check the path; a read-only open never creates one): %w", path, err)
			}
			return nil, fmt.Errorf("boltstore: open %s: %w", path, err)
		}
	} else if err := tighten(path); err != nil {
		return nil, err
	}
	bucket := []byte(c.bucket)
	db, err := preflight(path, bucket, &c)
	if err != nil {
		return nil, err
	}
	if db == nil {
		err = guard("open", func() error {
			var err error
			db, err = bolt.Open(path, fileMode, &bolt.Options{
				Timeout:      c.lockTimeout,
				FreelistType: bolt.FreelistMapType,
				ReadOnly:     c.readOnly,
			})
			return err
		})
		if err != nil {
			return nil, openError(path, err, &c)
		}
	}
	s := &Store{
		db:       db,
		path:     path,
		bucket:   bucket,
		now:      c.now,
		readOnly: c.readOnly,
		logger:   c.logger,
		writes:   make(chan *writeOp, maxBatchOps),
		stop:     make(chan struct{}),
	}
	if c.readOnly {
		return s, nil // no bucket to create, nothing to write or sweep
	}
	if err := s.guard("create bucket", func() error {
		// A file that has its bucket is not written to at all: a
		// command that opens it and then fails leaves its bytes alone.
		var has bool
		if err := db.View(func(tx *bolt.Tx) error { has = tx.Bucket(bucket) != nil; return nil }); err != nil || has {
			return err
		}
		return db.Update(func(tx *bolt.Tx) error {
			_, err := tx.CreateBucketIfNotExists(bucket)
			return err
		})
	}); err != nil {
		_ = s.closeDB()
		return nil, fmt.Errorf("boltstore: open %s: create bucket: %w", path, err)
	}
	s.bg.Add(2)
	go s.writer()
	go s.sweeper(c.sweepInterval)
	return s, nil
}

// fileMode is the mode of the store's file: it holds refresh tokens, which
// stay valuable even when encrypted (an attacker may wait for the KEK).
const fileMode os.FileMode = 0o600

// chmod is os.Chmod; tests replace it to see Open refuse a file it cannot
// tighten (as root, chmod never fails).
var chmod = os.Chmod

// tighten makes an existing file at path readable by its owner only, as Open
// creates a new one: bbolt keeps the mode of a file that exists, so a file
// that a backup restore or a umask of 0 left at 0666 would otherwise keep
// exposing every token to every local user. When chmod fails (the process
// is not the file's owner), Open refuses the file rather than use it as it
// is, and says how to fix it.
func tighten(path string) error {
	fi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil // bbolt creates it with fileMode
	}
	if err != nil {
		return fmt.Errorf("boltstore: open %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o077 == 0 {
		return nil // bbolt reports what is not a file; the mode is tight already
	}
	if err := chmod(path, fileMode); err != nil {
		return fmt.Errorf("boltstore: open %s: the file has mode %v, so other users can read its tokens, and tightening it failed: %w; "+
			"run chmod 600 %s as its owner, or move the file to a directory the application owns", path, fi.Mode().Perm(), err, path)
	}
	return nil
}

// Path returns the file the store was opened on.
func (s *Store) Path() string { return s.path }

// enter registers a call, failing if ctx is done or the store is closed.
// On success the caller must call s.calls.Done.
func (s *Store) enter(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("boltstore: %w", err)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return fmt.Errorf("boltstore: %w", driver.ErrClosed)
	}
	s.calls.Add(1)
	return nil
}

func checkKey(key string) error {
	if len(key) == 0 || len(key) > maxKeySize {
		return errInvalidKey
	}
	return nil
}

// bucketOf returns the store's bucket in tx. Open created it, but a file is
// only as trustworthy as whatever else has written it.
func (s *Store) bucketOf(tx *bolt.Tx) (*bolt.Bucket, error) {
	b := tx.Bucket(s.bucket)
	if b == nil {
		return nil, fmt.Errorf("boltstore: bucket %q is missing from %s", s.bucket, s.path)
	}
	return b, nil
}

// Load implements driver.Store. A record that cannot be decoded fails
// with an error wrapping ErrCorrupt.
func (s *Store) Load(ctx context.Context, key string) ([]byte, driver.Version, error) {
	var (
		value   []byte
		version driver.Version
	)
	err := s.readLive(ctx, "load", key, func(rec record, _ int64) {
		// bbolt's bytes live only as long as the transaction.
		value = bytes.Clone(rec.value)
		if value == nil {
			value = []byte{}
		}
		version = rec.version
	})
	if err != nil {
		return nil, driver.NoVersion, err
	}
	return value, version, nil
}

// Version implements driver.Versioner: it reads the version and expiry
// from the record's header, without copying the value. A record that
// cannot be decoded fails with an error wrapping ErrCorrupt, as in Load.
func (s *Store) Version(ctx context.Context, key string) (driver.Version, error) {
	version := driver.NoVersion
	err := s.readLive(ctx, "version", key, func(rec record, _ int64) { version = rec.version })
	if err != nil {
		return driver.NoVersion, err
	}
	return version, nil
}

// readLive calls fn, inside a read transaction, with the live record of
// key and the store's time (see withClock) it was found live at; rec.value
// aliases bbolt's memory map and is valid only during fn. It fails with
// ErrNotFound when the key is absent or expired, and with an error
// wrapping ErrCorrupt, naming op, when the record cannot be decoded. Load,
// Version and Lifetime share it so that they agree on what is live.
func (s *Store) readLive(ctx context.Context, op, key string, fn func(rec record, now int64)) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if err := s.enter(ctx); err != nil {
		return err
	}
	defer s.calls.Done()
	return s.view(op, func(tx *bolt.Tx) error {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("boltstore: %w", err)
		}
		b, err := s.bucketOf(tx)
		if err != nil {
			return err
		}
		raw := b.Get([]byte(key)) // bbolt's memory map: nothing is copied
		if raw == nil {
			return driver.ErrNotFound
		}
		rec, err := decodeRecord(raw) // the header; value aliases raw
		if err != nil {
			return fmt.Errorf("boltstore: %s: %w", op, err)
		}
		now := s.now().UnixNano()
		if !rec.live(now) {
			return driver.ErrNotFound
		}
		fn(rec, now)
		return nil
	})
}

// Save implements driver.Store. A record that cannot be decoded counts
// as absent, so that Save with driver.NoVersion replaces it. Every
// watcher has been told of the new version when Save returns.
func (s *Store) Save(ctx context.Context, key string, value []byte, ifVersion driver.Version, ttl time.Duration) (driver.Version, error) {
	if err := checkKey(key); err != nil {
		return driver.NoVersion, err
	}
	if s.readOnly {
		return driver.NoVersion, ErrReadOnly
	}
	if len(value) > MaxValueSize {
		return driver.NoVersion, fmt.Errorf("boltstore: value of %d bytes exceeds MaxValueSize (%d): %w",
			len(value), MaxValueSize, driver.ErrTooLarge)
	}
	if err := s.enter(ctx); err != nil {
		return driver.NoVersion, err
	}
	defer s.calls.Done()
	var expires int64
	if ttl > 0 {
		expires = s.now().Add(ttl).UnixNano()
	}
	op := &writeOp{
		ctx:       ctx,
		key:       []byte(key),
		record:    newRecord(value, expires),
		ifVersion: ifVersion,
		save:      true,
	}
	if err := s.write(ctx, op); err != nil {
		return driver.NoVersion, err
	}
	return op.version, nil
}

// Delete implements driver.Store. Every watcher has been told of the
// deletion when it returns, even of an absent key (which may have been an
// expired one, still held by an L1).
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if s.readOnly {
		return ErrReadOnly
	}
	if err := s.enter(ctx); err != nil {
		return err
	}
	defer s.calls.Done()
	return s.write(ctx, &writeOp{ctx: ctx, key: []byte(key)})
}

// listChunk is how many keys List reads per read transaction. List calls
// fn outside any transaction, so fn may write to the store (a read
// transaction held across a write can deadlock bbolt when the file grows).
const listChunk = 256

// List implements driver.Lister. Keys come in byte order. A record that
// cannot be decoded is listed, so that an operator can find and delete it.
func (s *Store) List(ctx context.Context, prefix string, fn func(key string) error) error {
	p := []byte(prefix)
	var after []byte // last key handed to fn
	for {
		keys, err := s.listChunk(ctx, p, after)
		if err != nil {
			return err
		}
		for _, k := range keys {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("boltstore: %w", err)
			}
			if err := fn(k); err != nil {
				return err
			}
		}
		if len(keys) < listChunk {
			return nil
		}
		after = []byte(keys[len(keys)-1])
	}
}

// listChunk returns up to listChunk live keys that start with prefix and
// sort after after (from the start when after is nil).
func (s *Store) listChunk(ctx context.Context, prefix, after []byte) ([]string, error) {
	if err := s.enter(ctx); err != nil {
		return nil, err
	}
	defer s.calls.Done()
	var keys []string
	err := s.view("list", func(tx *bolt.Tx) error {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("boltstore: %w", err)
		}
		b, err := s.bucketOf(tx)
		if err != nil {
			return err
		}
		now := s.now().UnixNano()
		c := b.Cursor()
		var k, v []byte
		if after == nil {
			k, v = c.Seek(prefix)
		} else {
			k, v = c.Seek(after)
			if bytes.Equal(k, after) {
				k, v = c.Next()
			}
		}
		for ; k != nil && bytes.HasPrefix(k, prefix) && len(keys) < listChunk; k, v = c.Next() {
			if v == nil {
				continue // a nested bucket, not a record
			}
			if rec, err := decodeRecord(v); err == nil && !rec.live(now) {
				continue
			}
			keys = append(keys, string(k))
		}
		return nil
	})
	return keys, err
}

// Ping implements driver.Pinger: it opens a read transaction and finds
// the store's bucket.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.enter(ctx); err != nil {
		return err
	}
	defer s.calls.Done()
	return s.view("ping", func(tx *bolt.Tx) error {
		_, err := s.bucketOf(tx)
		return err
	})
}

// Watch implements driver.Watcher. fn is told of every change committed
// after Watch began, in commit order, first with ChangeWatchUp before
// Watch returns. fn runs on the store's writer or sweeper goroutine, after
// the transaction and before the writes it committed return: it may call
// Load, Version and List, but a Save or Delete from fn deadlocks (it would
// wait for the writer that is calling fn), and so do Watch, stop and Close.
// ctx bounds only the call of Watch itself.
//
// stop removes fn, waiting for a call of fn in progress to return; later
// calls of stop do nothing. Close tells every watcher ChangeWatchDown
// (nothing is vouched for any more) as its last call.
func (s *Store) Watch(ctx context.Context, fn func(driver.Change)) (stop func(), err error) {
	if fn == nil {
		return nil, errors.New("boltstore: watch: nil func: pass the function to call for each change")
	}
	if err := s.enter(ctx); err != nil {
		return nil, err
	}
	defer s.calls.Done()
	s.tellMu.Lock()
	defer s.tellMu.Unlock()
	w := &watcher{fn: fn}
	s.watchers = append(s.watchers, w)
	fn(driver.Change{Kind: driver.ChangeWatchUp})
	var once sync.Once
	return func() { once.Do(func() { s.unwatch(w) }) }, nil
}

// unwatch removes w. Holding tellMu waits for a delivery in progress.
func (s *Store) unwatch(w *watcher) {
	s.tellMu.Lock()
	defer s.tellMu.Unlock()
	if i := slices.Index(s.watchers, w); i >= 0 {
		s.watchers = slices.Delete(s.watchers, i, i+1)
	}
}

// tellLocked tells every watcher of c; the caller holds tellMu.
func (s *Store) tellLocked(c driver.Change) {
	for _, w := range s.watchers {
		w.fn(c)
	}
}

// Close waits for calls in progress, stops the sweeper, tells every
// watcher ChangeWatchDown and removes it, and closes the file, releasing
// its lock. Later calls fail with driver.ErrClosed, Watch included; a
// second Close returns nil.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.calls.Wait()
	close(s.stop)
	s.bg.Wait()
	s.tellMu.Lock()
	s.tellLocked(driver.Change{Kind: driver.ChangeWatchDown})
	s.watchers = nil
	s.tellMu.Unlock()
	return s.closeDB()
}

// sweepChunk deletes those of keys that are still expired, in one write
// transaction, and tells the watchers which it deleted.
func (s *Store) sweepChunk(keys [][]byte) error {
	s.tellMu.Lock()
	defer s.tellMu.Unlock()
	deleted := keys[:0]
	err := s.update("sweep", func(tx *bolt.Tx) error {
		deleted = keys[:0]
		b, err := s.bucketOf(tx)
		if err != nil {
			return err
		}
		now := s.now().UnixNano()
		for _, k := range keys {
			if rec, err := decodeRecord(b.Get(k)); err == nil && !rec.live(now) {
				if err := b.Delete(k); err != nil {
					return err
				}
				deleted = append(deleted, k)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, k := range deleted {
		s.tellLocked(driver.Change{Kind: driver.ChangeKey, Key: string(k)})
	}
	return nil
}

// sweeper deletes expired records every interval until Close.
func (s *Store) sweeper(interval time.Duration) {
	defer s.bg.Done()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			// A failed sweep leaves expired records in the file, where
			// they read as absent; the next tick tries again.
			_ = s.sweep()
		}
	}
}

// sweepChunk bounds the keys deleted per write transaction, so that the
// sweeper never holds bbolt's single writer slot for long.
const sweepChunk = 1000

// sweep deletes every record that has expired, in chunks. It finds
// candidates in a read transaction and re-checks each in the write
// transaction, because a Save may have renewed the key in between.
func (s *Store) sweep() error {
	var after []byte
	for {
		select {
		case <-s.stop:
			return nil
		default:
		}
		var expired [][]byte
		err := s.view("sweep", func(tx *bolt.Tx) error {
			b, err := s.bucketOf(tx)
			if err != nil {
				return err
			}
			now := s.now().UnixNano()
			c := b.Cursor()
			k, v := c.First()
			if after != nil {
				k, v = c.Seek(after)
			}
			for ; k != nil && len(expired) < sweepChunk; k, v = c.Next() {
				if rec, err := decodeRecord(v); err == nil && !rec.live(now) {
					expired = append(expired, slices.Clone(k))
				}
			}
			after = slices.Clone(k) // first key not looked at; nil at the end
			return nil
		})
		if err != nil {
			return err
		}
		if len(expired) > 0 {
			if err := s.sweepChunk(expired); err != nil {
				return err
			}
		}
		if after == nil {
			return nil
		}
	}
}

// SystemName implements driver.SystemNamer: "bbolt", the db.system.name of
// the metrics and traces built on msalcache.WithObserver.
func (s *Store) SystemName() string { return "bbolt" }
