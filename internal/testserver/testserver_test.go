package testserver_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/redis/go-redis/v9"

	"github.com/msalcache/msalcache/internal/testserver"
)

func TestRedisKillRestartPersists(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := testserver.Redis(t, testserver.RedisArgs("--appendonly", "yes"))
	c := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1})
	defer c.Close()

	if err := c.Set(ctx, "k", "v1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	oldPID := srv.PID()
	srv.Kill()
	if err := c.Get(ctx, "k").Err(); err == nil {
		t.Fatal("GET after Kill succeeded")
	}
	srv.Restart(t)
	if srv.PID() == oldPID {
		t.Fatalf("PID unchanged after Restart: %d", oldPID)
	}
	got, err := c.Get(ctx, "k").Result()
	if err != nil || got != "v1" {
		t.Fatalf("GET after Restart = %q, %v; want v1", got, err)
	}
}

func TestRedisPassword(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := testserver.Redis(t, testserver.RedisPassword("s3cret"))
	bad := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer bad.Close()
	if err := bad.Ping(ctx).Err(); err == nil {
		t.Fatal("PING without password succeeded")
	}
	good := redis.NewClient(&redis.Options{Addr: srv.Addr(), Password: srv.Password()})
	defer good.Close()
	if err := good.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	srv.Restart(t) // the readiness probe authenticates too
	if err := good.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
}

func TestRedisFreezeThaw(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := testserver.Redis(t)
	c := redis.NewClient(&redis.Options{Addr: srv.Addr(), ReadTimeout: 200 * time.Millisecond, WriteTimeout: 200 * time.Millisecond, MaxRetries: -1})
	defer c.Close()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}

	srv.Freeze()
	start := time.Now()
	err := c.Get(ctx, "k").Err()
	if err == nil {
		t.Fatal("GET on a frozen server succeeded")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("GET on a frozen server took %v, want about 200ms", d)
	}
	srv.Thaw()
	got, err := c.Get(ctx, "k").Result()
	if err != nil || got != "v" {
		t.Fatalf("GET after Thaw = %q, %v; want v", got, err)
	}
}

func TestRedisCluster(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cl := testserver.RedisCluster(t, 3)
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cl.Addrs()})
	defer c.Close()

	owners := map[int]bool{}
	for i := range 100 {
		key := fmt.Sprintf("key-%d", i)
		if err := c.Set(ctx, key, i, 0).Err(); err != nil {
			t.Fatalf("SET %s: %v", key, err)
		}
		owners[cl.SlotOwner(t, int(c.ClusterKeySlot(ctx, key).Val()))] = true
	}
	if len(owners) != 3 {
		t.Errorf("100 keys landed on %d nodes, want 3", len(owners))
	}
	for i := range 100 {
		key := fmt.Sprintf("key-%d", i)
		got, err := c.Get(ctx, key).Int()
		if err != nil || got != i {
			t.Fatalf("GET %s = %d, %v; want %d", key, got, err, i)
		}
	}

	// Move the slot of key-0 elsewhere: the key is served again, by its new owner.
	slot := int(c.ClusterKeySlot(ctx, "key-0").Val())
	from := cl.SlotOwner(t, slot)
	to := (from + 1) % 3
	cl.MigrateSlot(t, slot, from, to)
	if got := cl.SlotOwner(t, slot); got != to {
		t.Fatalf("slot %d owned by node %d after MigrateSlot, want %d", slot, got, to)
	}
	direct := redis.NewClient(&redis.Options{Addr: cl.Node(to).Addr()})
	defer direct.Close()
	if got, err := direct.Get(ctx, "key-0").Result(); err != nil || got != "0" {
		t.Fatalf("GET key-0 on new owner = %q, %v", got, err)
	}
	if got, err := c.Get(ctx, "key-0").Result(); err != nil || got != "0" {
		t.Fatalf("cluster GET key-0 after migration = %q, %v", got, err)
	}

	// A restarted node keeps nodes.conf and rejoins.
	cl.Node(1).Restart(t)
	cl.WaitHealthy(t)
}

