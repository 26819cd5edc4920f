package msalcache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of BreakerOptions.
const (
	DefaultBreakerFailures   = 1
	DefaultBreakerProbeMax   = time.Second
	DefaultMaxPending        = 10000
	DefaultMaxPendingBytes   = 64 << 20
	breakerProbeFirst        = 25 * time.Millisecond
	breakerProbeTimeoutFloor = 250 * time.Millisecond
)

// BreakerOptions configures the Adapter's circuit breaker (WithBreaker).
// The zero value means the defaults.
//
// Once the store fails (an error or a timeout; not a miss, a conflict or a
// value too large, which are answers) Failures times in a row, the breaker
// opens: the Adapter stops waiting on the store. Store calls in flight are
// cut short at once, Replace serves what MSAL and the L1 hold (a miss
// otherwise, leaving MSAL's cache as it is, so that an outage signs nobody
// out of this instance), Exports are kept as pending writes, the latest
// per partition (removals are retried until the store takes them, see
// Adapter.Remove), and every token call runs at in-memory cost.
// One probe at a time checks the store in the background, the wait between
// probes doubling from 25 ms up to ProbeMax; when a probe succeeds the
// pending writes are flushed with compare-and-set (a partition written
// meanwhile by another instance is merged entry by entry, as any
// conflicting write; one removed meanwhile stays removed) and the breaker
// closes. A flushed write that keeps losing compare-and-set until its
// deadline is kept for the next flush; one the store refuses for good (too
// large) is dropped, counted in Stats.PendingDropped and reported to the
// store error handler. Opening and closing are logged
// once each and counted in Stats.
type BreakerOptions struct {
	// Failures is how many store failures in a row open the breaker
	// (default 1: a store that failed is not waited on again until a probe
	// found it back, at most ProbeMax later).
	Failures int
	// ProbeMax bounds the wait between two probes (default 1 s), and so
	// how long after the store is back the first call is served by it.
	ProbeMax time.Duration
	// MaxPending and MaxPendingBytes bound the writes kept while the
	// breaker is open (default 10,000 partitions and 64 MiB); a write
	// beyond them is dropped (counted in Stats.PendingDropped and logged),
	// and the token stays served from MSAL's memory.
	MaxPending      int
	MaxPendingBytes int64
	// Disabled turns the breaker off: every call waits on the store up to
	// its deadline, as without this option in earlier versions.
	Disabled bool
}

// WithBreaker configures the circuit breaker that keeps a store outage
// from slowing token calls down (see BreakerOptions). It is on by default
// with the defaults; pass BreakerOptions{Disabled: true} to turn it off.
func WithBreaker(o BreakerOptions) Option {
	return func(c *config) error {
		switch {
		case o.Failures < 0:
			return fmt.Errorf("msalcache: WithBreaker: Failures %d is negative; use 0 for the default (%d)", o.Failures, DefaultBreakerFailures)
		case o.ProbeMax < 0:
			return fmt.Errorf("msalcache: WithBreaker: ProbeMax %v is negative; use 0 for the default (%v)", o.ProbeMax, DefaultBreakerProbeMax)
		case o.MaxPending < 0 || o.MaxPendingBytes < 0:
			return errors.New("msalcache: WithBreaker: MaxPending and MaxPendingBytes must not be negative; use 0 for the defaults")
		}
		if o.Failures == 0 {
			o.Failures = DefaultBreakerFailures
		}
		if o.ProbeMax == 0 {
			o.ProbeMax = DefaultBreakerProbeMax
		}
		if o.MaxPending == 0 {
			o.MaxPending = DefaultMaxPending
		}
		if o.MaxPendingBytes == 0 {
			o.MaxPendingBytes = DefaultMaxPendingBytes
		}
		c.breaker = o
		return nil
	}
}

// errBreakerOpen stands for the store call the open breaker did not make.
var errBreakerOpen = errors.New("msalcache: store unavailable (breaker open)")

// Sharded is implemented by stores that spread keys over servers that fail
// on their own (memcachestore with several servers and WithServerList).
// The breaker then tracks each server apart, so that one dead server of
// several costs only the keys it holds.
type Sharded interface {
	// Shard names the server that holds key: any string, the same for
	// every key of that server, "" when the store cannot tell.
	Shard(key string) string
}

