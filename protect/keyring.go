package protect

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/msalcache/msalcache"
)

// Errors reported by the KeyRing. Test them with errors.Is.
var (
	// ErrNotProtected reports input that is not a payload of this package:
	// too short, no magic, or an unknown suite.
	ErrNotProtected = errors.New("protect: not a protected payload")
	// ErrKeyNotFound reports a payload sealed under a key id the ring does
	// not hold, even after reloading its record.
	ErrKeyNotFound = errors.New("protect: key not found in the key ring")
	// ErrKeyRevoked reports a payload sealed under a revoked key.
	ErrKeyRevoked = errors.New("protect: key revoked")
	// ErrDecrypt reports a payload that fails authentication: altered,
	// truncated, or bound to other associated data. It says no more, on
	// purpose.
	ErrDecrypt = errors.New("protect: decryption failed")
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
	// ErrNoKey reports that no key may encrypt now and none could be
	// created (the store is unreachable).
	ErrNoKey = errors.New("protect: no usable key to encrypt with")
	// ErrRingDamaged reports a ring record that a newcomer cannot decode
	// or authenticate: altered at rest (a damaged disk, a partial write,
	// an edit), or reported corrupt by the store. Errors that wrap it also
	// wrap ErrInvalidRing. A running server that holds the ring rewrites
	// such a record from its verified copy at its next refresh; the
	// error's text says how to reset the ring if none runs. A ring never
	// mints a new ring over a damaged record.
	ErrRingDamaged = errors.New("protect: key ring record is damaged")
	// ErrRingClosed reports a call on a KeyRing after its Close. It is not
	// msalcache.ErrClosed on purpose: the store may well be open, and an
	// operator reading "store closed" would look in the wrong place.
	ErrRingClosed = errors.New("protect: key ring closed")
)

// maxCASAttempts bounds one refresh's compare-and-set retries; each lost
// round means another server wrote, so the ring converges in a few.
const maxCASAttempts = 16

// dataKey is an authenticated, unwrapped key.
type dataKey struct {
	keyEntry
	secret []byte // master key, masterKeyLen bytes
	info   string // HKDF info and counter: label || id || 0x01
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

// KeyRing seals and opens payloads with a ring of AES-256 keys that it
// keeps, wrapped by a KEK, in one record of a Store shared by every server
// of a farm. It creates, rotates and retires keys on its own; see the
// package documentation for the rules. It implements msalcache.Protector,
// msalcache.Reprotector and msalcache.KeyHasher and is safe for concurrent
// use.
type KeyRing struct {
	store   msalcache.Store
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

	bgCtx     context.Context
	bgCancel  context.CancelFunc
	done      chan struct{}
	closeOnce sync.Once
}

var (
	_ msalcache.Protector   = (*KeyRing)(nil)
	_ msalcache.Reprotector = (*KeyRing)(nil)
)

// NewKeyRing loads the ring kept under DefaultRingKey (see WithRingKey) in
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
func NewKeyRing(ctx context.Context, store msalcache.Store, kek KeyWrapper, opts ...Option) (*KeyRing, error) {
	if store == nil {
		return nil, errors.New("protect: NewKeyRing: nil store")
	}
	if msalcache.IsVolatile(store) {
		return nil, ErrVolatileStore
	}
	if kek == nil {
		return nil, errors.New("protect: NewKeyRing: nil KEK (see NewAESKeyWrapper)")
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
		keks[id] = k
	}
	r := &KeyRing{
		store:   store,
		cfg:     cfg,
		primary: kek,
		keks:    keks,
		marker:  cfg.ringKey + markerSuffix,
		sem:     make(chan struct{}, 1),
		done:    make(chan struct{}),
	}
	if err := r.withLock(ctx, func() error { return r.sync(ctx, true, nil) }); err != nil {
		return nil, err
	}
	r.bgCtx, r.bgCancel = context.WithCancel(context.Background())
	if cfg.autoRefresh {
		go r.loop()
	} else {
		close(r.done)
	}
	return r, nil
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
		return ErrRingClosed
	}
	return nil
}

