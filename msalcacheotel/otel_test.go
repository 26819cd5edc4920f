package msalcacheotel_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/entratest"
	"github.com/msalcache/msalcache/internal/testserver"
	"github.com/msalcache/msalcache/memstore"
	"github.com/msalcache/msalcache/msalcacheotel"
	"github.com/msalcache/msalcache/protect"
	"github.com/msalcache/msalcache/redisstore"
)

// telemetry is an SDK with a manual reader and an in-memory span exporter.
type telemetry struct {
	reader *sdkmetric.ManualReader
	spans  *tracetest.InMemoryExporter
	tp     *sdktrace.TracerProvider
	obs    *msalcacheotel.Observer
}

func newTelemetry(t *testing.T) *telemetry {
	t.Helper()
	tel := &telemetry{reader: sdkmetric.NewManualReader(), spans: tracetest.NewInMemoryExporter()}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(tel.reader))
	tel.tp = sdktrace.NewTracerProvider(sdktrace.WithSyncer(tel.spans))
	t.Cleanup(func() { mp.Shutdown(context.Background()); tel.tp.Shutdown(context.Background()) })
	obs, err := msalcacheotel.New(msalcacheotel.WithMeterProvider(mp), msalcacheotel.WithTracerProvider(tel.tp))
	if err != nil {
		t.Fatal(err)
	}
	tel.obs = obs
	return tel
}

// collect returns the metrics recorded so far, by name.
func (tel *telemetry) collect(t *testing.T) map[string]metricdata.Metrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := tel.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]metricdata.Metrics{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			out[m.Name] = m
		}
	}
	return out
}

// sums returns an int64 counter's points, keyed by the attributes named.
func sums(t *testing.T, m metricdata.Metrics, keys ...attribute.Key) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	sum, ok := m.Data.(metricdata.Sum[int64])
	if !ok {
		t.Fatalf("%s is a %T, want an int64 sum", m.Name, m.Data)
	}
	for _, p := range sum.DataPoints {
		var parts []string
		for _, k := range keys {
			v, _ := p.Attributes.Value(k)
			parts = append(parts, v.String())
		}
		out[strings.Join(parts, "/")] += p.Value
	}
	return out
}

