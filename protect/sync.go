package protect

import (
	"bytes"
	"context"
	"crypto/hmac"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/msalcache/msalcache"
)

// reload reads the record and adopts what other servers wrote to it: keys
// and revocations, merged with this ring's copy. It never mints, never
// applies the rotation policy and leaves a record that merely lacks what
// this ring holds to the next update. It writes only to rewrite a damaged
// record (see classify) from this ring's verified copy, because until then
// no newcomer can start and no server can add a key: the ring would run
// out of keys when its default expires. Unprotect's reload for an unknown
// key id and Keys run it; the caller holds sem.
func (r *KeyRing) reload(ctx context.Context) error {
	return r.casLoop(ctx, func(l *loaded) (bool, error) {
		if l.missing && l.held == nil {
			return false, fmt.Errorf("%w: record %q is absent", ErrRingMissing, r.cfg.ringKey)
		}
		if l.w.naming == nil {
			// Only a ring with no copy of its own gets here, and none
			// reloads before NewKeyRing's update gave it one: HashKey
			// relies on never seeing a state without a secret.
			return false, fmt.Errorf("protect: key ring %q has no naming secret", r.cfg.ringKey)
		}
		if l.damage == nil {
			r.state.Store(l.w.state())
			r.ver = l.ver
			return false, nil
		}
		return r.writeBack(ctx, l)
	})
}

// update reads the record, applies change (nil for none) and then the
// rotation policy (schedule) to it, gives it a naming secret if it has
// none, and writes it back when anything changed. NewKeyRing, Refresh, the
// background refresh, Protect's last resort, Rotate and Revoke run it; the
// caller holds sem. Nothing is adopted that was not first read from, or
// written to, the store: a key that other servers cannot load is never
// used to encrypt.
func (r *KeyRing) update(ctx context.Context, change func(w *working, now time.Time) error) error {
	return r.casLoop(ctx, func(l *loaded) (bool, error) {
		if l.missing && l.held != nil {
			r.cfg.logger.Warn("protect: key ring record missing from the store; restoring it from this server's copy (no key is minted for it)",
				"ring", r.cfg.ringKey)
		}
		now := r.now()
		if change != nil {
			if err := change(l.w, now); err != nil {
				return false, err
			}
		}
		if err := r.schedule(ctx, l.w, now); err != nil {
			return false, err
		}
		if l.w.naming == nil {
			// A new ring, or a format 1 record: add the secret. Rings
			// racing to add it converge through compare-and-set: the
			// losers read again and adopt the winner's.
			if err := r.mintNaming(ctx, l.w); err != nil {
				return false, err
			}
		}
		return r.writeBack(ctx, l)
	})
}

// maxCASAttempts bounds the reads of one reload or update; each lost round
// means another server wrote, so the ring converges in a few.
const maxCASAttempts = 16

// casLoop reads the record and hands it to round until a round does not
// lose a compare-and-set race, so that every round decides on what the
// store holds now: a lost one means another server wrote, and the next
// starts from that server's record.
func (r *KeyRing) casLoop(ctx context.Context, round func(l *loaded) (lost bool, err error)) error {
	held := r.state.Load() // nil until NewKeyRing's first update succeeds
	for attempt := range maxCASAttempts {
		l, err := r.read(ctx, held, attempt == 0)
		if errors.Is(err, errLookAgain) {
			continue
		}
		if err != nil {
			return err
		}
		if lost, err := round(l); !lost {
			return err
		}
	}
	return fmt.Errorf("protect: key ring %q: gave up after %d compare-and-set conflicts", r.cfg.ringKey, maxCASAttempts)
}

// errLookAgain sends casLoop back to the store for one more read.
var errLookAgain = errors.New("protect: read the key ring record again")

// loaded is one read of the record, verified and merged with this ring's
// copy: what a round of casLoop decides on.
type loaded struct {
	w       *working
	held    *ringState        // this ring's copy before the read; nil for a newcomer
	ver     driver.Version // what the write-back's compare-and-set expects
	missing bool              // the store holds no record
	damage  error             // why the record cannot be verified; nil if it can
}

