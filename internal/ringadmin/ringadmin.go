// Package ringadmin holds what the operator CLI (cmd/msalcache) needs of
// package protect's key ring and an application never does: where the
// ring and its marker live in a store, the errors of a read-only ring, and
// the key id of a sealed payload. It is internal so that protect's public
// surface stays an application's manual; protect reads its constants and
// errors, and fills in PayloadKeyID when it is loaded.
package ringadmin

import (
	"errors"
	"time"
)

// RingKey is the store key of the ring's record unless
// protect.WithRingKey names another.
const RingKey = "msalcache/keyring/v1"

// ActivationDelay is how long before its activation a scheduled key is
// written to the ring unless protect.WithActivationDelay says otherwise;
// the CLI warns when the default key expires sooner than that.
const ActivationDelay = 24 * time.Hour

// markerSuffix names the marker record, written beside the ring, that
// remembers a ring existed; see protect's package documentation.
const markerSuffix = ".created"

// MarkerKey returns the store key of the marker kept beside the ring
// record ringKey: a reset of the ring deletes both.
func MarkerKey(ringKey string) string { return ringKey + markerSuffix }

// ErrReadOnly reports a write attempted through a KeyRing opened with
// protect.OpenReadOnly: Rotate, Revoke, or a refresh that would add or
// repair a key. Nothing was written.
var ErrReadOnly = errors.New("protect: key ring opened read-only (OpenReadOnly); open it with NewKeyRing to change it")

// ErrNoRing reports that protect.OpenReadOnly found neither a ring record
// nor its marker: the store never held a ring under that key (check the
// store, its prefix and -ring-key), or it was reset.
var ErrNoRing = errors.New("protect: the store holds no key ring")

// PayloadKeyID returns the id of the key that sealed payload, as
// protect.KeyInfo.ID shows it, without any key: operators count blobs per
// key with it. Input that is not a protected payload fails with an error
// wrapping protect's not-a-payload sentinel. Package protect sets it when
// it is initialized, so it is set in any program that imports protect.
var PayloadKeyID func(payload []byte) (string, error)
