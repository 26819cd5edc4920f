package memstore

import (
	"context"
	"time"

	"github.com/msalcache/msalcache/driver"
)

var _ driver.Lifetimer = (*Store)(nil)

// Lifetime implements driver.Lifetimer: the time left until the key's
// expiry, by the store's clock (see withClock), or driver.NoExpiry.
func (s *Store) Lifetime(ctx context.Context, key string) (time.Duration, error) {
	if err := s.lock(ctx, "lifetime"); err != nil {
		return 0, err
	}
	defer s.mu.Unlock()
	now := s.now()
	it, ok := s.items[key]
	if !ok || !it.live(now) {
		return 0, driver.ErrNotFound
	}
	if it.expires.IsZero() {
		return driver.NoExpiry, nil
	}
	return max(it.expires.Sub(now), time.Nanosecond), nil
}
