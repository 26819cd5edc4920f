package msalcache

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/cache"
)

// errMSALRejected stands in, in logs, for the error of MSAL's Unmarshal.
var errMSALRejected = errors.New("MSAL-Go could not decode it")

// emptyCache resets MSAL's in-memory cache.
var emptyCache = []byte("{}")

// Adapter persists MSAL-Go's token cache in a Store. It implements
// cache.ExportReplace: pass it to confidential.WithCache or public.WithCache.
// One Adapter serves any number of MSAL clients and goroutines.
type Adapter struct {
	store       driver.Store
	cfg         config
	reprotector driver.Reprotector
	// direct and directProtector: the store (the Protector) returns by
	// ctx's deadline on its own, so it is called without a goroutine.
	direct, directProtector bool
	hasher                  driver.KeyHasher // names partitions when the Protector holds a secret
	keyPrefix               string
	stats                   StatsCounter // Stats, the built-in Observer
	obs                     observe.Observer     // the others (WithObserver), or nil
	system                  string       // Event.Store
	turns                   turns        // one Export at a time per partition

	// clock orders loads and writes, so that a slow load never replaces
	// what a newer load or write put in a client's cache.
	clock atomic.Uint64

	// mu guards the maps below. Lock order: a clientState's mu may be held
	// while taking mu, never the reverse.
	mu        sync.Mutex
	clients   map[any]*clientState // by MSAL cache target (its manager)
	obo       map[string]time.Time // store keys seen on MSAL's on-behalf-of path
	lastSweep time.Time
	// sweeper forgets idle clients while no call arrives: the map holds
	// MSAL's managers, so without it a burst of clients per request would
	// stay in memory until the next call. It runs only while the maps
	// hold something, so an unused Adapter can be collected.
	sweeper *time.Timer
	closed  bool // Close was called: no more background work

	rm      removals      // removals the store has not taken, and recent ones
	live    liveLoads     // calls that loaded a live partition (removal.go)
	closing chan struct{} // closed by Close
	// watchGap: the watch reported down and not yet up again.
	watchGap atomic.Bool

	brk       *breaker  // nil with BreakerOptions.Disabled
	l1        *l1       // nil without WithL1
	versioner driver.Versioner // the store, when it can read versions cheaply
	closeOnce sync.Once
	// lendWarned: the one warning of a lending overflow was logged.
	lendWarned atomic.Bool
}

// New returns an Adapter that keeps MSAL's token cache in store. It fails
// unless the options choose between WithProtector and WithPlaintext, so
// that tokens are never stored in clear by accident.
func New(store driver.Store, opts ...Option) (*Adapter, error) {
	if store == nil {
		return nil, errors.New("msalcache: New(nil): pass a Store, e.g. boltstore.Open or memstore.New()")
	}
	cfg := defaultConfig()
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	switch {
	case cfg.protector == nil && !cfg.plaintext:
		return nil, errors.New("msalcache: choose WithProtector(p) to encrypt tokens at rest, or WithPlaintext() to store them in clear")
	case cfg.protector != nil && cfg.plaintext:
		return nil, errors.New("msalcache: WithProtector and WithPlaintext both given: choose one")
	}
	a := &Adapter{
		store:     store,
		cfg:       cfg,
		keyPrefix: "tc/" + cfg.namespace + "/",
		clients:   make(map[any]*clientState),
		obo:       make(map[string]time.Time),
		closing:   make(chan struct{}),
	}
	a.reprotector, _ = cfg.protector.(driver.Reprotector)
	a.direct, a.directProtector = boundsContext(store), boundsContext(cfg.protector)
	if !cfg.breaker.Disabled {
		a.brk = newBreaker(cfg.breaker, store, a, cfg.now, cfg.timeout)
	}
	a.hasher, _ = cfg.protector.(driver.KeyHasher)
	switch len(cfg.observers) {
	case 0:
	case 1:
		a.obs = cfg.observers[0]
	default:
		a.obs = observers(cfg.observers)
	}
	if n, ok := store.(driver.SystemNamer); ok {
		a.system = n.SystemName()
	}
	if cfg.l1 != nil {
		w, pushes := store.(driver.Watcher)
		a.l1 = newL1(*cfg.l1, cfg.now, pushes)
		a.versioner, _ = store.(driver.Versioner)
		if pushes {
			if err := a.watch(w); err != nil {
				return nil, err
			}
		}
	}
	return a, nil
}

