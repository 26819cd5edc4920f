package protect

import "github.com/msalcache/msalcache/internal/ringadmin"

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
