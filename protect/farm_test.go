package protect_test

import (
	"testing"
	"time"

	"github.com/msalcache/msalcache/internal/ringadmin"
	"github.com/msalcache/msalcache/protect"
)

// Three servers whose clocks are 5 minutes behind, right, and 5 minutes
// ahead run for more than three key lifetimes. At every step each one
// seals a blob and every one opens every blob, and no server ever meets a
// key it has not loaded at a regular refresh: scheduled keys reach every
// server a day before anyone encrypts with them.
func TestSkewedClocksThreeLifetimes(t *testing.T) {
	clock := newFakeClock()
	start := clock.Now()
	mem := newMem(t)
	// The server ahead starts first: the key it mints must count as active
	// on the server behind, or that one would mint a second key.
	offsets := []time.Duration{protect.DefaultClockSkew, 0, -protect.DefaultClockSkew}
	type server struct {
		ring        *protect.KeyRing
		store       *faultyStore
		now         func() time.Time
		nextRefresh time.Time
		refreshes   int64
	}
	var farm []*server
	for _, off := range offsets {
		s := &server{store: &faultyStore{Store: mem}, now: clock.offset(off)}
		s.ring = newRing(t, s.store, s.now)
		s.refreshes = 1 // NewKeyRing loads once
		s.nextRefresh = s.now().Add(protect.DefaultRefreshInterval)
		farm = append(farm, s)
	}

	const step = 13 * time.Minute // not a divisor of an hour: steps land all around each activation
	end := start.Add(3*protect.DefaultKeyLifetime + 5*24*time.Hour)
	var kept [][]byte // a sample of blobs, checked again at the end
	plain := []string{"ahead", "on time", "behind"}
	for n := 0; clock.Now().Before(end); n++ {
		clock.Add(step)
		for _, s := range farm {
			if !s.now().Before(s.nextRefresh) {
				if err := s.ring.Refresh(ctx); err != nil {
					t.Fatal(err)
				}
				s.refreshes++
				s.nextRefresh = s.now().Add(protect.DefaultRefreshInterval)
			}
		}
		blobs := make([][]byte, len(farm))
		for i, s := range farm {
			blobs[i] = mustProtect(t, s.ring, plain[i], "k")
		}
		for _, s := range farm {
			for i, b := range blobs {
				mustOpen(t, s.ring, b, "k", plain[i])
			}
		}
		if n%50 == 0 { // about one step in eleven hours
			kept = append(kept, blobs...)
		}
	}
	for _, s := range farm {
		if got := s.store.ringLoads.Load(); got != s.refreshes {
			t.Errorf("a server loaded the ring %d times in %d refreshes: it met a key it did not know", got, s.refreshes)
		}
	}
	for _, s := range farm {
		for i, b := range kept {
			mustOpen(t, s.ring, b, "k", plain[i%3])
		}
	}

	ks, err := ringadmin.Keys(ctx, farm[1].ring)
	if err != nil {
		t.Fatal(err)
	}
	// One key minted at start, then one per lifetime, each written ahead.
	if len(ks) != 4 {
		t.Fatalf("%d keys after three lifetimes, want 4: %+v", len(ks), ks)
	}
	for i := 1; i < len(ks); i++ {
		if !ks[i].Activation.Equal(ks[i-1].Expiration) {
			t.Errorf("key %d activates at %v, its predecessor expires at %v", i, ks[i].Activation, ks[i-1].Expiration)
		}
		if d := ks[i].Activation.Sub(ks[i].Created); d < protect.DefaultActivationDelay {
			t.Errorf("key %d was written only %v before it activated", i, d)
		}
	}
}
