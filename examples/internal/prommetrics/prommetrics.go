// Package prommetrics is the examples' OpenTelemetry pipeline: an SDK
// MeterProvider whose reader is the Prometheus exporter, a registry of its
// own served at /metrics on an address of its own (not the app's: in
// production only Prometheus should reach it), and one msalcacheotel
// Observer that every Adapter of a farm reports to. A real server would
// run one per process; the examples' instances share one process, so its
// counters are the farm's.
package prommetrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/attribute"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/msalcacheotel"
)

// Metrics serves /metrics and holds the Observer to give the Adapters.
type Metrics struct {
	// Observer is what msalcache.WithObserver (and protect.WithObserver)
	// take.
	Observer *msalcacheotel.Observer
	// URL is the /metrics address.
	URL string
	mp  *sdkmetric.MeterProvider
	srv *http.Server
}

// Start serves /metrics on addr ("127.0.0.1:0": a free port) for the
// program named service.
func Start(addr, service string) (*Metrics, error) {
	// A registry of its own rather than prometheus.DefaultRegisterer:
	// /metrics then shows what the OTel pipeline records and nothing a
	// library registered globally.
	reg := prometheus.NewRegistry()
	exp, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		return nil, err
	}
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(attribute.String("service.name", service)))
	if err != nil {
		return nil, err
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp), sdkmetric.WithResource(res))
	// Spans go to the global TracerProvider, a no-op until a program sets
	// one: the example exports metrics only.
	obs, err := msalcacheotel.New(msalcacheotel.WithMeterProvider(mp))
	if err != nil {
		_ = mp.Shutdown(context.Background())
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		_ = mp.Shutdown(context.Background())
		return nil, fmt.Errorf("metrics: listen on %s: %w (choose another with -metrics)", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	m := &Metrics{Observer: obs, mp: mp, URL: "http://" + ln.Addr().String() + "/metrics",
		srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}}
	go func() { _ = m.srv.Serve(ln) }()
	return m, nil
}

// Register adds a's gauges (L1 entries and bytes, breaker, pending
// writes), labelled with the instance's name: the operation counters are
// the farm's, the gauges each instance's.
func (m *Metrics) Register(a *msalcache.Adapter, instance, system string) (unregister func() error, err error) {
	return m.Observer.Register(a, attribute.String("service.instance.id", instance), msalcacheotel.SystemKey.String(system))
}

// Close stops serving and shuts the MeterProvider down.
func (m *Metrics) Close() error {
	err := m.srv.Close()
	return errors.Join(err, m.mp.Shutdown(context.Background()))
}
