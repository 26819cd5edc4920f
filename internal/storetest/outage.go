package storetest

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/msalcache/msalcache"
)

// ErrOutage is what an Outage answers while it is down.
var ErrOutage = errors.New("storetest: store unreachable (outage)")

// Outage is a real store that can be made unreachable, as a network
// partition makes it for the instance that uses it: while Down is set,
// Load, Save and Delete fail with ErrOutage. It hides the store's optional
// interfaces, and Close does not close the store it wraps.
type Outage struct {
	driver.Store
	Down atomic.Bool
}

// Load implements driver.Store.
func (s *Outage) Load(ctx context.Context, key string) ([]byte, driver.Version, error) {
	if s.Down.Load() {
		return nil, driver.NoVersion, ErrOutage
	}
	return s.Store.Load(ctx, key)
}

// Save implements driver.Store.
func (s *Outage) Save(ctx context.Context, key string, v []byte, ifv driver.Version, ttl time.Duration) (driver.Version, error) {
	if s.Down.Load() {
		return driver.NoVersion, ErrOutage
	}
	return s.Store.Save(ctx, key, v, ifv, ttl)
}

// Delete implements driver.Store.
func (s *Outage) Delete(ctx context.Context, key string) error {
	if s.Down.Load() {
		return ErrOutage
	}
	return s.Store.Delete(ctx, key)
}

// Close implements driver.Store; the wrapped store stays open.
func (s *Outage) Close() error { return nil }
