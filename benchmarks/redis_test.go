package benchmarks

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/internal/testserver"
	"github.com/msalcache/msalcache/redisstore"
)

// redisPath is one way redisstore gets called. go-redis ignores ctx for
// network I/O unless the client has ContextTimeoutEnabled, so for a ctx
// with a deadline on a default client the store runs the command on a
// goroutine of its own that it can abandon at the deadline; these paths
// put a figure on that hand-off.
type redisPath struct {
	name       string
	ctxTimeout bool // the client has ContextTimeoutEnabled
	deadline   bool // the ctx has a deadline, as every call of the Adapter's
}

var redisPaths = []redisPath{
	{name: "ctx=background"},
	{name: "ctx=deadline", deadline: true},
	{name: "ctx=deadline,ContextTimeoutEnabled", deadline: true, ctxTimeout: true},
}

// open returns a store on a client of its own for path p, and the ctx its
// calls take.
func (p redisPath) open(b *testing.B, srv *testserver.RedisServer) (*redisstore.Store, context.Context) {
	c := redis.NewClient(&redis.Options{Addr: srv.Addr(), ContextTimeoutEnabled: p.ctxTimeout})
	b.Cleanup(func() { c.Close() })
	s := redisstore.New(c)
	b.Cleanup(func() { s.Close() })
	ctx := context.Background()
	if p.deadline {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Hour)
		b.Cleanup(cancel)
	}
	return s, ctx
}

// rawRedis returns a default go-redis client of srv for the raw cases.
func rawRedis(b *testing.B, srv *testserver.RedisServer) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	b.Cleanup(func() { c.Close() })
	return c
}

// storeLoadKey holds the value the Load cases read. redisstore prefixes
// its keys, so it cannot collide with rawKey.
const storeLoadKey = "bench:load"

// seedLoad stores the value the Load cases read, afresh on every
// invocation, so that it never depends on what an earlier one left.
func seedLoad(b *testing.B, c *redis.Client) {
	ctx := context.Background()
	s := redisstore.New(c)
	defer s.Close()
	if err := s.Delete(ctx, storeLoadKey); err != nil {
		b.Fatal(err)
	}
	if _, err := s.Save(ctx, storeLoadKey, rawValue(), driver.NoVersion, time.Hour); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkLoad measures redisstore's Load of a 4 KiB value on each
// redisPath, taking turns with a raw GET of the same size through a
// default go-redis client (the floor) in one loop.
func BenchmarkLoad(b *testing.B) {
	benchRedisPaths(b,
		func(b *testing.B, raw *redis.Client) func() error {
			ctx := context.Background()
			if err := raw.Set(ctx, rawKey, rawValue(), 0).Err(); err != nil {
				b.Fatal(err)
			}
			seedLoad(b, raw)
			return func() error {
				v, err := raw.Get(ctx, rawKey).Bytes()
				return checkRaw(v, err)
			}
		},
		func(_ *testing.B, _ redisPath, s *redisstore.Store, ctx context.Context) func() error {
			return func() error {
				v, _, err := s.Load(ctx, storeLoadKey)
				return checkRaw(v, err)
			}
		})
}

// BenchmarkSave measures redisstore's compare-and-set Save of a 4 KiB
// value with a TTL on each redisPath, each write based on the version of
// the one before (EVALSHA of the CAS script), taking turns with a raw
// SET PX of the same size (the floor) in one loop.
func BenchmarkSave(b *testing.B) {
	val := rawValue()
	benchRedisPaths(b,
		func(_ *testing.B, raw *redis.Client) func() error {
			return func() error { return raw.Set(context.Background(), rawKey, val, time.Hour).Err() }
		},
		func(b *testing.B, p redisPath, s *redisstore.Store, ctx context.Context) func() error {
			key := "bench:save:" + p.name
			if err := s.Delete(ctx, key); err != nil {
				b.Fatal(err)
			}
			v := driver.NoVersion
			return func() error {
				var err error
				v, err = s.Save(ctx, key, val, v, time.Hour)
				return err
			}
		})
}

// benchRedisPaths starts a redis-server for b and runs BenchmarkX/redis:
// the raw call rawOp returns for a default client, taking turns with the
// call storeOp returns for each redisPath's store and ctx.
func benchRedisPaths(b *testing.B,
	rawOp func(b *testing.B, raw *redis.Client) func() error,
	storeOp func(b *testing.B, p redisPath, s *redisstore.Store, ctx context.Context) func() error) {
	srv := testserver.Redis(b)
	b.Run("redis", func(b *testing.B) {
		ops := []interleaved{{"raw", rawOp(b, rawRedis(b, srv))}}
		for _, p := range redisPaths {
			s, ctx := p.open(b, srv)
			ops = append(ops, interleaved{p.name, storeOp(b, p, s, ctx)})
		}
		for _, r := range measureInterleaved(b, ops) {
			record(r)
		}
	})
}

// BenchmarkLoadParallel is BenchmarkLoad's raw GET and Load with a
// deadline on a default client from concurrentPerCPU goroutines per CPU,
// as the calls of a busy web app arrive: the goroutine each such Load
// starts competes with the callers for the CPUs.
func BenchmarkLoadParallel(b *testing.B) {
	srv := testserver.Redis(b)
	b.Run("redis", func(b *testing.B) {
		raw := rawRedis(b, srv)
		ctx := context.Background()
		if err := raw.Set(ctx, rawKey, rawValue(), 0).Err(); err != nil {
			b.Fatal(err)
		}
		seedLoad(b, raw)
		b.Run("raw", func(b *testing.B) {
			record(measureParallel(b, concurrentPerCPU, func() func() error {
				return func() error {
					v, err := raw.Get(ctx, rawKey).Bytes()
					return checkRaw(v, err)
				}
			}))
		})
		b.Run("ctx=deadline", func(b *testing.B) {
			s, pctx := redisPaths[1].open(b, srv)
			record(measureParallel(b, concurrentPerCPU, func() func() error {
				return func() error {
					v, _, err := s.Load(pctx, storeLoadKey)
					return checkRaw(v, err)
				}
			}))
		})
	})
}

// parallelKeys numbers the keys of BenchmarkSaveParallel's goroutines, so
// that each starts a compare-and-set chain of its own from NoVersion.
var parallelKeys atomic.Int64

// BenchmarkSaveParallel is BenchmarkSave's raw SET PX and Save with a
// deadline on a default client from concurrentPerCPU goroutines per CPU,
// each on a key of its own, as many users' token writes arrive at once.
func BenchmarkSaveParallel(b *testing.B) {
	srv := testserver.Redis(b)
	b.Run("redis", func(b *testing.B) {
		val := rawValue()
		b.Run("raw", func(b *testing.B) {
			raw := rawRedis(b, srv)
			ctx := context.Background()
			record(measureParallel(b, concurrentPerCPU, func() func() error {
				key := fmt.Sprintf("bench:raw:%d", parallelKeys.Add(1))
				return func() error { return raw.Set(ctx, key, val, time.Hour).Err() }
			}))
		})
		b.Run("ctx=deadline", func(b *testing.B) {
			s, pctx := redisPaths[1].open(b, srv)
			record(measureParallel(b, concurrentPerCPU, func() func() error {
				key := fmt.Sprintf("bench:save:%d", parallelKeys.Add(1))
				v := driver.NoVersion
				return func() error {
					var err error
					v, err = s.Save(pctx, key, val, v, time.Hour)
					return err
				}
			}))
		})
	})
}
