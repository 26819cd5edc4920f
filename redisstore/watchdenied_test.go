package redisstore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/cache"
	"github.com/redis/go-redis/v9"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/internal/testserver"
	"github.com/msalcache/msalcache/redisstore"
)

// lockedBuffer is a log destination the test reads while the watch
// writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// deniedAdapter is an Adapter with WithL1 over s, and what it logs and
// reports.
type deniedAdapter struct {
	*msalcache.Adapter
	logs   *lockedBuffer
	mu     sync.Mutex
	events []observe.Event
}

func newDeniedAdapter(t *testing.T, s driver.Store) *deniedAdapter {
	t.Helper()
	d := &deniedAdapter{logs: &lockedBuffer{}}
	obs := observe.Func(func(_ context.Context, e observe.Event) {
		if e.Op == observe.OpInvalidation {
			d.mu.Lock()
			d.events = append(d.events, e)
			d.mu.Unlock()
		}
	})
	a, err := msalcache.New(s, msalcache.WithPlaintext(), msalcache.WithL1(msalcache.L1Options{MaxStale: time.Hour}),
		msalcache.WithLogger(slog.New(slog.NewTextHandler(d.logs, &slog.HandlerOptions{Level: slog.LevelInfo}))),
		msalcache.WithObserver(obs))
	if err != nil {
		t.Fatalf("New with an L1 the store will refuse: %v; want the Adapter anyway", err)
	}
	t.Cleanup(func() { a.Close() })
	d.Adapter = a
	return d
}

