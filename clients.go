package msalcache

import (
	"context"
	"log/slog"
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/cache"
)

// clientState is the adapter's model of one MSAL client's in-memory cache:
// which partitions it holds and at which version. It lets Replace skip
// decrypting and re-parsing what MSAL already holds, and lets Export tell
// the entries of the partition being written from those the adapter lent
// from other partitions (see Replace).
type clientState struct {
	mu sync.Mutex
	// partitioned marks MSAL's on-behalf-of manager, which accepts no
	// external data at all (see the package documentation).
	partitioned bool
	// valid reports that parts describes MSAL's in-memory cache exactly.
	valid    bool
	parts    map[string]*partition // by store key
	lastUsed time.Time
	// mustReset marks a client whose cache may hold a removed partition:
	// the next Replace resets it even when the store fails.
	mustReset bool
	// exclusive marks a client that serves one call at a time
	// (ClientPool's): nothing is lent to it.
	exclusive bool
}

// partition is one stored partition as the adapter last saw it.
type partition struct {
	version driver.Version
	known   bool   // false after a store error: the version is unknown
	seq     uint64 // when it was loaded or written, in Adapter.clock order
	raw     []byte // plaintext JSON; nil when absent or unreadable
	stale   bool   // rewrite on the next Export even if nothing changed
	behind  bool   // MSAL's cache lacks entries of this version (merged in)
	used    time.Time
	// removed: the store holds a removal record (see removal.go), handed
	// to MSAL as an empty cache. fenced: what the call that loaded it
	// exports must not be stored there (not a new sign-in).
	removed, fenced bool
	// removedSessions: the sign-in sessions the removal record names.
	removedSessions []sessionID

	doc    *document // parsed raw, built on first use
	docErr error
}

// unreadable returns p's stand-in when its data cannot be used: empty
// (a miss for MSAL), at the same version, so the next Export overwrites it
// with compare-and-set, and stale, so it does even if nothing else changed.
func (p *partition) unreadable() *partition {
	if p.removed {
		return p
	}
	return &partition{version: p.version, known: p.known, seq: p.seq, used: p.used, stale: true}
}

func (p *partition) document() (*document, error) {
	if p.doc == nil && p.docErr == nil {
		if p.raw == nil {
			p.doc = &document{}
		} else {
			p.doc, p.docErr = parseDocument(p.raw)
		}
	}
	return p.doc, p.docErr
}

// holds reports whether MSAL's cache already holds partition key at
// version v (any version when exact is false), and marks it used.
func (cs *clientState) holds(key string, v driver.Version, exact bool, now time.Time) bool {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	cur := cs.parts[key]
	if !cs.valid || cur == nil || cur.behind || exact && (!cur.known || cur.version != v) {
		return false
	}
	cur.used = now
	cs.lastUsed = now
	return true
}

// resetLocked forgets what the model says of the client's cache and makes
// its next Replace reset it, even when the store fails: the client may
// hold a partition it must not serve. The caller holds cs.mu.
func (cs *clientState) resetLocked() {
	cs.valid, cs.parts, cs.mustReset = false, nil, true
}

// fence sets whether what the client exports of partition key may be
// stored over its removal record, and reports whether key holds one.
func (cs *clientState) fence(key string, fenced func() bool) bool {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	cur := cs.parts[key]
	if !cs.valid || cur == nil || !cur.removed {
		return false
	}
	cur.fenced = fenced()
	return true
}

// current returns a copy of what the client holds of partition key, nil
// when the model says nothing of it.
func (cs *clientState) current(key string) *partition {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	p := cs.parts[key]
	if !cs.valid || p == nil || !p.known || p.behind {
		return nil
	}
	if p.removed {
		return &partition{version: p.version, known: true, removed: true, removedSessions: p.removedSessions}
	}
	return &partition{version: p.version, known: true, raw: p.raw, doc: p.doc}
}

// untracked reports whether the adapter knows nothing of what MSAL's cache
// holds (a new client, or one forgotten while idle) and no Remove asked for
// a reset.
func (cs *clientState) untracked() bool {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return !cs.valid && !cs.mustReset && !cs.partitioned
}

// needsReset reports whether a Remove asked for the client's cache to be
// reset before it serves again.
func (cs *clientState) needsReset() bool {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return cs.mustReset
}

func (cs *clientState) isPartitioned() bool {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return cs.partitioned
}

// handOver unmarshals partition p into MSAL's cache u, together with the
// partitions of the same client loaded within the lending window. It
// reports whether u turned out to be MSAL's on-behalf-of manager.
func (cs *clientState) handOver(ctx context.Context, a *Adapter, u cache.Unmarshaler, key string, p *partition, e *observe.Event) (partitioned bool) {
	return cs.handOverLending(ctx, a, u, key, p, false, e)
}

// maxKeptOutage bounds the partitions a client keeps while the store is
// away: lending them all would make every call hand MSAL, and MSAL parse,
// the whole of what its users hold, and the memory grow with the square of
// the users. A partition beyond it comes back from the L1 or from the
// write the breaker kept for it.
const maxKeptOutage = 256

// handOverKeeping is handOver lending the partitions MSAL holds, whenever
// they were used (the most recent maxKeptOutage of them): while the store
// is away nothing could load them back.
func (cs *clientState) handOverKeeping(ctx context.Context, a *Adapter, u cache.Unmarshaler, key string, p *partition, e *observe.Event) (partitioned bool) {
	return cs.handOverLending(ctx, a, u, key, p, true, e)
}

