package msalcache

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
)

// ErrWatchDenied reports that a store refused the watch an L1 needs (see
// Watcher and WithL1) for lack of permission: on Redis, a user whose ACL
// does not allow SUBSCRIBE, or not on the store's change channel. The
// store does not retry; the Adapter logs one warning naming the missing
// permission, reports it in Stats.L1WatchDenied and as an Event (Op
// OpInvalidation, Outcome OutcomeError, Reason ReasonWatchDenied), and
// goes on without the L1: every call reads the store, as without WithL1.
// Grant the permission and restart the process to have the L1 back.
var ErrWatchDenied = errors.New("msalcache: the store refused the L1's watch for lack of permission")

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
