package protect

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/msalcache/msalcache/driver"
	"github.com/msalcache/msalcache/internal/ringadmin"
	"github.com/msalcache/msalcache/observe"
)

// KeyRing seals and opens payloads with a ring of AES-256 keys that it
// keeps, wrapped by a KEK, in one record of a Store shared by every server
// of a farm. It creates, rotates and retires keys on its own; see the
// package documentation for the rules. It implements driver.Protector,
// driver.Reprotector and driver.KeyHasher and is safe for concurrent
// use.
type KeyRing struct {
	store   driver.Store
	cfg     config
	primary KeyWrapper
	keks    map[string]KeyWrapper
	marker  string

	state  atomic.Pointer[ringState]
	closed atomic.Bool

	// sem serialises every access to the store (refresh, reload, rotate,
	// revoke) and is what single-flights reloads; a channel so that
	// waiting honours ctx.
	sem        chan struct{}
	lastReload time.Time // last reload for an unknown key id; under sem
	lastForced time.Time // last failed attempt to mint a missing default; under sem

	watch *watch // nil without WithObserver

	// ver is the version of the record this ring's state was last read
	// from or written as; under sem. The push watch skips a reload for a
	// change that is this very version (the ring's own write).
	ver  driver.Version
	push pushWatch // the store's change notifications; see storewatch.go

	bgCtx     context.Context
	bgCancel  context.CancelFunc
	done      chan struct{}
	closeOnce sync.Once
}

var (
	_ driver.Protector   = (*KeyRing)(nil)
	_ driver.Reprotector = (*KeyRing)(nil)
)

// NewKeyRing loads the ring kept under "msalcache/keyring/v1" (see WithRingKey) in
// store, creating it if the store never held one, and starts the
// background refresh (see WithAutoRefresh). kek wraps new keys; WithKEKs
// adds older KEKs that may still unwrap.
//
// It fails, minting nothing, when the store cannot be read, when the
// record cannot be decoded or fails to authenticate (ErrRingDamaged, which
// also wraps ErrInvalidRing; a running server rewrites such a record), when
// it is wrapped by a KEK this ring lacks or written by a newer version
// (ErrInvalidRing), when the record vanished from a store that held one
// (ErrRingMissing), and for a store that may evict keys (ErrVolatileStore).
func NewKeyRing(ctx context.Context, store driver.Store, kek KeyWrapper, opts ...Option) (*KeyRing, error) {
	r, err := newRing("NewKeyRing", store, kek, opts)
	if err != nil {
		return nil, err
	}
	r.bgCtx, r.bgCancel = context.WithCancel(context.Background())
	if r.cfg.autoRefresh {
		// Subscribe before the first read, so that no change made after
		// that read goes unheard.
		r.startPush()
	}
	if err := r.withLock(ctx, func() error { return r.update(ctx, nil) }); err != nil {
		r.stopPush()
		r.bgCancel()
		return nil, err
	}
	if r.cfg.autoRefresh {
		r.runPush()
		go r.loop()
	} else {
		close(r.done)
	}
	return r, nil
}

// newRing checks the arguments of NewKeyRing and OpenReadOnly (fn names
// the caller in errors) and builds a ring that has not read its store yet.
func newRing(fn string, store driver.Store, kek KeyWrapper, opts []Option) (*KeyRing, error) {
	if store == nil {
		return nil, fmt.Errorf("protect: %s: nil store", fn)
	}
	if driver.IsVolatile(store) {
		return nil, ErrVolatileStore
	}
	if kek == nil {
		return nil, fmt.Errorf("protect: %s: nil KEK (see NewAESKeyWrapper)", fn)
	}
	cfg := defaultConfig()
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	keks := make(map[string]KeyWrapper, 1+len(cfg.extraKEKs))
	for _, k := range append([]KeyWrapper{kek}, cfg.extraKEKs...) {
		id := k.ID()
		if err := validKEKID(id); err != nil {
			return nil, err
		}
		if keks[id] != nil {
			return nil, fmt.Errorf("protect: two KEKs share the id %q", id)
		}
		keks[id] = newCountedKEK(k) // see KEKStats
	}
	r := &KeyRing{
		store:   store,
		cfg:     cfg,
		primary: keks[kek.ID()],
		keks:    keks,
		marker:  ringadmin.MarkerKey(cfg.ringKey),
		sem:     make(chan struct{}, 1),
		done:    make(chan struct{}),
	}
	r.newWatch()
	return r, nil
}

