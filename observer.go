package msalcache

import (
	"context"
	"errors"
	"time"
)

// An Observer is told what an Adapter (and the protect key ring, see
// protect.WithObserver) did: one Event when an operation ends, on the
// goroutine that ran it. It is the hook metrics and traces are built on;
// package msalcacheotel turns it into OpenTelemetry instruments and spans,
// and Stats is the Adapter's own, built-in Observer.
//
// Observe must be quick, must not keep e's ctx beyond the call and must not
// call the Adapter. An Adapter without WithObserver reads no clock and makes
// no call for it: the silent call costs what it did before the hook
// existed (see docs/benchmarks.md).
type Observer interface {
	Observe(ctx context.Context, e observe.Event)
}

// ObserverFunc adapts a function to an Observer.
type ObserverFunc func(ctx context.Context, e observe.Event)

// Observe calls f(ctx, e).
func (f observe.Func) Observe(ctx context.Context, e observe.Event) { f(ctx, e) }

// WithObserver adds o to the Adapter's observers; each is called in turn,
// in the order given.
func WithObserver(o observe.Observer) Option {
	return func(c *config) error {
		if o == nil {
			return errors.New("msalcache: WithObserver(nil): pass an Observer")
		}
		c.observers = append(c.observers, o)
		return nil
	}
}

// An Event is one operation, as an Observer sees it. It holds no token, no
// partition key and nothing read from the store: only what happened, how
// big and how long.
type Event struct {
	Op      observe.Op
	Outcome observe.Outcome
	// Reason says why, when the outcome alone does not: the kind of
	// failure of an OutcomeError, ReasonOBO or ReasonBreakerOpen for a
	// call served or kept without the store.
	Reason observe.Reason
	// Store names the kind of store, as its SystemName says ("redis",
	// "memcached", "bbolt", "memory"), or "" when it does not say.
	Store string
	// Bytes is the size of what was read from or written to the store, as
	// stored (sealed); 0 when nothing was.
	Bytes int
	// Start and Duration time the operation. Both are zero when the
	// Adapter has no Observer besides Stats, which does not need them.
	Start    time.Time
	Duration time.Duration
	// Reused reports, for a Replace, that MSAL already held what was
	// served: nothing was decrypted, parsed or handed to MSAL.
	Reused bool
	// Revalidated reports, for an OutcomeL1Hit, that the entry was older
	// than L1Options.MaxStale and its version was asked of the store first.
	Revalidated bool
	// Age is, for an OutcomeL1Hit, how long before the store had last
	// confirmed what was served: how stale it could be, at most, on a
	// store that cannot push (see L1Options.MaxStale); on one that
	// pushes, any change made since would have reached the L1 first.
	Age time.Duration
	// Conflicts counts, for an Export, the compare-and-set writes that
	// lost to another writer and were merged and retried.
	Conflicts int
	// StoreErrors counts the failed store calls of the operation, each
	// retry one; each was reported to WithStoreErrorHandler.
	StoreErrors int
	// Foreign counts, for a Replace, the stored entries that belong to
	// another partition and were not loaded (see Stats.ForeignEntries).
	Foreign int
	// Unreadable counts, for an Export, the other writers' blobs the
	// Protector refused while merging (ours replaced them).
	Unreadable int
}

// Op is what the Adapter was asked to do, or what happened to it.
type Op uint8

// The operations. Replace, Export and Remove are the Adapter's methods;
// Export is also what a flush of a write kept during an outage reports.
const (
	OpReplace observe.Op = iota + 1
	OpExport
	OpRemove
	// OpProbe is the breaker's check of a store it stopped calling
	// (OutcomeOK: the store is back).
	OpProbe
	// OpInvalidation is the store telling the L1 that a key changed
	// (OutcomeOK), or that it can no longer vouch for anything
	// (OutcomeError: the L1 is flushed and bypassed until it can).
	OpInvalidation
	// OpEviction is the L1 dropping its least recently used entry to stay
	// within L1Options.MaxBytes.
	OpEviction
	// OpRotation is the key ring making a new data key the default.
	OpRotation
	// OpKeyReload is the key ring reloading itself for a blob sealed
	// under a key it did not know (another instance rotated first).
	OpKeyReload
)

var opNames = [...]string{"unknown", "replace", "export", "remove", "probe", "invalidation", "eviction", "rotation", "key_reload"}

// String returns the operation's name as metrics and traces use it, such
// as "replace".
func (o observe.Op) String() string { return nameOf(opNames[:], uint8(o)) }

// Outcome is how an operation ended.
type Outcome uint8