// waitDenied waits until the Adapter says its L1 is off.
func (d *deniedAdapter) waitDenied(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !d.Stats().L1WatchDenied {
		if time.Now().After(deadline) {
			t.Fatalf("Stats().L1WatchDenied still false; logs:\n%s", d.logs.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// checkReported checks the one warning and the one Event.
func (d *deniedAdapter) checkReported(t *testing.T) {
	t.Helper()
	logs := d.logs.String()
	if n := strings.Count(logs, "level=WARN"); n != 1 || !strings.Contains(logs, "+subscribe") || !strings.Contains(logs, "ACL SETUSER") ||
		!strings.Contains(logs, "msalcache:changes:") || !strings.Contains(logs, "NOPERM") {
		t.Fatalf("want one warning naming +subscribe, the channel and ACL SETUSER; got %d:\n%s", n, logs)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	denied := 0
	for _, e := range d.events {
		if e.Reason == observe.ReasonWatchDenied {
			denied++
			if e.Outcome != observe.OutcomeError {
				t.Fatalf("denial event with outcome %v", e.Outcome)
			}
		}
	}
	if denied != 1 {
		t.Fatalf("%d watch_denied events, want 1: %+v", denied, d.events)
	}
}

// roundTrip writes a partition through the Adapter and reads it back
// twice, as two requests would.
func (d *deniedAdapter) roundTrip(t *testing.T, secret string) {
	t.Helper()
	ctx := context.Background()
	c := &msalCache{}
	if err := d.Replace(ctx, c, cache.ReplaceHints{PartitionKey: l1Partition}); err != nil {
		t.Fatal(err)
	}
	c.data = []byte(fmt.Sprintf(l1Token, secret))
	if err := d.Export(ctx, c, cache.ExportHints{PartitionKey: l1Partition}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		c := &msalCache{}
		if err := d.Replace(ctx, c, cache.ReplaceHints{PartitionKey: l1Partition}); err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf(l1Token, secret); string(c.data) != want {
			t.Fatalf("read %q, want %q", c.data, want)
		}
	}
}

// aclDenials counts the commands Redis refused the user, from ACL LOG.
func aclDenials(t *testing.T, admin *redis.Client, user string) int64 {
	t.Helper()
	entries, err := admin.ACLLog(context.Background(), 100).Result()
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, e := range entries {
		if e.Username == user {
			n += e.Count
		}
	}
	return n
}

// TestWatchDeniedByACL: a Redis user that may publish (so writes work)
// but not SUBSCRIBE gets an Adapter whose L1 says it cannot work: one
// warning naming the permission, Stats.L1WatchDenied, one Event, no
// retry, and every call served from the store.
func TestWatchDeniedByACL(t *testing.T) {
	ctx := context.Background()
	srv, admin, _ := newSingle(t)
	if err := admin.Do(ctx, "ACL", "SETUSER", "app", "on", ">pw", "~*", "&*", "+@all", "-subscribe").Err(); err != nil {
		t.Fatal(err)
	}
	c := newClient(t, &redis.Options{Addr: srv.Addr(), Username: "app", Password: "pw"})
	s := redisstore.New(c)
	t.Cleanup(func() { s.Close() })

	// The store itself: the watch reports the denial, wrapping the
	// sentinel, and does not report it as a plain gap.
	got := make(chan driver.Change, 16)
	stop, err := s.Watch(ctx, func(ch driver.Change) { got <- ch })
	if err != nil {
		t.Fatal(err)
	}
	select {
	case ch := <-got:
		if ch.Kind != driver.ChangeWatchDenied || !errors.Is(ch.Err, driver.ErrWatchDenied) || !strings.Contains(ch.Err.Error(), "+subscribe") {
			t.Fatalf("first change %+v (%v), want ChangeWatchDenied wrapping ErrWatchDenied", ch, ch.Err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the watch never reported the denial")
	}

	d := newDeniedAdapter(t, s)
	d.waitDenied(t)
	before := aclDenials(t, admin, "app")
	d.roundTrip(t, "one")
	d.roundTrip(t, "two")
	st := d.Stats()
	if st.L1Hits != 0 || st.Hits < 4 {
		t.Fatalf("Stats %+v: want every read from the store (L1 off)", st)
	}
	d.checkReported(t)
	// No retry: the watch would try again within a second.
	time.Sleep(2 * time.Second)
	if after := aclDenials(t, admin, "app"); after != before {
		t.Fatalf("the watch kept trying to subscribe: %d refusals, then %d", before, after)
	}
	d.checkReported(t)
	stop()
	// A later watch of the store (d's still runs) is told at once.
	d2 := newDeniedAdapter(t, s)
	d2.waitDenied(t)
	d2.checkReported(t)
	d2.roundTrip(t, "three")
}

// TestWatchDeniedChannel: a user without the store's channel may not
// subscribe to it either (nor write: see TestPublishDeniedByACL); the L1
// says so the same way.
func TestWatchDeniedChannel(t *testing.T) {
	ctx := context.Background()
	srv, admin, _ := newSingle(t)
	if err := admin.Do(ctx, "ACL", "SETUSER", "reader", "on", ">pw", "~*", "resetchannels", "+@all").Err(); err != nil {
		t.Fatal(err)
	}
	c := newClient(t, &redis.Options{Addr: srv.Addr(), Username: "reader", Password: "pw"})
	s := redisstore.New(c)
	t.Cleanup(func() { s.Close() })
	d := newDeniedAdapter(t, s)
	d.waitDenied(t)
	d.checkReported(t)
}

// TestWatchDeniedCluster: on a Cluster, a master refusing the
// subscription ends the whole watch (a watch that misses one master's
// changes is no watch) and the Adapter says so once.
func TestWatchDeniedCluster(t *testing.T) {
	ctx := context.Background()
	cl := testserver.RedisCluster(t, 3)
	cl.WaitHealthy(t)
	for _, addr := range cl.Addrs() {
		admin := newClient(t, &redis.Options{Addr: addr})
		if err := admin.Do(ctx, "ACL", "SETUSER", "app", "on", ">pw", "~*", "&*", "+@all", "-subscribe").Err(); err != nil {
			t.Fatal(err)
		}
	}
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cl.Addrs(), Username: "app", Password: "pw", MaxRetries: 2})
	t.Cleanup(func() { c.Close() })
	s := redisstore.New(c)
	t.Cleanup(func() { s.Close() })
	d := newDeniedAdapter(t, s)
	d.waitDenied(t)
	d.roundTrip(t, "one")
	if st := d.Stats(); st.L1Hits != 0 {
		t.Fatalf("Stats %+v: want every read from the store", st)
	}
	d.checkReported(t)
}
