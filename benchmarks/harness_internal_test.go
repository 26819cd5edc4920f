package benchmarks

import (
	"context"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/cache"
	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"
	bolt "go.etcd.io/bbolt"

	"github.com/msalcache/msalcache/entratest"

	"github.com/msalcache/msalcache/memstore"
)

// TestHistogramQuantiles checks the percentiles against a sort of the same
// values: they must agree within a bucket's width (0.8%).
func TestHistogramQuantiles(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var h histogram
	vals := make([]float64, 100_000)
	for i := range vals {
		// Log-uniform from 10 ns to 10 ms, like latencies with a tail.
		v := time.Duration(10 * float64(uint64(1)<<rng.IntN(20)) * (1 + rng.Float64()))
		vals[i] = float64(v)
		h.record(v)
	}
	slices.Sort(vals)
	for _, q := range []float64{0.01, 0.5, 0.9, 0.99, 0.999, 1} {
		want := vals[int(q*float64(len(vals))+0.999999)-1]
		got := h.quantile(q)
		if d := (got - want) / want; d > 0.008 || d < -0.008 {
			t.Errorf("quantile(%v) = %v, want %v (off by %.2f%%)", q, got, want, 100*d)
		}
	}
	var empty histogram
	if got := empty.quantile(0.5); got != 0 {
		t.Errorf("quantile of no values = %v, want 0", got)
	}
}

// TestBuckets checks that every value lands in a bucket whose range holds
// it, across every power of two.
func TestBuckets(t *testing.T) {
	for shift := range 63 {
		for _, v := range []uint64{1 << shift, 1<<shift + 1, 1<<(shift+1) - 1} {
			i := bucketOf(v)
			if i < 0 || i >= histBuckets {
				t.Fatalf("bucketOf(%d) = %d, out of range", v, i)
			}
			mid := bucketMid(i)
			if d := (mid - float64(v)) / float64(v); d > 0.008 || d < -0.008 {
				t.Errorf("value %d: bucket %d has middle %v", v, i, mid)
			}
		}
	}
}

func TestSplitName(t *testing.T) {
	for _, tc := range []struct{ name, path, store, kase string }{
		{"BenchmarkSilent/floor", "silent", "", "floor"},
		{"BenchmarkSilent/redis/adapter-plain", "silent", "redis", "adapter-plain"},
		{"BenchmarkExport/bbolt/naive", "export", "bbolt", "naive"},
		{"BenchmarkReplace/memstore/adapter-plain/handed-over", "replace", "memstore", "adapter-plain/handed-over"},
		{"BenchmarkLoad/redis/ctx=deadline,ContextTimeoutEnabled", "load", "redis", "ctx=deadline,ContextTimeoutEnabled"},
	} {
		p, s, k := splitName(tc.name)
		if p != tc.path || s != tc.store || k != tc.kase {
			t.Errorf("splitName(%q) = %q, %q, %q; want %q, %q, %q", tc.name, p, s, k, tc.path, tc.store, tc.kase)
		}
	}
}

