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
