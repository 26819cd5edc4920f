package protect

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"time"
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

// Revoke stops the key with the given id (as KeyInfo.ID shows it) from
// decrypting and encrypting, here at once and on every other server as
// soon as it hears of the change (within about a second where the store
// pushes changes, see the package documentation), else at its next
// refresh.
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
		return r.update(ctx, func(w *working, now time.Time) error {
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

// String is the status as an operator reads it in logs and listings:
// "pending", "active", "expired" or "revoked".
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
	// KEKKind is that KEK's kind (KindAES, KindCertificate,
	// "azure-keyvault", ...); empty for a key of a record written before
	// kinds were recorded, until this version's first write records it.
	KEKKind string
}

// Keys reloads the ring's record and describes every key this ring knows,
// oldest activation first. It never mints; it writes only to rewrite a
// damaged record from this ring's verified copy.
func (r *KeyRing) Keys(ctx context.Context) ([]KeyInfo, error) {
	if err := r.checkOpen(); err != nil {
		return nil, err
	}
	if err := r.withLock(ctx, func() error { return r.reload(ctx) }); err != nil {
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
			KEKKind:    r.kindFor(k),
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