// read loads the record and makes it a working copy: the entries that
// verify (classify), merged with held (mergeCached) so that nothing this
// ring knew is forgotten. A record that cannot be verified is damage,
// marked to be rewritten from held; a newcomer, which has no copy, fails
// with ErrRingDamaged instead and writes nothing. A missing record yields
// an empty copy to write, unless the ring is a newcomer and the marker
// shows that a ring existed: then ErrRingMissing, after one more look on
// the first attempt, because a ring bootstrapping beside us writes the
// record before the marker.
func (r *KeyRing) read(ctx context.Context, held *ringState, firstAttempt bool) (*loaded, error) {
	data, ver, err := r.store.Load(ctx, r.cfg.ringKey)
	l := &loaded{held: held, ver: ver, missing: errors.Is(err, driver.ErrNotFound)}
	corrupt := errors.Is(err, driver.ErrCorrupt)
	if err != nil && !l.missing && !corrupt {
		return nil, fmt.Errorf("protect: load key ring %q: %w", r.cfg.ringKey, err)
	}
	switch {
	case l.missing:
		if held == nil {
			existed, err := r.markerExists(ctx)
			if err != nil {
				return nil, err
			}
			if existed {
				if firstAttempt {
					return nil, errLookAgain
				}
				return nil, fmt.Errorf("%w: record %q is absent but marker %q is present. A running server restores the record within one refresh interval; if none runs, restore the record from a backup, or delete %q to start a new ring (blobs sealed under the lost keys become unreadable and are fetched again)",
					ErrRingMissing, r.cfg.ringKey, r.marker, r.marker)
			}
		}
		l.w = newWorking()
		l.w.dirty = true
		l.ver = driver.NoVersion
	case corrupt:
		// The store cannot decode what it holds; Save with NoVersion
		// replaces such a record (driver.ErrCorrupt's contract).
		l.damage = fmt.Errorf("the store reports it as corrupt: %w", err)
		l.ver = driver.NoVersion
	default:
		if l.w, l.damage, err = r.classify(ctx, data, held); err != nil {
			return nil, err
		}
	}
	if l.damage != nil {
		if held == nil {
			return nil, r.damagedError(l.damage, l.w)
		}
		// Keep what did verify (a key another server added a moment
		// ago), and mergeCached below adds this ring's copy.
		if l.w == nil {
			l.w = newWorking()
		}
		l.w.dirty = true
	}
	if held != nil {
		if err := r.mergeCached(l.w, held, l.missing || l.damage != nil); err != nil {
			return nil, err
		}
	}
	return l, nil
}

// writeBack saves l's working copy if it changed, with compare-and-set
// against the version read (lost reports that another server wrote
// first), and adopts it.
func (r *KeyRing) writeBack(ctx context.Context, l *loaded) (lost bool, err error) {
	w := l.w
	ver := l.ver
	if w.dirty {
		if err := r.rewrap(ctx, w); err != nil {
			return false, err
		}
		enc, err := encodeRecord(w.record())
		if err != nil {
			return false, fmt.Errorf("protect: encode key ring: %w", err)
		}
		ver, err = r.store.Save(ctx, r.cfg.ringKey, enc, l.ver, 0)
		if errors.Is(err, driver.ErrConflict) {
			return true, nil // another server wrote (or healed): start over from its record
		}
		if l.damage != nil {
			r.logHeal(l.damage, err)
		}
		if err != nil {
			return false, fmt.Errorf("protect: save key ring %q: %w", r.cfg.ringKey, err)
		}
	}
	r.state.Store(w.state())
	r.ver = ver
	r.ensureMarker(ctx)
	return false, nil
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

// working is a mutable copy of the ring during one reload or update.
type working struct {
	keys    map[keyID]*dataKey
	revoked map[keyID]*revEntry
	naming  *namingSecret // nil until verified, merged or minted
	dirty   bool          // the record must be written
}

func newWorking() *working {
	return &working{keys: map[keyID]*dataKey{}, revoked: map[keyID]*revEntry{}}
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