func newClient(t *testing.T, entra *entratest.Server, a *msalcache.Adapter, tenant string) confidential.Client {
	t.Helper()
	cred, err := confidential.NewCredFromSecret("the-client-secret")
	if err != nil {
		t.Fatal(err)
	}
	c, err := confidential.New(entra.Authority(tenant), "otel-client-id", cred,
		confidential.WithCache(a), confidential.WithHTTPClient(entra.Client()), confidential.WithInstanceDiscovery(false))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func newRing(t *testing.T, store driver.Store, opts ...protect.Option) *protect.KeyRing {
	t.Helper()
	kek, err := protect.NewAESKeyWrapper("kek-1", make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	ring, err := protect.NewKeyRing(context.Background(), store, kek, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ring.Close() })
	return ring
}

// Real MSAL-Go calls through an Adapter produce the counts Stats reports,
// a populated duration histogram, the L1 gauges, and one span per Replace
// and Export under the caller's span; no attribute carries the tenant, the
// client, a token or anything else of the partition.
func TestMetricsAndSpansFromMSAL(t *testing.T) {
	ctx := context.Background()
	tel := newTelemetry(t)
	entra := entratest.NewServer()
	defer entra.Close()
	store := memstore.New()
	defer store.Close()
	ring := newRing(t, store, protect.WithObserver(tel.obs))
	a, err := msalcache.New(store, msalcache.WithProtector(ring), msalcache.WithObserver(tel.obs),
		msalcache.WithL1(msalcache.L1Options{}), msalcache.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	unregister, err := tel.obs.Register(a, msalcacheotel.SystemKey.String("memory"))
	if err != nil {
		t.Fatal(err)
	}
	defer unregister()

	const tenants, rounds = 3, 4
	parent, request := tel.tp.Tracer("test").Start(ctx, "request")
	var tokens []string
	for i := range tenants {
		for range rounds {
			// A new client each time: the L1 hands the partition over.
			r, err := newClient(t, entra, a, fmt.Sprintf("tenant-%d", i)).AcquireTokenByCredential(parent, []string{"api://backend/.default"})
			if err != nil {
				t.Fatal(err)
			}
			tokens = append(tokens, r.AccessToken)
		}
	}
	request.End()
	if got := entra.TokenRequests(); got != tenants {
		t.Fatalf("%d token requests, want %d", got, tenants)
	}
	// A rotation, seen when the ring first seals under the new key.
	if err := ring.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := ring.Protect(ctx, []byte("x"), []byte("aad")); err != nil {
		t.Fatal(err)
	}
	if r := sums(t, tel.collect(t)["msalcache.keyring.rotations"], msalcacheotel.SystemKey); r["memory"] != 1 {
		t.Errorf("msalcache.keyring.rotations = %v, want 1 on memory", r)
	}

	st := a.Stats()
	m := tel.collect(t)
	ops := sums(t, m["msalcache.operations"], msalcacheotel.OperationKey, msalcacheotel.OutcomeKey)
	for _, c := range []struct {
		key  string
		want uint64
	}{
		{"replace/miss", st.Misses},
		{"replace/l1_hit", st.L1Hits},
		{"replace/hit", st.Hits - uint64(ops["replace/reused"])},
		{"export/written", st.Writes},
	} {
		if uint64(ops[c.key]) != c.want {
			t.Errorf("msalcache.operations{%s} = %d, Stats says %d (all: %v)", c.key, ops[c.key], c.want, ops)
		}
	}
	if st.Misses == 0 || st.L1Hits == 0 || st.Writes == 0 {
		t.Fatalf("the scenario did not exercise misses, L1 hits and writes: %+v", st)
	}
	var total int64
	for _, n := range ops {
		total += n
	}
	hist, ok := m["msalcache.operation.duration"].Data.(metricdata.Histogram[float64])
	if !ok {
		t.Fatalf("msalcache.operation.duration is a %T", m["msalcache.operation.duration"].Data)
	}
	var count uint64
	var sum float64
	for _, p := range hist.DataPoints {
		count, sum = count+p.Count, sum+p.Sum
	}
	if count != uint64(total) || sum <= 0 {
		t.Errorf("duration histogram holds %d observations summing %gs, want %d and more than 0", count, sum, total)
	}
	ages, ok := m["msalcache.l1.age"].Data.(metricdata.Histogram[float64])
	if !ok || len(ages.DataPoints) != 1 || ages.DataPoints[0].Count != st.L1Hits {
		t.Errorf("msalcache.l1.age = %+v, want one point counting the %d L1 hits", m["msalcache.l1.age"].Data, st.L1Hits)
	}
	entries, ok := m["msalcache.l1.entries"].Data.(metricdata.Gauge[int64])
	if !ok || len(entries.DataPoints) != 1 || entries.DataPoints[0].Value != int64(st.L1Entries) || st.L1Entries != tenants {
		t.Errorf("msalcache.l1.entries = %+v, Stats says %d (want %d)", m["msalcache.l1.entries"].Data, st.L1Entries, tenants)
	}

	spans := tel.spans.GetSpans()
	names := map[string]int{}
	for _, s := range spans {
		if s.Name == "request" {
			continue
		}
		names[s.Name]++
		if s.Parent.SpanID() != request.SpanContext().SpanID() {
			t.Errorf("span %s is not a child of the caller's span", s.Name)
		}
		if s.EndTime.Before(s.StartTime) || s.StartTime.Before(spans[len(spans)-1].StartTime) {
			t.Errorf("span %s runs from %v to %v, outside its parent", s.Name, s.StartTime, s.EndTime)
		}
	}
	if names["msalcache.replace"] != int(ops["replace/miss"]+ops["replace/l1_hit"]+ops["replace/hit"]+ops["replace/reused"]) ||
		names["msalcache.export"] != int(ops["export/written"]) {
		t.Errorf("spans %v for operations %v", names, ops)
	}

	// Nothing names the tenant, the client or a token.
	secrets := append([]string{"tenant-", "otel-client-id", "the-client-secret", "AppTokenCache"}, tokens...)
	check := func(where string, kv attribute.KeyValue) {
		for _, s := range secrets {
			if strings.Contains(kv.Value.String(), s) || strings.Contains(string(kv.Key), s) {
				t.Errorf("%s: attribute %s=%s carries %q", where, kv.Key, kv.Value.String(), s)
			}
		}
	}
	for _, s := range spans {
		for _, kv := range s.Attributes {
			check(s.Name, kv)
		}
	}
	for name, mm := range m {
		for _, set := range attributeSets(mm) {
			for _, kv := range set.ToSlice() {
				check(name, kv)
			}
		}
	}
}

// attributeSets returns the attribute sets of m's points.
func attributeSets(m metricdata.Metrics) []attribute.Set {
	var out []attribute.Set
	switch d := m.Data.(type) {
	case metricdata.Sum[int64]:
		for _, p := range d.DataPoints {
			out = append(out, p.Attributes)
		}
	case metricdata.Gauge[int64]:
		for _, p := range d.DataPoints {
			out = append(out, p.Attributes)
		}
	case metricdata.Histogram[float64]:
		for _, p := range d.DataPoints {
			out = append(out, p.Attributes)
		}
	}
	return out
}

// With Redis killed, every absorbed store failure reaches the store error
// handler once, is counted by Stats, and shows in msalcache.store.errors;
// the token calls succeed and their operations end as errors of type
// "store".
func TestStoreFailuresWithRedisKilled(t *testing.T) {
	ctx := context.Background()
	tel := newTelemetry(t)
	srv := testserver.Redis(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1, ContextTimeoutEnabled: true})
	defer rdb.Close()
	store := redisstore.New(rdb)
	var mu sync.Mutex
	var reported []msalcache.StoreError
	a, err := msalcache.New(store, msalcache.WithPlaintext(), msalcache.WithObserver(tel.obs),
		msalcache.WithBreaker(msalcache.BreakerOptions{Disabled: true}),
		msalcache.WithTimeout(2*time.Second),
		msalcache.WithLogger(slog.New(slog.DiscardHandler)),
		msalcache.WithStoreErrorHandler(func(_ context.Context, e msalcache.StoreError) {
			mu.Lock()
			defer mu.Unlock()
			reported = append(reported, e)
		}))
	if err != nil {
		t.Fatal(err)
	}
	entra := entratest.NewServer()
	defer entra.Close()
	if _, err := newClient(t, entra, a, "contoso").AcquireTokenByCredential(ctx, []string{"api://backend/.default"}); err != nil {
		t.Fatal(err)
	}
	if st := a.Stats(); st.StoreErrors != 0 || st.Writes != 1 {
		t.Fatalf("with Redis up: %+v", st)
	}
	srv.Kill()
	for range 3 {
		if _, err := newClient(t, entra, a, "contoso").AcquireTokenByCredential(ctx, []string{"api://backend/.default"}); err != nil {
			t.Fatalf("a token call failed with Redis down: %v", err)
		}
	}
	st := a.Stats()
	mu.Lock()
	n := len(reported)
	for _, e := range reported {
		if e.Key == "" || strings.Contains(e.Key, "contoso") {
			t.Errorf("reported key %q", e.Key)
		}
	}
	mu.Unlock()
	if n == 0 || uint64(n) != st.StoreErrors {
		t.Fatalf("%d failures reported, Stats counts %d", n, st.StoreErrors)
	}
	m := tel.collect(t)
	var metered int64
	for _, v := range sums(t, m["msalcache.store.errors"], msalcacheotel.OperationKey) {
		metered += v
	}
	if uint64(metered) != st.StoreErrors {
		t.Fatalf("msalcache.store.errors = %d, Stats counts %d", metered, st.StoreErrors)
	}
	errs := sums(t, m["msalcache.operations"], msalcacheotel.OperationKey, msalcacheotel.OutcomeKey, msalcacheotel.ErrorTypeKey, msalcacheotel.SystemKey)
	if errs["replace/error/store/redis"] == 0 || errs["export/error/store/redis"] == 0 {
		t.Fatalf("operations %v: want replace and export errors of type store on redis", errs)
	}
}
