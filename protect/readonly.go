package protect

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/msalcache/msalcache"
)

// ErrReadOnly reports a write attempted through a KeyRing opened with
// OpenReadOnly: Rotate, Revoke, or a refresh that would add or repair a
// key. Nothing was written.
var ErrReadOnly = errors.New("protect: key ring opened read-only (OpenReadOnly); open it with NewKeyRing to change it")

// ErrNoRing reports that OpenReadOnly found neither a ring record nor its
// marker: the store never held a ring under that key (check the store,
// its prefix and WithRingKey), or it was reset.
var ErrNoRing = errors.New("protect: the store holds no key ring")

// OpenReadOnly loads the ring kept in store for inspection and decryption,
// and never writes to the store: it mints no key, no ring, no naming
// secret and no marker, rewrites no damaged record, and runs no background
// refresh. Operator tools use it to read a ring they must not change (a
// read-only credential, a dry run, a ring about to be rotated by the
// farm's servers).
//
// The ring it returns unprotects every blob its keys open, hashes
// partition keys as the farm does, and protects under the current default
// key, so that it can re-encrypt; Rotate, Revoke, and a Protect or Refresh
// that would need a new key fail with an error wrapping ErrReadOnly. Call
// Keys to reload the record.
//
// It fails with ErrNoRing when the store holds no ring and no marker, with
// ErrRingMissing when the marker remains without the record, with
// ErrRingDamaged when the record does not verify with kek (a wrong KEK
// fails this way too: no key unwraps), with ErrInvalidRing for a record
// wrapped by a KEK it was not given or written by a newer version, and
// with ErrVolatileStore for a store that may evict keys, as NewKeyRing
// does. Options are NewKeyRing's; WithAutoRefresh is ignored.
func OpenReadOnly(ctx context.Context, store driver.Store, kek KeyWrapper, opts ...Option) (*KeyRing, error) {
	r, err := newRing("OpenReadOnly", store, kek, opts)
	if err != nil {
		return nil, err
	}
	r.store = readOnlyStore{store}
	r.cfg.autoRefresh = false
	r.bgCtx, r.bgCancel = context.WithCancel(context.Background())
	close(r.done)
	err = r.withLock(ctx, func() error { return r.reload(ctx) })
	if errors.Is(err, ErrRingMissing) {
		if present, merr := r.markerExists(ctx); merr == nil && !present {
			return nil, fmt.Errorf("%w under key %q (nor its marker %q)", ErrNoRing, r.cfg.ringKey, r.marker)
		}
	}
	if err != nil {
		return nil, err
	}
	return r, nil
}

// readOnlyStore refuses every write, so that no path of the ring (a
// repair, a marker, a rotation) can change the store.
type readOnlyStore struct{ driver.Store }

func (readOnlyStore) Save(context.Context, string, []byte, driver.Version, time.Duration) (driver.Version, error) {
	return driver.NoVersion, ErrReadOnly
}

func (readOnlyStore) Delete(context.Context, string) error { return ErrReadOnly }

// PayloadKeyID returns the id of the key that sealed payload, as
// KeyInfo.ID shows it, without any key: operators count blobs per key
// with it. Input that is not a payload of this package fails with
// ErrNotProtected.
func PayloadKeyID(payload []byte) (string, error) {
	h, err := parsePayload(payload)
	if err != nil {
		return "", err
	}
	return h.id.String(), nil
}

// MarkerKey returns the store key of the marker kept beside the ring
// record ringKey (DefaultRingKey unless WithRingKey): a reset of the ring
// deletes both.
func MarkerKey(ringKey string) string { return ringKey + markerSuffix }