// StoreKey returns the key under which the Adapter stores partitionKey: the
// namespace and a hash of the partition key, which names a user and so
// never reaches the store in clear. When the Protector implements KeyHasher
// (protect.KeyRing does) the hash is keyed with the ring's secret, so that
// reading the store does not tell whether a given user has tokens cached;
// otherwise it is a SHA-256. Moving between the two (enabling encryption,
// or upgrading from a version without keyed names) renames every
// partition: each is a miss once, then re-acquired and shared again.
// Operators use StoreKey to find or delete one partition.
func (a *Adapter) StoreKey(partitionKey string) string {
	if a.cfg.singlePart {
		return a.keyPrefix + "all"
	}
	var sum [32]byte
	if a.hasher != nil {
		sum = a.hasher.HashKey(partitionKey)
	} else {
		sum = sha256.Sum256([]byte(partitionKey))
	}
	return a.keyPrefix + base64.RawURLEncoding.EncodeToString(sum[:])
}

// withDeadline applies the default timeout to a context that has none.
func (a *Adapter) withDeadline(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, a.cfg.timeout)
}

// Replace loads a partition into MSAL's in-memory cache. It implements
// cache.ExportReplace.
//
// Replace never fails a token call because of the store: an absent,
// unreadable, undecryptable or corrupt partition, or a store that is down,
// is a miss. It returns an error only when ctx itself is done.
//
// A miss still resets MSAL's in-memory cache, so that the next Export
// cannot copy one user's tokens into another user's partition. When MSAL
// already holds the stored version of the partition, Replace leaves its
// cache alone: nothing is decrypted or parsed.
//
// When one MSAL client serves many users at once, MSAL loads a partition
// under a read lock and reads it after releasing the lock, so concurrent
// calls would otherwise wipe each other's partitions in between. Replace therefore keeps in MSAL's cache the partitions loaded into
// the same client in the last moments; MSAL filters what it reads by
// account, so the extra entries never yield a wrong token, and Export
// drops them again before writing.
func (a *Adapter) Replace(ctx context.Context, u cache.Unmarshaler, hints cache.ReplaceHints) error {
	if u == nil {
		return errors.New("msalcache: Replace with a nil cache")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return a.replaceCall(ctx, u, hints, callInfo{})
}

// replaceCall is Replace for a call the Adapter may know more of (ci).
func (a *Adapter) replaceCall(ctx context.Context, u cache.Unmarshaler, hints cache.ReplaceHints, ci callInfo) error {
	if u == nil {
		return errors.New("msalcache: Replace with a nil cache")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	o := a.startOp(ctx, observe.OpReplace)
	defer o.finish()
	return a.replace(&o, u, hints, ci)
}

// replace is Replace, telling o how it went.
func (a *Adapter) replace(o *op, u cache.Unmarshaler, hints cache.ReplaceHints, ci callInfo) error {
	key := a.StoreKey(hints.PartitionKey)
	cs := a.clientFor(u, ci)
	err := a.load1(o, u, hints, key, cs)
	a.afterLoad(o.ctx, ci, cs, key, &o.e)
	return err
}

// afterLoad notes what the Replace on key handed MSAL that a later Export
// must know of: a removal record (and whether this call may store over
// it), or, for a client the application drives, a live partition loaded
// by this call (see removal.go).
func (a *Adapter) afterLoad(ctx context.Context, ci callInfo, cs *clientState, key string, e *observe.Event) {
	switch {
	case e.Reason == observe.ReasonRemoved || e.Reused:
		if cs.fence(key, func() bool { return a.fenced(ctx, ci, key) }) {
			e.Outcome, e.Reason, e.Reused = observe.OutcomeMiss, observe.ReasonRemoved, false
			return
		}
	case e.Outcome != observe.OutcomeHit && e.Outcome != observe.OutcomeL1Hit:
		return
	}
	if ci.kind == callUnknown {
		a.live.note(ctx, key, a.cfg.now())
	}
}

// load1 is replace once the partition's key and client are known.
func (a *Adapter) load1(o *op, u cache.Unmarshaler, hints cache.ReplaceHints, key string, cs *clientState) error {
	ctx, e := o.ctx, &o.e
	if cs.isPartitioned() {
		a.markOBO(key)
		e.Outcome, e.Reason = observe.OutcomeSkipped, observe.ReasonOBO
		return nil
	}
	seq := a.nextSeq()
	hit, inL1 := o.register(key)
	if inL1 && hit.fresh && a.replaceFromL1(ctx, cs, u, key, seq, hit, e) {
		return nil
	}
	if a.brk.isOpen(key) {
		a.replaceDuringOutage(ctx, cs, u, key, seq, e)
		return nil
	}
	dctx, cancel := a.bound(ctx, key)
	defer cancel()
	if inL1 && !hit.fresh && a.versioner != nil {
		// Older than MaxStale: ask the store for the version only.
		if v, err := a.version(dctx, key); err == nil && v == hit.version ||
			errors.Is(err, driver.ErrNotFound) && hit.version == driver.NoVersion {
			o.keep(hit.version, hit.raw, hit.doc)
			if a.replaceFromL1(ctx, cs, u, key, seq, hit, e) {
				e.Revalidated, e.Age = true, 0 // confirmed just now
				return nil
			}
		}
	}
	p, exact := a.replaceFromStore(ctx, dctx, cs, key, hints.PartitionKey, seq, e)
	if o.tk != nil {
		learned := p
		if exact && p == nil {
			// MSAL holds the stored version: the L1 keeps the client's
			// copy, or a long-lived client that loaded before the L1's
			// watch was up would never fill it.
			learned = cs.current(key)
		}
		if exact && learned != nil {
			raw, doc := learned.raw, learned.doc
			if learned.removed {
				raw, doc = encodeRemoval(learned.removedSessions), removedDoc
			}
			o.keep(learned.version, raw, doc)
		} else {
			o.learn = false
		}
	}
	if cerr := ctx.Err(); cerr != nil {
		e.Outcome, e.Reason = observe.OutcomeError, observe.ReasonCanceled
		return cerr
	}
	if p == nil {
		return nil // MSAL holds the partition already
	}
	if cs.handOver(ctx, a, u, key, p, e) {
		a.markOBO(key)
	}
	return nil
}

// replaceDuringOutage serves a Replace while the breaker is open, without
// the store: from the L1 when it holds the partition confirmed within
// MaxStale (handed over with the partitions MSAL holds, up to
// maxKeptOutage of them), else from what MSAL holds, else from the write
// kept for it. A miss leaves
// MSAL's cache as it is: Export stores only a partition's own entries, and
// resetting would sign this instance's users out for the outage's length.
func (a *Adapter) replaceDuringOutage(ctx context.Context, cs *clientState, u cache.Unmarshaler, key string, seq uint64, e *observe.Event) {
	e.Outcome, e.Reason = observe.OutcomeSkipped, observe.ReasonBreakerOpen
	if cs.needsReset() {
		// A Remove asked for it: the removed partition must not stay.
		cs.handOver(ctx, a, u, key, &partition{seq: seq}, e)
		return
	}
	if a.l1 != nil {
		if hit, ok := a.l1.fallback(key); ok {
			e.Outcome, e.Age = observe.OutcomeL1Hit, hit.age
			if cs.holds(key, hit.version, true, a.cfg.now()) {
				e.Reused = true
				return
			}
			p := hit.partition(seq)
			if p.removed {
				e.Outcome, e.Reason = observe.OutcomeMiss, observe.ReasonRemoved
			}
			if cs.handOverKeeping(ctx, a, u, key, p, e) {
				a.markOBO(key)
			}
			return
		}
	}
	if cs.holds(key, 0, false, a.cfg.now()) { // marks it used
		return
	}
	if out, doc, ok := a.brk.peek(key); ok && doc != nil {
		// Written during this outage and no longer in MSAL's memory (a
		// client keeps at most maxKeptOutage partitions meanwhile).
		p := &partition{seq: seq, raw: out, doc: doc, stale: true}
		if cs.handOverKeeping(ctx, a, u, key, p, e) {
			a.markOBO(key)
		}
	}
}

// replaceFromL1 serves a partition the L1 confirmed. It reports false when
// it cannot (the L1 keeps versions only, and MSAL does not hold this one).
func (a *Adapter) replaceFromL1(ctx context.Context, cs *clientState, u cache.Unmarshaler, key string, seq uint64, hit l1Hit, e *observe.Event) bool {
	if cs.holds(key, hit.version, true, a.cfg.now()) {
		e.Outcome, e.Reused, e.Age = observe.OutcomeL1Hit, true, hit.age
		return true
	}
	if !hit.hasData {
		return false
	}
	e.Outcome, e.Age = observe.OutcomeL1Hit, hit.age
	p := hit.partition(seq)
	if p.removed {
		e.Outcome, e.Reason = observe.OutcomeMiss, observe.ReasonRemoved
	}
	if cs.handOver(ctx, a, u, key, p, e) {
		a.markOBO(key)
	}
	return true
}

// replaceFromStore loads partition key from the store. It returns nil
// when MSAL already holds what the store holds, else the partition to hand
// over, and whether that partition is what the store holds, exactly, for
// the L1 to keep.
func (a *Adapter) replaceFromStore(ctx, dctx context.Context, cs *clientState, key, partitionKey string, seq uint64, e *observe.Event) (p *partition, exact bool) {
	blob, v, err := a.load(dctx, key)
	if ctx.Err() != nil {
		return nil, false
	}
	e.Bytes = len(blob)
	switch {
	case err == nil && len(blob) > a.cfg.maxPartition:
		e.Outcome, e.Reason = observe.OutcomeError, observe.ReasonOversized
		a.log(ctx, slog.LevelWarn,
			"replace: stored partition is larger than WithMaxPartitionSize allows; treating it as a miss",
			"replace", key, slog.Int("size", len(blob)), slog.Int("max", a.cfg.maxPartition))
		return (&partition{version: v, known: true, seq: seq}).unreadable(), false
	case err == nil:
		e.Outcome = observe.OutcomeHit
		if cs.holds(key, v, true, a.cfg.now()) {
			e.Reused = true
			// exact: the L1 learns what MSAL holds, which is what the
			// store holds (Replace takes it from the client's model).
			return nil, true
		}
		p = &partition{version: v, known: true, seq: seq}
		plain, oerr := a.open(dctx, blob, key)
		if oerr != nil {
			e.Outcome, e.Reason = observe.OutcomeError, observe.ReasonDecrypt
			a.log(ctx, slog.LevelWarn, "replace: cannot decrypt stored partition; treating it as a miss", "replace", key, errAttr(oerr))
			return p.unreadable(), false
		}
		if isRemoval(plain) {
			e.Outcome, e.Reason = observe.OutcomeMiss, observe.ReasonRemoved
			p.removed, p.removedSessions = true, decodeRemoval(plain)
			return p, true
		}
		p = a.fill(ctx, p, partitionKey, key, plain, a.needsReprotect(blob), e)
		if !p.stale && p.docErr == nil {
			_, _ = p.document()
		}
		return p, !p.stale && p.docErr == nil
	case errors.Is(err, driver.ErrNotFound):
		e.Outcome = observe.OutcomeMiss
		if cs.holds(key, driver.NoVersion, true, a.cfg.now()) {
			return nil, false
		}
		return &partition{known: true, seq: seq}, true
	case errors.Is(err, driver.ErrCorrupt):
		// The store holds a record it cannot decode: a miss, and the next
		// Export replaces the record (Save with NoVersion does).
		e.Outcome, e.Reason = observe.OutcomeError, observe.ReasonCorrupt
		a.log(ctx, slog.LevelWarn, "replace: the store holds a corrupt record for this partition; treating it as a miss", "replace", key, errAttr(err))
		return (&partition{known: true, seq: seq}).unreadable(), false
	default:
		e.Outcome, e.Reason = observe.OutcomeError, observe.ReasonStore
		e.StoreErrors++
		a.storeFailed(ctx, "replace", key, err)
		a.log(ctx, slog.LevelWarn, "replace: store failed; treating it as a miss", "replace", key, errAttr(err))
		// MSAL still holds what it last loaded of this partition: keep
		// serving it while the store is away. So does a client the adapter
		// forgot while it was idle: resetting it would sign its users out
		// of this instance for the length of the outage. (A miss resets,
		// an error does not: Export stores only the partition's own
		// entries, and MSAL serves an account only its own tokens.)
		if cs.holds(key, 0, false, a.cfg.now()) || cs.untracked() {
			return nil, false
		}
		return &partition{seq: seq}, false
	}
}

// fill sets p's data to plain, the stored partition partitionKey decrypted,
// keeping only the entries that belong to that partition (see
// ownership.go): whatever the store holds, MSAL is never handed another
// account's or app's entries under this key. stale marks p for rewriting on
// the next Export, as it is when entries had to be dropped.
func (a *Adapter) fill(ctx context.Context, p *partition, partitionKey, key string, plain []byte, stale bool, e *observe.Event) *partition {
	if a.cfg.singlePart {
		p.raw, p.stale = plain, stale
		return p
	}
	doc, err := parseDocument(plain)
	if err != nil {
		e.Outcome, e.Reason = observe.OutcomeError, observe.ReasonCorrupt
		a.log(ctx, slog.LevelWarn, "replace: stored partition is not an MSAL cache; treating it as a miss", "replace", key, errAttr(err))
		return p.unreadable()
	}
	owned, dropped := doc.ownedBy(partitionKey, nil)
	if dropped > 0 {
		e.Foreign = dropped
		a.log(ctx, slog.LevelWarn,
			"replace: stored partition holds entries of other partitions (written by another tool or an older version); they are not loaded and the next Export rewrites it",
			"replace", key, slog.Int("entries", dropped))
		plain, stale = owned.encode(), true
	}
	p.raw, p.doc, p.stale = plain, owned, stale
	return p
}

// Export writes MSAL's cache for one partition to the store. It implements
// cache.ExportReplace.
//
// Export writes with compare-and-set against the version the preceding
// Replace loaded; when another instance wrote in between, it merges the two
// caches entry by entry and tries again, so concurrent writers lose no
// token. It skips the write when nothing changed, deletes the partition
// when MSAL exported it empty, and gives each partition a TTL: a user's
// sign-in lives WithUserTTL after its last write, app tokens until the
// latest of them expires.
//
// A store that keeps failing does not fail the token call: MSAL has the
// token in memory and returns it; Export logs, counts (Stats.ExportFailures)
// and returns nil. It returns an error only when ctx itself is done or MSAL
// cannot marshal its cache.
func (a *Adapter) Export(ctx context.Context, m cache.Marshaler, hints cache.ExportHints) error {
	if m == nil {
		return errors.New("msalcache: Export with a nil cache")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return a.exportCall(ctx, m, hints, callInfo{})
}

// exportCall is Export for a call the Adapter may know more of (ci).
func (a *Adapter) exportCall(ctx context.Context, m cache.Marshaler, hints cache.ExportHints, ci callInfo) error {
	if m == nil {
		return errors.New("msalcache: Export with a nil cache")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	o := a.startOp(ctx, observe.OpExport)
	defer o.finish()
	return a.export(&o, m, hints, ci)
}

// export is Export, telling e how it went.
func (a *Adapter) export(o *op, m cache.Marshaler, hints cache.ExportHints, ci callInfo) error {
	ctx, e := o.ctx, &o.e
	key := a.StoreKey(hints.PartitionKey)
	if a.isOBO(key) {
		// MSAL hands the wrong manager on this path: what it would have
		// us store is other users' data (see the package documentation).
		e.Outcome, e.Reason = observe.OutcomeSkipped, observe.ReasonOBO
		return nil
	}
	data, err := m.Marshal()
	if err != nil {
		e.Outcome, e.Reason = observe.OutcomeError, observe.ReasonUnknownShape
		return fmt.Errorf("msalcache: MSAL could not marshal its cache: %w", err)
	}
	if len(data) > a.cfg.maxPartition {
		e.Outcome, e.Reason = observe.OutcomeError, observe.ReasonOversized
		a.log(ctx, slog.LevelError,
			"export: MSAL's cache is larger than WithMaxPartitionSize allows; the token is served but not stored",
			"export", key, slog.Int("size", len(data)), slog.Int("max", a.cfg.maxPartition))
		return nil
	}
	dctx, cancel := a.bound(ctx, key)
	defer cancel()

	cs := a.clientFor(m, ci)
	cs.mu.Lock()
	defer cs.mu.Unlock()
	var own *partition
	if cs.valid {
		own = cs.parts[key]
	}
	if ci.kind == callUnknown {
		defer a.live.forget(ctx, key) // the call that loaded it ends here
	}
	// own.raw holds this partition's entries only, so equal bytes mean
	// MSAL holds nothing new and nothing lent.
	if own != nil && own.known && !own.stale && bytes.Equal(data, own.raw) {
		e.Outcome = observe.OutcomeSkipped
		return nil
	}

	var ownDoc *document
	if own != nil {
		ownDoc, _ = own.document()
	}
	doc, perr := parseDocument(data)
	out := data
	var docShared bool
	switch {
	case perr == nil && !a.cfg.singlePart:
		// Lent entries, and anything else MSAL holds of other
		// partitions, stay out of this one (see ownership.go).
		var dropped int
		if doc, dropped = doc.ownedBy(hints.PartitionKey, ownDoc); dropped > 0 {
			out = doc.encode()
		}
		docShared = dropped > 0 // doc still points into MSAL's whole cache
	case perr != nil && !a.cfg.singlePart:
		// Without MSAL's shape nothing tells whose entries these are, and
		// storing them could hand one account's tokens to another.
		e.Outcome, e.Reason = observe.OutcomeError, observe.ReasonUnknownShape
		a.log(ctx, slog.LevelError, "export: MSAL's cache is not in the shape this version knows; not stored", "export", key, errAttr(perr))
		return nil
	case perr != nil:
		doc = nil // one partition for everything: store as is, last writer wins
	}
	if own != nil && own.removed {
		// Over a removal record: only a new sign-in is stored. Its
		// sessions say whether it is one; failing that, the call.
		if !mayStoreOver(doc, own.removedSessions, own.fenced) {
			a.refuseRemoved(ctx, cs, key, e)
			return nil
		}
	}
	if doc != nil && own != nil && own.known && !own.stale && ownDoc != nil && doc.equalEntries(ownDoc) ||
		doc != nil && own != nil && own.removed && !doc.hasTokens() {
		// Nothing new; over a removal record, nothing to sign in with
		// (storing it would delete the record).
		e.Outcome = observe.OutcomeSkipped
		return nil
	}

	w := write{a: a, key: key, partitionKey: hints.PartitionKey, out: out, doc: doc, docShared: docShared}
	if own != nil {
		w.base, w.ifVersion = ownDoc, own.version
		w.versionKnown, w.baseSeq = own.known, own.seq
	}
	o.register(key)
	var v driver.Version
	werr := errBreakerOpen
	if !a.brk.isOpen(key) {
		if werr = a.takeRemoval(dctx, &w, own); werr == nil {
			if p, ok := a.brk.take(key); ok {
				a.takeIn(&w, p)
			}
			v, werr = w.run(dctx)
		}
	}
	if errors.Is(werr, errRemoved) {
		o.drop()
		e.Conflicts, e.StoreErrors, e.Unreadable = w.conflicts, w.storeErrors, w.unreadable
		a.refuseRemoved(ctx, cs, key, e)
		return nil
	}
	w.compact() // if run did not: the client's model keeps w.doc
	// Kept for the store's return, unless the caller gave up: the write
	// failed for want of the store and the breaker is open.
	kept := werr != nil && ctx.Err() == nil && retryable(werr) && a.brk.isOpen(key) && a.brk.keep(key, w.pending())
	switch {
	case werr != nil:
		o.drop() // a timed-out write may still land
	case v == driver.NoVersion: // deleted: MSAL exported it empty
		o.keep(driver.NoVersion, nil, nil)
	default:
		o.keep(v, w.out, w.doc)
	}
	w.report(ctx, e, v, werr, kept)
	next := &partition{version: v, known: werr == nil, seq: a.nextSeq(), raw: w.out, doc: w.doc, used: a.cfg.now(), behind: w.merged}
	if werr != nil {
		// MSAL keeps the token in memory. Remember it as this partition's
		// own data, so no other partition's Export takes it, and write it
		// next time even if nothing else changes.
		next.version, next.known, next.stale = w.ifVersion, false, true
	}
	if cs.valid || len(cs.parts) == 0 {
		if cs.parts == nil {
			cs.parts = make(map[string]*partition)
		}
		cs.parts[key] = next
		cs.valid = true
	}
	if werr != nil && !kept {
		if cerr := ctx.Err(); cerr != nil {
			return cerr
		}
		a.log(ctx, slog.LevelError, "export: could not store the token cache; the token is served but not shared", "export", key, errAttr(werr))
	}
	return nil
}

// takeIn folds into w the write p the breaker kept for w's partition
// during an outage and has not flushed yet: ours wins where both changed
// an entry, theirs stays where only it did, as in a merge with another
// writer.
func (a *Adapter) takeIn(w *write, p *write) {
	if p.doc != nil && w.doc != nil {
		w.doc = merge3(w.base, w.doc, p.doc)
		w.out = w.doc.encode()
		w.merged, w.docShared = true, true
	}
	a.brk.flushed.Add(1)
}

// takeRemoval stores first the removal of w's partition that this
// instance could not store yet, if any. The write then goes ahead over the
// removal record only if the call loaded its partition after the removal
// was asked (a new sign-in); otherwise it returns errRemoved.
func (a *Adapter) takeRemoval(ctx context.Context, w *write, own *partition) error {
	rseq, ok := a.rm.pendingSeq(w.key)
	if !ok {
		return nil
	}
	v, err := a.storeRemoval(ctx, w.key)
	if err != nil && !errors.Is(err, driver.ErrNotReplicated) {
		return err
	}
	a.rm.stored(w.key, rseq, a.cfg.now())
	if own == nil || own.seq <= rseq {
		return errRemoved
	}
	w.base, w.ifVersion, w.versionKnown = &document{}, v, true
	return nil
}

// refuseRemoved ends an Export that must not be stored because its
// partition was removed after the call began: MSAL's copy is the session
// the user signed out of, so the client resets before it serves again.
// The caller holds cs.mu.
func (a *Adapter) refuseRemoved(ctx context.Context, cs *clientState, key string, e *observe.Event) {
	e.Outcome, e.Reason = observe.OutcomeSkipped, observe.ReasonRemoved
	cs.resetLocked()
	a.log(ctx, slog.LevelInfo, "export: the partition was removed (sign-out) while this call was in flight; not stored", "export", key)
}

// Remove removes a partition from the store, as sign-out should: MSAL's
// RemoveAccount exports under the empty partition key, so the user's own
// partition would otherwise survive it. Pass the key MSAL uses for the
// user's partition, the account's HomeAccountID. SignOut calls it.
//
// The partition is replaced by a removal record (sealed like any blob,
// kept WithUserTTL), not deleted, so that the removal wins against every
// write that began before it, on any instance: a token call in flight
// (MSAL loads a partition twice in a refresh, and a deleted partition
// would look like a new sign-in to the second load), a write kept by the
// breaker during an outage, a merge or a retry. A new sign-in after the
// removal is stored as usual. Which calls count as new sign-ins: through
// ClientPool, AcquireTokenByAuthCode and AcquireTokenByCredential; through
// an MSAL client the application drives itself, any call that did not
// load the live partition earlier under the same context (MSAL passes the
// caller's ctx to every hook call of one token call, so give each request
// its own, as r.Context() is; a call that reuses the context of a call
// that loaded the user's session before the removal is taken for that
// call, and its sign-in is stored on its next attempt).
//
// On a store that replicates asynchronously (redisstore with replicas,
// see DurableSaver) Remove waits for a replica, bounded by ctx; the
// Adapter re-asserts the removals of the last minutes when its watch
// (WithL1) sees the store back after a gap, such as a failover.
//
// Every MSAL client of this Adapter drops the partition whatever the store
// says. When the store does not take the removal (down, or the breaker
// open), Remove returns an error wrapping ErrRemovalPending and keeps
// retrying in the background until it does; Close tries once more.
func (a *Adapter) Remove(ctx context.Context, partitionKey string) error {
	o := a.startOp(ctx, observe.OpRemove)
	defer o.finish()
	return a.remove(&o, partitionKey)
}

// nextSeq returns the next tick of the clock that orders loads and writes.
func (a *Adapter) nextSeq() uint64 { return a.clock.Add(1) }
