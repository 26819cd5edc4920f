package msalcache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"reflect"
	"sync"
	"time"
)

// Removals (sign-outs) and why they are records, not deletes.
//
// MSAL's refresh path loads a partition twice in one call: the silent read,
// then, after the token request, again under its write lock before it
// writes and exports (DESIGN §4.11). A partition deleted between the two
// loads looks, to the second, exactly like a new sign-in's empty partition,
// and the call would store the refreshed session again. So Remove leaves a
// removal record under the partition's key, sealed like any blob, and:
//
//   - a write that meets a removal record it did not load (a
//     compare-and-set that lost to it: an in-flight call, a merge, a retry,
//     a write the breaker kept) is dropped, never merged into it;
//   - a write over a removal record it did load is stored only if the call
//     is a new sign-in: ClientPool says which calls are; for an MSAL client
//     the application drives itself, a call that loaded the live partition
//     earlier under the same context is the call that was in flight when
//     the user signed out, and its write is dropped;
//   - the record lives WithUserTTL, as long as any partition could.

// ErrRemovalPending reports a Remove (or SignOut) whose removal record the
// store did not take: the store is down or the breaker is open. MSAL's
// copy on this instance is gone, and the Adapter retries the removal in
// the background until the store takes it (Adapter.Close tries once
// more), but until then other instances may still serve the user. A
// sign-out handler should tell the user that sign-out is not complete
// everywhere yet, or retry.
var ErrRemovalPending = errors.New("msalcache: the removal is not stored yet; it is retried until the store takes it")

// errRemoved stops a write that met a removal record it did not load.
var errRemoved = errors.New("msalcache: the partition was removed after this write began")

// IsRemovalRecord reports whether plain, a partition as stored (decrypted
// when the Adapter has a Protector), is the record Remove leaves: the user
// signed out, and no instance serves them until they sign in again.
// Operator tools and test suites use it to tell a removed partition from
// a cache.
func IsRemovalRecord(plain []byte) bool { return isRemoval(plain) }

// removedDoc stands, in the L1, for a removal record.
var removedDoc = &document{}

// reassertWindow is how long after a removal the Adapter re-asserts it when
// its watch reports the store back after a gap (a failover may have lost
// the record on a replica that had not received it).
const reassertWindow = 5 * time.Minute

// storeRemoval writes the removal record of key, replacing whatever the key
// holds with compare-and-set, and returns its version. The record names
// the sign-in sessions of what it replaces (see sessions.go). On a store
// that replicates asynchronously it waits for a replica (DurableSaver),
// bounded by ctx.
func (a *Adapter) storeRemoval(ctx context.Context, key string) (driver.Version, error) {
	var sessions []sessionID
	for attempt := 0; ; attempt++ {
		blob, ifv, err := a.load(ctx, key)
		switch {
		case err == nil:
			sessions = unionSessions(sessions, a.sessionsOf(ctx, key, blob))
		case errors.Is(err, driver.ErrNotFound), errors.Is(err, driver.ErrCorrupt):
			ifv = driver.NoVersion
		default:
			return driver.NoVersion, err
		}
		sealed, err := a.seal(ctx, encodeRemoval(sessions), key)
		if err != nil {
			return driver.NoVersion, err
		}
		v, err := a.saveRemoval(ctx, key, sealed, ifv)
		if !errors.Is(err, driver.ErrConflict) || attempt >= 8 {
			return v, err
		}
		// Written in between: remove that version too.
	}
}

// sessionsOf returns the sign-in sessions of blob, stored under key: those
// of its ID tokens, or those a removal record names. A blob it cannot
// read names none.
func (a *Adapter) sessionsOf(ctx context.Context, key string, blob []byte) []sessionID {
	plain, err := a.open(ctx, blob, key)
	if err != nil {
		return nil
	}
	if isRemoval(plain) {
		return decodeRemoval(plain)
	}
	doc, err := parseDocument(plain)
	if err != nil {
		return nil
	}
	return doc.sessions()
}

// removals is the Adapter's bookkeeping of the removals it made: those the
// store has not taken yet, retried in the background until it does, and
// those made lately, re-asserted after a failover.
type removals struct {
	mu      sync.Mutex
	pending map[string]uint64    // store key: when (Adapter.clock) it was asked
	recent  map[string]time.Time // store key: when it was stored
	running bool                 // the retry goroutine runs
	closed  bool
	done    chan struct{} // closed when the retry goroutine ends
}

// pendingSeq reports whether a removal of key waits for the store, and
// when it was asked.
func (r *removals) pendingSeq(key string) (uint64, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	seq, ok := r.pending[key]
	return seq, ok
}

func (r *removals) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.pending)
}

