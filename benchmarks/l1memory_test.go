package benchmarks

import (
	"bytes"
	"context"
	"fmt"
	"runtime"
	"testing"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/cache"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/memstore"
)

// BenchmarkL1Memory measures what the L1 keeps in memory per partition:
// each op loads one more user's partition (about 4 KiB of plaintext,
// stored beforehand in a memstore) through an Adapter with WithL1, into a
// cache MSAL would hand a new client. heap-B/entry is the live heap the
// loaded partitions add, measured after a GC with the Adapter still open,
// divided by the entries; the "l1-off" row is the same without the L1, so
// the difference is the L1's alone. l1-B/entry is the L1's own account of
// its size (what MaxBytes bounds), plain-B/entry the plaintext.
func BenchmarkL1Memory(b *testing.B) {
	b.Run("memstore/l1-off", func(b *testing.B) { l1MemoryBench(b, false) })
	b.Run("memstore/l1-on", func(b *testing.B) { l1MemoryBench(b, true) })
}

// untrackedCache stands in for a new MSAL client's cache that the Adapter
// cannot track (its type is not comparable), so nothing but the L1 keeps
// what was loaded.
type untrackedCache struct {
	data *[]byte
	_    []int
}

func (c untrackedCache) Unmarshal(b []byte) error { *c.data = b; return nil }

func l1MemoryBench(b *testing.B, withL1 bool) {
	ctx := context.Background()
	store := memstore.New()
	defer store.Close()
	opts := []msalcache.Option{msalcache.WithPlaintext(), msalcache.WithNamespace("l1mem")}
	writer, err := msalcache.New(store, opts...)
	if err != nil {
		b.Fatal(err)
	}
	parts := make([]string, b.N)
	plain := 0
	for i := range parts {
		parts[i] = fmt.Sprintf("%08d-0000-0000-0000-00000000a11c.contoso", i)
		blob := bytes.ReplaceAll(userCache(i), []byte(userPartition), []byte(parts[i]))
		plain += len(blob)
		// Straight into the store, so that no Adapter state of the
		// writes is on the heap.
		if _, err := store.Save(ctx, writer.StoreKey(parts[i]), blob, driver.NoVersion, 0); err != nil {
			b.Fatal(err)
		}
	}
	writer.Close()
	if withL1 {
		opts = append(opts, msalcache.WithL1(msalcache.L1Options{MaxBytes: 1 << 40}))
	}
	a, err := msalcache.New(store, opts...)
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	for i := range b.N {
		var got []byte
		if err := a.Replace(ctx, untrackedCache{data: &got}, cache.ReplaceHints{PartitionKey: parts[i]}); err != nil {
			b.Fatal(err)
		}
		if len(got) == 0 {
			b.Fatalf("partition %d was not loaded", i)
		}
	}
	b.StopTimer()
	runtime.GC()
	runtime.ReadMemStats(&after)
	st := a.Stats()
	if withL1 && st.L1Entries != b.N {
		b.Fatalf("the L1 holds %d entries after %d loads", st.L1Entries, b.N)
	}
	b.ReportMetric(float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/float64(b.N), "heap-B/entry")
	b.ReportMetric(float64(st.L1Bytes)/float64(b.N), "l1-B/entry")
	b.ReportMetric(float64(plain)/float64(b.N), "plain-B/entry")
	runtime.KeepAlive(a)
}
