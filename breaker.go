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
// out of this instance), Export and Remove are kept as pending writes,
// the latest per partition, and every token call runs at in-memory cost.
// One probe at a time checks the store in the background, the wait between
// probes doubling from 25 ms up to ProbeMax; when a probe succeeds the
// pending writes are flushed with compare-and-set (a partition written
// meanwhile by another instance is merged entry by entry, as any
// conflicting write) and the breaker closes. Opening and closing are logged
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

// breaker tracks the store's health for one Adapter, per shard.
type breaker struct {
	opts    BreakerOptions
	sharder Sharded // nil: one shard, single
	single  *shard
	opened  atomic.Int32 // shards open now; 0 on the hot path

	mu     sync.Mutex
	shards map[string]*shard
	closed bool // the Adapter was closed: no more probes
	// pending holds the writes kept while a shard is open, by store key;
	// a nil write is a delete.
	pending      map[string]*write
	pendingBytes int64
	npending     atomic.Int32 // len(pending), read without the lock
	flushing     atomic.Int32 // taken from pending by a flush that has not ended

	trips, flushed, dropped atomic.Uint64
}

// shard is the breaker of one server of the store.
type shard struct {
	name string
	open atomic.Bool
	// epoch is cancelled when the shard opens, cutting short every store
	// call made while it was closed.
	epoch    atomic.Pointer[epoch]
	fails    atomic.Int32 // failures in a row
	openedAt time.Time    // under breaker.mu
	probeKey string       // a key of this shard, for the probe
}

type epoch struct {
	ctx    context.Context
	cancel context.CancelFunc
}

func newEpoch() *epoch {
	ctx, cancel := context.WithCancel(context.Background())
	return &epoch{ctx, cancel}
}

func newBreaker(o BreakerOptions, store Store) *breaker {
	b := &breaker{opts: o, shards: make(map[string]*shard), pending: make(map[string]*write)}
	b.sharder, _ = store.(Sharded)
	if b.sharder == nil {
		b.single = &shard{}
		b.single.epoch.Store(newEpoch())
	}
	return b
}

// shardOf returns the shard of key, creating it.
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

// isOpen reports whether calls on key must not wait on the store.
func (b *breaker) isOpen(key string) bool {
	return b != nil && b.opened.Load() > 0 && b.shardOf(key).open.Load()
}

// anyOpen reports whether some shard is open.
func (b *breaker) anyOpen() bool { return b != nil && b.opened.Load() > 0 }

// isAnswer reports whether err is the store answering (a miss, a conflict,
// a refusal), not failing.
func isAnswer(err error) bool {
	return err == nil || errors.Is(err, ErrNotFound) || errors.Is(err, ErrConflict) ||
		errors.Is(err, ErrTooLarge) || errors.Is(err, ErrCorrupt)
}

// observe records the outcome of one store call of the Adapter on key. A
// call cancelled (by its caller, or by the breaker opening) says nothing
// of the store; a deadline that passed does.
func (a *Adapter) observe(key string, err error) {
	b := a.brk
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
		return
	}
	if n := sh.fails.Add(1); int(n) >= b.opts.Failures {
		a.trip(sh, err)
	}
}

// trip opens sh, unless it is open already, and starts its probe.
func (a *Adapter) trip(sh *shard, err error) {
	b := a.brk
	b.mu.Lock()
	trip := !sh.open.Load() && !b.closed
	if trip {
		sh.open.Store(true)
		b.opened.Add(1)
		sh.openedAt = time.Now()
		sh.epoch.Load().cancel()
	}
	b.mu.Unlock()
	if trip {
		b.trips.Add(1)
		a.log(context.Background(), slog.LevelWarn,
			"store unavailable: breaker open; token calls are served from memory and writes kept until a probe finds the store back",
			"breaker", "", slog.Bool("shard", sh.name != ""), errAttr(err))
		go a.probe(sh)
	}
}

// bound returns ctx with the Adapter's default deadline when it has none,
// cut short when key's shard opens: a call blocked on a store that stopped
// answering returns as soon as any call has found out.
func (a *Adapter) bound(ctx context.Context, key string) (context.Context, context.CancelFunc) {
	dctx, cancel := a.withDeadline(ctx)
	if a.brk == nil {
		return dctx, cancel
	}
	epoch := a.brk.shardOf(key).epoch.Load().ctx
	if epoch.Err() != nil {
		return dctx, cancel
	}
	if _, ok := ctx.Deadline(); ok {
		// withDeadline handed ctx back: make a cancellable child.
		dctx, cancel = context.WithCancel(ctx)
	}
	stop := context.AfterFunc(epoch, cancel)
	return dctx, func() { stop(); cancel() }
}

// keep records w (nil: delete key) as pending while key's shard is open.
// It reports false when the bounds are reached and the write is dropped.
func (a *Adapter) keep(ctx context.Context, key string, w *write) bool {
	b := a.brk
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
		b.dropped.Add(1)
		a.log(ctx, slog.LevelError,
			"breaker open and the pending writes are at their bound (BreakerOptions.MaxPending, MaxPendingBytes); this write is dropped: the token is served from memory but not stored",
			"export", key)
		return false
	}
	return true
}

