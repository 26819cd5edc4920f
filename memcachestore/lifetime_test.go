package memcachestore_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/internal/testserver"
	"github.com/msalcache/msalcache/memcachestore"
)

// Lifetime asks the server that holds each key: over two servers every
// key reports the TTL it was saved with, to the second.
func TestLifetimeSharded(t *testing.T) {
	t.Parallel()
	a, b := testserver.Memcached(t), testserver.Memcached(t)
	var ss memcache.ServerList
	if err := ss.SetServers(a.Addr(), b.Addr()); err != nil {
		t.Fatal(err)
	}
	c := memcache.NewFromSelector(&ss)
	c.Timeout = testTimeout
	t.Cleanup(func() { c.Close() })
	s := memcachestore.New(c, memcachestore.WithPrefix(uniquePrefix("life:")), memcachestore.WithServerList(&ss))
	defer s.Close()
	ctx := context.Background()
	for i := range 20 {
		key := fmt.Sprintf("k%d", i)
		ttl := time.Duration(i+1) * time.Hour
		if _, err := s.Save(ctx, key, []byte("v"), driver.NoVersion, ttl); err != nil {
			t.Fatal(err)
		}
		d, err := s.Lifetime(ctx, key)
		if err != nil {
			t.Fatalf("Lifetime(%s): %v", key, err)
		}
		if d > ttl+time.Second || d < ttl-2*time.Second {
			t.Fatalf("Lifetime(%s) = %v; want within 2s of %v (Save rounds up to whole seconds)", key, d, ttl)
		}
	}
	if _, err := s.Save(ctx, "forever", []byte("v"), driver.NoVersion, 0); err != nil {
		t.Fatal(err)
	}
	if d, err := s.Lifetime(ctx, "forever"); err != nil || d != driver.NoExpiry {
		t.Fatalf("Lifetime(forever) = %v, %v; want NoExpiry", d, err)
	}
	if _, err := s.Lifetime(ctx, "absent"); !errors.Is(err, driver.ErrNotFound) {
		t.Fatalf("Lifetime(absent) = %v; want ErrNotFound", err)
	}
	// More than 30 days is sent as an absolute time: still a duration here.
	if _, err := s.Save(ctx, "long", []byte("v"), driver.NoVersion, 90*24*time.Hour); err != nil {
		t.Fatal(err)
	}
	if d, err := s.Lifetime(ctx, "long"); err != nil || d > 90*24*time.Hour+time.Second || d < 90*24*time.Hour-3*time.Second {
		t.Fatalf("Lifetime(long) = %v, %v; want about 90 days", d, err)
	}
}

func TestLifetimeWithoutServerList(t *testing.T) {
	t.Parallel()
	srv := testserver.Memcached(t)
	s := memcachestore.New(newClient(t, srv.Addr()))
	defer s.Close()
	_, err := s.Lifetime(context.Background(), "k")
	if !errors.Is(err, memcachestore.ErrNoServerList) || !errors.Is(err, errors.ErrUnsupported) {
		t.Fatalf("Lifetime without WithServerList: %v; want ErrNoServerList", err)
	}
}

// Shard names the server of each key with the server list, so that the
// Adapter's breaker tells two servers apart; without it, one shard.
func TestShard(t *testing.T) {
	var servers memcache.ServerList
	if err := servers.SetServers("127.0.0.1:1", "127.0.0.1:2"); err != nil {
		t.Fatal(err)
	}
	s := memcachestore.New(memcache.NewFromSelector(&servers), memcachestore.WithServerList(&servers))
	seen := map[string]bool{}
	for i := range 64 {
		k := fmt.Sprintf("tc/default/key%d", i)
		sh := s.Shard(k)
		if sh != "127.0.0.1:1" && sh != "127.0.0.1:2" {
			t.Fatalf("Shard(%q) = %q, want one of the two servers", k, sh)
		}
		if s.Shard(k) != sh {
			t.Fatalf("Shard(%q) changed between two calls", k)
		}
		seen[sh] = true
	}
	if len(seen) != 2 {
		t.Fatalf("64 keys all on %v", seen)
	}
	if sh := memcachestore.New(memcache.New("127.0.0.1:1")).Shard("k"); sh != "" {
		t.Fatalf("Shard without a server list = %q, want \"\"", sh)
	}
}