// Protect seals plaintext under the ring's default key, bound to aad and
// to the ring's purpose. The result is 65 bytes (a header and a GCM tag) longer than
// plaintext. When no key may encrypt (the default expired and no refresh
// ran since), Protect refreshes first, and fails with "no usable key to encrypt with" if the store
// cannot take a new key; it never seals under a key the store lacks.
func (r *KeyRing) Protect(ctx context.Context, plaintext, aad []byte) ([]byte, error) {
	if err := r.checkOpen(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	k := r.state.Load().defaultKey(r.now(), r.cfg.clockSkew)
	if k == nil {
		var err error
		if k, err = r.forceDefault(ctx); err != nil {
			return nil, err
		}
	}
	r.sealing(ctx, k)
	return sealPayload(k, r.cfg.purpose, plaintext, aad)
}

// forceDefault runs a refresh when no key may encrypt (the default expired
// and nobody refreshed in time, or it was revoked elsewhere). Failed
// attempts are spaced by the reload interval so that a down store is not
// hit on every Protect.
func (r *KeyRing) forceDefault(ctx context.Context) (*dataKey, error) {
	var k *dataKey
	err := r.withLock(ctx, func() error {
		now := r.now()
		if k = r.state.Load().defaultKey(now, r.cfg.clockSkew); k != nil {
			return nil
		}
		if r.tooSoon(r.lastForced, now) {
			return errNoKey
		}
		if err := r.update(ctx, nil); err != nil {
			r.lastForced = now
			return fmt.Errorf("%w: %w", errNoKey, err)
		}
		if k = r.state.Load().defaultKey(r.now(), r.cfg.clockSkew); k == nil {
			r.lastForced = now
			return errNoKey
		}
		return nil
	})
	return k, err
}

// Unprotect opens a payload that Protect sealed with the same aad. A
// payload under a key id this ring does not know triggers one reload of the
// record (shared by concurrent callers, at most one per reload interval),
// so a key minted by another server a moment ago is found.
func (r *KeyRing) Unprotect(ctx context.Context, ciphertext, aad []byte) ([]byte, error) {
	if err := r.checkOpen(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	h, err := parsePayload(ciphertext)
	if err != nil {
		return nil, err
	}
	k, err := r.state.Load().key(h.id)
	if errors.Is(err, errKeyNotFound) {
		k, err = r.reloadFor(ctx, h.id)
	}
	if err != nil {
		return nil, err
	}
	return openPayload(k, r.cfg.purpose, ciphertext, aad)
}

func (r *KeyRing) reloadFor(ctx context.Context, id keyID) (*dataKey, error) {
	var k *dataKey
	var start time.Time // when this call reloaded, if it did
	reason := observe.ReasonNone
	err := r.withLock(ctx, func() error {
		lookup := func() (err error) {
			k, err = r.state.Load().key(id)
			return err
		}
		// A caller that waited on another's reload looks first.
		if err := lookup(); !errors.Is(err, errKeyNotFound) {
			return err
		}
		now := r.now()
		if r.tooSoon(r.lastReload, now) {
			return fmt.Errorf("%w: %s", errKeyNotFound, id)
		}
		r.lastReload = now
		start = time.Now()
		if err := r.reload(ctx); err != nil {
			if ctxErr := ctx.Err(); ctxErr != nil {
				reason = observe.ReasonCanceled
				return ctxErr
			}
			reason = observe.ReasonStore
			return fmt.Errorf("%w: %s (reload failed: %w)", errKeyNotFound, id, err)
		}
		if err := lookup(); err != nil {
			reason = observe.ReasonDecrypt // the record does not hold it either
			return err
		}
		return nil
	})
	if !start.IsZero() {
		r.reloaded(ctx, start, reason)
	}
	return k, err
}

// tooSoon reports whether an attempt at now would follow the last one
// (zero: none yet) by less than the reload interval, the spacing that keeps
// garbage input or a down store from making the ring hammer its store. A
// clock stepped back to before last does not hold attempts off.
func (r *KeyRing) tooSoon(last, now time.Time) bool {
	return !last.IsZero() && now.Sub(last) >= 0 && now.Sub(last) < r.cfg.reloadInterval
}

// NeedsReprotect reports whether ciphertext was sealed under a key other
// than the current default, so that the Adapter rewrites it and old keys
// drain out of the store. Input that is not a payload reports false.
func (r *KeyRing) NeedsReprotect(ciphertext []byte) bool {
	h, err := parsePayload(ciphertext)
	if err != nil {
		return false
	}
	d := r.state.Load().defaultKey(r.now(), r.cfg.clockSkew)
	return d != nil && d.id != h.id
}

// Close stops the background refresh and the watch of the store, and
// waits for them. Every method that
// returns an error fails with "protect: key ring closed" after Close (a second Close
// returns nil). Close does not close the store, which may serve others.
func (r *KeyRing) Close() error {
	r.closeOnce.Do(func() {
		r.closed.Store(true)
		r.stopPush()
		r.bgCancel()
		<-r.done
		r.push.wait()
	})
	return nil
}

func (r *KeyRing) now() time.Time { return r.cfg.now() }

// withLock runs fn holding sem, giving up when ctx ends first.
func (r *KeyRing) withLock(ctx context.Context, fn func() error) error {
	select {
	case r.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-r.sem }()
	// A call that waited behind Close must not touch the store after it.
	if err := r.checkOpen(); err != nil {
		return err
	}
	return fn()
}

func (r *KeyRing) checkOpen() error {
	if r.closed.Load() {
		return errRingClosed
	}
	return nil
}

// dataKey is an authenticated, unwrapped key.
type dataKey struct {
	keyEntry
	secret []byte // master key, masterKeyLen bytes
	info   string // HKDF info: hkdfLabel || id
}

// ringState is an immutable snapshot of what the ring knows. Protect and
// Unprotect read it without locks.
type ringState struct {
	keys    map[keyID]*dataKey
	revoked map[keyID]*revEntry
	order   []*dataKey    // not revoked; activation descending, then id ascending
	naming  *namingSecret // never nil once published
}

// defaultKey follows ASP.NET Core's DefaultKeyResolver, so that servers
// holding the same ring agree: among keys neither revoked nor expired whose
// activation is at most now+skew, the one activated last, ties broken by
// the smaller id. Nil means no key may encrypt now.
func (s *ringState) defaultKey(now time.Time, skew time.Duration) *dataKey {
	limit := now.Add(skew).Unix()
	nowSec := now.Unix()
	for _, k := range s.order {
		if k.activation <= limit && nowSec < k.expiration {
			return k
		}
	}
	return nil
}

// key finds the key a payload names: ErrKeyRevoked for a revoked one (its
// entry may still be there), errKeyNotFound for one this state lacks.
func (s *ringState) key(id keyID) (*dataKey, error) {
	if s.revoked[id] != nil {
		return nil, fmt.Errorf("%w: %s", ErrKeyRevoked, id)
	}
	if k := s.keys[id]; k != nil {
		return k, nil
	}
	return nil, fmt.Errorf("%w: %s", errKeyNotFound, id)
}
