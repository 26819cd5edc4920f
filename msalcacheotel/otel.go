// Package msalcacheotel records what msalcache does as OpenTelemetry
// metrics and traces. It depends on the OpenTelemetry API only: the
// program chooses the SDK and the exporter (Prometheus, OTLP) and passes
// its providers, or sets the global ones.
//
// A program that imports only package msalcache links no OpenTelemetry
// code; this package turns msalcache's Observer hook into instruments, as
// go-redis's redisotel does for go-redis's Hook:
//
//	obs, err := msalcacheotel.New() // the global MeterProvider and TracerProvider
//	...
//	adapter, err := msalcache.New(store, msalcache.WithProtector(ring), msalcache.WithObserver(obs))
//	...
//	unregister, err := obs.Register(adapter) // L1 and breaker gauges
//
// and protect.WithObserver(obs) for the key ring's rotations and reloads.
//
// # Instruments
//
// There is no OpenTelemetry semantic convention for caches yet
// (semantic-conventions issue 1747). The names follow the closest
// precedents: the operation counter is .NET's cache.requests with its
// hit/miss type, the duration histogram db.client.operation.duration, with
// db.system.name ("redis", "memcached", "bbolt", "memory") and
// db.operation.name ("replace", "export", "remove", "probe").
//
//	msalcache.operations           counter    {operation}     db.system.name, db.operation.name, msalcache.outcome, error.type
//	msalcache.operation.duration   histogram  s               db.system.name, db.operation.name, msalcache.outcome, error.type
//	msalcache.store.errors         counter    {error}         db.system.name, db.operation.name
//	msalcache.l1.age               histogram  s               db.system.name
//	msalcache.l1.invalidations     counter    {invalidation}  db.system.name, msalcache.outcome
//	msalcache.l1.evictions         counter    {entry}         db.system.name
//	msalcache.l1.entries           gauge      {entry}         the attributes given to Register
//	msalcache.l1.size              gauge      By              the attributes given to Register
//	msalcache.breaker.open         gauge      {breaker}       the attributes given to Register
//	msalcache.pending.writes       gauge      {write}         the attributes given to Register
//	msalcache.keyring.rotations    counter    {rotation}      db.system.name, msalcache.outcome, error.type
//	msalcache.keyring.reloads      counter    {reload}        db.system.name, msalcache.outcome, error.type
//
// msalcache.outcome is one of hit, reused (a hit MSAL already held: nothing
// decrypted), l1_hit, miss, skipped, written, merged, deleted, kept, ok and
// error; error.type, set on errors only, one of store, canceled, decrypt,
// corrupt, oversized, unknown_shape, obo and breaker_open. The hit ratio of
// the token cache is (hit + reused + l1_hit) / all of
// db.operation.name="replace".
//
// # Traces
//
// Every Replace, Export and Remove is a span (msalcache.replace,
// msalcache.export, msalcache.remove) child of the span in the context MSAL
// passes, which is the caller's: a token call's trace shows what its cache
// cost. A span carries the attributes above and msalcache.bytes, and has
// status Error when the outcome is error.
//
// No attribute carries a token, a partition key, a user name or anything
// read from the store: msalcache's Events hold none.
package msalcacheotel

import (
	"context"
	"errors"
	"sync"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"

	"github.com/msalcache/msalcache"
)

// ScopeName is the instrumentation scope of the meter and the tracer.
const ScopeName = "github.com/msalcache/msalcache/msalcacheotel"

// The attribute keys.
const (
	SystemKey    = attribute.Key("db.system.name")
	OperationKey = attribute.Key("db.operation.name")
	OutcomeKey   = attribute.Key("msalcache.outcome")
	ErrorTypeKey = attribute.Key("error.type")
	BytesKey     = attribute.Key("msalcache.bytes")
)

// durationBounds are the duration histogram's buckets, in seconds: a
// token cache call takes microseconds from the L1 and milliseconds from a
// store, so db.client.operation.duration's advice (from 1 ms) would put
// every L1 hit in its first bucket.
var durationBounds = []float64{
	0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005,
	0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
}

// ageBounds are the L1 age histogram's buckets, in seconds: from an entry
// just confirmed to MaxStale's default (2 s) and past it, for a longer one.
var ageBounds = []float64{0.001, 0.01, 0.1, 0.25, 0.5, 1, 2, 5, 15, 60, 300, 3600}

// Option configures New.
type Option func(*config)

type config struct {
	mp      metric.MeterProvider
	tp      trace.TracerProvider
	metrics bool
	traces  bool
}

// WithMeterProvider records metrics with mp instead of the global
// MeterProvider.
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(c *config) { c.mp = mp }
}

// WithTracerProvider records spans with tp instead of the global
// TracerProvider.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(c *config) { c.tp = tp }
}

