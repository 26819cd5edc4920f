package conformance

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/msalcache/msalcache"
)

// testLifetime checks driver.Lifetimer: a key saved with a TTL reports
// what is left of it (never more than the TTL, never less than the TTL
// less the time since the Save and one step of the store's clock), a key
// without one NoExpiry, a rewrite sets the lifetime afresh, and an absent,
// deleted or expired key is ErrNotFound. NoExpiry passed back to Save
// keeps the key without expiry, which is what a copy relies on. A store
// whose Lifetime reports errors.ErrUnsupported (built without what it
// needs, such as memcachestore without its server list) is skipped.
func (h *storeHarness) testLifetime(t *testing.T, s driver.Store) {
	l, ok := s.(driver.Lifetimer)
	if !ok {
		t.Skip("store does not implement driver.Lifetimer")
	}
	ctx := context.Background()
	if _, err := l.Lifetime(ctx, "life-probe"); errors.Is(err, errors.ErrUnsupported) {
		t.Skipf("the store reports Lifetime unsupported as configured: %v", err)
	}
	res := h.resolution()
	lifetime := func(key string) (time.Duration, error) {
		t.Helper()
		d, err := l.Lifetime(ctx, key)
		if err == nil && d <= 0 && d != driver.NoExpiry {
			t.Fatalf("Lifetime(%q) = %v; want a positive duration or NoExpiry", key, d)
		}
		return d, err
	}
	wantAbout := func(key string, ttl time.Duration, saved time.Time) {
		t.Helper()
		d, err := lifetime(key)
		if err != nil {
			t.Fatalf("Lifetime(%q) of a key saved with ttl %v: %v", key, ttl, err)
		}
		low := ttl - time.Since(saved) - res - 200*time.Millisecond
		if d > ttl+res || d < low {
			t.Fatalf("Lifetime(%q) = %v %v after a Save with ttl %v; want between %v and %v", key, d, time.Since(saved).Round(time.Millisecond), ttl, low, ttl+res)
		}
	}
	saved := time.Now()
	v := mustSave(t, s, "life-hour", []byte("x"), driver.NoVersion, time.Hour)
	wantAbout("life-hour", time.Hour, saved)
	mustSave(t, s, "life-none", []byte("x"), driver.NoVersion, 0)
	if d, err := lifetime("life-none"); err != nil || d != driver.NoExpiry {
		t.Fatalf("Lifetime of a key saved without TTL = %v, %v; want NoExpiry", d, err)
	}
	// A copy saves what Lifetime said: NoExpiry must mean no expiry again.
	mustSave(t, s, "life-copy", []byte("x"), driver.NoVersion, driver.NoExpiry)
	if d, err := lifetime("life-copy"); err != nil || d != driver.NoExpiry {
		t.Fatalf("Lifetime of a key saved with ttl NoExpiry = %v, %v; want NoExpiry", d, err)
	}
	saved = time.Now()
	mustSave(t, s, "life-hour", []byte("y"), v, 10*time.Minute)
	wantAbout("life-hour", 10*time.Minute, saved)
	if _, err := lifetime("life-absent"); !errors.Is(err, driver.ErrNotFound) {
		t.Fatalf("Lifetime of an absent key: %v; want ErrNotFound", err)
	}
	if err := s.Delete(ctx, "life-none"); err != nil {
		t.Fatal(err)
	}
	if _, err := lifetime("life-none"); !errors.Is(err, driver.ErrNotFound) {
		t.Fatalf("Lifetime of a deleted key: %v; want ErrNotFound", err)
	}
	ttl := h.shortTTL()
	saved = time.Now()
	mustSave(t, s, "life-short", []byte("x"), driver.NoVersion, ttl)
	h.waitExpired(t, s, "life-short", saved, ttl)
	if _, err := lifetime("life-short"); !errors.Is(err, driver.ErrNotFound) {
		t.Fatalf("Lifetime of an expired key: %v; want ErrNotFound", err)
	}
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := l.Lifetime(canceled, "life-hour"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Lifetime with a canceled context: %v; want an error wrapping context.Canceled", err)
	}
}