// breakerHost is what the breaker needs of its Adapter. The breaker keeps
// none of the Adapter's state and takes none of its locks: it calls the
// host without holding its own.
type breakerHost interface {
	// probeStore makes one cheap call that tells whether the shard
	// answers, and reports it to the Observers.
	probeStore(ctx context.Context, sh *shard) error
	// flushWrite stores a kept write and reports it to the Observers.
	flushWrite(ctx context.Context, key string, w *write) error
	// dropped reports a kept write lost for good; logged says whether to
	// log it (close logs once for all it drops).
	dropped(key string, err error, logged bool)
	breakerLog(level slog.Level, msg string, attrs ...slog.Attr)
}

// breaker tracks the store's health for one Adapter, per shard, and keeps
// the writes the store could not take while a shard is open.
//
// Concurrency: mu guards shards, closed, pending, pendingBytes and every
// shard's openedAt; it is never held across a store call or a call to
// the host. The hot path (isOpen with every shard closed) reads one atomic.
// At most one probe per shard runs, on its own goroutine; close waits for
// them.
type breaker struct {
	opts    BreakerOptions
	host    breakerHost
	now     func() time.Time // the Adapter's clock
	timeout time.Duration    // a flushed write's deadline
	sharder driver.Sharded          // nil: one shard, single
	single  *shard
	opened  atomic.Int32 // shards open now; 0 on the hot path

	mu     sync.Mutex
	shards map[string]*shard
	closed bool // the Adapter was closed: no more probes
	// pending holds the writes kept while a shard is open, by store key.
	pending      map[string]*write
	pendingBytes int64
	npending     atomic.Int32 // len(pending), read without the lock
	flushing     atomic.Int32 // taken from pending by a flush that has not ended

	probes      sync.WaitGroup // running probes and flushLaters
	retryingAll atomic.Bool    // a flushLater of every shard is scheduled
	stop        chan struct{}  // closed by close: probes stop waiting

	trips, flushed, dropped atomic.Uint64
}

// shard is the breaker's state for one server.
type shard struct {
	name string
	open atomic.Bool
	// epoch is canceled when the shard opens, cutting short the store
	// calls in flight on it (see Adapter.bound).
	epoch    atomic.Pointer[epoch]
	fails    atomic.Int32 // failures in a row
	openedAt time.Time    // under breaker.mu
	probeKey string       // a key of this shard, for the probe (probe goroutine only)
	retrying atomic.Bool  // a flushLater is scheduled
}

type epoch struct {
	ctx    context.Context
	cancel context.CancelFunc
}

func newEpoch() *epoch {
	ctx, cancel := context.WithCancel(context.Background())
	return &epoch{ctx, cancel}
}

func newBreaker(o BreakerOptions, store driver.Store, host breakerHost, now func() time.Time, timeout time.Duration) *breaker {
	b := &breaker{
		opts: o, host: host, now: now, timeout: timeout,
		shards: make(map[string]*shard), pending: make(map[string]*write),
		stop: make(chan struct{}),
	}
	b.sharder, _ = store.(driver.Sharded)
	if b.sharder == nil {
		b.single = &shard{}
		b.single.epoch.Store(newEpoch())
	}
	return b
}

// shardOf returns the shard of key.
func (b *breaker) shardOf(key string) *shard {
	if b.single != nil {
		return b.single
	}
	name := b.sharder.Shard(key)
	b.mu.Lock()
	defer b.mu.Unlock()
	sh := b.shards[name]
	if sh == nil {
		sh = &shard{name: name}
		sh.epoch.Store(newEpoch())
		b.shards[name] = sh
	}
	return sh
}

// isOpen reports whether calls on key skip the store. A nil breaker is
// never open.
func (b *breaker) isOpen(key string) bool {
	return b != nil && b.opened.Load() > 0 && b.shardOf(key).open.Load()
}

// anyOpen reports whether any shard is open.
func (b *breaker) anyOpen() bool { return b != nil && b.opened.Load() > 0 }

