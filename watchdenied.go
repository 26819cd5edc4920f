package msalcache

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/msalcache/msalcache/driver"
	"github.com/msalcache/msalcache/observe"
)

// watchDenial is what an L1 keeps of a refused watch.
type watchDenial struct {
	once   sync.Once
	denied atomic.Bool
}

// onWatchDenied turns the L1 off for good after the store refused its
// watch (ch.Kind ChangeWatchDenied): nothing it holds is served again,
// since no change would be heard. It warns once, however many times the
// store says so.
func (a *Adapter) onWatchDenied(ch driver.Change) {
	a.l1.onChange(driver.Change{Kind: driver.ChangeWatchDown})
	a.l1.denial.once.Do(func() {
		a.l1.denial.denied.Store(true)
		err := ch.Err
		if err == nil {
			err = driver.ErrWatchDenied
		}
		ctx := context.Background()
		if a.cfg.logger.Enabled(ctx, slog.LevelWarn) {
			a.cfg.logger.LogAttrs(ctx, slog.LevelWarn,
				"WithL1: the store refused the watch the L1 needs (the user lacks the permission to subscribe to the store's change channel); the L1 is off and every call reads the store. Grant the permission (Redis: ACL SETUSER <user> +subscribe &msalcache:changes:*) and restart",
				slog.String("op", "watch"), errAttr(err))
		}
		e := a.begin(observe.OpInvalidation)
		e.Outcome, e.Reason = observe.OutcomeError, observe.ReasonWatchDenied
		a.emit(ctx, &e)
	})
}

// watchDenied reports whether the store refused the L1's watch.
func (c *l1) watchDenied() bool { return c != nil && c.denial.denied.Load() }
