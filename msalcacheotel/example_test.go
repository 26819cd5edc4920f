package msalcacheotel_test

import (
	"context"
	"fmt"
	"log"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/entratest"
	"github.com/msalcache/msalcache/memstore"
	"github.com/msalcache/msalcache/msalcacheotel"
)

// An Observer records the Adapter's operations as OpenTelemetry metrics;
// the program picks the SDK and its exporter (here a manual reader; the web
// farm example serves Prometheus' /metrics).
func Example() {
	ctx := context.Background()
	reader := sdkmetric.NewManualReader()
	obs, err := msalcacheotel.New(msalcacheotel.WithMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))))
	if err != nil {
		log.Fatal(err)
	}
	entra := entratest.NewServer()
	defer entra.Close()
	adapter, err := msalcache.New(memstore.New(), msalcache.WithPlaintext(), msalcache.WithObserver(obs))
	if err != nil {
		log.Fatal(err)
	}
	cred, _ := confidential.NewCredFromSecret("client-secret")
	for range 3 {
		client, err := confidential.New(entra.Authority("contoso"), "daemon-id", cred,
			confidential.WithCache(adapter), confidential.WithHTTPClient(entra.Client()))
		if err != nil {
			log.Fatal(err)
		}
		if _, err := client.AcquireTokenByCredential(ctx, []string{"api://backend/.default"}); err != nil {
			log.Fatal(err)
		}
	}

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		log.Fatal(err)
	}
	for _, m := range rm.ScopeMetrics[0].Metrics {
		if m.Name != "msalcache.operations" {
			continue
		}
		var hits, replaces int64
		for _, p := range m.Data.(metricdata.Sum[int64]).DataPoints {
			if op, _ := p.Attributes.Value(msalcacheotel.OperationKey); op.AsString() != "replace" {
				continue
			}
			replaces += p.Value
			switch outcome, _ := p.Attributes.Value(msalcacheotel.OutcomeKey); outcome {
			case attribute.StringValue("hit"), attribute.StringValue("reused"), attribute.StringValue("l1_hit"):
				hits += p.Value
			}
		}
		fmt.Printf("hit ratio: %d of %d\n", hits, replaces)
	}
	// The first call misses twice (MSAL reads the cache again before it
	// writes the token it bought); the two others hit.

	// Output: hit ratio: 2 of 4
}

// Register reports an Adapter's gauges (the L1's entries and bytes, the
// breaker, the pending writes) each time the MeterProvider collects, with
// the attributes given: one Register per Adapter of a process.
func ExampleObserver_Register() {
	ctx := context.Background()
	reader := sdkmetric.NewManualReader()
	obs, err := msalcacheotel.New(msalcacheotel.WithMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))))
	if err != nil {
		log.Fatal(err)
	}
	adapter, err := msalcache.New(memstore.New(), msalcache.WithPlaintext(), msalcache.WithObserver(obs),
		msalcache.WithL1(msalcache.L1Options{}))
	if err != nil {
		log.Fatal(err)
	}
	defer adapter.Close()
	unregister, err := obs.Register(adapter, msalcacheotel.SystemKey.String("memory"), attribute.String("service.instance.id", "web-1"))
	if err != nil {
		log.Fatal(err)
	}
	defer unregister()

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		log.Fatal(err)
	}
	for _, m := range rm.ScopeMetrics[0].Metrics {
		if g, ok := m.Data.(metricdata.Gauge[int64]); ok {
			instance, _ := g.DataPoints[0].Attributes.Value("service.instance.id")
			fmt.Println(m.Name, g.DataPoints[0].Value, instance.AsString())
		}
	}
	// Unordered output:
	// msalcache.l1.entries 0 web-1
	// msalcache.l1.size 0 web-1
	// msalcache.breaker.open 0 web-1
	// msalcache.pending.writes 0 web-1
}
