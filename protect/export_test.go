package protect

import (
	"context"

	"github.com/msalcache/msalcache/internal/ringadmin"
)

// The defaults, the test clock and the operator's helpers, under the
// names the tests have always used; none of them is public API.
const (
	DefaultRingKey         = defaultRingKey
	DefaultPurpose         = defaultPurpose
	DefaultKeyLifetime     = defaultKeyLifetime
	DefaultActivationDelay = defaultActivationDelay
	DefaultRefreshInterval = defaultRefreshInterval
	DefaultClockSkew       = defaultClockSkew
	DefaultReloadInterval  = defaultReloadInterval
)

var (
	WithClock    = withClock
	MarkerKey    = ringadmin.MarkerKey
	PayloadKeyID = payloadKeyID
	ErrReadOnly  = ringadmin.ErrReadOnly
	ErrNoRing    = ringadmin.ErrNoRing
)

// markerSuffix is what MarkerKey appends, for the internal tests.
var markerSuffix = ringadmin.MarkerKey("")

// The ring listing and the KEK kinds, which live in internal/ringadmin for
// the CLI, under the names protect's tests use.
type (
	KeyInfo   = ringadmin.KeyInfo
	KeyStatus = ringadmin.KeyStatus
)

const (
	KeyPending      = ringadmin.KeyPending
	KeyActive       = ringadmin.KeyActive
	KeyExpired      = ringadmin.KeyExpired
	KeyRevoked      = ringadmin.KeyRevoked
	KindAES         = ringadmin.KindAES
	KindCertificate = ringadmin.KindCertificate
	KindCustom      = ringadmin.KindCustom
	Overhead        = overhead
)

// Keys is ringadmin.Keys, as a method for the tests.
func (r *KeyRing) Keys(ctx context.Context) ([]KeyInfo, error) { return r.keys(ctx) }

// The errors an application never meets through the Adapter (it counts
// them as decrypt errors), under the names the tests use.
var (
	ErrNotProtected = errNotProtected
	ErrDecrypt      = errDecrypt
	ErrNoKey        = errNoKey
	ErrRingClosed   = errRingClosed
	ErrKeyNotFound  = errKeyNotFound
)
