package protect

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/msalcache/msalcache/internal/ringadmin"
)

// Rotate adds a key that is the default at once, for an emergency: every
// server encrypts with it as soon as it has loaded it (within about a
// second where the store pushes changes, else within one refresh
// interval; a server that meets a blob under it reloads at once). Old keys
// still decrypt; Revoke the one you no longer trust. Rotate also rewraps
// every key under the primary KEK, which completes a KEK rotation.
func (r *KeyRing) Rotate(ctx context.Context) error {
	if err := r.checkOpen(); err != nil {
		return err
	}
	return r.withLock(ctx, func() error {
		return r.update(ctx, func(w *working, now time.Time) error {
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

// Revoke stops the key with the given id (as ringadmin.KeyInfo.ID shows it) from
// decrypting and encrypting, here at once and on every other server as
// soon as it hears of the change (within about a second where the store
// pushes changes, see the package documentation), else at its next
// refresh.
// Revocation is permanent: a record replayed from before it does not bring
// the key back on any server that saw it. Revoking the default key mints
// a new default in the same write. Revoking a revoked key is a no-op; an
// id the ring does not hold fails with "key not found".
func (r *KeyRing) Revoke(ctx context.Context, id string) error {
	if err := r.checkOpen(); err != nil {
		return err
	}
	kid, err := parseKeyID(id)
	if err != nil {
		return err
	}
	return r.withLock(ctx, func() error {
		return r.update(ctx, func(w *working, now time.Time) error {
			if w.revoked[kid] != nil {
				return nil
			}
			if w.keys[kid] == nil {
				return fmt.Errorf("%w: %s", errKeyNotFound, kid)
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

// keys (ringadmin.Keys, for the CLI) reloads the ring's record and describes every key this ring knows,
// oldest activation first. It never mints; it writes only to rewrite a
// damaged record from this ring's verified copy.
func (r *KeyRing) keys(ctx context.Context) ([]ringadmin.KeyInfo, error) {
	if err := r.checkOpen(); err != nil {
		return nil, err
	}
	if err := r.withLock(ctx, func() error { return r.reload(ctx) }); err != nil {
		return nil, err
	}
	st := r.state.Load()
	now := r.now()
	def := st.defaultKey(now, r.cfg.clockSkew)
	out := make([]ringadmin.KeyInfo, 0, len(st.keys)+len(st.revoked))
	for id, k := range st.keys {
		ki := ringadmin.KeyInfo{
			ID:         id.String(),
			Created:    time.Unix(k.created, 0),
			Activation: time.Unix(k.activation, 0),
			Expiration: time.Unix(k.expiration, 0),
			Default:    k == def,
			KEKID:      k.kekID,
			KEKKind:    r.kindFor(k),
		}
		switch {
		case st.revoked[id] != nil:
			ki.Status = ringadmin.KeyRevoked
		case k.activation > now.Add(r.cfg.clockSkew).Unix():
			ki.Status = ringadmin.KeyPending
		case now.Unix() >= k.expiration:
			ki.Status = ringadmin.KeyExpired
		default:
			ki.Status = ringadmin.KeyActive
		}
		out = append(out, ki)
	}
	for id, rv := range st.revoked {
		if st.keys[id] == nil {
			out = append(out, ringadmin.KeyInfo{ID: id.String(), Status: ringadmin.KeyRevoked, KEKID: rv.kekID})
		}
	}
	for i := range out {
		if rv := st.revoked[keyIDFromString(out[i].ID)]; rv != nil {
			out[i].Revoked = true
			out[i].RevokedAt = time.Unix(rv.at, 0)
		}
	}
	slices.SortFunc(out, func(a, b ringadmin.KeyInfo) int {
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

func init() {
	ringadmin.Keys = func(ctx context.Context, ring any) ([]ringadmin.KeyInfo, error) {
		r, ok := ring.(*KeyRing)
		if !ok || r == nil {
			return nil, fmt.Errorf("protect: ringadmin.Keys needs a *protect.KeyRing, not %T", ring)
		}
		return r.keys(ctx)
	}
}
