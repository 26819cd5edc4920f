package memstore

import (
	"context"
	"testing"
	"time"

	"github.com/msalcache/msalcache"
)

// TestSweepDropsExpiredItems checks that the periodic sweep frees the
// memory of expired items (Load alone hides them but keeps them).
func TestSweepDropsExpiredItems(t *testing.T) {
	ctx := context.Background()
	now := time.Unix(1_700_000_000, 0)
	s := New(WithClock(func() time.Time { return now }))
	defer s.Close()
	save := func(key string, ttl time.Duration) {
		t.Helper()
		if _, err := s.Save(ctx, key, []byte("v"), driver.NoVersion, ttl); err != nil {
			t.Fatal(err)
		}
	}
	save("live", 0)
	for i := range 500 {
		save("expiring-"+string(rune('a'+i%26))+time.Duration(i).String(), time.Second)
	}
	now = now.Add(time.Minute)
	for i := 0; s.counter%1024 != 0; i++ {
		save("filler-"+time.Duration(i).String(), 0)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, it := range s.items {
		if !it.live(now) {
			t.Fatalf("after %d writes the expired item %q is still held", s.counter, k)
		}
	}
	if _, ok := s.items["live"]; !ok {
		t.Fatal("the sweep dropped a live item")
	}
}
