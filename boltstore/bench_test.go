package boltstore_test

import (
	"path/filepath"
	"testing"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/boltstore"
	"github.com/msalcache/msalcache/conformance"
)

// BenchmarkStore's Save is one transaction and one fsync per write;
// SaveParallel's writers share commits (group commit), so its ns/op falls
// well below Save's.
func BenchmarkStore(b *testing.B) {
	conformance.RunStoreBenchmarks(b, func(b *testing.B) driver.Store {
		s, err := boltstore.Open(filepath.Join(b.TempDir(), "bench.db"))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { s.Close() })
		return s
	})
}
