package protect

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/msalcache/msalcache/driver"
	"github.com/msalcache/msalcache/internal/ringadmin"
)

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
// that would need a new key fail, writing nothing, with an error that says
// the ring is read-only. Call Keys to reload the record.
//
// It fails with an error that says the store holds no key ring when the
// store holds neither the record nor its marker (check the store, its
// prefix and WithRingKey), with
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
			return nil, fmt.Errorf("%w under key %q (nor its marker %q)", ringadmin.ErrNoRing, r.cfg.ringKey, r.marker)
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
	return driver.NoVersion, ringadmin.ErrReadOnly
}

func (readOnlyStore) Delete(context.Context, string) error { return ringadmin.ErrReadOnly }

func init() { ringadmin.PayloadKeyID = payloadKeyID }

// payloadKeyID is ringadmin.PayloadKeyID: the id of the key that sealed
// payload, as KeyInfo.ID shows it, read without any key so that operators
// can count blobs per key. Input that is not a payload of this package
// fails with errNotProtected.
func payloadKeyID(payload []byte) (string, error) {
	h, err := parsePayload(payload)
	if err != nil {
		return "", err
	}
	return h.id.String(), nil
}
