package protect

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"sync"

	"github.com/msalcache/msalcache"
)

var _ driver.KeyHasher = (*KeyRing)(nil)

// HashKey names a partition in the store: HMAC-SHA256 of partitionKey
// under the ring's naming secret. It implements driver.KeyHasher, so
// an Adapter whose Protector is this ring stores partitions under these
// names instead of a plain SHA-256 of the partition key. Someone who can
// read the store (a dump, a backup, a leaked password) but holds no KEK
// can then no longer confirm that a given user has tokens cached by
// hashing that user's object and tenant ids: without the secret, the
// names are unlinkable to identities.
//
// The secret lives, wrapped by the KEK, in the ring's record, so every
// server of a farm hashes alike; it does not change when data keys rotate
// or are revoked, only when the ring is reset (or replaced after a flush).
// HashKey never blocks, never touches the store and never fails: every
// KeyRing holds the secret before NewKeyRing returns. It keeps working
// after Close. It allocates nothing for partition keys up to 4 KiB.
func (r *KeyRing) HashKey(partitionKey string) [32]byte {
	return r.state.Load().naming.h.sum(partitionKey)
}

// hasher computes HashKey under one secret. HMAC's two SHA-256 states
// cost allocations and a key schedule to build, so they are pooled and
// Reset (which restores the keyed state) per use.
type hasher struct {
	secret []byte
	pool   sync.Pool // of *mac
}

type mac struct {
	h   hash.Hash
	buf []byte   // the partition key as bytes, reused
	sum [32]byte // Sum's output, so that no slice escapes per call
}

// maxPooledBuf bounds what a pooled mac keeps, so that one huge key does
// not pin memory for the life of the pool.
const maxPooledBuf = 4096

func newHasher(secret []byte) *hasher {
	h := &hasher{secret: secret}
	h.pool.New = func() any { return &mac{h: hmac.New(sha256.New, h.secret)} }
	return h
}

func (h *hasher) sum(s string) [32]byte {
	m := h.pool.Get().(*mac)
	m.h.Reset()
	m.buf = append(m.buf[:0], s...)
	m.h.Write(m.buf)
	m.h.Sum(m.sum[:0])
	out := m.sum
	if cap(m.buf) > maxPooledBuf {
		m.buf = nil
	}
	h.pool.Put(m)
	return out
}

// namingSecret is the authenticated, unwrapped naming secret with the
// entry it came from.
type namingSecret struct {
	namingEntry
	h *hasher
}

// mintNaming gives w a fresh naming secret, wrapped by the primary KEK:
// for a new ring, or a format 1 record that has none yet.
func (r *KeyRing) mintNaming(ctx context.Context, w *working) error {
	secret := make([]byte, namingSecretLen)
	_, _ = rand.Read(secret) // never fails; see sealPayload
	kekID := r.primary.ID()
	wrapped, err := r.primary.Wrap(ctx, secret, namingAAD(kekID))
	if err != nil {
		return fmt.Errorf("protect: wrap the naming secret with KEK %q: %w", kekID, err)
	}
	w.naming = &namingSecret{namingEntry: namingEntry{kekID: kekID, wrapped: wrapped}, h: newHasher(secret)}
	w.dirty = true
	return nil
}

// verifyNaming authenticates the record's naming secret e; see verify for
// bad, ours and err. A secret equal to cur's keeps cur's hasher and pool.
func (r *KeyRing) verifyNaming(ctx context.Context, e *namingEntry, cur *ringState) (ns *namingSecret, bad string, ours bool, err error) {
	var have *namingSecret
	if cur != nil {
		have = cur.naming
	}
	if have != nil && have.namingEntry.equal(e) {
		return have, "", true, nil
	}
	kek := r.keks[e.kekID]
	if kek == nil {
		if have != nil && bytes.Equal(have.wrapped, e.wrapped) {
			return nil, fmt.Sprintf("naming secret names KEK %q, but its wrapped bytes are those this server holds under another KEK", e.kekID), true, nil
		}
		return nil, "", false, fmt.Errorf("%w: %q: the naming secret is wrapped by KEK %q, which this ring does not have (add it with WithKEKs)", ErrInvalidRing, r.cfg.ringKey, e.kekID)
	}
	secret, err := kek.Unwrap(ctx, e.wrapped, namingAAD(e.kekID))
	if err != nil || len(secret) != namingSecretLen {
		if err := ctx.Err(); err != nil {
			return nil, "", false, err
		}
		if errors.Is(err, ErrKEKUnavailable) {
			return nil, "", false, fmt.Errorf("protect: key ring %q: naming secret: %w", r.cfg.ringKey, err)
		}
		return nil, fmt.Sprintf("naming secret does not unwrap with KEK %q", e.kekID), false, nil
	}
	ns = &namingSecret{namingEntry: namingEntry{kekID: e.kekID, wrapped: bytes.Clone(e.wrapped)}}
	if have != nil && hmac.Equal(have.h.secret, secret) {
		ns.h = have.h // rewrapped under another KEK: same secret, same pool
	} else {
		ns.h = newHasher(secret)
	}
	return ns, "", true, nil
}
