package boltstore_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/msalcache/msalcache/boltstore"
	"github.com/msalcache/msalcache/driver"
)

// The expiry lives in the record: it survives a reopen of the file, and
// the store's clock decides what is left of it.
func TestLifetimeSurvivesReopen(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	clock := boltstore.WithClock(func() time.Time { return now })
	path := filepath.Join(t.TempDir(), "l.db")
	s, err := boltstore.Open(path, clock)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := s.Save(ctx, "k", []byte("v"), driver.NoVersion, time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Save(ctx, "forever", []byte("v"), driver.NoVersion, 0); err != nil {
		t.Fatal(err)
	}
	s.Close()
	now = now.Add(15 * time.Minute)
	s, err = boltstore.Open(path, clock)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if d, err := s.Lifetime(ctx, "k"); err != nil || d != 45*time.Minute {
		t.Fatalf("Lifetime = %v, %v; want 45m", d, err)
	}
	if d, err := s.Lifetime(ctx, "forever"); err != nil || d != driver.NoExpiry {
		t.Fatalf("Lifetime = %v, %v; want NoExpiry", d, err)
	}
	now = now.Add(45 * time.Minute)
	if _, err := s.Lifetime(ctx, "k"); !errors.Is(err, driver.ErrNotFound) {
		t.Fatalf("Lifetime at expiry: %v; want ErrNotFound", err)
	}
	if err := boltstore.PutRaw(ctx, s, "bad", []byte{9, 9}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Lifetime(ctx, "bad"); !errors.Is(err, driver.ErrCorrupt) {
		t.Fatalf("Lifetime of a damaged record: %v; want ErrCorrupt", err)
	}
}

// An expired record reads as absent at once, before the sweeper deletes
// it: bbolt has no expiry of its own, so the store keeps the expiry in the
// record and checks it on every read (this was ExampleWithClock, when the
// clock was a public option).
func TestExpiredRecordAbsentBeforeSweep(t *testing.T) {
	now := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	store, err := boltstore.Open(filepath.Join(t.TempDir(), "msalcache.db"), boltstore.WithClock(func() time.Time { return now }))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	ctx := context.Background()
	if _, err := store.Save(ctx, "app:partition", []byte("token cache"), driver.NoVersion, time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, _, err := store.Load(ctx, "app:partition"); err != nil {
		t.Fatalf("Load within the TTL: %v", err)
	}
	now = now.Add(2 * time.Hour)
	if _, _, err := store.Load(ctx, "app:partition"); !errors.Is(err, driver.ErrNotFound) {
		t.Fatalf("Load after the TTL: %v, want ErrNotFound", err)
	}
}
