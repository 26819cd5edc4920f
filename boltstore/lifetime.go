package boltstore

import (
	"context"
	"time"

	"github.com/msalcache/msalcache/driver"
)

var _ driver.Lifetimer = (*Store)(nil)

// Lifetime implements driver.Lifetimer: it reads the expiry from the
// record's header (nanoseconds, by the store's clock, see withClock),
// without copying the value. A record that cannot be decoded fails with an
// error wrapping ErrCorrupt, as in Load.
func (s *Store) Lifetime(ctx context.Context, key string) (time.Duration, error) {
	var left time.Duration
	err := s.readLive(ctx, "lifetime", key, func(rec record, now int64) {
		if rec.expires == 0 {
			left = driver.NoExpiry
			return
		}
		left = max(time.Duration(rec.expires-now), time.Nanosecond)
	})
	if err != nil {
		return 0, err
	}
	return left, nil
}
