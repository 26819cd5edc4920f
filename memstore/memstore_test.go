package memstore_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/conformance"
	"github.com/msalcache/msalcache/memstore"
)

func TestConformance(t *testing.T) {
	conformance.RunStoreTests(t, func(t *testing.T) driver.Store {
		return memstore.New()
	}, conformance.Capabilities{})
}

// TestClockDrivesExpiry checks expiry at its exact boundary, which the
// conformance suite (on the wall clock) cannot.
func TestClockDrivesExpiry(t *testing.T) {
	ctx := context.Background()
	now := time.Unix(1_700_000_000, 0)
	s := memstore.New(memstore.WithClock(func() time.Time { return now }))
	defer s.Close()
	v, err := s.Save(ctx, "k", []byte("v"), driver.NoVersion, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	now = now.Add(time.Minute - time.Nanosecond)
	if _, got, err := s.Load(ctx, "k"); err != nil || got != v {
		t.Fatalf("Load 1ns before expiry = %d, %v; want version %d", got, err, v)
	}
	now = now.Add(time.Nanosecond)
	if _, _, err := s.Load(ctx, "k"); !errors.Is(err, driver.ErrNotFound) {
		t.Fatalf("Load at the expiry instant returned %v, want ErrNotFound", err)
	}
	var listed []string
	if err := s.List(ctx, "", func(k string) error { listed = append(listed, k); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(listed) != 0 {
		t.Fatalf("List reported expired keys %q", listed)
	}
}

// TestSweepKeepsLiveKeys writes enough keys to trigger the periodic sweep
// of expired items and checks that it removes only those.
func TestSweepKeepsLiveKeys(t *testing.T) {
	ctx := context.Background()
	now := time.Unix(1_700_000_000, 0)
	s := memstore.New(memstore.WithClock(func() time.Time { return now }))
	defer s.Close()
	for i := range 3000 {
		ttl := time.Duration(0)
		if i%2 == 0 {
			ttl = time.Second
		}
		if _, err := s.Save(ctx, fmt.Sprint(i), []byte("v"), driver.NoVersion, ttl); err != nil {
			t.Fatal(err)
		}
		if i == 1500 {
			now = now.Add(time.Hour) // the even keys so far expire
		}
	}
	for i := range 3000 {
		_, _, err := s.Load(ctx, fmt.Sprint(i))
		expired := i%2 == 0 && i <= 1500
		if expired != errors.Is(err, driver.ErrNotFound) || (!expired && err != nil) {
			t.Fatalf("Load(%d) after a sweep returned %v (expired: %v)", i, err, expired)
		}
	}
}