// stored records that the removal of key (asked at seq, or any when seq is
// 0) is in the store.
func (r *removals) stored(key string, seq uint64, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if s, ok := r.pending[key]; ok && (seq == 0 || s <= seq) {
		delete(r.pending, key)
	}
	if r.recent == nil {
		r.recent = make(map[string]time.Time)
	}
	for k, t := range r.recent {
		if now.Sub(t) > reassertWindow {
			delete(r.recent, k)
		}
	}
	r.recent[key] = now
}

// keep queues the removal of key for the retry goroutine, and reports
// whether that goroutine must be started.
func (r *removals) keep(key string, seq uint64) (start bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.pending == nil {
		r.pending = make(map[string]uint64)
	}
	r.pending[key] = seq
	if r.running || r.closed {
		return false
	}
	r.running, r.done = true, make(chan struct{})
	return true
}

// remove is Remove, telling o how it went.
func (a *Adapter) remove(o *op, partitionKey string) error {
	ctx, e := o.ctx, &o.e
	key := a.StoreKey(partitionKey)
	seq := a.nextSeq()
	// A write kept during an outage began before this removal: it must
	// not be flushed after it.
	a.brk.take(key)
	dctx, cancel := a.bound(ctx, key)
	defer cancel()
	err := errBreakerOpen
	if !a.brk.isOpen(key) {
		_, err = a.storeRemoval(dctx, key)
	}
	if a.l1 != nil {
		a.l1.forget(key) // even on failure: the record may have landed
	}
	// MSAL's copy goes whatever the store said: no client of this
	// instance serves the partition again without loading it.
	a.resetClients(key)
	switch {
	case err == nil, errors.Is(err, driver.ErrNotReplicated):
		e.Outcome = observe.OutcomeDeleted
		a.rm.stored(key, seq, a.cfg.now())
		if err != nil {
			// Stored on the primary; re-asserted if a failover loses it.
			a.log(ctx, slog.LevelWarn, "remove: no replica confirmed the removal in time; it is re-asserted if the store fails over", "remove", key)
		}
		return nil
	case errors.Is(err, driver.ErrTooLarge):
		e.Outcome, e.Reason = observe.OutcomeError, observe.ReasonOversized
		return fmt.Errorf("msalcache: remove partition: %w", err)
	}
	if !errors.Is(err, errBreakerOpen) {
		e.StoreErrors++
		a.storeFailed(ctx, "remove", key, err)
	}
	e.Outcome, e.Reason = observe.OutcomeKept, reasonOf(ctx, err)
	if a.rm.keep(key, seq) {
		go a.retryRemovals()
	}
	a.log(ctx, slog.LevelWarn, "remove: the store did not take the removal; retrying it until it does", "remove", key, errAttr(err))
	return fmt.Errorf("msalcache: remove partition: %w: %w", ErrRemovalPending, err)
}

// resetClients makes every MSAL client of this Adapter that may hold
// partition key reset its cache before it serves again, so that no client
// lends it to another partition and the next Replace reloads it.
func (a *Adapter) resetClients(key string) {
	a.mu.Lock()
	clients := make([]*clientState, 0, len(a.clients))
	for _, cs := range a.clients {
		clients = append(clients, cs)
	}
	a.mu.Unlock()
	for _, cs := range clients {
		cs.mu.Lock()
		// A client the adapter knows nothing of (new, forgotten while
		// idle, or served only while the store was away) may hold it too.
		if _, ok := cs.parts[key]; ok || !cs.valid && !cs.partitioned {
			cs.resetLocked()
		}
		cs.mu.Unlock()
	}
}

// Removal retries back off from removalRetryFirst to removalRetryMax.
const (
	removalRetryFirst = 25 * time.Millisecond
	removalRetryMax   = 2 * time.Second
)

// retryRemovals stores the pending removals until none is left or the
// Adapter is closed.
func (a *Adapter) retryRemovals() {
	r := &a.rm
	defer close(r.done)
	wait := removalRetryFirst
	for {
		t := time.NewTimer(wait/2 + rand.N(wait/2+1))
		select {
		case <-t.C:
		case <-a.closing:
			t.Stop()
		}
		wait = min(2*wait, removalRetryMax)
		r.mu.Lock()
		if r.closed || len(r.pending) == 0 {
			r.running = false
			r.mu.Unlock()
			return
		}
		r.mu.Unlock()
		if a.deliverRemovals(false) > 0 {
			wait = removalRetryFirst
		}
	}
}