func TestRedisSentinelFailover(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := testserver.RedisSentinel(t)
	c := redis.NewFailoverClient(&redis.FailoverOptions{
		MasterName:    s.MasterName(),
		SentinelAddrs: s.SentinelAddrs(),
	})
	defer c.Close()

	if err := c.Set(ctx, "before", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	oldMaster := s.Master().Addr()
	start := time.Now()
	s.Failover(t)
	t.Logf("failover took %v", time.Since(start))
	if s.Master().Addr() == oldMaster {
		t.Fatal("Master() unchanged after Failover")
	}

	deadline := time.Now().Add(10 * time.Second)
	for {
		err := c.Set(ctx, "after", "2", 0).Err()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("SET after failover: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for k, want := range map[string]string{"before": "1", "after": "2"} {
		if got, err := c.Get(ctx, k).Result(); err != nil || got != want {
			t.Fatalf("GET %s = %q, %v; want %q", k, got, err, want)
		}
	}
	// The write went to the new master.
	direct := redis.NewClient(&redis.Options{Addr: s.Master().Addr()})
	defer direct.Close()
	if got, err := direct.Get(ctx, "after").Result(); err != nil || got != "2" {
		t.Fatalf("GET after on new master = %q, %v", got, err)
	}

	// The old master's redis.conf was rewritten: restarted, it comes back as
	// a replica of the new master and syncs.
	s.Replica().Restart(t)
	replica := redis.NewClient(&redis.Options{Addr: s.Replica().Addr()})
	defer replica.Close()
	deadline = time.Now().Add(10 * time.Second)
	for {
		info, err := replica.Info(ctx, "replication").Result()
		if err == nil && strings.Contains(info, "role:slave") && strings.Contains(info, "master_link_status:up") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("restarted old master is not a synced replica: %v\n%s", err, info)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got, err := replica.Get(ctx, "after").Result(); err != nil || got != "2" {
		t.Fatalf("GET after on restarted replica = %q, %v", got, err)
	}
}

func TestMemcached(t *testing.T) {
	t.Parallel()
	srv := testserver.Memcached(t)
	c := memcache.New(srv.Addr())
	c.Timeout = 200 * time.Millisecond
	if err := c.Set(&memcache.Item{Key: "k", Value: []byte("v")}); err != nil {
		t.Fatal(err)
	}
	it, err := c.Get("k")
	if err != nil || string(it.Value) != "v" {
		t.Fatalf("Get = %v, %v", it, err)
	}

	srv.Freeze()
	if _, err := c.Get("k"); err == nil {
		t.Fatal("Get on a frozen server succeeded")
	}
	srv.Thaw()
	if _, err := c.Get("k"); err != nil {
		t.Fatalf("Get after Thaw: %v", err)
	}

	srv.Kill()
	if _, err := c.Get("k"); err == nil {
		t.Fatal("Get after Kill succeeded")
	}
	srv.Restart(t)
	if _, err := c.Get("k"); !errors.Is(err, memcache.ErrCacheMiss) {
		t.Fatalf("Get after Restart = %v, want a miss (memcached keeps nothing)", err)
	}
}

func TestMemcachedArgs(t *testing.T) {
	t.Parallel()
	srv := testserver.Memcached(t, testserver.MemcachedArgs("-I", "2m"))
	c := memcache.New(srv.Addr())
	big := make([]byte, 1500*1024) // over the default 1 MiB item limit
	if err := c.Set(&memcache.Item{Key: "big", Value: big}); err != nil {
		t.Fatalf("Set 1.5 MiB with -I 2m: %v", err)
	}
}

func TestRequireServers(t *testing.T) {
	for v, want := range map[string]bool{"": false, "0": false, "1": true, "true": true} {
		t.Setenv("MSALCACHE_REQUIRE_SERVERS", v)
		if got := testserver.RequireServers(); got != want {
			t.Errorf("RequireServers() with %q = %v, want %v", v, got, want)
		}
	}
}