// Protect seals plaintext under the ring's default key, bound to aad and
// to the ring's purpose. The result is Overhead bytes longer than
// plaintext. When no key may encrypt (the default expired and no refresh
// ran since), Protect refreshes first, and fails with ErrNoKey if the store
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
		if !r.lastForced.IsZero() && now.Sub(r.lastForced) >= 0 && now.Sub(r.lastForced) < r.cfg.reloadInterval {
			return ErrNoKey
		}
		if err := r.sync(ctx, true, nil); err != nil {
			r.lastForced = now
			return fmt.Errorf("%w: %w", ErrNoKey, err)
		}
		if k = r.state.Load().defaultKey(r.now(), r.cfg.clockSkew); k == nil {
			r.lastForced = now
			return ErrNoKey
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
	st := r.state.Load()
	if st.revoked[h.id] != nil {
		return nil, fmt.Errorf("%w: %s", ErrKeyRevoked, h.id)
	}
	k := st.keys[h.id]
	if k == nil {
		if k, err = r.reloadFor(ctx, h.id); err != nil {
			return nil, err
		}
	}
	return openPayload(k, r.cfg.purpose, h, ciphertext, aad)
}

func (r *KeyRing) reloadFor(ctx context.Context, id keyID) (*dataKey, error) {
	var k *dataKey
	err := r.withLock(ctx, func() error {
		lookup := func() error {
			st := r.state.Load()
			if st.revoked[id] != nil {
				return fmt.Errorf("%w: %s", ErrKeyRevoked, id)
			}
			if k = st.keys[id]; k == nil {
				return fmt.Errorf("%w: %s", ErrKeyNotFound, id)
			}
			return nil
		}
		// A caller that waited on another's reload looks first.
		if err := lookup(); !errors.Is(err, ErrKeyNotFound) {
			return err
		}
		now := r.now()
		if !r.lastReload.IsZero() && now.Sub(r.lastReload) >= 0 && now.Sub(r.lastReload) < r.cfg.reloadInterval {
			return fmt.Errorf("%w: %s", ErrKeyNotFound, id)
		}
		r.lastReload = now
		if err := r.sync(ctx, false, nil); err != nil {
			if ctxErr := ctx.Err(); ctxErr != nil {
				return ctxErr
			}
			return fmt.Errorf("%w: %s (reload failed: %w)", ErrKeyNotFound, id, err)
		}
		return lookup()
	})
	return k, err
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

// Refresh reloads the ring's record and does what is due: merges in keys
// and revocations written by other servers, writes back what the record
// lacks (a record replayed from an older copy, or deleted while this ring
// ran), rewrites a damaged record from this ring's verified copy, schedules the next key when the default nears expiry, and mints a
// key now when none may encrypt. Writes are compare-and-set; a ring that
// loses the race adopts the winner's record. The background refresh calls
// it; call it yourself with WithAutoRefresh(false).
func (r *KeyRing) Refresh(ctx context.Context) error {
	if err := r.checkOpen(); err != nil {
		return err
	}
	return r.withLock(ctx, func() error { return r.sync(ctx, true, nil) })
}

// Rotate adds a key that is the default at once, for an emergency: every
// server encrypts with it as soon as it has loaded it (within one refresh
// interval; a server that meets a blob under it reloads at once). Old keys
// still decrypt; Revoke the one you no longer trust. Rotate also rewraps
// every key under the primary KEK, which completes a KEK rotation.
func (r *KeyRing) Rotate(ctx context.Context) error {
	if err := r.checkOpen(); err != nil {
		return err
	}
	return r.withLock(ctx, func() error {
		return r.sync(ctx, true, func(w *working, now time.Time) error {
			// Active at once everywhere (backdated by the skew), and later
			// than any key already active, so that it wins the default
			// choice even against a key activated in the same second.
			act := now.Add(-r.cfg.clockSkew).Unix()
			limit := now.Add(r.cfg.clockSkew).Unix()
			for _, k := range w.state().order {
				if k.activation <= limit && k.activation >= act {
					act = k.activation + 1
				}
			}
			return r.mint(ctx, w, now, time.Unix(act, 0), now.Add(r.cfg.lifetime))
		})
	})
}

// Revoke stops the key with the given id (as KeyInfo.ID shows it) from
// decrypting, here at once and on every other server at its next refresh.
// Revocation is permanent: a record replayed from before it does not bring
// the key back on any server that saw it. Revoking the default key mints
// a new default in the same write. Revoking a revoked key is a no-op; an
// id the ring does not hold is ErrKeyNotFound.
func (r *KeyRing) Revoke(ctx context.Context, id string) error {
	if err := r.checkOpen(); err != nil {
		return err
	}
	kid, err := parseKeyID(id)
	if err != nil {
		return err
	}
	return r.withLock(ctx, func() error {
		return r.sync(ctx, true, func(w *working, now time.Time) error {
			if w.revoked[kid] != nil {
				return nil
			}
			if w.keys[kid] == nil {
				return fmt.Errorf("%w: %s", ErrKeyNotFound, kid)
			}
			rv := &revEntry{id: kid, at: now.Unix(), kekID: r.primary.ID()}
			tag, err := r.primary.Wrap(ctx, kid[:], revAAD(rv))
			if err != nil {
				return fmt.Errorf("protect: revoke %s: %w", kid, err)
			}
			rv.tag = tag
			w.revoked[kid] = rv
			w.dirty = true
			return nil
		})
	})
}

// KeyStatus says what a key is used for now.
type KeyStatus int

// Key statuses. Every status but KeyRevoked decrypts.
const (
	// KeyPending is a key written ahead of its activation: it decrypts but
	// does not encrypt yet.
	KeyPending KeyStatus = iota + 1
	// KeyActive is activated and not expired: the newest such key is the
	// default.
	KeyActive
	// KeyExpired no longer encrypts, and still decrypts old blobs.
	KeyExpired
	// KeyRevoked neither encrypts nor decrypts.
	KeyRevoked
)

func (s KeyStatus) String() string {
	switch s {
	case KeyPending:
		return "pending"
	case KeyActive:
		return "active"
	case KeyExpired:
		return "expired"
	case KeyRevoked:
		return "revoked"
	}
	return fmt.Sprintf("KeyStatus(%d)", int(s))
}

// KeyInfo describes one key of the ring, for operators. It holds no key
// material.
type KeyInfo struct {
	// ID names the key in payloads and in Revoke: 32 hex digits.
	ID string
	// Created, Activation and Expiration are the key's dates; zero for a
	// revoked key whose entry is gone from the record.
	Created, Activation, Expiration time.Time
	// Revoked reports a revoked key, revoked at RevokedAt.
	Revoked   bool
	RevokedAt time.Time
	// Status is the key's use now, by this server's clock.
	Status KeyStatus
	// Default marks the key Protect seals with now.
	Default bool
	// KEKID names the KEK that wraps the key in the record.
	KEKID string
}

// Keys reloads the ring's record and describes every key this ring knows,
// oldest activation first. It never mints; it writes only to rewrite a
// damaged record from this ring's verified copy.
func (r *KeyRing) Keys(ctx context.Context) ([]KeyInfo, error) {
	if err := r.checkOpen(); err != nil {
		return nil, err
	}
	if err := r.withLock(ctx, func() error { return r.sync(ctx, false, nil) }); err != nil {
		return nil, err
	}
	st := r.state.Load()
	now := r.now()
	def := st.defaultKey(now, r.cfg.clockSkew)
	out := make([]KeyInfo, 0, len(st.keys)+len(st.revoked))
	for id, k := range st.keys {
		ki := KeyInfo{
			ID:         id.String(),
			Created:    time.Unix(k.created, 0),
			Activation: time.Unix(k.activation, 0),
			Expiration: time.Unix(k.expiration, 0),
			Default:    k == def,
			KEKID:      k.kekID,
		}
		switch {
		case st.revoked[id] != nil:
			ki.Status = KeyRevoked
		case k.activation > now.Add(r.cfg.clockSkew).Unix():
			ki.Status = KeyPending
		case now.Unix() >= k.expiration:
			ki.Status = KeyExpired
		default:
			ki.Status = KeyActive
		}
		out = append(out, ki)
	}
	for id, rv := range st.revoked {
		if st.keys[id] == nil {
			out = append(out, KeyInfo{ID: id.String(), Status: KeyRevoked, KEKID: rv.kekID})
		}
	}
	for i := range out {
		if rv := st.revoked[keyIDFromString(out[i].ID)]; rv != nil {
			out[i].Revoked = true
			out[i].RevokedAt = time.Unix(rv.at, 0)
		}
	}
	slices.SortFunc(out, func(a, b KeyInfo) int {
		if c := a.Activation.Compare(b.Activation); c != 0 {
			return c
		}
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return bytes.Compare([]byte(a.ID), []byte(b.ID))
	})
	return out, nil
}

func keyIDFromString(s string) keyID {
	id, _ := parseKeyID(s)
	return id
}

// Close stops the background refresh and waits for it. Every method that
// returns an error fails with ErrRingClosed after Close (a second Close
// returns nil). Close does not close the store, which may serve others.
func (r *KeyRing) Close() error {
	r.closeOnce.Do(func() {
		r.closed.Store(true)
		r.bgCancel()
		<-r.done
	})
	return nil
}

// loop refreshes every interval, less up to 20% jitter so that a farm's
// servers spread their reads and never exceed the interval.
func (r *KeyRing) loop() {
	defer close(r.done)
	failures := 0
	for {
		d := r.cfg.refreshInterval - time.Duration(mrand.Int64N(int64(r.cfg.refreshInterval)/5+1))
		if failures > 0 {
			// Retry sooner after a failure, but not in a tight loop.
			d = max(d/5, time.Second)
		}
		t := time.NewTimer(d)
		select {
		case <-r.bgCtx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(r.bgCtx, 30*time.Second)
		err := r.withLock(ctx, func() error { return r.sync(ctx, true, nil) })
		cancel()
		if err != nil && r.bgCtx.Err() == nil {
			failures++
			r.cfg.logger.Warn("protect: key ring refresh failed; keeping the keys already loaded",
				"ring", r.cfg.ringKey, "err", err, "failures", failures)
		} else {
			failures = 0
		}
	}
}

// working is a mutable copy of the ring during one sync.
type working struct {
	keys    map[keyID]*dataKey
	revoked map[keyID]*revEntry
	naming  *namingSecret // nil until verified, merged or minted
	dirty   bool          // the record must be written
}

func (w *working) state() *ringState {
	s := &ringState{keys: w.keys, revoked: w.revoked, naming: w.naming}
	for id, k := range w.keys {
		if w.revoked[id] == nil {
			s.order = append(s.order, k)
		}
	}
	slices.SortFunc(s.order, func(a, b *dataKey) int {
		if a.activation != b.activation {
			if a.activation > b.activation {
				return -1
			}
			return 1
		}
		return bytes.Compare(a.id[:], b.id[:])
	})
	return s
}

func (w *working) record() *record {
	rec := &record{}
	for _, k := range w.keys {
		rec.keys = append(rec.keys, k.keyEntry)
	}
	for _, rv := range w.revoked {
		rec.revoked = append(rec.revoked, *rv)
	}
	if w.naming != nil {
		ne := w.naming.namingEntry
		rec.naming = &ne
	}
	return rec
}

// sync brings the ring and its record in line; the caller holds sem. With
// write false it only loads and merges (Unprotect's reload, Keys). With
// write true it also applies mutate, the rotation policy, and writes the
// record back with compare-and-set when anything changed, retrying on
// conflict from a fresh load. Nothing is adopted that was not first read
// from, or written to, the store: a key that other servers cannot load is
// never used to encrypt.
//
// A record this ring cannot verify (damaged: see classify) is rewritten
// from the ring's verified copy on every sync, read-only ones included,
// because until then no newcomer can start and no server can add a key:
// the ring would run out of keys when its default expires. A newcomer,
// which has no copy, fails with ErrRingDamaged and writes nothing.
func (r *KeyRing) sync(ctx context.Context, write bool, mutate func(*working, time.Time) error) error {
	cur := r.state.Load() // nil until the first sync succeeds
	for attempt := 0; attempt < maxCASAttempts; attempt++ {
		data, ver, err := r.store.Load(ctx, r.cfg.ringKey)
		missing := errors.Is(err, msalcache.ErrNotFound)
		corrupt := errors.Is(err, msalcache.ErrCorrupt)
		if err != nil && !missing && !corrupt {
			return fmt.Errorf("protect: load key ring %q: %w", r.cfg.ringKey, err)
		}
		var (
			w      *working
			damage error // why the record cannot be verified; nil if it can
		)
		switch {
		case missing:
			if cur == nil {
				existed, err := r.markerExists(ctx)
				if err != nil {
					return err
				}
				if existed {
					// A ring bootstrapping beside us writes the record
					// before the marker: look once more before failing.
					if attempt == 0 {
						continue
					}
					return fmt.Errorf("%w: record %q is absent but marker %q is present. A running server restores the record within one refresh interval; if none runs, restore the record from a backup, or delete %q to start a new ring (blobs sealed under the lost keys become unreadable and are fetched again)",
						ErrRingMissing, r.cfg.ringKey, r.marker, r.marker)
				}
				if !write {
					return fmt.Errorf("%w: record %q is absent", ErrRingMissing, r.cfg.ringKey)
				}
			} else if write {
				r.cfg.logger.Warn("protect: key ring record missing from the store; restoring it from this server's copy (no key is minted for it)",
					"ring", r.cfg.ringKey)
			}
			w = newWorking()
			w.dirty = true
		case corrupt:
			// The store cannot decode what it holds; Save with NoVersion
			// replaces such a record (msalcache.ErrCorrupt's contract).
			damage = fmt.Errorf("the store reports it as corrupt: %w", err)
			ver = msalcache.NoVersion
		default:
			if w, damage, err = r.classify(ctx, data, cur); err != nil {
				return err
			}
		}
		if damage != nil {
			if cur == nil {
				return r.damagedError(damage, w)
			}
			// Keep what did verify (a key another server added a moment
			// ago), and mergeCached below adds this ring's copy.
			if w == nil {
				w = newWorking()
			}
			w.dirty = true
		}
		if cur != nil {
			if err := r.mergeCached(w, cur, missing || damage != nil); err != nil {
				return err
			}
		}
		if !write && damage == nil {
			if w.naming == nil {
				return fmt.Errorf("protect: key ring %q has no naming secret", r.cfg.ringKey)
			}
			r.state.Store(w.state())
			return nil
		}
		now := r.now()
		if write {
			if mutate != nil {
				if err := mutate(w, now); err != nil {
					return err
				}
			}
			if err := r.schedule(ctx, w, now); err != nil {
				return err
			}
			if w.naming == nil {
				// A new ring, or a format 1 record: add the secret. Rings
				// racing to add it converge through compare-and-set: the
				// losers reload and adopt the winner's.
				if err := r.mintNaming(ctx, w); err != nil {
					return err
				}
			}
		}
		if w.naming == nil {
			// Only a read-only sync by a ring with no copy gets here, and
			// none runs before NewKeyRing's writing one: HashKey relies on
			// never seeing a state without a secret.
			return fmt.Errorf("protect: key ring %q has no naming secret", r.cfg.ringKey)
		}
		if w.dirty {
			if err := r.rewrap(ctx, w); err != nil {
				return err
			}
			enc, err := encodeRecord(w.record())
			if err != nil {
				return fmt.Errorf("protect: encode key ring: %w", err)
			}
			if missing {
				ver = msalcache.NoVersion
			}
			_, err = r.store.Save(ctx, r.cfg.ringKey, enc, ver, 0)
			if errors.Is(err, msalcache.ErrConflict) {
				continue // another server wrote (or healed): start over from its record
			}
			if damage != nil {
				r.logHeal(damage, err)
			}
			if err != nil {
				return fmt.Errorf("protect: save key ring %q: %w", r.cfg.ringKey, err)
			}
		}
		r.state.Store(w.state())
		r.ensureMarker(ctx)
		return nil
	}
	return fmt.Errorf("protect: key ring %q: gave up after %d compare-and-set conflicts", r.cfg.ringKey, maxCASAttempts)
}

func newWorking() *working {
	return &working{keys: map[keyID]*dataKey{}, revoked: map[keyID]*revEntry{}}
}

// logHeal reports, at ERROR, a damaged record and its rewrite: the damage
// means the store (or whoever writes to it) altered data at rest, which an
// operator should know about even though the ring repaired it. It names
// the store key and the reason, which holds key ids and KEK ids at most.
func (r *KeyRing) logHeal(damage, saveErr error) {
	if saveErr != nil {
		r.cfg.logger.Error("protect: key ring record is damaged and rewriting it from this server's verified copy failed; newcomers cannot start until it is rewritten (retried at every refresh)",
			"ring", r.cfg.ringKey, "damage", damage.Error(), "err", saveErr)
		return
	}
	r.cfg.logger.Error("protect: key ring record was damaged; rewrote it from this server's verified copy (no key was lost or minted for it)",
		"ring", r.cfg.ringKey, "damage", damage.Error())
}

// classify decodes and verifies a record. It returns err for a record
// that must be left alone: one written by a newer format, or one whose
// entries are wrapped by a KEK this ring lacks or that shares nothing with
// this ring (another ring under the same KEK id). It returns damage, with
// the entries that did verify in w, for a record that is this ring's but
// cannot be verified: bytes that do not decode, or entries that fail to
// authenticate. A single altered byte always lands in the second case
// unless it turns the format number into a newer one.
func (r *KeyRing) classify(ctx context.Context, data []byte, cur *ringState) (w *working, damage, err error) {
	rec, err := decodeRecord(data)
	if errors.Is(err, errNewerFormat) {
		// Overwriting it would downgrade every newer server's ring.
		return nil, nil, fmt.Errorf("%w: %q: %w", ErrInvalidRing, r.cfg.ringKey, err)
	}
	if err != nil {
		return nil, err, nil
	}
	w, bad, ours, err := r.verify(ctx, rec, cur)
	if err != nil {
		return nil, nil, err
	}
	if len(bad) == 0 {
		return w, nil, nil
	}
	damage = fmt.Errorf("%s", strings.Join(bad, "; "))
	if cur != nil && !ours {
		return nil, nil, fmt.Errorf("%w: %q: no entry authenticates with this ring's KEKs and none is one this server holds (%v): another ring under the same KEK id? Not overwriting it",
			ErrInvalidRing, r.cfg.ringKey, damage)
	}
	return w, damage, nil
}

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
		DefaultRefreshInterval, r.cfg.ringKey, r.marker)
	return &damagedError{msg: b.String(), cause: damage}
}

