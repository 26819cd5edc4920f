package msalcache

import (
	"context"
	"sync/atomic"
)

// Stats counts what an Adapter did since it was created. Every failure the
// Adapter absorbs (so that a token call does not fail) shows up here and in
// the log.
//
// The counters come from the Adapter's built-in StatsCounter, an Observer
// like any other (see WithObserver): each counts Events of one operation
// and outcome, so that Stats and any metrics built on WithObserver agree
// by construction. The gauges (L1Entries, L1Bytes, L1WatchDenied, BreakerOpen,
// PendingWrites) and the breaker's own counts (BreakerTrips,
// PendingFlushed, PendingDropped) are read from the Adapter's state when
// Stats is called.
type Stats struct {
	// Hits counts Replace calls that found their partition in the store
	// and could read it.
	Hits uint64
	// Reused counts the hits that MSAL already held at the stored version:
	// nothing was decrypted or parsed.
	Reused uint64
	// Misses counts Replace calls that found no partition (absent or
	// expired).
	Misses uint64
	// Writes counts partitions written.
	Writes uint64
	// SkippedWrites counts Exports with nothing new to store.
	SkippedWrites uint64
	// Deletes counts partitions deleted, because MSAL exported them empty
	// or through Remove.
	Deletes uint64
	// Conflicts counts compare-and-set writes that lost to another writer
	// and were merged entry by entry and retried.
	Conflicts uint64
	// OBOSkips counts Exports skipped on MSAL's on-behalf-of path, whose
	// data cannot be stored safely (see the package documentation).
	OBOSkips uint64
	// RemovedSkips counts writes not stored because their partition was
	// removed (a sign-out) after the call that made them began: a token
	// call in flight, a write kept during an outage (see Adapter.Remove).
	RemovedSkips uint64
	// PendingRemovals is how many removals the store has not taken yet;
	// they are retried until it does (see ErrRemovalPending).
	PendingRemovals int
	// StoreErrors counts failed store calls (each retry counts).
	StoreErrors uint64
	// DecryptErrors counts stored blobs the Protector refused: a key that
	// is unknown or revoked, a blob that was tampered with or moved.
	DecryptErrors uint64
	// CorruptBlobs counts stored partitions that MSAL could not load, and
	// records the store could not decode.
	CorruptBlobs uint64
	// ForeignEntries counts entries found in a stored partition that
	// belong to another account or app (written by another tool or an
	// older version); they are never loaded and the partition is
	// rewritten without them.
	ForeignEntries uint64
	// Oversized counts partitions larger than WithMaxPartitionSize, stored
	// (a miss) or exported (not stored).
	Oversized uint64
	// ExportFailures counts Exports that gave up: the token was served to
	// the caller but not stored for other instances.
	ExportFailures uint64
	// L1Hits counts Replace calls served by the L1 (WithL1) without loading
	// the partition; L1Revalidated the ones among them that first asked
	// the store for the version, the entry being older than MaxStale.
	L1Hits, L1Revalidated uint64
	// L1Invalidations counts the store's reports (see Watcher) that made
	// the L1 drop what it held: a key changed elsewhere, or the watch came
	// back after a gap. L1WatchDowns counts the gaps: the watch was lost
	// and the L1 bypassed until it was back. L1Evictions counts entries
	// dropped to stay within L1Options.MaxBytes.
	L1Invalidations, L1WatchDowns, L1Evictions uint64
	// L1Entries and L1Bytes are what the L1 holds now.
	L1Entries int
	L1Bytes   int64
	// L1WatchDenied reports that the store refused the L1's watch for
	// lack of permission (see ErrWatchDenied): the L1 is off, every call
	// reads the store.
	L1WatchDenied bool
	// BreakerOpen reports whether the breaker keeps calls from the store
	// now (see WithBreaker); BreakerTrips counts its openings and
	// BreakerSkips the calls it served without the store.
	BreakerOpen  bool
	BreakerTrips uint64
	BreakerSkips uint64
	// PendingWrites is how many partitions' writes wait for the store
	// (removals are PendingRemovals), those a flush is writing included; PendingFlushed counts
	// those written once it was back, PendingDropped those lost to the
	// bounds or to Close during an outage.
	PendingWrites  int
	PendingFlushed uint64
	PendingDropped uint64
	// LendingOverflows counts Replace calls into one MSAL client shared by
	// more users in flight at once than the Adapter lends between them
	// (ReasonLendingOverflow): such a client's concurrent calls may fail.
	// A ClientPool's clients never overflow.
	LendingOverflows uint64
}

// StatsCounter is the Observer behind Adapter.Stats: it counts Events. Every
// Adapter has one built in; pass another to several Adapters with
// WithObserver to count them together. The zero value is ready to use.
type StatsCounter struct {
	hits, reused, misses, writes, skippedWrites, deletes, conflicts, oboSkips,
	storeErrors, decryptErrors, corruptBlobs, foreignEntries, oversized, exportFailures, removedSkips,
	l1Hits, l1Revalidated, l1Invalidations, l1WatchDowns, l1Evictions, breakerSkips,
	lendingOverflows atomic.Uint64
}