// WithoutTraces records metrics only: no span is started.
func WithoutTraces() Option {
	return func(c *config) { c.traces = false }
}

// WithoutMetrics records spans only.
func WithoutMetrics() Option {
	return func(c *config) { c.metrics = false }
}

// Observer is a observe.Observer recording OpenTelemetry metrics and
// spans. One Observer serves any number of Adapters and key rings.
type Observer struct {
	tracer trace.Tracer
	meter  metric.Meter
	traces bool

	ops           metric.Int64Counter
	duration      metric.Float64Histogram
	age           metric.Float64Histogram
	storeErrors   metric.Int64Counter
	invalidations metric.Int64Counter
	evictions     metric.Int64Counter
	rotations     metric.Int64Counter
	reloads       metric.Int64Counter

	gauges struct {
		entries, size, open, pending metric.Int64ObservableGauge
	}

	// sets caches the attribute set of each kind of Event, so that
	// recording allocates nothing once an Event kind was seen.
	sets sync.Map // of setKey to *attrs
}

// setKey is what an Event's attributes are made of.
type setKey struct {
	op      observe.Op
	outcome observe.Outcome
	reason  observe.Reason
	reused  bool
	system  string
}

type attrs struct {
	opts   []metric.AddOption
	rec    []metric.RecordOption
	sysOpt []metric.AddOption
	sysRec []metric.RecordOption
	span   []attribute.KeyValue
}

var _ observe.Observer = (*Observer)(nil)

