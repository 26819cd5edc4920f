package redisstore_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/msalcache/msalcache"
)

// Lifetime is Redis's own PTTL, to the millisecond, and survives a
// rewrite that keeps no TTL only as NoExpiry.
func TestLifetimeIsPTTL(t *testing.T) {
	_, c, s := newSingle(t)
	ctx := context.Background()
	if _, err := s.Save(ctx, "k", []byte("v"), driver.NoVersion, 90*24*time.Hour); err != nil {
		t.Fatal(err)
	}
	// Between a PTTL before and one after, whatever the machine's load.
	before, err := c.PTTL(ctx, "msalcache:k").Result()
	if err != nil {
		t.Fatal(err)
	}
	d, err := s.Lifetime(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	after, err := c.PTTL(ctx, "msalcache:k").Result()
	if err != nil {
		t.Fatal(err)
	}
	if d > before || d < after || d%time.Millisecond != 0 {
		t.Fatalf("Lifetime = %v, not between the PTTLs before (%v) and after (%v) to the millisecond", d, before, after)
	}
	if err := c.Persist(ctx, "msalcache:k").Err(); err != nil {
		t.Fatal(err)
	}
	if d, err := s.Lifetime(ctx, "k"); err != nil || d != driver.NoExpiry {
		t.Fatalf("Lifetime after PERSIST = %v, %v; want NoExpiry", d, err)
	}
	if _, err := s.Lifetime(ctx, "absent"); !errors.Is(err, driver.ErrNotFound) {
		t.Fatalf("Lifetime(absent) = %v; want ErrNotFound", err)
	}
}
