package protect_test

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/boltstore"
	"github.com/msalcache/msalcache/internal/faultnet"
	"github.com/msalcache/msalcache/internal/testserver"
	"github.com/msalcache/msalcache/memstore"
	"github.com/msalcache/msalcache/protect"
	"github.com/msalcache/msalcache/redisstore"
	"github.com/redis/go-redis/v9"
)

// pushRefresh is the refresh interval of the rings in the push tests: so
// long that only a notification from the store can explain a change seen
// within the tests' deadlines.
const pushRefresh = time.Hour

// pushDeadline is how long a test waits for a ring to see another's change.
// Far below pushRefresh; on an idle machine the change arrives in
// milliseconds.
const pushDeadline = 10 * time.Second

// pushStores opens, for each store that pushes changes, one store that two
// rings ("two instances") share.
var pushStores = map[string]func(t *testing.T) driver.Store{
	"memstore": func(t *testing.T) driver.Store { return newMem(t) },
	"boltstore": func(t *testing.T) driver.Store {
		s, err := boltstore.Open(filepath.Join(t.TempDir(), "ring.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	},
	"redis": func(t *testing.T) driver.Store { return newRedisStore(t, testserver.Redis(t).Addr()) },
}

// newRedisStore is a redisstore on the server at addr, closed (with its
// client) when the test ends.
func newRedisStore(t *testing.T, addr string) *redisstore.Store {
	t.Helper()
	s := redisstore.New(redis.NewClient(&redis.Options{Addr: addr}), redisstore.WithCloseClient())
	t.Cleanup(func() { s.Close() })
	return s
}

// pushRing is a ring with the background refresh (and so the watch) on,
// refreshing once an hour.
func pushRing(t *testing.T, store driver.Store) *protect.KeyRing {
	t.Helper()
	r, err := protect.NewKeyRing(ctx, store, testKEK(t, "kek-1", 7),
		protect.WithRefreshInterval(pushRefresh), protect.WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// untilSealsOther protects on r until the blob's key is not key, failing
// the test after pushDeadline. It returns how long that took and how many
// blobs r sealed under key meanwhile.
func untilSealsOther(t *testing.T, r *protect.KeyRing, key string) (time.Duration, int) {
	t.Helper()
	start := time.Now()
	n := 0
	for keyOf(mustProtect(t, r, "x", "k")) == key {
		n++
		if time.Since(start) > pushDeadline {
			t.Fatalf("still sealing under key %s %v after the change (refresh interval %v): the store's notification was not acted on", key, pushDeadline, pushRefresh)
		}
		time.Sleep(time.Millisecond)
	}
	return time.Since(start), n
}

// A Revoke on instance A reaches instance B through the store's
// notification, well within the refresh interval (an hour here), and from
// the moment B seals under another key it never seals under the revoked
// one again; a Rotate on A reaches B the same way.
func TestRevokeAndRotateReachOtherRingsByPush(t *testing.T) {
	for name, open := range pushStores {
		t.Run(name, func(t *testing.T) {
			store := open(t)
			a, b := pushRing(t, store), pushRing(t, store)
			old := keyOf(mustProtect(t, b, "x", "k"))
			if got := keyOf(mustProtect(t, a, "x", "k")); got != old {
				t.Fatalf("a seals under %s, b under %s: one ring expected", got, old)
			}
			sealedOld := mustProtect(t, b, "secret", "k")

			if err := a.Revoke(ctx, old); err != nil {
				t.Fatal(err)
			}
			took, before := untilSealsOther(t, b, old)
			t.Logf("%s: b stopped sealing under the revoked key %v after a's Revoke returned (refresh interval %v); %d blobs sealed under it meanwhile", name, took, pushRefresh, before)

			// From here on, not one blob under the revoked key, from
			// any number of goroutines.
			var after atomic.Int64
			var wg sync.WaitGroup
			for range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range 250 {
						blob, err := b.Protect(ctx, []byte("x"), []byte("k"))
						if err != nil {
							t.Error(err)
							return
						}
						if keyOf(blob) == old {
							after.Add(1)
						}
					}
				}()
			}
			wg.Wait()
			if n := after.Load(); n != 0 {
				t.Fatalf("b sealed %d blobs under the revoked key after it had stopped using it", n)
			}
			if _, err := b.Unprotect(ctx, sealedOld, []byte("k")); !errors.Is(err, protect.ErrKeyRevoked) {
				t.Fatalf("b opens a blob under the revoked key: %v, want ErrKeyRevoked", err)
			}
			if got, want := keyOf(mustProtect(t, b, "x", "k")), keyOf(mustProtect(t, a, "x", "k")); got != want {
				t.Fatalf("b seals under %s, a under %s", got, want)
			}

			// A rotation travels the same way.
			cur := keyOf(mustProtect(t, b, "x", "k"))
			if err := a.Rotate(ctx); err != nil {
				t.Fatal(err)
			}
			took, _ = untilSealsOther(t, b, cur)
			t.Logf("%s: b sealed under the rotated key %v after a's Rotate returned", name, took)
			if got, want := keyOf(mustProtect(t, b, "x", "k")), keyOf(mustProtect(t, a, "x", "k")); got != want {
				t.Fatalf("after the rotation b seals under %s, a under %s", got, want)
			}
		})
	}
}

// noPush hides a store's Watcher, as a store that cannot push would.
type noPush struct{ driver.Store }

// Without a store that pushes, B goes on sealing under a key A revoked
// until its refresh: what TestRevokeAndRotateReachOtherRingsByPush
// measures is the push, not some other reload.
func TestWithoutPushRevokeWaitsForRefresh(t *testing.T) {
	mem := newMem(t)
	a, b := pushRing(t, mem), pushRing(t, noPush{mem})
	old := keyOf(mustProtect(t, b, "x", "k"))
	if err := a.Revoke(ctx, old); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	n := 0
	for time.Since(start) < 500*time.Millisecond {
		if got := keyOf(mustProtect(t, b, "x", "k")); got != old {
			t.Fatalf("b left the revoked key without a notification or a refresh (sealed under %s)", got)
		}
		n++
	}
	t.Logf("without push: b sealed %d blobs under the revoked key in the %v after Revoke (it stops at its refresh, up to %v)", n, time.Since(start).Round(time.Millisecond), pushRefresh)
}

// flakyWatch passes a memstore's notifications on, except while the test
// holds it down: then it reports ChangeWatchDown and drops every change,
// as a Redis subscription that lost its connection would, and
// ChangeWatchUp when it comes back.
type flakyWatch struct {
	*memstore.Store
	down atomic.Bool
	mu   sync.Mutex
	fns  []func(driver.Change)
}

func (s *flakyWatch) Watch(ctx context.Context, fn func(driver.Change)) (func(), error) {
	s.mu.Lock()
	s.fns = append(s.fns, fn)
	s.mu.Unlock()
	return s.Store.Watch(ctx, func(ch driver.Change) {
		if ch.Kind == driver.ChangeKey && s.down.Load() {
			return
		}
		fn(ch)
	})
}

func (s *flakyWatch) set(down bool) {
	s.down.Store(down)
	kind := driver.ChangeWatchUp
	if down {
		kind = driver.ChangeWatchDown
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, fn := range s.fns {
		fn(driver.Change{Kind: kind})
	}
}

// A revocation made while B's watch is down is not heard; B keeps its keys
// (the refresh interval is its fallback) and reloads as soon as the watch
// is up again, since it cannot know what it missed.
func TestPushReloadsWhenWatchComesBack(t *testing.T) {
	mem := newMem(t)
	flaky := &flakyWatch{Store: mem}
	a, b := pushRing(t, mem), pushRing(t, flaky)
	old := keyOf(mustProtect(t, b, "x", "k"))

	flaky.set(true)
	if err := a.Revoke(ctx, old); err != nil {
		t.Fatal(err)
	}
	// Nothing told b: with an hour's refresh interval it still seals
	// under the old key (a deterministic check: nothing else reloads it).
	for range 100 {
		if got := keyOf(mustProtect(t, b, "x", "k")); got != old {
			t.Fatalf("b changed keys (to %s) while its watch was down", got)
		}
	}

	flaky.set(false)
	took, _ := untilSealsOther(t, b, old)
	t.Logf("b reloaded %v after its watch came back", took)
	if got, want := keyOf(mustProtect(t, b, "x", "k")), keyOf(mustProtect(t, a, "x", "k")); got != want {
		t.Fatalf("b seals under %s, a under %s", got, want)
	}
}

// A ring with WithAutoRefresh(false) does no background work, the watch
// included: the caller decides when it reloads.
func TestNoPushWithoutAutoRefresh(t *testing.T) {
	mem := newMem(t)
	a := pushRing(t, mem)
	b := newRing(t, mem, nil) // WithAutoRefresh(false)
	old := keyOf(mustProtect(t, b, "x", "k"))
	if err := a.Revoke(ctx, old); err != nil {
		t.Fatal(err)
	}
	if got := keyOf(mustProtect(t, b, "x", "k")); got != old {
		t.Fatalf("b reloaded on its own (sealed under %s) with WithAutoRefresh(false)", got)
	}
	if err := b.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if got := keyOf(mustProtect(t, b, "x", "k")); got == old {
		t.Fatal("b seals under the revoked key after Refresh")
	}
}

// Close ends the ring's watch: the store's later changes reach no closed
// ring, and the store can be closed after the ring, or before it.
func TestCloseEndsPush(t *testing.T) {
	for _, storeFirst := range []bool{false, true} {
		mem := memstore.New()
		a := pushRing(t, mem)
		b := pushRing(t, mem)
		if storeFirst {
			if err := mem.Close(); err != nil {
				t.Fatal(err)
			}
		} else if err := a.Rotate(ctx); err != nil {
			t.Fatal(err)
		}
		for _, r := range []*protect.KeyRing{a, b} {
			if err := r.Close(); err != nil {
				t.Fatal(err)
			}
			if _, err := r.Protect(ctx, nil, nil); !errors.Is(err, protect.ErrRingClosed) {
				t.Fatalf("Protect after Close: %v", err)
			}
		}
		if err := mem.Close(); err != nil && !errors.Is(err, driver.ErrClosed) {
			t.Fatal(err)
		}
	}
}

// On Redis: when B's subscription is cut (its ACL loses the channel, so
// Redis disconnects it and refuses to subscribe it again), a revocation on
// A goes unheard and B keeps its keys, its refresh interval being the
// fallback; when the channel is granted again, the store subscribes anew,
// reports the watch up, and B reloads at once.
func TestPushRedisWatchDownThenUp(t *testing.T) {
	srv := testserver.Redis(t)
	a := pushRing(t, newRedisStore(t, srv.Addr()))
	// B's subscription passes a wire the test can cut: reset, every
	// subscription fails at its first read, and the watch is down.
	var wire faultnet.Wire
	bStore := redisstore.New(redis.NewClient(&redis.Options{Addr: srv.Addr(), Dialer: wire.DialContext}), redisstore.WithCloseClient())
	t.Cleanup(func() { bStore.Close() })
	b := pushRing(t, bStore)
	old := keyOf(mustProtect(t, b, "x", "k"))

	admin := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { admin.Close() })
	subscribers := func() (n int64) {
		chans, err := admin.PubSubChannels(ctx, "msalcache:changes:*").Result()
		if err != nil {
			t.Fatal(err)
		}
		if len(chans) == 0 {
			return 0
		}
		counts, err := admin.PubSubNumSub(ctx, chans...).Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range counts {
			n += c
		}
		return n
	}
	before := subscribers()
	wire.Set(faultnet.Reset, true)
	deadline := time.Now().Add(pushDeadline)
	for subscribers() >= before {
		if time.Now().After(deadline) {
			t.Fatal("b's subscription survived the cut wire")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := a.Revoke(ctx, old); err != nil {
		t.Fatal(err)
	}
	for range 100 {
		if got := keyOf(mustProtect(t, b, "x", "k")); got != old {
			t.Fatalf("b changed keys (to %s) while its watch was down", got)
		}
	}

	wire.Set(faultnet.Pass, false)
	took, _ := untilSealsOther(t, b, old)
	t.Logf("b reloaded %v after its subscription came back (the store resubscribes within about a second)", took)
}
