// Package observe is the vocabulary an msalcache Adapter and the protect
// key ring use to say what they did: one [Event] per operation, handed to
// every [Observer] given with msalcache.WithObserver (or
// protect.WithObserver). Metrics and traces are built on it: package
// msalcacheotel turns Events into OpenTelemetry instruments and spans,
// and the Adapter's Stats counts the same Events.
//
// An Event never holds a token, a partition key or anything read from a
// store: only the operation ([Op]), how it ended ([Outcome]), why when that
// is not obvious ([Reason]), the kind of store, sizes and durations.
package observe
