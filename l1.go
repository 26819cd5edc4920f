package msalcache

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Defaults of L1Options.
const (
	// DefaultL1MaxBytes bounds the partitions an L1 keeps in memory.
	DefaultL1MaxBytes = 64 << 20
	// DefaultL1MaxStale is how long an L1 trusts what it confirmed before
	// asking the store again.
	DefaultL1MaxStale = 2 * time.Second
)

// L1Options configures the in-process cache that WithL1 puts in front of
// the store.
type L1Options struct {
	// MaxBytes bounds the decrypted partitions kept in memory; the least
	// recently used go first. Zero means DefaultL1MaxBytes (64 MiB).
	MaxBytes int64
	// MaxStale is the longest the L1 serves what it confirmed without
	// asking the store, whatever else it hears: a hard bound on how stale
	// a token can be. On a store that pushes changes (a Watcher: Redis,
	// memstore, boltstore) an entry is dropped as soon as another instance
	// writes it, so MaxStale only covers changes the store cannot report
	// (expiry, eviction, an operator's FLUSHDB). On a store that cannot
	// push (memcached) it is the staleness itself: a sign-out or a new
	// token on another instance is seen within MaxStale, not at once.
	// Zero means DefaultL1MaxStale (2 s).
	MaxStale time.Duration
	// VersionsOnly keeps only the version of each partition, never its
	// decrypted tokens: a client that already holds the version is still
	// served without I/O, but a new client loads from the store.
	VersionsOnly bool
}

// WithL1 puts a coherent in-process cache in front of the store. It
// remembers, per partition, the version the adapter last confirmed and
// (unless VersionsOnly) the decrypted partition, so that a silent call
// whose MSAL client already holds that version does no I/O at all, and a
// new client (one per request) is served from memory.
//
// Unlike an L1 that is never told of other servers' writes, it stays
// coherent across a farm: a store that implements Watcher reports every
// write and delete, from any instance, and the entry is dropped at once;
// while the store cannot report (a dropped subscription, a failover) the
// L1 is bypassed, its data kept only as what the breaker serves while the
// store itself is unreachable (see WithBreaker), and it starts empty when
// the store reports again. Whatever the store, nothing is served that
// was confirmed longer than MaxStale ago without asking the store again,
// with a version-only probe where the store is a Versioner.
//
// Call Adapter.Close when done with the Adapter, to end the watch.
func WithL1(o L1Options) Option {
	return func(c *config) error {
		switch {
		case o.MaxBytes < 0:
			return fmt.Errorf("msalcache: WithL1: MaxBytes %d: pass a positive size in bytes, or 0 for the default %d", o.MaxBytes, DefaultL1MaxBytes)
		case o.MaxStale < 0:
			return fmt.Errorf("msalcache: WithL1: MaxStale %v: pass a positive duration, or 0 for the default %v", o.MaxStale, DefaultL1MaxStale)
		}
		if o.MaxBytes == 0 {
			o.MaxBytes = DefaultL1MaxBytes
		}
		if o.MaxStale == 0 {
			o.MaxStale = DefaultL1MaxStale
		}
		c.l1 = &o
		return nil
	}
}

// l1 is the Adapter's in-process cache of confirmed partitions.
//
// Coherence rests on one rule: an entry is set only if no Change of its key
// arrived since the store call that produced it began, unless the latest
// Change reports the very version being set (an instance's own write,
// reported back to it). Calls register for the duration (begin/end), so
// that a Change arriving mid-call is seen even for a key held nowhere.
type l1 struct {
	opts L1Options
	now  func() time.Time
	stop func()

	mu      sync.Mutex
	entries map[string]*l1Entry
	lru     list.List // of *l1Entry holding data, most recently used first
	bytes   int64
	live    bool // changes are reported (always, for a store that cannot push)
	denial  watchDenial
}

// l1Entry is one partition key's state.
type l1Entry struct {
	key      string
	gen      uint64  // counts the Changes of key and the flushes
	pushed   driver.Version // what the latest Change of key reported
	inflight int     // calls between begin and end

	held      bool // what follows is set
	version   driver.Version
	confirmed time.Time
	raw       []byte    // the partition's own entries, decrypted; nil when absent or VersionsOnly
	doc       *document // raw parsed, or nil
	size      int64
	elem      *list.Element
}

