package redisstore

import (
	"context"
	"fmt"
	"time"

	"github.com/msalcache/msalcache"
)

var _ driver.Lifetimer = (*Store)(nil)

// Lifetime implements driver.Lifetimer with one PTTL: the key's
// remaining lifetime to the millisecond (at least one millisecond for a
// key about to expire), driver.NoExpiry for a key without one, or an
// error wrapping driver.ErrNotFound for an absent key. It does not read
// the value, so it reports the lifetime of a key Load would call corrupt.
func (s *Store) Lifetime(ctx context.Context, key string) (time.Duration, error) {
	if err := s.start(ctx, "lifetime"); err != nil {
		return 0, err
	}
	var ms int64
	err := s.run(ctx, func(ctx context.Context) error {
		// The raw reply, in milliseconds: go-redis's PTTL helper turns
		// the -1 and -2 markers into durations that are easy to misread.
		var err error
		ms, err = s.c.Do(ctx, "PTTL", s.prefix+key).Int64()
		return err
	})
	if err != nil {
		return 0, s.wrap(ctx, "lifetime", err)
	}
	switch {
	case ms == -2:
		return 0, fmt.Errorf("redisstore: lifetime: %w", driver.ErrNotFound)
	case ms == -1:
		return driver.NoExpiry, nil
	case ms < 0:
		return 0, fmt.Errorf("redisstore: lifetime: PTTL answered %d", ms)
	}
	return time.Duration(max(ms, 1)) * time.Millisecond, nil
}