// isAnswer reports whether err, from a store call, means the store
// answered: success, or an error that says something of the key rather
// than of the store's health.
func isAnswer(err error) bool {
	return err == nil || errors.Is(err, driver.ErrNotFound) || errors.Is(err, driver.ErrConflict) ||
		errors.Is(err, driver.ErrTooLarge) || errors.Is(err, driver.ErrCorrupt)
}

// retryable reports whether a write that failed with err may succeed
// later. This is not isAnswer: a write that lost compare-and-set until its
// deadline is merged and tried again; one too large never fits, and one
// that met a removal must not be stored at all.
func retryable(err error) bool {
	return err != nil && !errors.Is(err, driver.ErrTooLarge) && !errors.Is(err, errRemoved)
}

// record counts the outcome of a store call on key, opening key's shard
// after Failures failures in a row. A nil breaker records nothing.
func (b *breaker) record(key string, err error) {
	if b == nil {
		return
	}
	sh := b.shardOf(key)
	if isAnswer(err) {
		if sh.fails.Load() != 0 && !sh.open.Load() {
			sh.fails.Store(0)
		}
		return
	}
	if errors.Is(err, context.Canceled) {
		return // the caller gave up: nothing learned of the store
	}
	if n := sh.fails.Add(1); int(n) >= b.opts.Failures {
		b.trip(sh, err)
	}
}

// trip opens sh, cuts its calls in flight short and starts its probe.
func (b *breaker) trip(sh *shard, err error) {
	b.mu.Lock()
	trip := !sh.open.Load() && !b.closed
	if trip {
		sh.open.Store(true)
		b.opened.Add(1)
		sh.openedAt = b.now()
		sh.epoch.Load().cancel()
		b.probes.Add(1)
	}
	b.mu.Unlock()
	if trip {
		b.trips.Add(1)
		b.host.breakerLog(slog.LevelWarn,
			"store unavailable: breaker open; token calls are served from memory and writes kept until a probe finds the store back",
			slog.Bool("shard", sh.name != ""), errAttr(err))
		go b.probe(sh)
	}
}

// epochOf returns the context that the opening of key's shard cancels.
func (b *breaker) epochOf(key string) context.Context {
	return b.shardOf(key).epoch.Load().ctx
}

// keep keeps w, key's write that the store could not take, for the
// store's return. It reports false when the bounds leave no room: the
// write is dropped, counted and reported.
func (b *breaker) keep(key string, w *write) bool {
	b.mu.Lock()
	old, had := b.pending[key]
	size := pendingSize(key, w)
	if had {
		size -= pendingSize(key, old)
	}
	full := !had && len(b.pending) >= b.opts.MaxPending || b.pendingBytes+size > b.opts.MaxPendingBytes
	if !full {
		b.setPendingLocked(key, w)
	}
	b.mu.Unlock()
	if full {
		b.drop(key, errPendingFull, true)
	}
	return !full
}

// errPendingFull is what a write dropped for want of room reports.
var errPendingFull = errors.New("msalcache: breaker open and the pending writes at their bound (BreakerOptions.MaxPending, MaxPendingBytes)")

// drop counts and reports a kept write lost for good.
func (b *breaker) drop(key string, err error, logged bool) {
	b.dropped.Add(1)
	b.host.dropped(key, err, logged)
}

// take removes and returns key's kept write, if any.
func (b *breaker) take(key string) (w *write, ok bool) {
	if b == nil || b.npending.Load() == 0 {
		return nil, false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	w, ok = b.pending[key]
	if ok {
		delete(b.pending, key)
		b.pendingBytes -= pendingSize(key, w)
		b.npending.Store(int32(len(b.pending)))
	}
	return w, ok
}

// peek returns what key's kept write stores, if any, leaving it kept.
// A flush replaces out and doc rather than changing them, so the caller
// may read them after the lock is released.
func (b *breaker) peek(key string) (out []byte, doc *document, ok bool) {
	if b == nil || b.npending.Load() == 0 {
		return nil, nil, false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	w := b.pending[key]
	if w == nil {
		return nil, nil, false
	}
	return w.out, w.doc, true
}

// pendingSize is what a kept write counts against MaxPendingBytes: it
// holds its own bytes only (see write.pending).
func pendingSize(key string, w *write) int64 {
	n := int64(len(key))
	if w != nil {
		n += int64(len(w.out))
	}
	return n
}

func (b *breaker) setPendingLocked(key string, w *write) {
	if old, had := b.pending[key]; had {
		b.pendingBytes -= pendingSize(key, old)
	}
	b.pending[key] = w
	b.pendingBytes += pendingSize(key, w)
	b.npending.Store(int32(len(b.pending)))
}

// requeue keeps again a write a flush could not store, unless a newer one
// was kept for its key meanwhile.
func (b *breaker) requeue(key string, w *write) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, newer := b.pending[key]; newer {
		return
	}
	b.setPendingLocked(key, w)
}

// pendingCount is how many writes wait for the store, those a flush is
// writing included.
func (b *breaker) pendingCount() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.pending) + int(b.flushing.Load())
}

