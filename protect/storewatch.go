package protect

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/msalcache/msalcache"
)

// Timing of the reloads the store's notifications cause.
const (
	// pushTimeout bounds one reload caused by a notification.
	pushTimeout = 30 * time.Second
	// pushRetryMin and pushRetryMax bound the wait before a failed reload
	// is tried again (doubling in between), so that a store that fails
	// for a moment does not leave a revocation unseen until the next
	// refresh, and one that stays down is not hammered.
	pushRetryMin = 250 * time.Millisecond
	pushRetryMax = 30 * time.Second
)

// pushWatch is the ring's subscription to its store's changes, when the
// store is an driver.Watcher and the background refresh is on.
type pushWatch struct {
	stop func()        // ends the store's watch; nil when not watching
	kick chan struct{} // one pending reload; capacity 1
	done chan struct{} // closed when pushLoop returns; nil when not watching
	// heard is the version the last notification of the ring record
	// announced, or 0 (NoVersion) for a delete, for the watch coming up
	// (changes may have been missed while it was down), or when unknown:
	// 0 always reloads.
	heard atomic.Uint64
}

// startPush subscribes to the ring store's changes, when the store can push
// them; runPush then starts the goroutine that reloads the record when it
// changes. A store that cannot be watched (not a Watcher, or Watch fails,
// as it does for a *redis.Ring) leaves the ring on its refresh interval
// alone. NewKeyRing calls startPush before its first read of the record:
// a ChangeWatchUp delivered inside Watch (memstore, boltstore) is dropped,
// since that read follows it; one delivered later (Redis confirms its
// subscription asynchronously) makes the ring reload once.
func (r *KeyRing) startPush() {
	w, ok := r.store.(driver.Watcher)
	if !ok {
		return
	}
	r.push.kick = make(chan struct{}, 1)
	ctx, cancel := context.WithTimeout(r.bgCtx, pushTimeout)
	stop, err := w.Watch(ctx, r.onStoreChange)
	cancel()
	if err != nil || stop == nil {
		r.cfg.logger.Info("protect: cannot watch the key ring's store for changes; other servers' rotations and revocations reach this one at its refresh interval",
			"ring", r.cfg.ringKey, "refresh_interval", r.cfg.refreshInterval, "err", err)
		return
	}
	r.push.stop = stop
	if r.push.heard.Load() == uint64(driver.NoVersion) {
		select {
		case <-r.push.kick: // the Up of Watch itself: the first read follows
		default:
		}
	}
}

// runPush starts pushLoop if startPush subscribed.
func (r *KeyRing) runPush() {
	if r.push.stop == nil {
		return
	}
	r.push.done = make(chan struct{})
	go r.pushLoop()
}

// stopPush ends the store's watch; it waits for a notification in
// progress, and none comes after it.
func (r *KeyRing) stopPush() {
	if r.push.stop != nil {
		r.push.stop()
	}
}

// wait returns once pushLoop has returned (at once when none ran).
func (p *pushWatch) wait() {
	if p.done != nil {
		<-p.done
	}
}

// onStoreChange is the store's callback. It runs inside the store (on its
// watch goroutine, or inside the writer's Save), so it only notes what it
// heard and wakes pushLoop, never blocking and never calling the store.
func (r *KeyRing) onStoreChange(ch driver.Change) {
	switch ch.Kind {
	case driver.ChangeKey:
		if ch.Key != r.cfg.ringKey {
			return // a token partition, or the ring's marker
		}
		r.push.heard.Store(uint64(ch.Version))
	case driver.ChangeWatchUp:
		// Changes made while the watch was down (or before it started)
		// went unheard: reload once.
		r.push.heard.Store(uint64(driver.NoVersion))
	case driver.ChangeWatchDown:
		// Until the watch is up again, the refresh interval is all
		// there is.
		return
	default:
		return
	}
	select {
	case r.push.kick <- struct{}{}:
	default: // a reload is pending already, and will read heard
	}
}

// pushLoop reloads the record each time the store reports a change to it
// (notifications that arrive during a reload coalesce into one more), and
// retries a failed reload with backoff until one succeeds or another
// notification comes.
func (r *KeyRing) pushLoop() {
	defer close(r.push.done)
	var retry <-chan time.Time
	backoff := time.Duration(0)
	for {
		select {
		case <-r.bgCtx.Done():
			return
		case <-r.push.kick:
		case <-retry:
		}
		retry = nil
		ctx, cancel := context.WithTimeout(r.bgCtx, pushTimeout)
		err := r.withLock(ctx, func() error {
			// The ring's own write, or a version already reloaded.
			if h := driver.Version(r.push.heard.Load()); h != driver.NoVersion && h == r.ver {
				return nil
			}
			return r.reload(ctx)
		})
		cancel()
		if err == nil || r.bgCtx.Err() != nil {
			backoff = 0
			continue
		}
		backoff = min(max(2*backoff, pushRetryMin), pushRetryMax)
		r.cfg.logger.Warn("protect: reloading the key ring after another server changed it failed; keeping the keys already loaded and retrying",
			"ring", r.cfg.ringKey, "err", err, "retry_in", backoff)
		retry = time.After(backoff)
	}
}