// l1Overhead approximates what an entry costs beyond its data and its
// parsed document: the entry, its LRU element and its slot in the map.
const l1Overhead = 300

// l1Ticket is one call's registration with the l1.
type l1Ticket struct {
	e   *l1Entry
	gen uint64
}

// l1Hit is a confirmed partition served from the l1.
type l1Hit struct {
	version driver.Version
	raw     []byte
	doc     *document
	hasData bool          // raw and doc are the partition (not VersionsOnly)
	fresh   bool          // confirmed within MaxStale
	age     time.Duration // since it was confirmed
}

// partition is the hit as a partition to hand MSAL, loaded at seq.
func (h l1Hit) partition(seq uint64) *partition {
	if h.doc == removedDoc {
		p := &partition{version: h.version, known: true, seq: seq, removed: true}
		if isRemoval(h.raw) {
			p.removedSessions = decodeRemoval(h.raw)
		}
		return p
	}
	return &partition{version: h.version, known: true, seq: seq, raw: h.raw, doc: h.doc}
}

func newL1(o L1Options, now func() time.Time, pushes bool) *l1 {
	return &l1{opts: o, now: now, entries: make(map[string]*l1Entry), live: !pushes}
}

// begin registers a call on key and returns what the l1 holds of it.
func (c *l1) begin(key string) (*l1Ticket, l1Hit, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entries[key]
	if e == nil {
		e = &l1Entry{key: key}
		c.entries[key] = e
	}
	e.inflight++
	t := &l1Ticket{e: e, gen: e.gen}
	if !c.live || !e.held {
		return t, l1Hit{}, false
	}
	if e.elem != nil {
		c.lru.MoveToFront(e.elem)
	}
	age := c.now().Sub(e.confirmed)
	return t, l1Hit{
		version: e.version, raw: e.raw, doc: e.doc,
		hasData: !c.opts.VersionsOnly,
		fresh:   age <= c.opts.MaxStale,
		age:     age,
	}, true
}

// end closes the call t, setting what it confirmed when set is true, and
// returns how many entries it evicted to make room.
func (c *l1) end(t *l1Ticket, set bool, v driver.Version, raw []byte, doc *document) (evicted int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := t.e
	e.inflight--
	if set && c.live && (e.gen == t.gen || e.pushed == v && v != driver.NoVersion) {
		evicted = c.setLocked(e, v, raw, doc)
	}
	if e.inflight == 0 && !e.held {
		delete(c.entries, e.key)
	}
	return evicted
}

// l1End is l1.end, telling the Observers of the evictions.
func (a *Adapter) l1End(t *l1Ticket, set bool, v driver.Version, raw []byte, doc *document) {
	for range a.l1.end(t, set, v, raw, doc) {
		e := a.begin(observe.OpEviction)
		e.Outcome = observe.OutcomeOK
		a.emit(context.Background(), &e)
	}
}

func (c *l1) setLocked(e *l1Entry, v driver.Version, raw []byte, doc *document) (evicted int) {
	if c.opts.VersionsOnly {
		raw, doc = nil, nil
	}
	c.bytes -= e.size
	e.held, e.version, e.confirmed, e.raw, e.doc = true, v, c.now(), raw, doc
	e.size = int64(len(raw)+len(e.key)) + doc.footprint() + l1Overhead
	c.bytes += e.size
	if e.elem == nil {
		e.elem = c.lru.PushFront(e)
	} else {
		c.lru.MoveToFront(e.elem)
	}
	for c.bytes > c.opts.MaxBytes && c.lru.Len() > 1 {
		c.dropLocked(c.lru.Back().Value.(*l1Entry))
		evicted++
	}
	return evicted
}

// dropLocked forgets what e holds, and e itself unless a call is on it.
func (c *l1) dropLocked(e *l1Entry) {
	if e.held {
		c.bytes -= e.size
		c.lru.Remove(e.elem)
		e.held, e.raw, e.doc, e.size, e.elem = false, nil, nil, 0, nil
	}
	if e.inflight == 0 {
		delete(c.entries, e.key)
	}
}

// forget drops key, as after a Remove or a failed write.
func (c *l1) forget(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.entries[key]; e != nil {
		e.gen++
		e.pushed = driver.NoVersion
		c.dropLocked(e)
	}
}

