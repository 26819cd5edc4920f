package boltstore_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/boltstore"
)

// benchValue is the size of a small MSAL token cache (a few tokens).
const benchValue = 4 << 10

func benchStore(b *testing.B) *boltstore.Store {
	b.Helper()
	s, err := boltstore.Open(filepath.Join(b.TempDir(), "bench.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

func BenchmarkLoad(b *testing.B) {
	ctx := context.Background()
	s := benchStore(b)
	if _, err := s.Save(ctx, "key", make([]byte, benchValue), msalcache.NoVersion, 0); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(benchValue)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := s.Load(ctx, "key"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSave is one writer doing compare-and-set updates of one key:
// each Save is a transaction and an fsync.
func BenchmarkSave(b *testing.B) {
	ctx := context.Background()
	s := benchStore(b)
	value := make([]byte, benchValue)
	v := msalcache.NoVersion
	b.SetBytes(benchValue)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if v, err = s.Save(ctx, "key", value, v, 0); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSaveParallel is many writers, each on its own key: group commit
// lets them share fsyncs, so ns/op falls well below BenchmarkSave's.
func BenchmarkSaveParallel(b *testing.B) {
	ctx := context.Background()
	s := benchStore(b)
	var next atomic.Int64
	b.SetBytes(benchValue)
	b.ReportAllocs()
	b.SetParallelism(16)
	b.RunParallel(func(pb *testing.PB) {
		key := fmt.Sprintf("key-%d", next.Add(1))
		value := make([]byte, benchValue)
		v := msalcache.NoVersion
		for pb.Next() {
			var err error
			if v, err = s.Save(ctx, key, value, v, 0); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