// verify authenticates every entry of rec with the ring's KEKs. Entries
// identical to ones already verified are taken from cur without a KEK call,
// so a KMS-backed KEK is called only for what changed.
//
// It returns the entries that authenticate in w and describes in bad those
// that do not; ours reports whether the record is tied to this ring (an
// entry authenticates, or a bad one carries an id or wrapped bytes that
// cur holds), which tells damage from a foreign ring. An entry under a KEK
// id the ring lacks is an error (err), unless its wrapped bytes are those
// of an entry cur holds: then only its KEK id was altered, and it is bad.
func (r *KeyRing) verify(ctx context.Context, rec *record, cur *ringState) (w *working, bad []string, ours bool, err error) {
	w = &working{keys: make(map[keyID]*dataKey, len(rec.keys)), revoked: make(map[keyID]*revEntry, len(rec.revoked))}
	var known map[string]bool // wrapped bytes and tags cur holds
	if cur != nil {
		known = make(map[string]bool, len(cur.keys)+len(cur.revoked))
		for _, k := range cur.keys {
			known[string(k.wrapped)] = true
		}
		for _, rv := range cur.revoked {
			known[string(rv.tag)] = true
		}
	}
	fail := func(format string, args ...any) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		return fmt.Errorf("%w: %q: %s", ErrInvalidRing, r.cfg.ringKey, fmt.Sprintf(format, args...))
	}
	for i := range rec.keys {
		e := &rec.keys[i]
		if cur != nil {
			if k := cur.keys[e.id]; k != nil && k.keyEntry.equal(e) {
				w.keys[e.id] = k
				ours = true
				continue
			}
		}
		kek := r.keks[e.kekID]
		if kek == nil {
			if known[string(e.wrapped)] {
				bad = append(bad, fmt.Sprintf("key %s names KEK %q, but its wrapped bytes are those of a key this server holds under another KEK", e.id, e.kekID))
				ours = true
				continue
			}
			return nil, nil, false, fail("key %s is wrapped by KEK %q, which this ring does not have (add it with WithKEKs)", e.id, e.kekID)
		}
		secret, err := kek.Unwrap(ctx, e.wrapped, keyAAD(e))
		if err != nil || len(secret) != masterKeyLen {
			if err := ctx.Err(); err != nil {
				return nil, nil, false, err
			}
			bad = append(bad, fmt.Sprintf("key %s does not unwrap with KEK %q: its dates, id or wrapped bytes were altered, or the KEK is not the one that wrapped it", e.id, e.kekID))
			if cur != nil && (cur.keys[e.id] != nil || known[string(e.wrapped)]) {
				ours = true
			}
			continue
		}
		k := &dataKey{keyEntry: *e, secret: secret, info: hkdfInfo(e.id)}
		k.wrapped = bytes.Clone(e.wrapped)
		w.keys[e.id] = k
		ours = true
	}
	for i := range rec.revoked {
		e := &rec.revoked[i]
		if cur != nil {
			if rv := cur.revoked[e.id]; rv != nil && rv.equal(e) {
				w.revoked[e.id] = rv
				ours = true
				continue
			}
		}
		kek := r.keks[e.kekID]
		if kek == nil {
			if known[string(e.tag)] {
				bad = append(bad, fmt.Sprintf("revocation of %s names KEK %q, but its tag is one this server holds under another KEK", e.id, e.kekID))
				ours = true
				continue
			}
			return nil, nil, false, fail("revocation of %s is signed by KEK %q, which this ring does not have (add it with WithKEKs)", e.id, e.kekID)
		}
		got, err := kek.Unwrap(ctx, e.tag, revAAD(e))
		if err != nil || !bytes.Equal(got, e.id[:]) {
			if err := ctx.Err(); err != nil {
				return nil, nil, false, err
			}
			bad = append(bad, fmt.Sprintf("revocation of %s does not verify with KEK %q", e.id, e.kekID))
			if cur != nil && (cur.keys[e.id] != nil || cur.revoked[e.id] != nil || known[string(e.tag)]) {
				ours = true
			}
			continue
		}
		rv := *e
		rv.tag = bytes.Clone(e.tag)
		w.revoked[e.id] = &rv
		ours = true
	}
	if rec.naming != nil {
		ns, why, tied, err := r.verifyNaming(ctx, rec.naming, cur)
		if err != nil {
			return nil, nil, false, err
		}
		if why != "" {
			bad = append(bad, why)
		}
		w.naming = ns
		ours = ours || tied
	}
	return w, bad, ours, nil
}

