package benchmarks

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/cache"
	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/entratest"
	"github.com/msalcache/msalcache/msalcacheotel"
)

// BenchmarkObserver measures what watching costs: the silent call with the
// L1 (encrypted, the hot path where the hook's cost is least hidden by I/O)
// beside the floor (MSAL-Go with no external cache), with no Observer, with a StatsCounter given to WithObserver (the
// interface call and the clock reads any Observer costs), with
// msalcacheotel's metrics on an SDK MeterProvider, and with its metrics and
// spans (an SDK TracerProvider sampling every span, exporting none). The
// four take turns in one loop, so their ratios are free of drift (compare
// the p50s: a garbage collection during the loop lands on whichever call
// runs). Every call must be an L1 hit.
func BenchmarkObserver(b *testing.B) {
	for _, name := range []string{"memstore", "redis"} {
		var open func(*testing.B) *backend
		for _, bk := range backends {
			if bk.name == name {
				open = bk.open
			}
		}
		b.Run(name, func(b *testing.B) {
			be := open(b)
			b.Run("observers", func(b *testing.B) { observerBench(b, be) })
		})
	}
}

func observerBench(b *testing.B, be *backend) {
	ctx := context.Background()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()))
	b.Cleanup(func() { mp.Shutdown(ctx); tp.Shutdown(ctx) })
	metrics, err := msalcacheotel.New(msalcacheotel.WithMeterProvider(mp), msalcacheotel.WithoutTraces())
	if err != nil {
		b.Fatal(err)
	}
	traced, err := msalcacheotel.New(msalcacheotel.WithMeterProvider(mp), msalcacheotel.WithTracerProvider(tp))
	if err != nil {
		b.Fatal(err)
	}
	l1 := msalcache.WithL1(msalcache.L1Options{})
	cases := []struct {
		name string
		opts []msalcache.Option
	}{
		{"floor", nil},
		{"none", nil},
		{"stats", []msalcache.Option{msalcache.WithObserver(&msalcache.StatsCounter{})}},
		{"otel-metrics", []msalcache.Option{msalcache.WithObserver(metrics)}},
		{"otel-metrics-traces", []msalcache.Option{msalcache.WithObserver(traced)}},
	}
	var ops []interleaved
	var adapters []*msalcache.Adapter
	for i, c := range cases {
		var a *msalcache.Adapter
		var accessor cache.ExportReplace // nil: the floor, MSAL with no external cache
		if i > 0 {
			a = newAdapter(b, be.store, be.ring, append([]msalcache.Option{l1}, c.opts...)...)
			accessor = a
		}
		adapters = append(adapters, a)
		srv := entratest.NewServer()
		b.Cleanup(srv.Close)
		client := newClient(b, srv, accessor)
		u := signIn(b, srv, client)
		acct, err := client.Account(ctx, u.HomeAccountID)
		if err != nil {
			b.Fatal(err)
		}
		op := func() error {
			_, err := client.AcquireTokenSilent(ctx, silentScopes, confidential.WithSilentAccount(acct))
			return err
		}
		// The first calls may find the L1 learning (its watch may come
		// up after the sign-in wrote, and flush what it learned); the
		// measured ones must not: warm up until a call is an L1 hit.
		for deadline := time.Now().Add(10 * time.Second); a != nil; {
			hits := a.Stats().L1Hits
			if err := op(); err != nil {
				b.Fatal(err)
			}
			if a.Stats().L1Hits > hits {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("%s: no L1 hit within 10 s", c.name)
			}
		}
		ops = append(ops, interleaved{c.name, op})
	}
	before := make([]uint64, len(adapters))
	for i, a := range adapters[1:] {
		before[i+1] = a.Stats().L1Hits
	}
	rs := measureInterleaved(b, ops)
	for i, a := range adapters {
		if a == nil {
			continue
		}
		// measureInterleaved runs each op b.N times, then up to 1000 more
		// to count its allocations.
		if hits, want := a.Stats().L1Hits-before[i], uint64(b.N+min(b.N, 1000)); hits != want {
			b.Fatalf("%s: %d L1 hits in %d silent calls, want one each", cases[i].name, hits, want)
		}
	}
	for _, r := range rs {
		// One row per case under the store, as the table expects.
		r.name = strings.Replace(r.name, "/observers/", "/", 1)
		if !strings.HasSuffix(r.name, "/floor") {
			r.name = strings.Replace(r.name, "/observers/", "/", 1)
			i := strings.LastIndex(r.name, "/")
			r.name = r.name[:i+1] + "observer-" + r.name[i+1:]
		}
		r.tokenRequests = 1
		record(r)
	}
}
