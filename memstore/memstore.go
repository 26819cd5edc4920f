// Package memstore is an in-process driver.Store: a map guarded by a
// mutex, with versions for compare-and-set and per-key expiry.
//
// It suits a single-instance application that does not need tokens to
// survive a restart, and tests. It is also the reference implementation of
// the Store contract: read it first when writing a backend of your own.
//
// # Watching
//
// A Store is an driver.Watcher, exact within the process: every Save,
// every Delete and every expired item the periodic sweep drops is reported
// to every function registered with Watch on the same Store before the
// Save or Delete that made the change returns. So once a write through one
// Adapter has returned, no Adapter with msalcache.WithL1 over the same
// Store serves what it overwrote or deleted. An expiry is reported only
// when the sweep drops the item (a Load reports it absent at once), so it
// is left to the L1's MaxStale. A Store is also an driver.Versioner,
// whose Version reads a key's version without copying its value.
//
// It keeps values as Go slices, never as encoded bytes, so it cannot hold a
// record it cannot decode and never returns driver.ErrCorrupt; the
// conformance suite's CorruptRecord subtest skips it (it declares no
// Capabilities.PutRaw). A backend that stores bytes must handle them: see
// redisstore or boltstore.
//
//	store := memstore.New()
//	defer store.Close()
//	adapter, err := msalcache.New(store, msalcache.WithPlaintext())
package memstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/msalcache/msalcache/driver"
	"github.com/msalcache/msalcache/internal/storeopt"
)

// Store is an in-process driver.Store, and also an driver.Lister,
// driver.Pinger, driver.Watcher and driver.Versioner, so that
// every Adapter sharing it can keep an L1 that is never stale. The zero
// value is not usable; call New.
type Store struct {
	now    func() time.Time
	cfgErr error // the first invalid option: every call fails with it

	mu       sync.Mutex
	items    map[string]item
	counter  driver.Version
	closed   bool
	watching int             // watchers registered: changes are queued only while there are some
	pending  []driver.Change // committed, in commit order, not yet told

	// tellMu is held while watchers are told of changes, and while they
	// are added or removed: it keeps every watcher's changes in commit
	// order without holding mu (which Load needs) during the calls.
	tellMu   sync.Mutex
	watchers []*watcher
	spare    []driver.Change // the batch buffer not in use as pending
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

type item struct {
	value   []byte
	version driver.Version
	expires time.Time // zero: never
}

func (it item) live(now time.Time) bool {
	return it.expires.IsZero() || now.Before(it.expires)
}

// Option configures a Store. New returns no error, so an invalid option
// makes every call of the Store fail with an error that names the option
// and what to pass instead.
type Option func(*config) error

type config struct {
	now func() time.Time
}

// withClock makes the store read time from now instead of time.Now, so
// tests can step through expiry without sleeping.
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

// New returns an empty Store. An invalid option does not make New fail:
// every call of the Store fails instead, with an error that says what to
// pass.
func New(opts ...Option) *Store {
	cfg := config{now: time.Now}
	err := storeopt.Apply(&cfg, opts)
	return &Store{now: cfg.now, cfgErr: err, items: make(map[string]item)}
}

// lock takes the mutex after checking the options, ctx and that the store
// is open; on success the caller must unlock. op names the call in the
// error of a store built with an invalid option.
func (s *Store) lock(ctx context.Context, op string) error {
	if s.cfgErr != nil {
		return fmt.Errorf("memstore: %s: %w", op, s.cfgErr)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return fmt.Errorf("memstore: %w", driver.ErrClosed)
	}
	return nil
}

// Load implements driver.Store.
func (s *Store) Load(ctx context.Context, key string) ([]byte, driver.Version, error) {
	if err := s.lock(ctx, "load"); err != nil {
		return nil, driver.NoVersion, err
	}
	defer s.mu.Unlock()
	it, ok := s.items[key]
	if !ok || !it.live(s.now()) {
		return nil, driver.NoVersion, driver.ErrNotFound
	}
	return slices.Clone(it.value), it.version, nil
}

// Version implements driver.Versioner: the version Load would return,
// without copying the value.
func (s *Store) Version(ctx context.Context, key string) (driver.Version, error) {
	if err := s.lock(ctx, "version"); err != nil {
		return driver.NoVersion, err
	}
	defer s.mu.Unlock()
	it, ok := s.items[key]
	if !ok || !it.live(s.now()) {
		return driver.NoVersion, driver.ErrNotFound
	}
	return it.version, nil
}

// Save implements driver.Store. Every watcher has been told of the new
// version when it returns.
func (s *Store) Save(ctx context.Context, key string, value []byte, ifVersion driver.Version, ttl time.Duration) (driver.Version, error) {
	if err := s.lock(ctx, "save"); err != nil {
		return driver.NoVersion, err
	}
	now := s.now()
	cur := driver.NoVersion
	if it, ok := s.items[key]; ok && it.live(now) {
		cur = it.version
	}
	if cur != ifVersion {
		s.mu.Unlock()
		return driver.NoVersion, driver.ErrConflict
	}
	s.counter++
	it := item{value: slices.Clone(value), version: s.counter}
	if ttl > 0 {
		it.expires = now.Add(ttl)
	}
	s.items[key] = it
	s.queueLocked(key, it.version)
	s.sweepLocked(now)
	s.unlockAndTell()
	return it.version, nil
}

// sweepLocked drops expired items every 1024th write, so a long-running
// process does not keep every partition it ever saw while Save stays O(1)
// amortised.
func (s *Store) sweepLocked(now time.Time) {
	if s.counter%1024 != 0 {
		return
	}
	for k, it := range s.items {
		if !it.live(now) {
			delete(s.items, k)
			s.queueLocked(k, driver.NoVersion)
		}
	}
}

// Delete implements driver.Store. Every watcher has been told of the
// deletion when it returns, even of an absent key (which may have been an
// expired one, still held by an L1).
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := s.lock(ctx, "delete"); err != nil {
		return err
	}
	delete(s.items, key)
	s.queueLocked(key, driver.NoVersion)
	s.unlockAndTell()
	return nil
}

