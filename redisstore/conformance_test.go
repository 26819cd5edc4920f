package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/conformance"
	"github.com/msalcache/msalcache/internal/testserver"
	"github.com/msalcache/msalcache/redisstore"
	"github.com/redis/go-redis/v9"
)

// prefixes hands every conformance subtest a prefix of its own, so that
// subtests sharing one server start from an empty store.
var prefixes atomic.Int64

func freshPrefix() string { return fmt.Sprintf("conf%d:", prefixes.Add(1)) }

// The LargeValue subtest builds and compares values of exactly the limit,
// which under -race costs about a second per 16 MiB: the suite runs with
// smaller limits, and TestDefaultMaxValueSize saves one of the default size.
const (
	singleMax = 8 << 20
	smallMax  = 1 << 20
)

// withRaw adds to caps what the CorruptRecord subtest needs: a way to plant
// raw values, and the damaged values of this store's layout.
func withRaw(caps conformance.Capabilities) conformance.Capabilities {
	caps.PutRaw = redisstore.PutRaw
	caps.CorruptRecords = redisstore.CorruptRecords
	return caps
}

// withWatch adds to caps what the Watch subtest needs: a second handle on
// a store's keys, through a client of its own from newClient (another
// instance of the application), and a way to cut the subscription.
func withWatch(caps conformance.Capabilities, newClient func(t testing.TB) redis.UniversalClient) conformance.Capabilities {
	caps.OpenHandle = func(t *testing.T, s driver.Store) driver.Store {
		return redisstore.New(newClient(t), redisstore.WithPrefix(redisstore.Prefix(s)), redisstore.WithMaxValueSize(caps.MaxValueSize))
	}
	caps.BreakWatch = func(t *testing.T, s driver.Store) {
		killPubSub(t, redisstore.Client(s))
	}
	return caps
}

func TestConformanceSingle(t *testing.T) {
	d := singleDeployment(t)
	c := d.newClient(t)
	conformance.RunStoreTests(t, func(t *testing.T) driver.Store {
		return redisstore.New(c, redisstore.WithPrefix(freshPrefix()), redisstore.WithMaxValueSize(singleMax))
	}, withWatch(withRaw(conformance.Capabilities{MaxValueSize: singleMax}), d.newClient))
}

func TestDefaultMaxValueSize(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 64 MiB through Redis")
	}
	ctx := context.Background()
	_, _, s := newSingle(t)
	big := make([]byte, redisstore.DefaultMaxValueSize)
	big[0], big[len(big)-1] = 1, 2
	v, err := s.Save(ctx, "big", big, driver.NoVersion, time.Minute)
	if err != nil {
		t.Fatalf("Save of DefaultMaxValueSize bytes = %v", err)
	}
	got, gv, err := s.Load(ctx, "big")
	if err != nil || gv != v || len(got) != len(big) || got[0] != 1 || got[len(got)-1] != 2 {
		t.Fatalf("Load = %d bytes, %#x, %v; want %d bytes, %#x", len(got), gv, err, len(big), v)
	}
	if _, err := s.Save(ctx, "big", append(big, 0), v, time.Minute); !errors.Is(err, driver.ErrTooLarge) {
		t.Fatalf("Save of DefaultMaxValueSize+1 bytes = %v, want ErrTooLarge", err)
	}
}

// newFailoverClient returns a Sentinel-aware client for setup, closed when
// the test ends.
func newFailoverClient(t testing.TB, setup *testserver.SentinelSetup) *redis.Client {
	t.Helper()
	c := redis.NewFailoverClient(&redis.FailoverOptions{
		MasterName:    setup.MasterName(),
		SentinelAddrs: setup.SentinelAddrs(),
	})
	t.Cleanup(func() { c.Close() })
	return c
}

// TestSentinel runs the suite and the Example through a Sentinel failover
// client, then fails the master over and checks that the store follows,
// versions intact. One setup serves every subtest: starting it takes
// seconds.
func TestSentinel(t *testing.T) {
	setup := testserver.RedisSentinel(t)
	c := newFailoverClient(t, setup)
	t.Run("Conformance", func(t *testing.T) {
		conformance.RunStoreTests(t, func(t *testing.T) driver.Store {
			return redisstore.New(c, redisstore.WithPrefix(freshPrefix()), redisstore.WithMaxValueSize(smallMax))
		}, withWatch(withRaw(conformance.Capabilities{MaxValueSize: smallMax}), sentinelDeployment(setup).newClient))
	})
	t.Run("Example", func(t *testing.T) {
		checkExample(t, newSentinel(setup.MasterName(), setup.SentinelAddrs()))
	})
	t.Run("Watch", func(t *testing.T) { runWatchTests(t, sentinelDeployment(setup)) })
	t.Run("WatchFailover", func(t *testing.T) { testWatchFailover(t, setup) })
	t.Run("Failover", func(t *testing.T) {
		ctx := context.Background()
		prefix := freshPrefix()
		s := redisstore.New(c, redisstore.WithPrefix(prefix))
		v, err := s.Save(ctx, "k", []byte("before"), driver.NoVersion, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		// Replication is asynchronous: without WAIT the promoted replica
		// might lack the write, which the package documents.
		if n, err := c.Wait(ctx, 1, 5*time.Second).Result(); err != nil || n != 1 {
			t.Fatalf("WAIT 1 = %d, %v", n, err)
		}
		oldMaster := setup.Master().Addr()
		setup.Failover(t)
		if setup.Master().Addr() == oldMaster {
			t.Fatal("the master did not change")
		}
		// The client learns the new master from the sentinels; until then a
		// write may hit the demoted master (READONLY, retried by go-redis).
		deadline := time.Now().Add(10 * time.Second)
		var v2 driver.Version
		for {
			b, got, err := s.Load(ctx, "k")
			if err == nil && (got != v || string(b) != "before") {
				t.Fatalf("Load after failover = %q, %#x; want before, %#x", b, got, v)
			}
			if err == nil {
				v2, err = s.Save(ctx, "k", []byte("after"), v, time.Hour)
				if err == nil {
					break
				}
			}
			if errors.Is(err, driver.ErrConflict) || time.Now().After(deadline) {
				t.Fatalf("CAS after failover = %v", err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		master := newClient(t, &redis.Options{Addr: setup.Master().Addr()})
		b, got, err := redisstore.New(master, redisstore.WithPrefix(prefix)).Load(ctx, "k")
		if err != nil || got != v2 || string(b) != "after" {
			t.Fatalf("the new master holds %q, %#x, %v; want after, %#x", b, got, err, v2)
		}
	})
}

// checkExample runs what Example does with client c, built by one of the
// Example's constructors, against a real deployment.
func checkExample(t *testing.T, c redis.UniversalClient) {
	t.Helper()
	t.Cleanup(func() { c.Close() })
	ctx := context.Background()
	store := redisstore.New(c, redisstore.WithPrefix("myapp:"))
	got, err := saveAndUpdate(ctx, store)
	if err != nil || got != "second" {
		t.Errorf("saveAndUpdate = %q, %v; want second", got, err)
	}
	if err := store.Close(); err != nil {
		t.Errorf("Close = %v", err)
	}
	if err := c.Ping(ctx).Err(); err != nil {
		t.Errorf("the client was closed with the store: %v", err)
	}
}

func TestExampleSingleNode(t *testing.T) {
	checkExample(t, newSingleNode(testserver.Redis(t).Addr()))
}