func (cs *clientState) handOverLending(ctx context.Context, a *Adapter, u cache.Unmarshaler, key string, p *partition, all bool, e *observe.Event) (partitioned bool) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	now := a.cfg.now()
	cs.lastUsed = now
	if cur := cs.parts[key]; cs.valid && cur != nil && cur.seq > p.seq {
		p = cur // a newer load or write landed while we were loading
	}
	p.used = now

	var lent []keyed
	switch {
	case !cs.valid || a.cfg.singlePart || cs.exclusive:
	case all:
		lent, _ = recentPartitions(cs.parts, key, time.Time{}, maxKeptOutage)
	default:
		var over bool
		if lent, over = recentPartitions(cs.parts, key, now.Add(-a.cfg.lendWindow), a.cfg.maxLent); over {
			a.lendingOverflow(ctx, key, e)
		}
	}
	payload := p.raw
	if len(lent) > 0 {
		own, err := p.document()
		if err != nil {
			e.Outcome, e.Reason = observe.OutcomeError, observe.ReasonCorrupt
			a.log(ctx, slog.LevelWarn, "replace: stored partition is not an MSAL cache; treating it as a miss", "replace", key, errAttr(err))
			p = p.unreadable()
			own, _ = p.document()
		}
		docs := make([]*document, 0, len(lent))
		for _, q := range lent {
			if d, err := q.p.document(); err == nil {
				docs = append(docs, d)
			}
		}
		payload = union(own, docs).encode()
	}
	if payload == nil {
		payload = emptyCache
	}
	if err := u.Unmarshal(forMSAL(u, payload)); err != nil {
		if err := u.Unmarshal(emptyCache); err != nil {
			// Only MSAL's on-behalf-of manager rejects an empty cache.
			// Leave it alone: it partitions its data itself.
			cs.partitioned, cs.valid, cs.parts = true, false, nil
			return true
		}
		e.Outcome, e.Reason = observe.OutcomeError, observe.ReasonCorrupt
		// MSAL's decoder quotes what it read, and what it read is stored
		// data (a token, a user name): log the kind of failure only.
		a.log(ctx, slog.LevelWarn, "replace: MSAL rejected the stored partition; treating it as a miss", "replace", key, errAttr(errMSALRejected))
		p = p.unreadable()
		lent = nil
	}
	parts := make(map[string]*partition, len(lent)+1)
	for _, q := range lent {
		parts[q.key] = q.p
	}
	parts[key] = p
	cs.parts, cs.valid, cs.mustReset = parts, true, false
	return false
}

// keyed is a partition with its store key.
type keyed struct {
	key string
	p   *partition
}

// recentPartitions returns the partitions other than key used after since,
// at most limit of them, the most recently used first, and whether there
// were more.
func recentPartitions(parts map[string]*partition, key string, since time.Time, limit int) (_ []keyed, over bool) {
	var out []keyed
	for k, q := range parts {
		if k != key && q.used.After(since) {
			out = append(out, keyed{k, q})
		}
	}
	if len(out) > limit {
		// More users in flight at once than we lend: keep the newest.
		slices.SortFunc(out, func(x, y keyed) int { return y.p.used.Compare(x.p.used) })
		out = out[:limit]
		over = true
	}
	return out, over
}

// Idle client states and on-behalf-of marks are forgotten after these
// periods: MSAL pairs each Export with the Replace just before it, so the
// adapter only needs its model of a client for as long as the client is
// busy. A client that comes back starts afresh, which is always correct.
const (
	defaultClientIdle = 3 * time.Second
	oboMemory         = 10 * time.Minute
)

// clientFor returns the state of the MSAL client whose cache is target.
func (a *Adapter) clientFor(target any, ci callInfo) *clientState {
	if !reflect.TypeOf(target).Comparable() {
		return &clientState{} // cannot be tracked: model nothing, trust nothing
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.cfg.now()
	if now.Sub(a.lastSweep) > time.Second {
		a.sweepLocked(now)
	}
	cs := a.clients[target]
	if cs == nil {
		cs = &clientState{lastUsed: now, exclusive: ci.exclusive}
		a.clients[target] = cs
		a.armSweeperLocked()
	}
	return cs
}

func (a *Adapter) armSweeperLocked() {
	if a.sweeper == nil && !a.closed {
		a.sweeper = time.AfterFunc(a.cfg.clientIdle, a.sweepIdle)
	}
}

// sweepIdle runs on the sweeper's timer.
func (a *Adapter) sweepIdle() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.sweeper = nil
	if a.sweepLocked(a.cfg.now()) {
		a.armSweeperLocked()
	}
}

// sweepLocked forgets what has been idle long enough, and reports whether
// anything is left to sweep later.
func (a *Adapter) sweepLocked(now time.Time) (left bool) {
	a.lastSweep = now
	for k, cs := range a.clients {
		if cs.mu.TryLock() {
			idle := now.Sub(cs.lastUsed) > a.cfg.clientIdle
			cs.mu.Unlock()
			if idle {
				delete(a.clients, k)
			}
		}
	}
	for k, t := range a.obo {
		if now.Sub(t) > oboMemory {
			delete(a.obo, k)
		}
	}
	turnsLeft := a.turns.sweep(now, a.cfg.clientIdle)
	return len(a.clients) > 0 || len(a.obo) > 0 || turnsLeft
}

func (a *Adapter) markOBO(key string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.obo[key] = a.cfg.now()
	a.armSweeperLocked()
}

func (a *Adapter) isOBO(key string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	_, ok := a.obo[key]
	return ok
}