// New returns an Observer recording with the global MeterProvider and
// TracerProvider, unless options name others.
func New(opts ...Option) (*Observer, error) {
	c := config{metrics: true, traces: true}
	for _, o := range opts {
		o(&c)
	}
	if c.mp == nil {
		c.mp = otel.GetMeterProvider()
	}
	if c.tp == nil {
		c.tp = otel.GetTracerProvider()
	}
	o := &Observer{traces: c.traces}
	o.tracer = c.tp.Tracer(ScopeName)
	if !c.metrics {
		c.mp = noop.NewMeterProvider()
	}
	o.meter = c.mp.Meter(ScopeName)
	m := o.meter
	var errs []error
	counter := func(name, unit, desc string) metric.Int64Counter {
		i, err := m.Int64Counter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		return i
	}
	o.ops = counter("msalcache.operations", "{operation}", "Token cache operations, by outcome.")
	o.storeErrors = counter("msalcache.store.errors", "{error}", "Failed store calls the cache absorbed, each retry one.")
	o.invalidations = counter("msalcache.l1.invalidations", "{invalidation}", "Store reports that reached the L1: ok dropped a stale entry, skipped found nothing stale, error lost the watch.")
	o.evictions = counter("msalcache.l1.evictions", "{entry}", "L1 entries dropped to stay within MaxBytes.")
	o.rotations = counter("msalcache.keyring.rotations", "{rotation}", "Key ring rotations to a new data key.")
	o.reloads = counter("msalcache.keyring.reloads", "{reload}", "Key ring reloads for a blob sealed under a key it did not know.")
	var err error
	o.duration, err = m.Float64Histogram("msalcache.operation.duration", metric.WithUnit("s"),
		metric.WithDescription("Duration of token cache operations."),
		metric.WithExplicitBucketBoundaries(durationBounds...))
	errs = append(errs, err)
	o.age, err = m.Float64Histogram("msalcache.l1.age", metric.WithUnit("s"),
		metric.WithDescription("How long before the store had last confirmed what the L1 served."),
		metric.WithExplicitBucketBoundaries(ageBounds...))
	errs = append(errs, err)
	gauge := func(name, unit, desc string) metric.Int64ObservableGauge {
		g, err := m.Int64ObservableGauge(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		return g
	}
	o.gauges.entries = gauge("msalcache.l1.entries", "{entry}", "Partitions the L1 holds.")
	o.gauges.size = gauge("msalcache.l1.size", "By", "Bytes the L1 holds, by its own count.")
	o.gauges.open = gauge("msalcache.breaker.open", "{breaker}", "1 while the breaker keeps calls from the store.")
	o.gauges.pending = gauge("msalcache.pending.writes", "{write}", "Writes kept for the store's return.")
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return o, nil
}

// Observe records e. It implements observe.Observer.
func (o *Observer) Observe(ctx context.Context, e observe.Event) {
	a := o.attrsOf(e)
	switch e.Op {
	case observe.OpReplace, observe.OpExport, observe.OpRemove, observe.OpProbe:
		o.ops.Add(ctx, 1, a.opts...)
		o.duration.Record(ctx, e.Duration.Seconds(), a.rec...)
		if e.Outcome == observe.OutcomeL1Hit {
			o.age.Record(ctx, e.Age.Seconds(), a.sysRec...)
		}
		if e.StoreErrors > 0 {
			o.storeErrors.Add(ctx, int64(e.StoreErrors), a.sysOpt...)
		}
		if o.traces && e.Op != observe.OpProbe {
			o.span(ctx, e, a)
		}
	case observe.OpInvalidation:
		o.invalidations.Add(ctx, 1, a.opts...)
	case observe.OpEviction:
		o.evictions.Add(ctx, 1, a.opts...)
	case observe.OpRotation:
		o.rotations.Add(ctx, 1, a.opts...)
	case observe.OpKeyReload:
		o.reloads.Add(ctx, 1, a.opts...)
	}
}

// spanNames are the spans' names, by Op.
var spanNames = map[observe.Op]string{
	observe.OpReplace: "msalcache.replace",
	observe.OpExport:  "msalcache.export",
	observe.OpRemove:  "msalcache.remove",
}

// span records e as a span, child of ctx's, that started and ended when e
// did: the Observer is told once the operation is over.
func (o *Observer) span(ctx context.Context, e observe.Event, a *attrs) {
	_, sp := o.tracer.Start(ctx, spanNames[e.Op],
		trace.WithTimestamp(e.Start), trace.WithSpanKind(trace.SpanKindInternal), trace.WithAttributes(a.span...))
	if sp.IsRecording() {
		sp.SetAttributes(BytesKey.Int(e.Bytes))
		if e.Outcome == observe.OutcomeError {
			sp.SetStatus(codes.Error, e.Reason.String())
		}
	}
	sp.End(trace.WithTimestamp(e.Start.Add(e.Duration)))
}

// attrsOf returns the attributes of e's kind, built once.
func (o *Observer) attrsOf(e observe.Event) *attrs {
	k := setKey{op: e.Op, outcome: e.Outcome, reason: e.Reason, reused: e.Reused, system: e.Store}
	if v, ok := o.sets.Load(k); ok {
		return v.(*attrs)
	}
	a := newAttrs(k)
	v, _ := o.sets.LoadOrStore(k, a)
	return v.(*attrs)
}

func newAttrs(k setKey) *attrs {
	kv := []attribute.KeyValue{SystemKey.String(k.system)}
	switch k.op {
	case observe.OpReplace, observe.OpExport, observe.OpRemove, observe.OpProbe:
		kv = append(kv, OperationKey.String(k.op.String()))
	}
	sys := attribute.NewSet(kv...)
	switch k.op {
	case observe.OpEviction:
	default:
		kv = append(kv, OutcomeKey.String(outcomeName(k)))
		if k.outcome == observe.OutcomeError {
			kv = append(kv, ErrorTypeKey.String(k.reason.String()))
		}
	}
	all := attribute.NewSet(kv...)
	return &attrs{
		opts:   []metric.AddOption{metric.WithAttributeSet(all)},
		rec:    []metric.RecordOption{metric.WithAttributeSet(all)},
		sysOpt: []metric.AddOption{metric.WithAttributeSet(sys)},
		sysRec: []metric.RecordOption{metric.WithAttributeSet(attribute.NewSet(SystemKey.String(k.system)))},
		span:   kv,
	}
}

// outcomeName is the msalcache.outcome of an Event: its Outcome, except
// that a hit MSAL already held is "reused", for the hit ratio to tell
// what cost a decryption from what cost nothing.
func outcomeName(k setKey) string {
	if k.outcome == observe.OutcomeHit && k.reused {
		return "reused"
	}
	return k.outcome.String()
}

// Register records the gauges of a (its L1's entries and bytes, its
// breaker, its pending writes) each time the MeterProvider collects, with
// attrs (db.system.name, say, or the namespace of one of several
// Adapters), until the returned function is called.
func (o *Observer) Register(a *msalcache.Adapter, attrs ...attribute.KeyValue) (unregister func() error, err error) {
	set := metric.WithAttributeSet(attribute.NewSet(attrs...))
	reg, err := o.meter.RegisterCallback(func(_ context.Context, ob metric.Observer) error {
		s := a.Stats()
		open := int64(0)
		if s.BreakerOpen {
			open = 1
		}
		ob.ObserveInt64(o.gauges.entries, int64(s.L1Entries), set)
		ob.ObserveInt64(o.gauges.size, s.L1Bytes, set)
		ob.ObserveInt64(o.gauges.open, open, set)
		ob.ObserveInt64(o.gauges.pending, int64(s.PendingWrites), set)
		return nil
	}, o.gauges.entries, o.gauges.size, o.gauges.open, o.gauges.pending)
	if err != nil {
		return nil, err
	}
	return reg.Unregister, nil
}