// deliverRemovals tries once to store every pending removal (those of a
// shard whose breaker is open only when force is set) and returns how many
// it stored.
func (a *Adapter) deliverRemovals(force bool) int {
	r := &a.rm
	r.mu.Lock()
	batch := make(map[string]uint64, len(r.pending))
	for k, s := range r.pending {
		batch[k] = s
	}
	r.mu.Unlock()
	n := 0
	for key, seq := range batch {
		if !force && a.brk.isOpen(key) {
			continue // the probe finds the store back first
		}
		ctx, cancel := context.WithTimeout(context.Background(), a.cfg.timeout)
		e := a.begin(observe.OpRemove)
		_, err := a.storeRemoval(ctx, key)
		cancel()
		if err == nil || errors.Is(err, driver.ErrNotReplicated) {
			r.stored(key, seq, a.cfg.now())
			e.Outcome = observe.OutcomeDeleted
			n++
		} else {
			e.Outcome, e.Reason, e.StoreErrors = observe.OutcomeKept, observe.ReasonStore, 1
			a.storeFailed(context.Background(), "remove", key, err)
		}
		a.emit(context.Background(), &e)
	}
	return n
}

// closeRemovals stops the retries, tries the pending removals once more,
// and returns an error counting those the store still did not take.
func (a *Adapter) closeRemovals() error {
	r := &a.rm
	r.mu.Lock()
	r.closed = true
	done := r.done
	r.mu.Unlock()
	if done != nil {
		<-done
	}
	if r.count() == 0 {
		return nil
	}
	a.deliverRemovals(true)
	if n := r.count(); n > 0 {
		a.log(context.Background(), slog.LevelError, "close: removals (sign-outs) the store did not take are lost; those users may still be served by other instances", "remove", "", slog.Int("removals", n))
		return fmt.Errorf("msalcache: Close: %d removals not stored: %w", n, ErrRemovalPending)
	}
	return nil
}

// reassertRemovals re-writes the removals stored within reassertWindow
// whose record the store no longer holds: the watch saw the store come
// back after a gap, and a failover may have promoted a replica that never
// received them. A key that holds anything else (a new sign-in since, or
// the removal itself) is left alone.
func (a *Adapter) reassertRemovals() {
	r := &a.rm
	now := a.cfg.now()
	r.mu.Lock()
	var keys []string
	for k, t := range r.recent {
		if now.Sub(t) <= reassertWindow {
			keys = append(keys, k)
		}
	}
	r.mu.Unlock()
	for _, key := range keys {
		ctx, cancel := context.WithTimeout(context.Background(), a.cfg.timeout)
		_, _, err := a.load(ctx, key)
		if errors.Is(err, driver.ErrNotFound) {
			e := a.begin(observe.OpRemove)
			if _, err = a.storeRemoval(ctx, key); err == nil || errors.Is(err, driver.ErrNotReplicated) {
				e.Outcome = observe.OutcomeDeleted
				a.log(ctx, slog.LevelWarn, "remove: a removal was lost by the store (failover) and is stored again", "remove", key)
			} else {
				e.Outcome, e.Reason, e.StoreErrors = observe.OutcomeKept, observe.ReasonStore, 1
				if a.rm.keep(key, 0) {
					go a.retryRemovals()
				}
			}
			a.emit(ctx, &e)
		}
		cancel()
	}
}

// liveLoads remembers which calls of MSAL clients the application drives
// itself loaded a live partition, telling calls apart by their context:
// MSAL passes the caller's ctx to every hook call of one token call. A
// call that loaded a partition live and then meets its removal record was
// in flight when the user signed out, and what it stores would bring the
// user back (see the top of this file).
type liveLoads struct {
	mu sync.Mutex
	m  map[liveLoad]time.Time
}

type liveLoad struct {
	ctx context.Context
	key string
}

// Bounds of liveLoads: entries older than liveLoadMemory are forgotten when
// it holds maxLiveLoads of them (and all of them if it is still full: a
// fence missed then is a race left open, never a wrong token).
const (
	maxLiveLoads   = 1 << 16
	liveLoadMemory = 2 * time.Minute
)

func comparableCtx(ctx context.Context) bool {
	t := reflect.TypeOf(ctx)
	return t != nil && t.Comparable()
}

func (l *liveLoads) note(ctx context.Context, key string, now time.Time) {
	if !comparableCtx(ctx) {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.m == nil {
		l.m = make(map[liveLoad]time.Time)
	}
	if len(l.m) >= maxLiveLoads {
		for k, t := range l.m {
			if now.Sub(t) > liveLoadMemory {
				delete(l.m, k)
			}
		}
		if len(l.m) >= maxLiveLoads {
			clear(l.m)
		}
	}
	l.m[liveLoad{ctx, key}] = now
}

func (l *liveLoads) has(ctx context.Context, key string) bool {
	if !comparableCtx(ctx) {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	_, ok := l.m[liveLoad{ctx, key}]
	return ok
}

func (l *liveLoads) forget(ctx context.Context, key string) {
	if !comparableCtx(ctx) {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.m, liveLoad{ctx, key})
}

// fenced reports whether a call that meets the removal record of key must
// not store what it exports there: it is not a new sign-in.
func (a *Adapter) fenced(ctx context.Context, ci callInfo, key string) bool {
	switch ci.kind {
	case callSignIn:
		return false
	case callUnknown:
		return a.live.has(ctx, key)
	}
	return true
}