// mergeCached adds to w what this ring knew before: keys and revocations
// are never forgotten, so a record replayed from an older copy, or deleted,
// neither un-revokes a key nor drops one that blobs were sealed under. What
// the record lacked is written back (w.dirty).
func (r *KeyRing) mergeCached(w *working, cur *ringState, missing bool) error {
	var lostKeys, lostRevs int
	for id, k := range cur.keys {
		got := w.keys[id]
		if got == nil {
			w.keys[id] = k
			lostKeys++
			continue
		}
		if got.created != k.created || got.activation != k.activation || got.expiration != k.expiration ||
			!bytes.Equal(got.secret, k.secret) {
			return fmt.Errorf("%w: %q: key %s differs from the copy this server loaded before", ErrInvalidRing, r.cfg.ringKey, id)
		}
	}
	for id, rv := range cur.revoked {
		if w.revoked[id] == nil {
			w.revoked[id] = rv
			lostRevs++
		}
	}
	lostNaming := false
	switch {
	case w.naming == nil:
		// A record replayed from before the secret existed (format 1):
		// dropping the secret would rename every partition.
		w.naming = cur.naming
		lostNaming = cur.naming != nil
	case cur.naming != nil && !hmac.Equal(w.naming.h.secret, cur.naming.h.secret):
		// Another valid secret: the ring was reset, or the store flushed
		// and a newcomer started a ring. The record's wins, so that every
		// server converges on one (keeping ours would make two servers
		// overwrite each other); partitions are renamed, a miss once.
		r.cfg.logger.Warn("protect: the key ring's naming secret in the store differs from this server's (the ring was reset or replaced); adopting the store's: every partition is a cache miss once",
			"ring", r.cfg.ringKey)
	}
	if lostKeys+lostRevs > 0 || lostNaming {
		w.dirty = true
		if !missing {
			r.cfg.logger.Warn("protect: key ring record lacks keys, revocations or the naming secret this server holds (replayed from an older copy, or edited); restoring them",
				"ring", r.cfg.ringKey, "keys", lostKeys, "revocations", lostRevs, "naming_secret", lostNaming)
		}
	}
	return nil
}

