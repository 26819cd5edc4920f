package redisstore_test

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/cache"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/redisstore"
)

// l1Partition is the partition the L1 test writes: MSAL's app token cache
// of client c in tenant t, holding one access token whose secret varies.
const (
	l1Partition = "c_t_AppTokenCache"
	l1Token     = `{"AccessToken":{"at":{"client_id":"c","realm":"t","expires_on":"1900000000","secret":"%s"}}}`
)

// msalCache stands in for MSAL's in-memory cache behind the hook.
type msalCache struct {
	mu   sync.Mutex
	data []byte
}

func (c *msalCache) Unmarshal(b []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.data = bytes.Clone(b)
	return nil
}

func (c *msalCache) Marshal() ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Clone(c.data), nil
}

// testAdaptersShareThroughL1 runs two Adapters with WithL1 over two
// handles of one deployment, as two instances of a farm. MaxStale is an
// hour, so only the push can make b drop what its L1 holds: a write
// through a, and a Remove, reach b's next Replace once the change reached
// b's store.
func testAdaptersShareThroughL1(t *testing.T, d deployment) {
	ctx := context.Background()
	sa, sb := d.handles(t)
	newAdapter := func(s *redisstore.Store) *msalcache.Adapter {
		a, err := msalcache.New(s, msalcache.WithPlaintext(), msalcache.WithL1(msalcache.L1Options{MaxStale: time.Hour}))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { a.Close() })
		return a
	}
	a, b := newAdapter(sa), newAdapter(sb)
	// A second watch of b's store, to know when a change reached it. Both
	// share the one subscription and are told together.
	rec, _ := watch(t, sb)
	redisstore.WatchBarrier(sb)
	key := a.StoreKey(l1Partition)

	write := func(secret string) driver.Version {
		t.Helper()
		c := &msalCache{}
		if err := a.Replace(ctx, c, cache.ReplaceHints{PartitionKey: l1Partition}); err != nil {
			t.Fatal(err)
		}
		c.data = []byte(fmt.Sprintf(l1Token, secret))
		if err := a.Export(ctx, c, cache.ExportHints{PartitionKey: l1Partition}); err != nil {
			t.Fatal(err)
		}
		v, err := sa.Version(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	// read hands b's partition to a new MSAL client, as the
	// client-per-request pattern does.
	read := func() string {
		t.Helper()
		c := &msalCache{}
		if err := b.Replace(ctx, c, cache.ReplaceHints{PartitionKey: l1Partition}); err != nil {
			t.Fatal(err)
		}
		return string(c.data)
	}
	// arrived waits until b's store was told that key changed to v, and
	// until every watcher of it (b's L1 among them) was.
	arrived := func(from int, v driver.Version) int {
		t.Helper()
		i := rec.waitFrom(t, from, fmt.Sprintf("the change of %s to %x on b", key, uint64(v)), isKey(key, v))
		redisstore.WatchBarrier(sb)
		return i
	}

	v := write("one")
	i := arrived(0, v)
	if got, want := read(), fmt.Sprintf(l1Token, "one"); got != want {
		t.Fatalf("b read %q, want %q", got, want)
	}
	hits := b.Stats().L1Hits
	if got := read(); got != fmt.Sprintf(l1Token, "one") {
		t.Fatalf("b read %q from its L1", got)
	}
	if b.Stats().L1Hits != hits+1 {
		t.Fatalf("b's second read was not served by its L1 (L1Hits %d, was %d): the test would prove nothing", b.Stats().L1Hits, hits)
	}

	v = write("two")
	i = arrived(i+1, v)
	if got, want := read(), fmt.Sprintf(l1Token, "two"); got != want {
		t.Fatalf("after a wrote and the push reached b, b served %q, want %q", got, want)
	}
	if got := read(); got != fmt.Sprintf(l1Token, "two") {
		t.Fatalf("b read %q", got)
	}

	// A sign-out on a: b serves nothing once the removal reached it. The
	// removal is a record (see msalcache.Adapter.Remove): its version is
	// what b hears.
	if err := a.Remove(ctx, l1Partition); err != nil {
		t.Fatal(err)
	}
	removed, err := sa.Version(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	arrived(i+1, removed)
	if got := read(); got != "{}" && got != "" {
		t.Fatalf("after Remove on a reached b, b served %q", got)
	}
}