// onChange is the Watcher's callback. It reports whether the change made
// the l1 drop anything it held.
func (c *l1) onChange(ch driver.Change) (dropped bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch ch.Kind {
	case driver.ChangeKey:
		e := c.entries[ch.Key]
		if e == nil {
			return false // held nowhere, no call on it: nothing to correct
		}
		e.gen++
		e.pushed = ch.Version
		if e.held && (e.version != ch.Version || ch.Version == driver.NoVersion) {
			c.dropLocked(e)
			return true
		}
	case driver.ChangeWatchDown:
		// Nothing is served from the L1 until the watch is up again, but
		// the data stays for fallback: if the store itself is down, what
		// was confirmed within MaxStale is better than signing users out.
		for _, e := range c.entries {
			e.gen++
			e.pushed = driver.NoVersion
		}
		c.live = false
	case driver.ChangeWatchUp:
		// Whatever was learned before may have missed changes.
		for _, e := range c.entries {
			dropped = dropped || e.held
			e.gen++
			e.pushed = driver.NoVersion
			c.dropLocked(e)
		}
		c.live = true
	}
	return dropped
}

// fallback returns the data the l1 holds of key, confirmed within
// MaxStale, whether or not the watch is up: what Replace serves while the
// breaker keeps it from the store.
func (c *l1) fallback(key string) (l1Hit, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entries[key]
	if e == nil || !e.held || c.opts.VersionsOnly {
		return l1Hit{}, false
	}
	age := c.now().Sub(e.confirmed)
	if age > c.opts.MaxStale {
		return l1Hit{}, false
	}
	c.lru.MoveToFront(e.elem)
	return l1Hit{version: e.version, raw: e.raw, doc: e.doc, hasData: true, fresh: true, age: age}, true
}

// size reports how many partitions the l1 holds, and their bytes.
func (c *l1) size() (entries int, bytes int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len(), c.bytes
}

// Close ends what the Adapter runs in the background: the L1's watch of
// the store (see WithL1), the breaker's probe (after one last attempt to
// flush the writes it kept, see WithBreaker), the retries of removals the
// store did not take (after one last attempt) and the sweep of idle
// clients. It returns an error wrapping ErrRemovalPending, counting them,
// when removals (sign-outs) could still not be stored: other instances
// may serve those users. The Adapter keeps serving after Close, straight
// from the store. Close does not close the store.
func (a *Adapter) Close() (err error) {
	a.closeOnce.Do(func() {
		close(a.closing)
		a.brk.close()
		if a.l1 != nil {
			if a.l1.stop != nil {
				a.l1.stop()
			}
			a.l1.onChange(driver.Change{Kind: driver.ChangeWatchDown})
		}
		a.mu.Lock()
		a.closed = true
		if a.sweeper != nil {
			a.sweeper.Stop()
			a.sweeper = nil
		}
		a.mu.Unlock()
		err = a.closeRemovals()
	})
	return err
}

// onChange is the L1's Watcher callback: the change reaches the L1, and
// the Observers are told what it did there.
func (a *Adapter) onChange(ch driver.Change) {
	if ch.Kind == driver.ChangeWatchDenied {
		a.onWatchDenied(ch)
		return
	}
	switch ch.Kind {
	case driver.ChangeWatchDown:
		a.watchGap.Store(true)
	case driver.ChangeWatchUp:
		if a.watchGap.Swap(false) {
			// The store is back after a gap, perhaps on a new
			// primary that lacks the latest removals. fn must not
			// call the store (see Watcher): re-assert elsewhere.
			go a.reassertRemovals()
		}
	}
	dropped := a.l1.onChange(ch)
	e := a.begin(observe.OpInvalidation)
	switch {
	case ch.Kind == driver.ChangeWatchDown:
		e.Outcome, e.Reason = observe.OutcomeError, observe.ReasonStore
	case dropped:
		e.Outcome = observe.OutcomeOK
	default:
		e.Outcome = observe.OutcomeSkipped // nothing held was stale
	}
	a.emit(context.Background(), &e)
}

// watch starts the L1's watch of a store that reports changes.
func (a *Adapter) watch(w driver.Watcher) error {
	stop, err := w.Watch(context.Background(), a.onChange)
	if err != nil {
		return fmt.Errorf("msalcache: WithL1: the store cannot report changes: %w", err)
	}
	if stop == nil {
		return errors.New("msalcache: WithL1: the store's Watch returned no stop function")
	}
	a.l1.stop = stop
	return nil
}
