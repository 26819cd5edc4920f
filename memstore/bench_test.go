package memstore_test

import (
	"context"
	"testing"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/memstore"
)

// benchValue is the size of a small MSAL token cache (a few tokens).
const benchValue = 4 << 10

func BenchmarkLoad(b *testing.B) {
	ctx := context.Background()
	s := memstore.New()
	defer s.Close()
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

func BenchmarkSave(b *testing.B) {
	ctx := context.Background()
	s := memstore.New()
	defer s.Close()
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
