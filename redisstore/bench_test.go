package redisstore_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/conformance"
	"github.com/msalcache/msalcache/internal/testserver"
	"github.com/msalcache/msalcache/redisstore"
	"github.com/redis/go-redis/v9"
)

// benchValueSize is the size of a typical MSAL cache partition holding an
// app token, or a user's tokens, after encryption.
const benchValueSize = 4 << 10

// benchServer starts a redis-server for a benchmark and returns a default
// client for it.
func benchServer(b *testing.B) *redis.Client {
	b.Helper()
	return benchClient(b, testserver.Redis(b), false)
}

func benchClient(b *testing.B, srv *testserver.RedisServer, ctxTimeout bool) *redis.Client {
	b.Helper()
	return newClient(b, &redis.Options{Addr: srv.Addr(), ContextTimeoutEnabled: ctxTimeout})
}

// benchPath is one way a store gets called.
type benchPath struct {
	name       string
	ctxTimeout bool // the client has ContextTimeoutEnabled
	deadline   bool // the ctx has a deadline
}

// benchPaths are the ways a store is called: without a deadline (direct
// call); with one, as the Adapter always does, on a default client (the
// store watches ctx on a goroutine of its own); and with one on a
// ContextTimeoutEnabled client (direct call, go-redis enforces it).
var benchPaths = []benchPath{
	{name: "ctx=background"},
	{name: "ctx=deadline", deadline: true},
	{name: "ctx=deadline/ContextTimeoutEnabled", deadline: true, ctxTimeout: true},
}

func (p benchPath) ctx() (context.Context, context.CancelFunc) {
	if p.deadline {
		return context.WithTimeout(context.Background(), time.Hour)
	}
	return context.Background(), func() {}
}

// BenchmarkRawGET is the floor for Load: a GET of a 4 KiB value through
// the same go-redis client, over loopback.
func BenchmarkRawGET(b *testing.B) {
	c := benchServer(b)
	ctx := context.Background()
	val := bytes.Repeat([]byte("x"), benchValueSize)
	if err := c.Set(ctx, "raw", val, 0).Err(); err != nil {
		b.Fatal(err)
	}
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(benchValueSize)
		for b.Loop() {
			if got, err := c.Get(ctx, "raw").Bytes(); err != nil || len(got) != benchValueSize {
				b.Fatal(len(got), err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(benchValueSize)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if got, err := c.Get(ctx, "raw").Bytes(); err != nil || len(got) != benchValueSize {
					b.Error(len(got), err)
					return
				}
			}
		})
	})
}

// BenchmarkRawSET is the floor for Save: a SET PX of a 4 KiB value.
func BenchmarkRawSET(b *testing.B) {
	c := benchServer(b)
	ctx := context.Background()
	val := bytes.Repeat([]byte("x"), benchValueSize)
	b.ReportAllocs()
	b.SetBytes(benchValueSize)
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(benchValueSize)
		for b.Loop() {
			if err := c.Set(ctx, "raw", val, time.Hour).Err(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkLoad measures Store.Load of a 4 KiB value: one GET plus the
// record decoding and, with a deadline, the goroutine that watches ctx.
func BenchmarkLoad(b *testing.B) {
	srv := testserver.Redis(b)
	s := redisstore.New(benchClient(b, srv, false))
	val := bytes.Repeat([]byte("x"), benchValueSize)
	if _, err := s.Save(context.Background(), "load", val, msalcache.NoVersion, time.Hour); err != nil {
		b.Fatal(err)
	}
	for _, bc := range benchPaths {
		b.Run(bc.name, func(b *testing.B) {
			s := redisstore.New(benchClient(b, srv, bc.ctxTimeout))
			ctx, cancel := bc.ctx()
			defer cancel()
			b.ReportAllocs()
			b.SetBytes(benchValueSize)
			for b.Loop() {
				if got, _, err := s.Load(ctx, "load"); err != nil || len(got) != benchValueSize {
					b.Fatal(len(got), err)
				}
			}
		})
	}
	b.Run("ctx=deadline/parallel", func(b *testing.B) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		b.ReportAllocs()
		b.SetBytes(benchValueSize)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if got, _, err := s.Load(ctx, "load"); err != nil || len(got) != benchValueSize {
					b.Error(len(got), err)
					return
				}
			}
		})
	})
}

// BenchmarkSave measures a compare-and-set of a 4 KiB value with a TTL,
// each write based on the version of the previous one (EVALSHA of the CAS
// script).
func BenchmarkSave(b *testing.B) {
	srv := testserver.Redis(b)
	val := bytes.Repeat([]byte("x"), benchValueSize)
	for _, bc := range benchPaths {
		b.Run(bc.name, func(b *testing.B) {
			s := redisstore.New(benchClient(b, srv, bc.ctxTimeout))
			ctx, cancel := bc.ctx()
			defer cancel()
			if err := s.Delete(ctx, "save"); err != nil {
				b.Fatal(err)
			}
			v := msalcache.NoVersion
			b.ReportAllocs()
			b.SetBytes(benchValueSize)
			for b.Loop() {
				var err error
				if v, err = s.Save(ctx, "save", val, v, time.Hour); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkLoadPaths interleaves a raw GET with a Load on each path in the
// same loop and reports the mean of each (raw-ns, and one metric per path),
// so that their differences survive a machine whose load drifts during the
// run, which separate benchmarks do not. ns/op is the sum of all four.
func BenchmarkLoadPaths(b *testing.B) {
	srv := testserver.Redis(b)
	raw := benchClient(b, srv, false)
	val := bytes.Repeat([]byte("x"), benchValueSize)
	if _, err := redisstore.New(raw).Save(context.Background(), "load", val, msalcache.NoVersion, time.Hour); err != nil {
		b.Fatal(err)
	}
	if err := raw.Set(context.Background(), "raw", val, 0).Err(); err != nil {
		b.Fatal(err)
	}
	stores := make([]*redisstore.Store, len(benchPaths))
	ctxs := make([]context.Context, len(benchPaths))
	for i, p := range benchPaths {
		stores[i] = redisstore.New(benchClient(b, srv, p.ctxTimeout))
		var cancel context.CancelFunc
		ctxs[i], cancel = p.ctx()
		defer cancel()
	}
	spent := make([]time.Duration, len(benchPaths)+1)
	b.ReportAllocs()
	for b.Loop() {
		t0 := time.Now()
		if got, err := raw.Get(context.Background(), "raw").Bytes(); err != nil || len(got) != benchValueSize {
			b.Fatal(len(got), err)
		}
		spent[0] += time.Since(t0)
		for i, s := range stores {
			t0 := time.Now()
			if got, _, err := s.Load(ctxs[i], "load"); err != nil || len(got) != benchValueSize {
				b.Fatal(len(got), err)
			}
			spent[i+1] += time.Since(t0)
		}
	}
	b.ReportMetric(float64(spent[0].Nanoseconds())/float64(b.N), "raw-ns")
	for i, p := range benchPaths {
		b.ReportMetric(float64(spent[i+1].Nanoseconds())/float64(b.N), strings.ReplaceAll(p.name, "/", ",")+"-ns")
	}
}

// BenchmarkStore runs the shared store benchmarks (Load and Save with a
// deadline, as the Adapter calls them) on a default client, whose I/O does
// not see ctx, so each call watches ctx on a goroutine.
func BenchmarkStore(b *testing.B) {
	srv := testserver.Redis(b)
	conformance.RunStoreBenchmarks(b, func(b *testing.B) msalcache.Store {
		return redisstore.New(benchClient(b, srv, false))
	})
}
