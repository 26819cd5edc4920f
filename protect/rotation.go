package protect

import (
	"context"
	"crypto/rand"
	"fmt"
	"time"
)

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
	k.kekKind = kindOf(r.primary)
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
// KEK can be retired once a write has happened (Rotate forces one). It
// also records the KEK kind of keys loaded from a format 1 or 2 record.
func (r *KeyRing) rewrap(ctx context.Context, w *working) error {
	pid, pkind := r.primary.ID(), kindOf(r.primary)
	for id, k := range w.keys {
		if k.kekID == pid {
			if k.kekKind != pkind {
				nk := *k
				nk.kekKind = pkind
				w.keys[id] = &nk
			}
			continue
		}
		nk := *k
		nk.kekID, nk.kekKind = pid, pkind
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
