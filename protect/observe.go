package protect

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/msalcache/msalcache"
)

// WithObserver tells o what the ring does that an operator watches: an
// observe.OpRotation Event each time the ring starts sealing under a new
// default key (minted here or by another server; the first key it seals
// under is not a rotation), and an observe.OpKeyReload Event each time
// it reloads its record for a blob under a key it did not know
// (OutcomeOK: the reload found it; OutcomeError with ReasonStore: the
// store failed; with ReasonDecrypt: the record does not hold it either).
// The Events carry no key, key id or ciphertext. Pass the same Observer as
// msalcache.WithObserver, such as package msalcacheotel's.
func WithObserver(o observe.Observer) Option {
	return func(c *config) error {
		if o == nil {
			return errors.New("protect: WithObserver(nil): pass an Observer")
		}
		c.observer = o
		return nil
	}
}

// watch is what the ring tells its Observer from.
type watch struct {
	obs    observe.Observer
	system string                // the store's SystemName
	sealer atomic.Pointer[keyID] // the key Protect last sealed under
}

func (r *KeyRing) newWatch() {
	if r.cfg.observer == nil {
		return
	}
	r.watch = &watch{obs: r.cfg.observer}
	if n, ok := r.store.(driver.SystemNamer); ok {
		r.watch.system = n.SystemName()
	}
}

// sealing notes that Protect seals under k, and reports a rotation when k
// is not the key it sealed under before.
func (r *KeyRing) sealing(ctx context.Context, k *dataKey) {
	w := r.watch
	if w == nil {
		return
	}
	if last := w.sealer.Load(); last != nil && *last == k.id {
		return
	}
	id := k.id
	if w.sealer.Swap(&id) == nil {
		return // the first key is no rotation
	}
	w.obs.Observe(ctx, observe.Event{Op: observe.OpRotation, Outcome: observe.OutcomeOK, Store: w.system, Start: time.Now()})
}

// reloaded reports a reload for an unknown key that started at start and
// ended as reason says (ReasonNone: it found the key).
func (r *KeyRing) reloaded(ctx context.Context, start time.Time, reason observe.Reason) {
	w := r.watch
	if w == nil {
		return
	}
	e := observe.Event{Op: observe.OpKeyReload, Outcome: observe.OutcomeOK, Store: w.system, Start: start, Duration: time.Since(start)}
	if reason != observe.ReasonNone {
		e.Outcome, e.Reason = observe.OutcomeError, reason
	}
	w.obs.Observe(ctx, e)
}