// add adds v to n, when there is something to add.
func add(n *atomic.Uint64, v int) {
	if v > 0 {
		n.Add(uint64(v))
	}
}

// Observe counts e. It implements Observer.
func (c *StatsCounter) Observe(_ context.Context, e observe.Event) { c.count(&e) }

// Stats returns what c counted; the gauges and the breaker's counts, which
// only an Adapter knows, are zero.
func (c *StatsCounter) Stats() Stats {
	return Stats{
		Hits:            c.hits.Load(),
		Reused:          c.reused.Load(),
		Misses:          c.misses.Load(),
		Writes:          c.writes.Load(),
		SkippedWrites:   c.skippedWrites.Load(),
		Deletes:         c.deletes.Load(),
		Conflicts:       c.conflicts.Load(),
		OBOSkips:        c.oboSkips.Load(),
		RemovedSkips:    c.removedSkips.Load(),
		StoreErrors:     c.storeErrors.Load(),
		DecryptErrors:   c.decryptErrors.Load(),
		CorruptBlobs:    c.corruptBlobs.Load(),
		ForeignEntries:  c.foreignEntries.Load(),
		Oversized:       c.oversized.Load(),
		ExportFailures:  c.exportFailures.Load(),
		L1Hits:          c.l1Hits.Load(),
		L1Revalidated:   c.l1Revalidated.Load(),
		L1Invalidations: c.l1Invalidations.Load(),
		L1WatchDowns:    c.l1WatchDowns.Load(),
		L1Evictions:     c.l1Evictions.Load(),
		BreakerSkips:    c.breakerSkips.Load(),

		LendingOverflows: c.lendingOverflows.Load(),
	}
}

// count adds e to the counters.
func (c *StatsCounter) count(e *observe.Event) {
	add(&c.storeErrors, e.StoreErrors)
	add(&c.foreignEntries, e.Foreign)
	add(&c.conflicts, e.Conflicts)
	add(&c.decryptErrors, e.Unreadable)
	if e.Reason == observe.ReasonBreakerOpen && e.Op == observe.OpReplace {
		c.breakerSkips.Add(1)
	}
	if e.Reason == observe.ReasonLendingOverflow {
		c.lendingOverflows.Add(1)
	}
	switch e.Outcome {
	case observe.OutcomeHit:
		c.hits.Add(1)
		if e.Reused {
			c.reused.Add(1)
		}
	case observe.OutcomeL1Hit:
		c.l1Hits.Add(1)
		if e.Reused {
			c.reused.Add(1)
		}
		if e.Revalidated {
			c.l1Revalidated.Add(1)
		}
	case observe.OutcomeMiss:
		c.misses.Add(1)
	case observe.OutcomeWritten, observe.OutcomeMerged:
		c.writes.Add(1)
	case observe.OutcomeDeleted:
		c.deletes.Add(1)
	case observe.OutcomeSkipped:
		switch {
		case e.Op != observe.OpExport:
		case e.Reason == observe.ReasonOBO:
			c.oboSkips.Add(1)
		case e.Reason == observe.ReasonRemoved:
			c.removedSkips.Add(1)
		default:
			c.skippedWrites.Add(1)
		}
	case observe.OutcomeOK:
		if e.Op == observe.OpInvalidation {
			c.l1Invalidations.Add(1)
		} else if e.Op == observe.OpEviction {
			c.l1Evictions.Add(1)
		}
	case observe.OutcomeError:
		switch e.Reason {
		case observe.ReasonDecrypt:
			c.decryptErrors.Add(1)
		case observe.ReasonCorrupt:
			c.corruptBlobs.Add(1)
		case observe.ReasonOversized:
			c.oversized.Add(1)
		}
		switch {
		case e.Op == observe.OpInvalidation:
			c.l1WatchDowns.Add(1)
		case e.Op == observe.OpExport && e.Reason != observe.ReasonCanceled:
			c.exportFailures.Add(1)
		}
	}
}

// Stats returns a snapshot of the Adapter's counters and gauges.
func (a *Adapter) Stats() Stats {
	s := a.stats.Stats()
	if a.l1 != nil {
		s.L1Entries, s.L1Bytes = a.l1.size()
		s.L1WatchDenied = a.l1.watchDenied()
	}
	s.PendingRemovals = a.rm.count()
	if b := a.brk; b != nil {
		s.BreakerOpen = b.anyOpen()
		s.BreakerTrips = b.trips.Load()
		s.PendingFlushed, s.PendingDropped = b.flushed.Load(), b.dropped.Load()
		s.PendingWrites = b.pendingCount()
	}
	return s
}