// probe checks sh until it answers, then closes it and flushes its kept
// writes. It runs on its own goroutine, one per open shard.
func (b *breaker) probe(sh *shard) {
	defer b.probes.Done()
	wait := breakerProbeFirst
	for {
		t := time.NewTimer(wait/2 + rand.N(wait/2+1))
		select {
		case <-t.C:
		case <-b.stop:
			t.Stop()
			return
		}
		wait = min(2*wait, b.opts.ProbeMax)
		ctx, cancel := context.WithTimeout(context.Background(), max(b.timeout/4, breakerProbeTimeoutFloor))
		err := b.host.probeStore(ctx, sh)
		cancel()
		if err != nil {
			continue
		}
		b.mu.Lock()
		sh.fails.Store(0)
		sh.epoch.Store(newEpoch())
		down := b.now().Sub(sh.openedAt)
		sh.open.Store(false)
		b.opened.Add(-1)
		b.mu.Unlock()
		n := b.flush(sh)
		b.host.breakerLog(slog.LevelInfo, "store back: breaker closed",
			slog.Bool("shard", sh.name != ""), slog.Duration("open", down.Round(time.Millisecond)), slog.Int("flushed", n))
		return
	}
}

// flush stores the kept writes of sh (of every shard when sh is nil) and
// returns how many it stored. A write that fails for want of the store is
// kept again and reopens its shard; one the store refuses for good is
// dropped; one that met a removal is superseded by it.
func (b *breaker) flush(sh *shard) int {
	b.mu.Lock()
	var keys []string
	for key := range b.pending {
		if sh == nil || b.sharder == nil || b.sharder.Shard(key) == sh.name {
			keys = append(keys, key)
		}
	}
	b.mu.Unlock()
	n := 0
	for _, key := range keys {
		w, ok := b.take(key)
		if !ok {
			continue // an Export took it in
		}
		b.flushing.Add(1)
		ctx, cancel := context.WithTimeout(context.Background(), b.timeout)
		err := b.host.flushWrite(ctx, key, w)
		cancel()
		switch {
		case err == nil:
			n++
			b.flushed.Add(1)
		case errors.Is(err, errRemoved):
			// The user signed out after this write began: nothing lost.
		case !retryable(err):
			b.drop(key, err, true)
		case errors.Is(err, driver.ErrConflict):
			// The store answers, and other writers keep winning: try
			// again later, without opening the breaker on a store
			// that works.
			b.requeue(key, w)
			b.flushLater(sh)
		default:
			b.requeue(key, w)
			if sh != nil {
				b.trip(sh, err)
			}
		}
		b.flushing.Add(-1)
	}
	return n
}

// flushLater flushes sh (every shard when nil) again after ProbeMax, once:
// its kept writes lost compare-and-set until their deadline.
func (b *breaker) flushLater(sh *shard) {
	flag := &b.retryingAll
	if sh != nil {
		flag = &sh.retrying
	}
	b.mu.Lock()
	if b.closed || !flag.CompareAndSwap(false, true) {
		b.mu.Unlock()
		return
	}
	b.probes.Add(1)
	b.mu.Unlock()
	go func() {
		defer b.probes.Done()
		t := time.NewTimer(b.opts.ProbeMax)
		defer t.Stop()
		select {
		case <-t.C:
		case <-b.stop:
			return
		}
		flag.Store(false)
		b.flush(sh)
	}()
}

