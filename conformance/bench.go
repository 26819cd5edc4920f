package conformance

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/msalcache/msalcache"
)

// BenchValueSize is the value size RunStoreBenchmarks uses: a user's
// token cache holds a few KiB.
const BenchValueSize = 4 << 10

// RunStoreBenchmarks measures a Store the way the Adapter uses it: Load and
// compare-and-set Save of a BenchValueSize value, one caller at a time and
// from 16 goroutines at once (each on its own key), always with a context
// that has a deadline, as the Adapter passes. newStore is called once per
// sub-benchmark (several times, as the benchmark grows b.N) and may
// return a store over the same data each time: the keys are deleted
// first. Close the store with b.Cleanup.
//
//	func BenchmarkStore(b *testing.B) {
//		conformance.RunStoreBenchmarks(b, func(b *testing.B) driver.Store { ... })
//	}
func RunStoreBenchmarks(b *testing.B, newStore func(b *testing.B) driver.Store) {
	value := make([]byte, BenchValueSize)
	ctx := func(b *testing.B) context.Context {
		ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
		b.Cleanup(cancel)
		return ctx
	}
	b.Run("Load", func(b *testing.B) {
		s, ctx := newStore(b), ctx(b)
		if err := s.Delete(ctx, "bench/load"); err != nil {
			b.Fatal(err)
		}
		if _, err := s.Save(ctx, "bench/load", value, driver.NoVersion, time.Hour); err != nil {
			b.Fatal(err)
		}
		b.SetBytes(BenchValueSize)
		b.ReportAllocs()
		for b.Loop() {
			if got, _, err := s.Load(ctx, "bench/load"); err != nil || len(got) != BenchValueSize {
				b.Fatalf("Load = %d bytes, %v", len(got), err)
			}
		}
	})
	b.Run("Save", func(b *testing.B) {
		s, ctx := newStore(b), ctx(b)
		if err := s.Delete(ctx, "bench/save"); err != nil {
			b.Fatal(err)
		}
		v := driver.NoVersion
		b.SetBytes(BenchValueSize)
		b.ReportAllocs()
		for b.Loop() {
			var err error
			if v, err = s.Save(ctx, "bench/save", value, v, time.Hour); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("SaveParallel", func(b *testing.B) {
		s, ctx := newStore(b), ctx(b)
		var next atomic.Int64
		b.SetBytes(BenchValueSize)
		b.ReportAllocs()
		b.SetParallelism(8) // 16 goroutines on 2 cores
		b.RunParallel(func(pb *testing.PB) {
			key := fmt.Sprintf("bench/save-%d", next.Add(1))
			if err := s.Delete(ctx, key); err != nil {
				b.Error(err)
				return
			}
			v := driver.NoVersion
			for pb.Next() {
				var err error
				if v, err = s.Save(ctx, key, value, v, time.Hour); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}