// schedule applies the rotation policy at now: with no key that may
// encrypt, mint one active at once; when the default is within the lead
// time of its expiry and no successor exists, mint the successor,
// activating when the default expires. Every server computes the same
// answer from the same record, and compare-and-set lets one write it.
func (r *KeyRing) schedule(ctx context.Context, w *working, now time.Time) error {
	st := w.state()
	d := st.defaultKey(now, r.cfg.clockSkew)
	if d == nil {
		// Active at once on every server, even one whose clock is behind
		// by the full skew allowance.
		return r.mint(ctx, w, now, now.Add(-r.cfg.clockSkew), now.Add(r.cfg.lifetime))
	}
	lead := now.Add(r.cfg.activationDelay + r.cfg.refreshInterval).Unix()
	if d.expiration > lead {
		return nil
	}
	limit := d.expiration + int64(r.cfg.clockSkew/time.Second)
	for _, k := range st.order {
		if k.activation <= limit && k.expiration > lead {
			return nil // a successor is scheduled
		}
	}
	act := time.Unix(d.expiration, 0)
	return r.mint(ctx, w, now, act, act.Add(r.cfg.lifetime))
}

// mint adds a fresh key, wrapped by the primary KEK.
func (r *KeyRing) mint(ctx context.Context, w *working, now, activation, expiration time.Time) error {
	k := &dataKey{secret: make([]byte, masterKeyLen)}
	for {
		_, _ = rand.Read(k.id[:]) // never fails; see sealPayload
		if w.keys[k.id] == nil && w.revoked[k.id] == nil {
			break
		}
	}
	_, _ = rand.Read(k.secret)
	k.suite = suiteAES256GCMHKDF
	k.created = now.Unix()
	k.activation = activation.Unix()
	k.expiration = expiration.Unix()
	k.kekID = r.primary.ID()
	k.info = hkdfInfo(k.id)
	wrapped, err := r.primary.Wrap(ctx, k.secret, keyAAD(&k.keyEntry))
	if err != nil {
		return fmt.Errorf("protect: wrap new key with KEK %q: %w", k.kekID, err)
	}
	k.wrapped = wrapped
	w.keys[k.id] = k
	w.dirty = true
	return nil
}