// TestRenderTable checks that each row is divided by the naive accessor of
// its own store and path, and by its path's floor or, on a path without
// one, by the raw call of its own store and path; and that failed calls
// show only where they were counted.
func TestRenderTable(t *testing.T) {
	if got := renderTable(nil); got != "" {
		t.Fatalf("table of no results = %q, want nothing", got)
	}
	got := renderTable([]*result{
		{name: "BenchmarkSilent/floor", nsPerOp: 5000, tokenRequests: 1},
		{name: "BenchmarkSilent/redis/raw", nsPerOp: 20000, tokenRequests: -1},
		{name: "BenchmarkSilent/redis/naive", nsPerOp: 40000, tokenRequests: 1},
		{name: "BenchmarkSilent/redis/adapter-plain", nsPerOp: 30000, tokenRequests: 1},
		{name: "BenchmarkSilent/bbolt/naive", nsPerOp: 20000, tokenRequests: 1},
		{name: "BenchmarkExport/redis/naive", nsPerOp: 10000, tokenRequests: -1},
		{name: "BenchmarkExport/redis/adapter-plain", nsPerOp: 25000, tokenRequests: -1},
		{name: "BenchmarkLoad/redis/raw", nsPerOp: 20000, tokenRequests: -1},
		{name: "BenchmarkLoad/redis/ctx=deadline", nsPerOp: 30000, tokenRequests: -1},
		{name: "BenchmarkLoad/bbolt/ctx=deadline", nsPerOp: 1000, tokenRequests: -1},
		{name: "BenchmarkSharedClient/memstore/naive", nsPerOp: 8000, tokenRequests: 8, counted: 400, failed: 100},
		{name: "BenchmarkSharedClient/memstore/adapter-plain", nsPerOp: 2000, tokenRequests: 8, counted: 1000},
	})
	for _, want := range []string{
		"| silent | — | floor | 5.00 µs |",
		"| 1 | — | — | 1.00× |",
		"| silent | redis | raw | 20.0 µs |",
		"| — | — | 0.50× | 4.00× |",
		"| silent | redis | adapter-plain | 30.0 µs |",
		"| 1 | — | 0.75× | 6.00× |",
		"| silent | bbolt | naive | 20.0 µs |",
		"| 1 | — | 1.00× | 4.00× |",
		"| export | redis | adapter-plain | 25.0 µs |",
		"| — | — | 2.50× | — |",
		"| load | redis | ctx=deadline | 30.0 µs |",
		"| — | — | — | 1.50× |",
		"| load | bbolt | ctx=deadline | 1.00 µs |",
		"| sharedclient | memstore | naive | 8.00 µs |",
		"| 8 | 25.0% | 1.00× | — |",
		"| sharedclient | memstore | adapter-plain | 2.00 µs |",
		"| 8 | 0.0% | 0.25× | — |",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("table lacks %q:\n%s", want, got)
		}
	}
	// The raw call of one store is no floor for another.
	for _, line := range strings.Split(got, "\n") {
		if strings.HasPrefix(line, "| load | bbolt |") && !strings.HasSuffix(line, "| — | — |") {
			t.Errorf("bbolt's load row is divided by another store's raw call: %s", line)
		}
	}
	if n := strings.Count(got, "\n"); n != 14 {
		t.Errorf("table has %d lines, want a header, a rule and 12 rows:\n%s", n, got)
	}
}

// TestNaiveAccessors checks the baselines the Adapter is measured against,
// with a real MSAL client, on the stores that need no server: after one
// client signs a user in, a second client must serve a silent call from
// what the first stored, without a token request.
func TestNaiveAccessors(t *testing.T) {
	db, err := bolt.Open(filepath.Join(t.TempDir(), "naive.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucket(naiveBucket)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	store := memstore.New()
	defer store.Close()
	for _, tc := range []struct {
		name string
		acc  cache.ExportReplace
	}{
		{"memstore", naiveMemstore{store}},
		{"bbolt", naiveBolt{db}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := entratest.NewServer()
			defer srv.Close()
			u := signIn(t, srv, newClient(t, srv, tc.acc))
			ctx := context.Background()
			c := newClient(t, srv, tc.acc)
			acct, err := c.Account(ctx, u.HomeAccountID)
			if err != nil {
				t.Fatal(err)
			}
			for range 3 {
				if _, err := c.AcquireTokenSilent(ctx, silentScopes, confidential.WithSilentAccount(acct)); err != nil {
					t.Fatalf("silent call on a second client: %v", err)
				}
			}
			if n := srv.TokenRequests(); n != 1 {
				t.Fatalf("%d token requests, want 1 (the sign-in)", n)
			}
		})
	}
}

// A floor measured beside a store's rows is theirs; a users row divides by
// the 1-user row of its pattern.
func TestRenderTableLocalBases(t *testing.T) {
	got := renderTable([]*result{
		{name: "BenchmarkSilent/floor", nsPerOp: 5000, tokenRequests: 1},
		{name: "BenchmarkSilent/redis/floor", nsPerOp: 10000, tokenRequests: 1},
		{name: "BenchmarkSilent/redis/adapter-l1-plain", nsPerOp: 11000, tokenRequests: 1},
		{name: "BenchmarkUsers/shared/1", nsPerOp: 20000, tokenRequests: 0},
		{name: "BenchmarkUsers/shared/10000", nsPerOp: 30000, tokenRequests: 0},
	})
	for _, want := range []string{
		"| silent | redis | adapter-l1-plain | 11.0 µs |",
		"| 1 | — | — | 1.10× |",
		"| users | shared | 10000 | 30.0 µs |",
		"| 0 | — | — | 1.50× |",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("table lacks %q:\n%s", want, got)
		}
	}
}