// close flushes once more if a shard is open, stops the probes and waits
// for them, and drops (counting them) the writes still kept.
func (b *breaker) close() {
	if b == nil {
		return
	}
	if b.anyOpen() {
		b.flush(nil)
	}
	b.mu.Lock()
	already := b.closed
	b.closed = true
	lost := len(b.pending)
	keys := make([]string, 0, lost)
	for k := range b.pending {
		keys = append(keys, k)
	}
	clear(b.pending)
	b.pendingBytes = 0
	b.npending.Store(0)
	b.mu.Unlock()
	if !already {
		close(b.stop)
	}
	b.probes.Wait()
	for _, k := range keys {
		b.drop(k, errClosedPending, false)
	}
	if lost > 0 {
		b.host.breakerLog(slog.LevelError, "close: the store is unavailable; pending writes are dropped", slog.Int("writes", lost))
	}
}

// errClosedPending is what a write still kept at Close reports.
var errClosedPending = errors.New("msalcache: Close with the store unavailable: a kept write is dropped")

// The Adapter is its breaker's host.

// probeStore checks sh with a Ping where the store has one (and is not
// sharded), else with a Load of a key of that shard.
func (a *Adapter) probeStore(ctx context.Context, sh *shard) error {
	e := a.begin(observe.OpProbe)
	err := a.ping(ctx, sh)
	e.Outcome = observe.OutcomeOK
	if err != nil {
		e.Outcome, e.Reason = observe.OutcomeError, observe.ReasonStore
	}
	a.emit(context.Background(), &e)
	return err
}

func (a *Adapter) ping(ctx context.Context, sh *shard) error {
	if p, ok := a.store.(driver.Pinger); ok && sh.name == "" {
		return p.Ping(ctx)
	}
	key := a.keyPrefix + "breaker-probe"
	if sh.name != "" {
		if sh.probeKey == "" {
			for i := range 10000 {
				if k := fmt.Sprintf("%s-%d", key, i); a.brk.sharder.Shard(k) == sh.name {
					sh.probeKey = k
					break
				}
			}
		}
		key = sh.probeKey
	}
	_, _, err := a.store.Load(ctx, key)
	if isAnswer(err) {
		return nil
	}
	return err
}

func (a *Adapter) flushWrite(ctx context.Context, key string, w *write) error {
	e := a.begin(observe.OpExport)
	v, err := w.run(ctx)
	w.report(ctx, &e, v, err, retryable(err))
	if errors.Is(err, errRemoved) {
		e.Outcome, e.Reason = observe.OutcomeSkipped, observe.ReasonRemoved
	}
	a.emit(context.Background(), &e)
	return err
}

func (a *Adapter) dropped(key string, err error, logged bool) {
	a.storeFailed(context.Background(), "export", key, err)
	if !logged {
		return
	}
	a.log(context.Background(), slog.LevelError,
		"breaker: a kept write is dropped; the token is served from memory but not stored", "export", key, errAttr(err))
}

func (a *Adapter) breakerLog(level slog.Level, msg string, attrs ...slog.Attr) {
	a.log(context.Background(), level, msg, "breaker", "", attrs...)
}

// observe tells the breaker how a store call on key went.
func (a *Adapter) observe(key string, err error) { a.brk.record(key, err) }

// bound returns the context for the store calls of one Replace, Export or
// Remove on key: ctx with the default deadline when it has none, canceled
// too when key's shard opens, so that a call in flight on a store that
// just failed returns at once instead of at its deadline.
func (a *Adapter) bound(ctx context.Context, key string) (context.Context, context.CancelFunc) {
	dctx, cancel := a.withDeadline(ctx)
	if a.brk == nil {
		return dctx, cancel
	}
	epoch := a.brk.epochOf(key)
	if epoch.Err() != nil {
		return dctx, cancel
	}
	if _, ok := ctx.Deadline(); ok {
		dctx, cancel = context.WithCancel(ctx)
	}
	stop := context.AfterFunc(epoch, cancel)
	return dctx, func() { stop(); cancel() }
}