// rewrap moves every entry not under the primary KEK to it, so that an old
// KEK can be retired once a write has happened (Rotate forces one).
func (r *KeyRing) rewrap(ctx context.Context, w *working) error {
	pid := r.primary.ID()
	for id, k := range w.keys {
		if k.kekID == pid {
			continue
		}
		nk := *k
		nk.kekID = pid
		wrapped, err := r.primary.Wrap(ctx, nk.secret, keyAAD(&nk.keyEntry))
		if err != nil {
			return fmt.Errorf("protect: rewrap key %s with KEK %q: %w", id, pid, err)
		}
		nk.wrapped = wrapped
		w.keys[id] = &nk
	}
	for id, rv := range w.revoked {
		if rv.kekID == pid {
			continue
		}
		nrv := *rv
		nrv.kekID = pid
		tag, err := r.primary.Wrap(ctx, id[:], revAAD(&nrv))
		if err != nil {
			return fmt.Errorf("protect: re-sign revocation of %s with KEK %q: %w", id, pid, err)
		}
		nrv.tag = tag
		w.revoked[id] = &nrv
	}
	if n := w.naming; n != nil && n.kekID != pid {
		wrapped, err := r.primary.Wrap(ctx, n.h.secret, namingAAD(pid))
		if err != nil {
			return fmt.Errorf("protect: rewrap the naming secret with KEK %q: %w", pid, err)
		}
		w.naming = &namingSecret{namingEntry: namingEntry{kekID: pid, wrapped: wrapped}, h: n.h}
	}
	return nil
}