// queueLocked records a committed change of key for the watchers, when
// there are any. Queueing under mu puts changes in commit order.
func (s *Store) queueLocked(key string, v driver.Version) {
	if s.watching > 0 {
		s.pending = append(s.pending, driver.Change{Kind: driver.ChangeKey, Key: key, Version: v})
	}
}

// unlockAndTell releases mu and, if the call queued changes, tells every
// watcher of every queued change before returning: that is what makes a
// write that returned visible to every L1. Whoever holds tellMu delivers
// everything queued so far, so a write whose change another caller took
// is told by the time this one gets tellMu.
func (s *Store) unlockAndTell() {
	queued := len(s.pending) > 0
	s.mu.Unlock()
	if !queued {
		return
	}
	s.tellMu.Lock()
	defer s.tellMu.Unlock()
	s.tellLocked()
}

// tellLocked delivers the queued changes; the caller holds tellMu, not mu.
func (s *Store) tellLocked() {
	s.mu.Lock()
	batch := s.pending
	s.pending = s.spare[:0]
	s.mu.Unlock()
	for _, c := range batch {
		for _, w := range s.watchers {
			w.fn(c)
		}
	}
	clear(batch) // drop the keys
	s.spare = batch
}

// Watch implements driver.Watcher. fn is told of every change committed
// after Watch began (and perhaps of some just before), always in commit
// order, first with ChangeWatchUp before Watch returns. fn runs inside
// the writer's Save or Delete, never with the lock that Load needs held:
// it may call Load, Version and List, but a Save, Delete, Watch, stop or
// Close from fn deadlocks. ctx bounds only the call of Watch itself.
//
// stop removes fn, waiting for a call of fn in progress to return; later
// calls of stop do nothing. Close tells every watcher ChangeWatchDown
// (nothing is vouched for any more) as its last call.
func (s *Store) Watch(ctx context.Context, fn func(driver.Change)) (stop func(), err error) {
	if fn == nil {
		return nil, errors.New("memstore: watch: nil func: pass the function to call for each change")
	}
	s.tellMu.Lock()
	defer s.tellMu.Unlock()
	if err := s.lock(ctx, "watch"); err != nil {
		return nil, err
	}
	s.watching++
	s.mu.Unlock()
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
	i := slices.Index(s.watchers, w)
	if i < 0 {
		return // removed by Close
	}
	s.watchers = slices.Delete(s.watchers, i, i+1)
	s.mu.Lock()
	s.watching--
	s.mu.Unlock()
}

// List implements driver.Lister.
func (s *Store) List(ctx context.Context, prefix string, fn func(key string) error) error {
	if err := s.lock(ctx, "list"); err != nil {
		return err
	}
	now := s.now()
	var keys []string
	for k, it := range s.items {
		if strings.HasPrefix(k, prefix) && it.live(now) {
			keys = append(keys, k)
		}
	}
	s.mu.Unlock() // fn may call back into the store
	for _, k := range keys {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(k); err != nil {
			return err
		}
	}
	return nil
}

// Ping implements driver.Pinger.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.lock(ctx, "ping"); err != nil {
		return err
	}
	s.mu.Unlock()
	return nil
}

// Close implements driver.Store. It drops every item, tells every
// watcher of the changes committed before it and then ChangeWatchDown, and
// removes them: they get no call after Close returns, and Watch fails with
// driver.ErrClosed.
func (s *Store) Close() error {
	s.tellMu.Lock()
	defer s.tellMu.Unlock()
	s.mu.Lock()
	s.closed = true
	s.items = nil
	s.mu.Unlock()
	s.tellLocked()
	for _, w := range s.watchers {
		w.fn(driver.Change{Kind: driver.ChangeWatchDown})
	}
	s.watchers = nil
	s.mu.Lock()
	s.watching = 0
	s.pending = nil
	s.mu.Unlock()
	return nil
}

// SystemName implements driver.SystemNamer: "memory", the db.system.name of
// the metrics and traces built on msalcache.WithObserver.
func (s *Store) SystemName() string { return "memory" }
