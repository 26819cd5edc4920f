package msalcache

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"time"
)

// write is one Export's compare-and-set loop.
type write struct {
	a            *Adapter
	key          string
	partitionKey string
	out          []byte    // what to store (plaintext)
	doc          *document // out parsed; nil when out is not MSAL's shape
	base         *document // what ours started from, for the three-way merge
	ifVersion    driver.Version
	versionKnown bool
	baseSeq      uint64 // when base was loaded or written, in Adapter.clock order
	merged       bool   // out holds another writer's entries that MSAL lacks
	// docShared: doc's entries point into more than out (MSAL's whole
	// cache, or the inputs of a merge), so that keeping doc would keep
	// all of that alive; compact re-parses it out of out.
	docShared bool
	// For the Export's Event: the size of what was stored, the
	// compare-and-set rounds lost, the failed store calls, the other
	// writers' blobs that could not be decrypted.
	sealedLen, conflicts, storeErrors, unreadable int
}

// turns gives the Exports of one partition within one Adapter a turn each.
// Racing them against each other through the store would only make all
// but one lose the compare-and-set and load the partition again; taking
// turns leaves the store's compare-and-set to arbitrate between instances,
// and lets each writer start from what the one before it stored (see last)
// instead of from what its client loaded, one round trip earlier.
type turns struct {
	mu sync.Mutex
	m  map[string]*turn // by store key; idle ones are swept (see sweep)
}

type turn struct {
	token   chan struct{} // holds one value while the turn is free
	waiting int           // holders and waiters
	left    time.Time     // when the last of them left
	// last is what the previous holder stored, when it wrote MSAL's shape.
	last *stored
}

// stored is a partition as this Adapter just wrote it.
type stored struct {
	version driver.Version
	doc     *document
	seq     uint64 // when, in Adapter.clock order
}

// take waits for key's turn until ctx is done, and returns the turn with
// the function that gives it up.
func (t *turns) take(ctx context.Context, key string, now func() time.Time) (*turn, func(), error) {
	t.mu.Lock()
	if t.m == nil {
		t.m = make(map[string]*turn)
	}
	tu := t.m[key]
	if tu == nil {
		tu = &turn{token: make(chan struct{}, 1)}
		tu.token <- struct{}{}
		t.m[key] = tu
	}
	tu.waiting++
	t.mu.Unlock()
	leave := func() {
		t.mu.Lock()
		// Kept while idle, so that the next writer, a moment later, still
		// starts from last.
		if tu.waiting--; tu.waiting == 0 {
			tu.left = now()
		}
		t.mu.Unlock()
	}
	select {
	case <-tu.token:
		return tu, func() { tu.token <- struct{}{}; leave() }, nil
	case <-ctx.Done():
		leave()
		return nil, nil, ctx.Err()
	}
}

// sweep forgets the turns nobody has held for idle, and reports whether
// any are left.
func (t *turns) sweep(now time.Time, idle time.Duration) (left bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for k, tu := range t.m {
		if tu.waiting == 0 && now.Sub(tu.left) > idle {
			delete(t.m, k)
		}
	}
	return len(t.m) > 0
}

// A lost compare-and-set means another instance wrote in between: it is
// retried, after a merge, for as long as the call's deadline allows, never a
// fixed number of rounds (a fixed count loses writes when many instances
// write one partition at once). After the first few immediate retries each
// round waits a random time up to an exponentially growing bound ("full
// jitter"), so that colliding writers spread out instead of colliding again.
const (
	conflictFreeRetries = 2
	conflictBackoffBase = 500 * time.Microsecond
	conflictBackoffCap  = 50 * time.Millisecond
)

// conflictBackoff returns how long to wait before retry n (1-based) of a
// lost compare-and-set.
func conflictBackoff(n int) time.Duration {
	if n <= conflictFreeRetries {
		return 0
	}
	bound := conflictBackoffCap
	if shift := n - conflictFreeRetries; shift < 10 {
		bound = min(conflictBackoffBase<<shift, conflictBackoffCap)
	}
	return rand.N(bound)
}

// pending returns a copy of w to keep while the breaker is open: the flush
// that runs it later must not share it with the Export that made it.
func (w *write) pending() *write {
	c := *w
	c.sealedLen, c.conflicts, c.storeErrors, c.unreadable = 0, 0, 0, 0
	c.compact()
	return &c
}

// failed reports a store failure the write absorbs.
func (w *write) failed(ctx context.Context, err error) {
	w.storeErrors++
	w.a.storeFailed(ctx, "export", w.key, err)
}

// report tells e how the write went: it stored version v, or failed with
// err and was kept (or not) for the store's return.
func (w *write) report(ctx context.Context, e *observe.Event, v driver.Version, err error, kept bool) {
	e.Conflicts, e.StoreErrors, e.Unreadable = w.conflicts, w.storeErrors, w.unreadable
	w.conflicts, w.storeErrors, w.unreadable = 0, 0, 0 // a requeued write starts again
	switch {
	case err == nil && v == driver.NoVersion:
		e.Outcome = observe.OutcomeDeleted
	case err == nil && w.merged:
		e.Outcome = observe.OutcomeMerged
	case err == nil:
		e.Outcome = observe.OutcomeWritten
	case kept:
		e.Outcome, e.Reason = observe.OutcomeKept, observe.ReasonBreakerOpen
	default:
		e.Outcome, e.Reason = observe.OutcomeError, reasonOf(ctx, err)
	}
	if err == nil {
		e.Bytes = w.sealedLen
	}
}