var markerValue = []byte("msalcache key ring marker v1: a key ring was created in this store\n")

// markerExists reports whether the marker is there. A marker the store
// reports corrupt counts as present: something was written there, and
// failing closed (no new ring) is the safe answer.
func (r *KeyRing) markerExists(ctx context.Context) (bool, error) {
	present, _, err := r.markerState(ctx)
	return present, err
}

func (r *KeyRing) markerState(ctx context.Context) (present, corrupt bool, err error) {
	_, _, err = r.store.Load(ctx, r.marker)
	switch {
	case err == nil:
		return true, false, nil
	case errors.Is(err, msalcache.ErrNotFound):
		return false, false, nil
	case errors.Is(err, msalcache.ErrCorrupt):
		return true, true, nil
	default:
		return false, false, fmt.Errorf("protect: load key ring marker %q: %w", r.marker, err)
	}
}

// ensureMarker writes the marker after the record exists (never before, so
// a crash in between cannot leave a marker with no ring), and rewrites one
// the store reports corrupt. Failures are logged and retried at the next
// refresh: the marker only decides whether a newcomer facing an empty
// store may start a new ring.
func (r *KeyRing) ensureMarker(ctx context.Context) {
	present, corrupt, err := r.markerState(ctx)
	if err == nil && (!present || corrupt) {
		// NoVersion creates the marker, or replaces a corrupt one.
		_, err = r.store.Save(ctx, r.marker, markerValue, msalcache.NoVersion, 0)
		if errors.Is(err, msalcache.ErrConflict) {
			err = nil
		}
	}
	if err != nil {
		r.cfg.logger.Warn("protect: cannot write the key ring marker; will retry", "marker", r.marker, "err", err)
	}
}
