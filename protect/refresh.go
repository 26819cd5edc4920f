package protect

import (
	"context"
	mrand "math/rand/v2"
	"time"
)

// Refresh reloads the ring's record and does what is due: merges in keys
// and revocations written by other servers, writes back what the record
// lacks (a record replayed from an older copy, or deleted while this ring
// ran), rewrites a damaged record from this ring's verified copy,
// schedules the next key when the default nears expiry, and mints a key
// now when none may encrypt. Writes are compare-and-set; a ring that
// loses the race adopts the winner's record. The background refresh calls
// it; call it yourself with WithAutoRefresh(false).
func (r *KeyRing) Refresh(ctx context.Context) error {
	if err := r.checkOpen(); err != nil {
		return err
	}
	return r.withLock(ctx, func() error { return r.update(ctx, nil) })
}

// loop refreshes every interval, less up to 20% jitter so that a farm's
// servers spread their reads and never exceed the interval.
func (r *KeyRing) loop() {
	defer close(r.done)
	failures := 0
	for {
		d := r.cfg.refreshInterval - time.Duration(mrand.Int64N(int64(r.cfg.refreshInterval)/5+1))
		if failures > 0 {
			// Retry sooner after a failure, but not in a tight loop.
			d = max(d/5, time.Second)
		}
		t := time.NewTimer(d)
		select {
		case <-r.bgCtx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(r.bgCtx, 30*time.Second)
		err := r.withLock(ctx, func() error { return r.update(ctx, nil) })
		cancel()
		if err != nil && r.bgCtx.Err() == nil {
			failures++
			r.cfg.logger.Warn("protect: key ring refresh failed; keeping the keys already loaded",
				"ring", r.cfg.ringKey, "err", err, "failures", failures)
		} else {
			failures = 0
		}
	}
}