// The outcomes. A Replace ends as OutcomeHit, OutcomeL1Hit, OutcomeMiss,
// OutcomeSkipped or OutcomeError (which MSAL sees as a miss); an Export as
// OutcomeWritten, OutcomeMerged, OutcomeDeleted, OutcomeSkipped,
// OutcomeKept or OutcomeError; a Remove as OutcomeDeleted, OutcomeKept or
// OutcomeError.
const (
	OutcomeOK observe.Outcome = iota + 1
	// OutcomeHit: the partition was found in the store (Event.Reused when
	// MSAL held that version already).
	OutcomeHit
	// OutcomeL1Hit: served from the L1 without loading the partition.
	OutcomeL1Hit
	// OutcomeMiss: the store holds no such partition.
	OutcomeMiss
	// OutcomeSkipped: nothing to do (an Export with nothing new), or
	// nothing could be done safely (Reason says why).
	OutcomeSkipped
	// OutcomeWritten: stored.
	OutcomeWritten
	// OutcomeMerged: stored after merging another writer's entries.
	OutcomeMerged
	// OutcomeDeleted: MSAL exported the partition empty, or Remove.
	OutcomeDeleted
	// OutcomeKept: kept for the store's return (ReasonBreakerOpen).
	OutcomeKept
	// OutcomeError: failed; Reason says how.
	OutcomeError
)

var outcomeNames = [...]string{"unknown", "ok", "hit", "l1_hit", "miss", "skipped", "written", "merged", "deleted", "kept", "error"}

// String returns the outcome's name as metrics and traces use it, such as
// "l1_hit".
func (o observe.Outcome) String() string { return nameOf(outcomeNames[:], uint8(o)) }

// Reason qualifies an outcome.
type Reason uint8

// The reasons.
const (
	ReasonNone observe.Reason = iota
	// ReasonStore: a store call failed or ran out of time.
	ReasonStore
	// ReasonCanceled: the caller's context ended first.
	ReasonCanceled
	// ReasonDecrypt: the Protector refused a stored blob (a key unknown
	// or revoked, a blob tampered with or moved).
	ReasonDecrypt
	// ReasonCorrupt: the stored partition is not a cache MSAL can load,
	// or the store holds a record it cannot decode.
	ReasonCorrupt
	// ReasonOversized: larger than WithMaxPartitionSize allows.
	ReasonOversized
	// ReasonUnknownShape: MSAL's cache is not in the shape this version
	// knows, so nothing says whose entries it holds; not stored.
	ReasonUnknownShape
	// ReasonOBO: MSAL's on-behalf-of path, whose data cannot be stored
	// safely (see the package documentation).
	ReasonOBO
	// ReasonBreakerOpen: the breaker kept the call from the store (see
	// WithBreaker).
	ReasonBreakerOpen
	// ReasonRemoved: the partition holds a removal record (the user
	// signed out): a Replace hands MSAL an empty cache, and an Export
	// that is not a new sign-in is not stored there (see Adapter.Remove).
	ReasonRemoved
	// ReasonWatchDenied: the store refused the L1's watch for lack of
	// permission (see ErrWatchDenied); the L1 is off.
	ReasonWatchDenied
	// ReasonLendingOverflow: a Replace into one MSAL client shared by
	// more users in flight at once than the Adapter lends between them;
	// the outcome is what it was (a hit, a miss), but concurrent calls of
	// that client may fail with "no token found". Use a ClientPool.
	ReasonLendingOverflow
)

var reasonNames = [...]string{"", "store", "canceled", "decrypt", "corrupt", "oversized", "unknown_shape", "obo", "breaker_open", "removed", "watch_denied", "lending_overflow"}

// String returns the reason's name as metrics and traces use it (as the
// error.type of an OutcomeError), or "" for ReasonNone.
func (r observe.Reason) String() string { return nameOf(reasonNames[:], uint8(r)) }

// nameOf returns names[i], or "unknown" for a value it does not name.
func nameOf(names []string, i uint8) string {
	if int(i) < len(names) {
		return names[i]
	}
	return "unknown"
}

// SystemNamer is implemented by stores that name the kind of server they
// keep data in, for Event.Store and the db.system.name of metrics and
// traces. Every store of this module does.
type SystemNamer interface {
	SystemName() string
}

// observers fans an Event out to the Adapter's Observers.
type observers []observe.Observer

func (os observers) Observe(ctx context.Context, e observe.Event) {
	for _, o := range os {
		o.Observe(ctx, e)
	}
}

// begin starts an Event of op: timed only when someone besides Stats
// watches.
func (a *Adapter) begin(op observe.Op) observe.Event {
	e := observe.Event{Op: op, Store: a.system}
	if a.obs != nil {
		e.Start = time.Now()
	}
	return e
}

// emit ends e: Stats counts it, and the Observers, if any, are told.
func (a *Adapter) emit(ctx context.Context, e *observe.Event) {
	a.stats.count(e)
	if a.obs != nil {
		e.Duration = time.Since(e.Start)
		a.obs.Observe(ctx, *e)
	}
}

// reasonOf classifies the error of a write or a delete for an Event.
func reasonOf(ctx context.Context, err error) observe.Reason {
	switch {
	case ctx.Err() != nil && errors.Is(err, ctx.Err()):
		return observe.ReasonCanceled
	case errors.Is(err, errBreakerOpen):
		return observe.ReasonBreakerOpen
	case errors.Is(err, driver.ErrTooLarge):
		return observe.ReasonOversized
	case errors.Is(err, errRemoved):
		return observe.ReasonRemoved
	}
	return observe.ReasonStore
}
