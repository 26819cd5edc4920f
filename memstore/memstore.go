// Package memstore is an in-process msalcache.Store: a map guarded by a
// mutex, with versions for compare-and-set and per-key expiry.
//
// It suits a single-instance application that does not need tokens to
// survive a restart, and tests. It is also the reference implementation of
// the Store contract: read it first when writing a backend of your own.
//
// It keeps values as Go slices, never as encoded bytes, so it cannot hold a
// record it cannot decode and never returns msalcache.ErrCorrupt; the
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
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/internal/storeopt"
)

// Store is an in-process msalcache.Store. The zero value is not usable; call
// New.
type Store struct {
	now    func() time.Time
	cfgErr error // the first invalid option: every call fails with it

	mu      sync.Mutex
	items   map[string]item
	counter msalcache.Version
	closed  bool
}

type item struct {
	value   []byte
	version msalcache.Version
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

// WithClock makes the store read time from now instead of time.Now, so
// tests can step through expiry without sleeping.
func WithClock(now func() time.Time) Option {
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
		return fmt.Errorf("memstore: %w", msalcache.ErrClosed)
	}
	return nil
}

// Load implements msalcache.Store.
func (s *Store) Load(ctx context.Context, key string) ([]byte, msalcache.Version, error) {
	if err := s.lock(ctx, "load"); err != nil {
		return nil, msalcache.NoVersion, err
	}
	defer s.mu.Unlock()
	it, ok := s.items[key]
	if !ok || !it.live(s.now()) {
		return nil, msalcache.NoVersion, msalcache.ErrNotFound
	}
	return slices.Clone(it.value), it.version, nil
}

// Save implements msalcache.Store.
func (s *Store) Save(ctx context.Context, key string, value []byte, ifVersion msalcache.Version, ttl time.Duration) (msalcache.Version, error) {
	if err := s.lock(ctx, "save"); err != nil {
		return msalcache.NoVersion, err
	}
	defer s.mu.Unlock()
	now := s.now()
	cur := msalcache.NoVersion
	if it, ok := s.items[key]; ok && it.live(now) {
		cur = it.version
	}
	if cur != ifVersion {
		return msalcache.NoVersion, msalcache.ErrConflict
	}
	s.counter++
	it := item{value: slices.Clone(value), version: s.counter}
	if ttl > 0 {
		it.expires = now.Add(ttl)
	}
	s.items[key] = it
	s.sweepLocked(now)
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
		}
	}
}

// Delete implements msalcache.Store.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := s.lock(ctx, "delete"); err != nil {
		return err
	}
	defer s.mu.Unlock()
	delete(s.items, key)
	return nil
}

// List implements msalcache.Lister.
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

// Ping implements msalcache.Pinger.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.lock(ctx, "ping"); err != nil {
		return err
	}
	s.mu.Unlock()
	return nil
}

// Close implements msalcache.Store. It drops every item.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	s.items = nil
	return nil
}
