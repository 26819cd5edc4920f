package protect

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"

	"github.com/msalcache/msalcache/driver"
	"github.com/msalcache/msalcache/internal/ringadmin"
)

func (w *aesWrapper) Kind() string { return ringadmin.KindAES }

// kindOf is what the record stores as w's kind.
func kindOf(w KeyWrapper) string {
	if c, ok := w.(*countedKEK); ok {
		return c.kind
	}
	if k, ok := w.(KindedKeyWrapper); ok && validKEKKind(k.Kind()) == nil {
		return k.Kind()
	}
	return ringadmin.KindCustom
}

func validKEKKind(kind string) error {
	if len(kind) == 0 || len(kind) > 32 {
		return fmt.Errorf("protect: KEK kind must be 1 to 32 characters, got %d", len(kind))
	}
	for i := 0; i < len(kind); i++ {
		if c := kind[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return fmt.Errorf("protect: KEK kind %q has byte %q at %d; use lowercase letters, digits or '-'", kind, c, i)
		}
	}
	return nil
}

// countedKEK counts a ring's calls to one of its KEKs, for KEKStats.
type countedKEK struct {
	KeyWrapper
	kind                     string
	wraps, unwraps, failures atomic.Int64
}

func newCountedKEK(w KeyWrapper) *countedKEK {
	return &countedKEK{KeyWrapper: w, kind: kindOf(w)}
}

func (c *countedKEK) Wrap(ctx context.Context, plaintext, aad []byte) ([]byte, error) {
	c.wraps.Add(1)
	out, err := c.KeyWrapper.Wrap(ctx, plaintext, aad)
	if err != nil {
		c.failures.Add(1)
	}
	return out, err
}

func (c *countedKEK) Unwrap(ctx context.Context, wrapped, aad []byte) ([]byte, error) {
	c.unwraps.Add(1)
	out, err := c.KeyWrapper.Unwrap(ctx, wrapped, aad)
	if err != nil {
		c.failures.Add(1)
	}
	return out, err
}

// KEKStat counts one KEK's calls by a KeyRing since it was created.
type KEKStat struct {
	// ID and Kind name the KEK.
	ID, Kind string
	// Primary marks the KEK that wraps new keys.
	Primary bool
	// Wraps and Unwraps count calls to the KEK's Wrap and Unwrap;
	// Failures counts those that returned an error.
	Wraps, Unwraps, Failures int64
}

// KEKStats reports how often the ring called each of its KEKs, primary
// first, then by id. A ring unwraps each data key once, when it first
// loads it, and holds it in memory; it calls its KEKs again only when the
// record changes (a key minted or revoked by any server, a KEK rotation)
// and for CheckKEKs. So with a remote KEK (a vault, an HSM) the calls per
// process are those of its start and of rotations, and an unreachable KEK
// costs nothing in between. Operators export these counts as they like.
func (r *KeyRing) KEKStats() []KEKStat {
	out := make([]KEKStat, 0, len(r.keks))
	for id, k := range r.keks {
		c, ok := k.(*countedKEK)
		if !ok {
			continue
		}
		out = append(out, KEKStat{ID: id, Kind: c.kind, Primary: id == r.primary.ID(),
			Wraps: c.wraps.Load(), Unwraps: c.unwraps.Load(), Failures: c.failures.Load()})
	}
	slices.SortFunc(out, func(a, b KEKStat) int {
		if a.Primary != b.Primary {
			if a.Primary {
				return -1
			}
			return 1
		}
		return bytes.Compare([]byte(a.ID), []byte(b.ID))
	})
	return out
}

// KEKCheck is what CheckKEKs found for one KEK.
type KEKCheck struct {
	// ID and Kind name the KEK; Kind is empty for a KEK the record names
	// but this ring was not given.
	ID, Kind string
	// Primary marks the KEK that wraps new keys.
	Primary bool
	// Keys counts the record's keys wrapped by it.
	Keys int
	// Err is nil when the KEK unwrapped one of its keys again (and, for
	// the primary, wrapped and unwrapped a probe); otherwise why not.
	// It never holds key material.
	Err error
}

