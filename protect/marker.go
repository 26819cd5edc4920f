package protect

import (
	"context"
	"errors"
	"fmt"

	"github.com/msalcache/msalcache"
)

var markerValue = []byte("msalcache key ring marker v1: a key ring was created in this store\n")

// markerExists reports whether the marker is there. A marker the store
// reports corrupt counts as present: something was written there, and
// failing closed (no new ring) is the safe answer.
func (r *KeyRing) markerExists(ctx context.Context) (bool, error) {
	present, _, err := r.markerState(ctx)
	return present, err
}

func (r *KeyRing) markerState(ctx context.Context) (present, corrupt bool, err error) {
	_, _, err = r.store.Load(ctx, r.marker)
	switch {
	case err == nil:
		return true, false, nil
	case errors.Is(err, driver.ErrNotFound):
		return false, false, nil
	case errors.Is(err, driver.ErrCorrupt):
		return true, true, nil
	default:
		return false, false, fmt.Errorf("protect: load key ring marker %q: %w", r.marker, err)
	}
}

// ensureMarker writes the marker after the record exists (never before, so
// a crash in between cannot leave a marker with no ring), and rewrites one
// the store reports corrupt. Failures are logged and retried at the next
// refresh: the marker only decides whether a newcomer facing an empty
// store may start a new ring.
func (r *KeyRing) ensureMarker(ctx context.Context) {
	present, corrupt, err := r.markerState(ctx)
	if err == nil && (!present || corrupt) {
		// NoVersion creates the marker, or replaces a corrupt one.
		_, err = r.store.Save(ctx, r.marker, markerValue, driver.NoVersion, 0)
		if errors.Is(err, driver.ErrConflict) {
			err = nil
		}
	}
	if err != nil {
		r.cfg.logger.Warn("protect: cannot write the key ring marker; will retry", "marker", r.marker, "err", err)
	}
}
