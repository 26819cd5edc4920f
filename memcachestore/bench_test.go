package memcachestore_test

import (
	"context"
	"testing"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/conformance"
	"github.com/msalcache/msalcache/internal/testserver"
	"github.com/msalcache/msalcache/memcachestore"
)

// benchValue is the size of a typical serialized MSAL partition.
const benchValue = 4 << 10

// BenchmarkRawGet is the floor: one gomemcache Get of 4 KiB over loopback.
func BenchmarkRawGet(b *testing.B) {
	srv := testserver.Memcached(b)
	c := newClient(b, srv.Addr())
	if err := c.Set(&memcache.Item{Key: "raw", Value: make([]byte, benchValue)}); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(benchValue)
	for b.Loop() {
		if _, err := c.Get("raw"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRawCAS is the floor for a compare-and-set: a gomemcache Get and
// CompareAndSwap of 4 KiB.
func BenchmarkRawCAS(b *testing.B) {
	srv := testserver.Memcached(b)
	c := newClient(b, srv.Addr())
	if err := c.Set(&memcache.Item{Key: "raw", Value: make([]byte, benchValue)}); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(benchValue)
	for b.Loop() {
		it, err := c.Get("raw")
		if err != nil {
			b.Fatal(err)
		}
		if err := c.CompareAndSwap(it); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkStore runs the shared store benchmarks: Load and Save with a
// deadline, as the Adapter calls them (a goroutine per call, since
// gomemcache cannot see ctx). Compare with RawGet and RawCAS.
func BenchmarkStore(b *testing.B) {
	srv := testserver.Memcached(b)
	c := newClient(b, srv.Addr())
	conformance.RunStoreBenchmarks(b, func(b *testing.B) driver.Store {
		s := memcachestore.New(c, memcachestore.WithPrefix(uniquePrefix("bench:")))
		b.Cleanup(func() { s.Close() })
		return s
	})
}

// BenchmarkLoadInline is Load with a ctx that can never be done, which
// runs inline: the cost of watching ctx is BenchmarkStore/Load minus this.
func BenchmarkLoadInline(b *testing.B) {
	srv := testserver.Memcached(b)
	s := memcachestore.New(newClient(b, srv.Addr()))
	b.Cleanup(func() { s.Close() })
	ctx := context.Background()
	if _, err := s.Save(ctx, "bench", make([]byte, benchValue), driver.NoVersion, 0); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(benchValue)
	for b.Loop() {
		if _, _, err := s.Load(ctx, "bench"); err != nil {
			b.Fatal(err)
		}
	}
}