func (w *write) run(ctx context.Context) (driver.Version, error) {
	a := w.a
	if !w.versionKnown {
		w.ifVersion = driver.NoVersion // try to create; a conflict loads and merges
	}
	tu, done, err := a.turns.take(ctx, w.key, a.cfg.now)
	if err != nil {
		return driver.NoVersion, err
	}
	defer done()
	if last := tu.last; last != nil && w.doc != nil && last.seq > w.baseSeq && last.version != w.ifVersion {
		// The writer before us stored after our client loaded: start from
		// what it stored, which the store most likely still holds.
		w.rebaseOn(last.version, last.doc)
	}
	tu.last = nil
	v, err := w.loop(ctx)
	w.compact() // tu.last, the breaker, the L1 and the client keep w.doc
	if err == nil && w.doc != nil && w.doc.hasTokens() {
		tu.last = &stored{version: v, doc: w.doc, seq: a.nextSeq()}
	}
	return v, err
}

func (w *write) loop(ctx context.Context) (driver.Version, error) {
	a := w.a
	failures, conflicts := 0, 0
	for {
		if w.doc != nil && !w.doc.hasTokens() {
			return driver.NoVersion, a.deleteKey(ctx, w.key)
		}
		var err error
		var v driver.Version
		sealed, err := a.seal(ctx, w.out, w.key)
		if err == nil {
			v, err = a.save(ctx, w.key, sealed, w.ifVersion, a.ttlFor(w.doc))
		}
		switch {
		case err == nil:
			w.sealedLen = len(sealed)
			return v, nil
		case errors.Is(err, driver.ErrConflict):
			conflicts++
			w.conflicts++
			if d := conflictBackoff(conflicts); d > 0 {
				if serr := sleepCtx(ctx, d); serr != nil {
					return driver.NoVersion, errors.Join(err, serr)
				}
			}
			if lerr := w.rebase(ctx); lerr == nil {
				continue
			} else if errors.Is(lerr, errRemoved) {
				return driver.NoVersion, lerr
			} else {
				err = lerr
			}
		case errors.Is(err, driver.ErrTooLarge), ctx.Err() != nil:
			return driver.NoVersion, err
		}
		failures++
		w.failed(ctx, err)
		if failures >= a.cfg.exportAttempts || a.brk.isOpen(w.key) {
			return driver.NoVersion, err
		}
		if serr := sleepCtx(ctx, time.Duration(failures*failures)*10*time.Millisecond); serr != nil {
			return driver.NoVersion, errors.Join(err, serr)
		}
	}
}

// rebase loads what another writer stored and merges ours into it.
func (w *write) rebase(ctx context.Context) error {
	a := w.a
	blob, v, err := a.load(ctx, w.key)
	switch {
	case errors.Is(err, driver.ErrNotFound), errors.Is(err, driver.ErrCorrupt):
		w.ifVersion = driver.NoVersion
		return nil
	case err != nil:
		return err
	}
	w.ifVersion = v
	plain, err := a.open(ctx, blob, w.key)
	if err != nil {
		w.unreadable++
		return nil // theirs is unreadable: ours replaces it
	}
	if isRemoval(plain) {
		// Removed after this write loaded its base: the removal wins,
		// unless what it writes is a new sign-in's (see sessions.go).
		if !mayStoreOver(w.doc, decodeRemoval(plain), true) {
			return errRemoved
		}
		w.rebaseOn(v, &document{})
		return nil
	}
	if w.doc == nil {
		return nil // not MSAL's shape: last writer wins
	}
	theirs, err := parseDocument(plain)
	if err != nil {
		return nil
	}
	if !a.cfg.singlePart {
		// Another writer may run another version or another tool: what it
		// stored of other partitions stays out of the merge.
		theirs, _ = theirs.ownedBy(w.partitionKey, w.base)
	}
	w.rebaseOn(v, theirs)
	return nil
}

// rebaseOn merges ours into theirs, stored at version v.
func (w *write) rebaseOn(v driver.Version, theirs *document) {
	w.ifVersion = v
	w.doc = merge3(w.base, w.doc, theirs)
	w.base = theirs
	w.out = w.doc.encode()
	w.merged, w.docShared = true, true
}

// compact makes w.doc point into w.out only, so that what keeps w (the
// breaker, the L1, a client's model) holds the partition's own bytes and
// no more: what MaxPendingBytes and L1Options.MaxBytes count.
func (w *write) compact() {
	if !w.docShared || w.doc == nil {
		return
	}
	if d, err := parseDocument(w.out); err == nil {
		w.doc = d
	}
	w.docShared = false
}

// ttlFor returns how long a partition holding doc lives.
func (a *Adapter) ttlFor(doc *document) time.Duration {
	if doc == nil || doc.isUserCache() {
		return a.cfg.userTTL
	}
	exp := doc.latestExpiry()
	if exp.IsZero() {
		return a.cfg.userTTL
	}
	return min(max(exp.Sub(a.cfg.now()), a.cfg.minTTL), a.cfg.userTTL)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
