package memstore_test

import (
	"testing"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/conformance"
	"github.com/msalcache/msalcache/memstore"
)

func BenchmarkStore(b *testing.B) {
	conformance.RunStoreBenchmarks(b, func(b *testing.B) driver.Store {
		s := memstore.New()
		b.Cleanup(func() { s.Close() })
		return s
	})
}
