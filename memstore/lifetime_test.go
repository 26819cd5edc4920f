package memstore_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/memstore"
)

// The store's clock decides: a key has exactly what is left of its TTL.
func TestLifetimeFollowsClock(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	s := memstore.New(memstore.WithClock(func() time.Time { return now }))
	defer s.Close()
	ctx := context.Background()
	if _, err := s.Save(ctx, "k", []byte("v"), driver.NoVersion, time.Hour); err != nil {
		t.Fatal(err)
	}
	now = now.Add(20 * time.Minute)
	if d, err := s.Lifetime(ctx, "k"); err != nil || d != 40*time.Minute {
		t.Fatalf("Lifetime = %v, %v; want 40m", d, err)
	}
	now = now.Add(40 * time.Minute)
	if _, err := s.Lifetime(ctx, "k"); !errors.Is(err, driver.ErrNotFound) {
		t.Fatalf("Lifetime at expiry: %v; want ErrNotFound", err)
	}
	s.Close()
	if _, err := s.Lifetime(ctx, "k"); !errors.Is(err, driver.ErrClosed) {
		t.Fatalf("Lifetime after Close: %v; want ErrClosed", err)
	}
}