// take removes and returns key's pending write, if any (a nil write is a
// delete): the flush and an Export of the same partition after the store
// came back each take it, so it is written once.
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

// pendingSize is what a pending write (nil: a delete) counts against
// MaxPendingBytes.
func pendingSize(key string, w *write) int64 {
	n := int64(len(key))
	if w != nil {
		n += int64(len(w.out))
	}
	return n
}

// setPendingLocked records w as key's pending write, replacing any, and
// keeps the totals; under b.mu.
func (b *breaker) setPendingLocked(key string, w *write) {
	if old, had := b.pending[key]; had {
		b.pendingBytes -= pendingSize(key, old)
	}
	b.pending[key] = w
	b.pendingBytes += pendingSize(key, w)
	b.npending.Store(int32(len(b.pending)))
}

// probe runs while sh is open: it checks the store with backoff, closes
// the shard once it answers, and flushes the shard's pending writes. It
// closes first: under load, writes would be kept for as long as a flush
// takes, and a flush that waited for none to arrive might never end. An
// Export that meets its partition's pending write meanwhile takes it in
// (see Export), so each is written once, and none over a newer one.
func (a *Adapter) probe(sh *shard) {
	b := a.brk
	wait := breakerProbeFirst
	for {
		time.Sleep(wait/2 + rand.N(wait/2+1))
		wait = min(2*wait, b.opts.ProbeMax)
		b.mu.Lock()
		if b.closed {
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), max(a.cfg.timeout/4, breakerProbeTimeoutFloor))
		e := a.begin(OpProbe)
		err := a.ping(ctx, sh)
		cancel()
		e.Outcome = OutcomeOK
		if err != nil {
			e.Outcome, e.Reason = OutcomeError, ReasonStore
		}
		a.emit(context.Background(), &e)
		if err != nil {
			continue
		}
		b.mu.Lock()
		sh.fails.Store(0)
		sh.epoch.Store(newEpoch())
		down := time.Since(sh.openedAt)
		sh.open.Store(false)
		b.opened.Add(-1)
		b.mu.Unlock()
		n := a.flush(sh)
		a.log(context.Background(), slog.LevelInfo, "store back: breaker closed", "breaker", "",
			slog.Bool("shard", sh.name != ""), slog.Duration("open", down.Round(time.Millisecond)), slog.Int("flushed", n))
		return
	}
}

// ping checks the store: with its Pinger when it has one shard, else by
// loading a key of sh that nobody writes.
func (a *Adapter) ping(ctx context.Context, sh *shard) error {
	if p, ok := a.store.(Pinger); ok && sh.name == "" {
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

// flush writes the pending writes of sh (every one when sh is nil), each
// with compare-and-set, and returns how many it wrote. A write that fails
// for want of the store is kept again, and the shard opens again.
func (a *Adapter) flush(sh *shard) int {
	b := a.brk
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
		ctx, cancel := context.WithTimeout(context.Background(), a.cfg.timeout)
		e := a.begin(OpExport)
		var err error
		if w == nil {
			e.Op = OpRemove
			if err = a.deleteKey(ctx, key); err == nil {
				e.Outcome = OutcomeDeleted
			}
		} else {
			var v Version
			v, err = w.run(ctx)
			w.report(ctx, &e, v, err, false)
		}
		cancel()
		switch {
		case err == nil:
			n++
			b.flushed.Add(1)
		case isAnswer(err): // too large: it never will fit
			e.Outcome, e.Reason = OutcomeError, ReasonOversized
			a.log(context.Background(), slog.LevelError, "breaker: a pending write was refused by the store; the token is served but not stored", "export", key, errAttr(err))
		default:
			e.Outcome, e.Reason = OutcomeKept, ReasonBreakerOpen
			a.requeue(key, w)
			if sh != nil {
				a.trip(sh, err)
			}
		}
		// Counted pending until here, so that PendingWrites reaching 0
		// means flushed (or dropped), not just taken.
		b.flushing.Add(-1)
		a.emit(context.Background(), &e)
	}
	return n
}

// requeue puts back a pending write that could not be flushed, unless a
// newer one for the same key arrived meanwhile.
func (a *Adapter) requeue(key string, w *write) {
	b := a.brk
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, newer := b.pending[key]; newer {
		return
	}
	b.setPendingLocked(key, w)
}

// stopBreaker ends the probing at Close, after one last attempt to flush
// what is pending.
func (a *Adapter) stopBreaker() {
	b := a.brk
	if b == nil {
		return
	}
	if b.anyOpen() {
		a.flush(nil)
	}
	b.mu.Lock()
	b.closed = true
	lost := len(b.pending)
	b.mu.Unlock()
	if lost > 0 {
		b.dropped.Add(uint64(lost))
		a.log(context.Background(), slog.LevelError, "close: the store is unavailable; pending writes are dropped", "breaker", "", slog.Int("writes", lost))
	}
}