// CheckKEKs reloads the record and asks every KEK it names, and the
// primary, to prove it still works: each unwraps one of its keys again
// (a real call, not the copy held in memory) and must give the same key;
// the primary also wraps and unwraps a random probe. It is for health
// checks (msalcache doctor), since the ring itself calls its KEKs only at
// start and on rotations: a vault permission revoked since then shows
// here first. The error is for the reload only; each KEK's verdict is in
// its KEKCheck.
func (r *KeyRing) CheckKEKs(ctx context.Context) ([]KEKCheck, error) {
	if err := r.checkOpen(); err != nil {
		return nil, err
	}
	if err := r.withLock(ctx, func() error { return r.reload(ctx) }); err != nil {
		return nil, err
	}
	st := r.state.Load()
	byKEK := map[string][]*dataKey{}
	for id, k := range st.keys {
		if st.revoked[id] == nil {
			byKEK[k.kekID] = append(byKEK[k.kekID], k)
		}
	}
	pid := r.primary.ID()
	if byKEK[pid] == nil {
		byKEK[pid] = nil
	}
	out := make([]KEKCheck, 0, len(byKEK))
	for id, keys := range byKEK {
		c := KEKCheck{ID: id, Primary: id == pid, Keys: len(keys)}
		kek := r.keks[id]
		if kek == nil {
			c.Err = fmt.Errorf("the record names KEK %q, which this ring was not given (add it with WithKEKs)", id)
			out = append(out, c)
			continue
		}
		c.Kind = kindOf(kek)
		if len(keys) > 0 {
			k := keys[0]
			secret, err := kek.Unwrap(ctx, k.wrapped, keyAAD(&k.keyEntry))
			switch {
			case err != nil:
				c.Err = fmt.Errorf("unwrap key %s: %w", k.id, err)
			case !bytes.Equal(secret, k.secret):
				c.Err = fmt.Errorf("unwrap key %s gave another key than the one loaded", k.id)
			}
		}
		if c.Err == nil && c.Primary {
			c.Err = probeKEK(ctx, kek)
		}
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b KEKCheck) int {
		if a.Primary != b.Primary {
			if a.Primary {
				return -1
			}
			return 1
		}
		return bytes.Compare([]byte(a.ID), []byte(b.ID))
	})
	return out, nil
}

// probeKEK wraps and unwraps a random key, and checks that other
// associated data is refused.
func probeKEK(ctx context.Context, kek KeyWrapper) error {
	probe := make([]byte, masterKeyLen)
	_, _ = rand.Read(probe)
	aad := []byte("msalcache/protect KEK probe v1")
	wrapped, err := kek.Wrap(ctx, probe, aad)
	if err != nil {
		return fmt.Errorf("wrap a probe: %w", err)
	}
	got, err := kek.Unwrap(ctx, wrapped, aad)
	if err != nil {
		return fmt.Errorf("unwrap a probe: %w", err)
	}
	if !bytes.Equal(got, probe) {
		return errors.New("a probe did not round-trip")
	}
	return nil
}

// kindFor is k's KEK kind: as recorded, or for a key of a format 1 or 2
// record, that of the ring's KEK that unwrapped it.
func (r *KeyRing) kindFor(k *dataKey) string {
	if k.kekKind != "" {
		return k.kekKind
	}
	if kek := r.keks[k.kekID]; kek != nil {
		return kindOf(kek)
	}
	return ""
}

// BoundsContext reports what the wrapped KEK reports (see
// KeyRing.BoundsContext).
func (c *countedKEK) BoundsContext() bool {
	if _, local := c.KeyWrapper.(*aesWrapper); local {
		return true
	}
	b, ok := c.KeyWrapper.(driver.ContextBounder)
	return ok && b.BoundsContext()
}
