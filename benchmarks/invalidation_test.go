package benchmarks

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/internal/testserver"
	"github.com/msalcache/msalcache/redisstore"
)

// BenchmarkInvalidation times the L1's push channel on Redis and on
// PostgreSQL: how long after instance A starts a write instance B hears of
// it. A and B are two redisstore Stores over two clients of the same
// deployment (single node, Sentinel, Cluster of three masters), or two
// pgstore Stores over two pools of one PostgreSQL (NOTIFY in the write's
// transaction, LISTEN on B's own connection); each op is one compare-and-set
// Save through A, timed until B's watch callback receives that key and
// version, the next op starting only then, so that p50 and p99 (and
// max-ns) are the delay of one message, not of a queue. An Adapter with
// WithL1 on B drops the entry on that callback: this is the delay after
// which B's next silent call cannot be served the old data.
func BenchmarkInvalidation(b *testing.B) {
	deployments := []struct {
		name string
		open func(b *testing.B) func() redis.UniversalClient
	}{
		{"redis-single", func(b *testing.B) func() redis.UniversalClient {
			srv := testserver.Redis(b)
			return func() redis.UniversalClient {
				return redis.NewClient(&redis.Options{Addr: srv.Addr(), ContextTimeoutEnabled: true})
			}
		}},
		{"redis-sentinel", func(b *testing.B) func() redis.UniversalClient {
			s := testserver.RedisSentinel(b)
			return func() redis.UniversalClient {
				return redis.NewFailoverClient(&redis.FailoverOptions{MasterName: s.MasterName(), SentinelAddrs: s.SentinelAddrs(), ContextTimeoutEnabled: true})
			}
		}},
		{"redis-cluster", func(b *testing.B) func() redis.UniversalClient {
			c := testserver.RedisCluster(b, 3)
			c.WaitHealthy(b)
			return func() redis.UniversalClient {
				return redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs(), ContextTimeoutEnabled: true})
			}
		}},
	}
	for _, d := range deployments {
		b.Run(d.name, func(b *testing.B) {
			newClient := d.open(b)
			a, bs := openStore(b, newClient()), openStore(b, newClient())
			b.Run("push", func(b *testing.B) { invalidationBench(b, a, bs) })
		})
	}
	b.Run("postgres", func(b *testing.B) {
		a, bs := openPostgresPair(b)
		b.Run("push", func(b *testing.B) { invalidationBench(b, a, bs) })
	})
}

// watchedStore is a Store whose writes another handle's watch hears.
type watchedStore interface {
	driver.Store
	driver.Watcher
}

func openStore(b *testing.B, c redis.UniversalClient) *redisstore.Store {
	s := redisstore.New(c, redisstore.WithCloseClient())
	b.Cleanup(func() { s.Close() })
	return s
}

func invalidationBench(b *testing.B, a, watched watchedStore) {
	ctx := context.Background()
	heard := make(chan driver.Change, 1024)
	up := make(chan struct{}, 1)
	stop, err := watched.Watch(ctx, func(ch driver.Change) {
		switch ch.Kind {
		case driver.ChangeWatchUp:
			select {
			case up <- struct{}{}:
			default:
			}
		case driver.ChangeKey:
			heard <- ch
		}
	})
	if err != nil {
		b.Fatal(err)
	}
	defer stop()
	select {
	case <-up:
	case <-time.After(10 * time.Second):
		b.Fatal("the watch did not come up within 10 s")
	}
	// Keys spread over the slots, and so over a Cluster's masters.
	keys := make([]string, 64)
	for i := range keys {
		keys[i] = fmt.Sprintf("bench:inv:%d", i)
		_ = a.Delete(ctx, keys[i])
	}
	drain(heard)
	versions := make([]driver.Version, len(keys))
	var worst time.Duration
	i := 0
	r := measure(b, func() error {
		k := i % len(keys)
		i++
		start := time.Now()
		v, err := a.Save(ctx, keys[k], []byte("v"), versions[k], time.Minute)
		if err != nil {
			return err
		}
		versions[k] = v
		deadline := time.After(10 * time.Second)
		for {
			select {
			case ch := <-heard:
				if ch.Key == keys[k] && ch.Version == v {
					worst = max(worst, time.Since(start))
					return nil
				}
			case <-deadline:
				return fmt.Errorf("the write of %s was not heard within 10 s", keys[k])
			}
		}
	})
	r.tokenRequests = -1
	b.ReportMetric(float64(worst.Nanoseconds()), "max-ns")
	record(r)
}

func drain(c chan driver.Change) {
	for {
		select {
		case <-c:
		default:
			return
		}
	}
}
