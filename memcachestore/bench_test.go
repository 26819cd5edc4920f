package memcachestore_test

import (
	"context"
	"testing"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/msalcache/msalcache"
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

func benchStore(b *testing.B) (*memcachestore.Store, msalcache.Version) {
	srv := testserver.Memcached(b)
	s := memcachestore.New(newClient(b, srv.Addr()))
	b.Cleanup(func() { s.Close() })
	v, err := s.Save(context.Background(), "bench", make([]byte, benchValue), msalcache.NoVersion, 0)
	if err != nil {
		b.Fatal(err)
	}
	return s, v
}

// BenchmarkLoad is one Load of 4 KiB with a ctx that cannot be cancelled,
// which runs inline.
func BenchmarkLoad(b *testing.B) {
	s, _ := benchStore(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.SetBytes(benchValue)
	for b.Loop() {
		if _, _, err := s.Load(ctx, "bench"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLoadCancelable is Load with a cancellable ctx, which costs a
// goroutine and a channel per call.
func BenchmarkLoadCancelable(b *testing.B) {
	s, _ := benchStore(b)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b.ReportAllocs()
	b.SetBytes(benchValue)
	for b.Loop() {
		if _, _, err := s.Load(ctx, "bench"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSave is a compare-and-set Save of 4 KiB over the version the
// previous Save returned: a gets and a cas.
func BenchmarkSave(b *testing.B) {
	s, v := benchStore(b)
	ctx := context.Background()
	value := make([]byte, benchValue)
	b.ReportAllocs()
	b.SetBytes(benchValue)
	for b.Loop() {
		var err error
		if v, err = s.Save(ctx, "bench", value, v, 0); err != nil {
			b.Fatal(err)
		}
	}
}
