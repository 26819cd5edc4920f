package boltstore

import (
	"context"
	"fmt"
	"time"

	"github.com/msalcache/msalcache"
	bolt "go.etcd.io/bbolt"
)

var _ msalcache.Lifetimer = (*Store)(nil)

// Lifetime implements msalcache.Lifetimer: it reads the expiry from the
// record's header (nanoseconds, by the store's clock, see WithClock),
// without copying the value. A record that cannot be decoded fails with an
// error wrapping ErrCorrupt, as in Load.
func (s *Store) Lifetime(ctx context.Context, key string) (time.Duration, error) {
	if err := checkKey(key); err != nil {
		return 0, err
	}
	if err := s.enter(ctx); err != nil {
		return 0, err
	}
	defer s.calls.Done()
	var left time.Duration
	err := s.db.View(func(tx *bolt.Tx) error {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("boltstore: %w", err)
		}
		b, err := s.bucketOf(tx)
		if err != nil {
			return err
		}
		raw := b.Get([]byte(key))
		if raw == nil {
			return msalcache.ErrNotFound
		}
		rec, err := decodeRecord(raw)
		if err != nil {
			return fmt.Errorf("boltstore: lifetime: %w", err)
		}
		now := s.now().UnixNano()
		if !rec.live(now) {
			return msalcache.ErrNotFound
		}
		if rec.expires == 0 {
			left = msalcache.NoExpiry
			return nil
		}
		left = max(time.Duration(rec.expires-now), time.Nanosecond)
		return nil
	})
	if err != nil {
		return 0, err
	}
	return left, nil
}
