package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/conformance"
	"github.com/msalcache/msalcache/internal/testserver"
	"github.com/msalcache/msalcache/redisstore"
	"github.com/redis/go-redis/v9"
)

// newClusterClient returns a client for a cluster, closed when the test
// ends. Its retry budget is bounded so that a dead node fails calls quickly.
func newClusterClient(t testing.TB, cl *testserver.RedisClusterServer) *redis.ClusterClient {
	t.Helper()
	c := redis.NewClusterClient(&redis.ClusterOptions{
		Addrs:      cl.Addrs(),
		MaxRetries: 2,
	})
	t.Cleanup(func() { c.Close() })
	return c
}

// keySlot asks the cluster for the slot of the store's key k.
func keySlot(t *testing.T, c *redis.ClusterClient, k string) int {
	t.Helper()
	slot, err := c.ClusterKeySlot(context.Background(), redisstore.DefaultPrefix+k).Result()
	if err != nil {
		t.Fatal(err)
	}
	return int(slot)
}

// TestCluster runs the conformance suite, the Example and the cluster
// scenarios on one 3-master cluster: starting a cluster costs more than the
// scenarios. The node kill comes last.
func TestCluster(t *testing.T) {
	cl := testserver.RedisCluster(t, 3)
	c := newClusterClient(t, cl)
	s := redisstore.New(c)
	ctx := context.Background()

	t.Run("Conformance", func(t *testing.T) {
		conformance.RunStoreTests(t, func(t *testing.T) driver.Store {
			return redisstore.New(c, redisstore.WithPrefix(freshPrefix()), redisstore.WithMaxValueSize(smallMax))
		}, withWatch(conformance.Capabilities{MaxValueSize: smallMax}, clusterDeployment(t, cl).newClient))
	})

	t.Run("Example", func(t *testing.T) {
		checkExample(t, newCluster(cl.Addrs()))
	})

	t.Run("ListEveryMaster", func(t *testing.T) {
		owners := map[int]bool{}
		var want []string
		for i := range 30 {
			k := fmt.Sprintf("list/%02d", i)
			if _, err := s.Save(ctx, k, []byte("v"), driver.NoVersion, time.Minute); err != nil {
				t.Fatal(err)
			}
			owners[cl.SlotOwner(t, keySlot(t, c, k))] = true
			want = append(want, k)
		}
		if len(owners) != 3 {
			t.Fatalf("the keys landed on %d masters; the test needs all 3", len(owners))
		}
		if got := listAll(t, s, "list/"); !slices.Equal(got, want) {
			t.Fatalf("List = %v\nwant %v", got, want)
		}
	})

	t.Run("SlotMigration", func(t *testing.T) {
		const k = "migrating"
		v, err := s.Save(ctx, k, []byte("before"), driver.NoVersion, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		slot := keySlot(t, c, k)
		from := cl.SlotOwner(t, slot)
		to := (from + 1) % 3
		cl.MigrateSlot(t, slot, from, to)
		if got := cl.SlotOwner(t, slot); got != to {
			t.Fatalf("slot owner after migration = %d, want %d", got, to)
		}
		// The client still maps the slot to the old node: it must follow
		// MOVED for both the GET and the script.
		b, got, err := s.Load(ctx, k)
		if err != nil || got != v || string(b) != "before" {
			t.Fatalf("Load after migration = %q, %#x, %v; want before, %#x", b, got, err, v)
		}
		v2, err := s.Save(ctx, k, []byte("after"), v, time.Minute)
		if err != nil {
			t.Fatalf("CAS after migration = %v", err)
		}
		// A fresh client, which learns the new map first, sees the update.
		fresh := redisstore.New(newClusterClient(t, cl))
		if b, got, err := fresh.Load(ctx, k); err != nil || got != v2 || string(b) != "after" {
			t.Fatalf("fresh client Load = %q, %#x, %v; want after, %#x", b, got, err, v2)
		}
		if ttl := c.PTTL(ctx, redisstore.DefaultPrefix+k).Val(); ttl <= 0 {
			t.Fatalf("PTTL after migration = %v, want the TTL kept", ttl)
		}
	})

	t.Run("NodeKilledAndRestarted", func(t *testing.T) {
		const k = "survivor"
		node := cl.SlotOwner(t, keySlot(t, c, k))
		v, err := s.Save(ctx, k, []byte("v"), driver.NoVersion, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		cl.Node(node).Kill()
		tctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		start := time.Now()
		_, _, err = s.Load(tctx, k)
		cancel()
		if err == nil {
			t.Fatal("Load of a key on a dead master succeeded")
		}
		if el := time.Since(start); el > time.Second {
			t.Fatalf("Load of a key on a dead master took %v", el)
		}
		// No persistence and no replica: the node comes back empty, but it
		// must serve its slots again.
		cl.Node(node).Restart(t)
		cl.WaitHealthy(t)
		healthy := time.Now()
		deadline := healthy.Add(5 * time.Second)
		for {
			_, _, err = s.Load(ctx, k)
			if errors.Is(err, driver.ErrNotFound) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("Load after the node came back = %v, want ErrNotFound (the node restarted empty)", err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Logf("served again %v after the cluster was healthy", time.Since(healthy).Round(time.Millisecond))
		if _, err := s.Save(ctx, k, []byte("v2"), v, time.Hour); !errors.Is(err, driver.ErrConflict) {
			t.Fatalf("CAS with a version the node lost = %v, want ErrConflict", err)
		}
		v2, err := s.Save(ctx, k, []byte("v2"), driver.NoVersion, time.Hour)
		if err != nil {
			t.Fatalf("Save after the node came back = %v", err)
		}
		if b, got, err := s.Load(ctx, k); err != nil || got != v2 || string(b) != "v2" {
			t.Fatalf("Load = %q, %#x, %v", b, got, err)
		}
	})
}
