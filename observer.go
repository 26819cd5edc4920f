package msalcache

import (
	"context"
	"errors"
	"time"

	"github.com/msalcache/msalcache/driver"
	"github.com/msalcache/msalcache/observe"
)

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
