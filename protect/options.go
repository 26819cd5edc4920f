package protect

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/msalcache/msalcache"
)

// Defaults of the KeyRing's timing, after ASP.NET Core Data Protection's
// key management (which uses 90 days and a 2-day window; token caches turn
// over faster, so keys here live 30 days).
const (
	// DefaultRingKey is the store key of the ring's record.
	DefaultRingKey = "msalcache/keyring/v1"
	// DefaultPurpose is bound into every payload; see WithPurpose.
	DefaultPurpose = "msalcache token cache"
	// DefaultKeyLifetime is how long a key is used to encrypt, from its
	// activation. It keeps decrypting after that until revoked.
	DefaultKeyLifetime = 30 * 24 * time.Hour
	// DefaultActivationDelay is how long before its activation a scheduled
	// key is written to the ring, so that every server has loaded it before
	// any server encrypts with it.
	DefaultActivationDelay = 24 * time.Hour
	// DefaultRefreshInterval is how often a ring reloads its record (with
	// up to 20% jitter, never later than this).
	DefaultRefreshInterval = 10 * time.Minute
	// DefaultClockSkew is how far apart the clocks of two servers may be.
	DefaultClockSkew = 5 * time.Minute
	// DefaultReloadInterval is the least time between two reloads caused
	// by payloads under unknown key ids, so that garbage input cannot make
	// a ring hammer its store.
	DefaultReloadInterval = 10 * time.Second
)

// markerSuffix names the marker record, written beside the ring, that
// remembers a ring existed; see the package documentation.
const markerSuffix = ".created"

// Option configures a KeyRing.
type Option func(*config) error

type config struct {
	ringKey         string
	extraKEKs       []KeyWrapper
	purpose         string
	now             func() time.Time
	lifetime        time.Duration
	activationDelay time.Duration
	refreshInterval time.Duration
	clockSkew       time.Duration
	reloadInterval  time.Duration
	autoRefresh     bool
	logger          *slog.Logger
	observer        observe.Observer
}

func defaultConfig() config {
	return config{
		ringKey:         DefaultRingKey,
		purpose:         DefaultPurpose,
		now:             time.Now,
		lifetime:        DefaultKeyLifetime,
		activationDelay: DefaultActivationDelay,
		refreshInterval: DefaultRefreshInterval,
		clockSkew:       DefaultClockSkew,
		reloadInterval:  DefaultReloadInterval,
		autoRefresh:     true,
		logger:          slog.Default(),
	}
}

func (c *config) validate() error {
	if c.refreshInterval <= 0 {
		return fmt.Errorf("protect: refresh interval %v must be positive", c.refreshInterval)
	}
	if c.activationDelay < 0 || c.clockSkew < 0 || c.reloadInterval < 0 {
		return errors.New("protect: activation delay, clock skew and reload interval must not be negative")
	}
	// A key must outlive the lead time of its successor, or the ring would
	// schedule a new key at every refresh.
	if lead := c.activationDelay + c.refreshInterval + 2*c.clockSkew; c.lifetime <= lead {
		return fmt.Errorf("protect: key lifetime %v must exceed activation delay + refresh interval + 2×clock skew (%v)", c.lifetime, lead)
	}
	return nil
}

// WithRingKey stores the ring under key instead of DefaultRingKey, for
// example to give two applications that share a store separate rings. A
// marker record is kept at key+".created". Keys are 1 to 190 letters,
// digits or "-_.:/".
func WithRingKey(key string) Option {
	return func(c *config) error {
		if len(key) == 0 || len(key) > 190 {
			return fmt.Errorf("protect: ring key must be 1 to 190 bytes, got %d", len(key))
		}
		for i := 0; i < len(key); i++ {
			b := key[i]
			if !(b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '-' || b == '_' || b == '.' || b == ':' || b == '/') {
				return fmt.Errorf("protect: ring key %q has byte %q at %d; use letters, digits or -_.:/", key, b, i)
			}
		}
		c.ringKey = key
		return nil
	}
}

// WithKEKs adds KEKs that can unwrap keys but do not wrap new ones, so the
// KEK itself can rotate: deploy the new KEK everywhere as an extra one,
// then make it the primary (NewKeyRing's kek) with the old one extra, call
// Rotate (every write rewraps all keys under the primary), and only then
// drop the old KEK.
func WithKEKs(keks ...KeyWrapper) Option {
	return func(c *config) error {
		for _, k := range keks {
			if k == nil {
				return errors.New("protect: WithKEKs: nil KeyWrapper")
			}
		}
		c.extraKEKs = append(c.extraKEKs, keks...)
		return nil
	}
}

// WithPurpose binds payloads to purpose (default DefaultPurpose), so that
// two applications sharing a ring cannot open each other's blobs even under
// the same store key. Changing it makes every existing blob unreadable.
func WithPurpose(purpose string) Option {
	return func(c *config) error {
		if purpose == "" || len(purpose) > 1024 {
			return fmt.Errorf("protect: purpose must be 1 to 1024 bytes, got %d", len(purpose))
		}
		c.purpose = purpose
		return nil
	}
}

// WithClock makes the ring read time from now instead of time.Now, so
// tests can step through key lifetimes. The background refresh still
// sleeps in real time; tests usually pair this with WithAutoRefresh(false)
// and call Refresh.
func WithClock(now func() time.Time) Option {
	return func(c *config) error {
		if now == nil {
			return errors.New("protect: WithClock(nil)")
		}
		c.now = now
		return nil
	}
}

// WithKeyLifetime sets how long each key encrypts (default
// DefaultKeyLifetime).
func WithKeyLifetime(d time.Duration) Option {
	return func(c *config) error { c.lifetime = d; return nil }
}

// WithActivationDelay sets how long before its activation a scheduled key
// is written (default DefaultActivationDelay). Keep it well above the
// refresh interval.
func WithActivationDelay(d time.Duration) Option {
	return func(c *config) error { c.activationDelay = d; return nil }
}

// WithRefreshInterval sets how often the ring reloads its record (default
// DefaultRefreshInterval). A key written by another server is used here
// within this interval, or within about a second where the store pushes
// changes (see the package documentation).
func WithRefreshInterval(d time.Duration) Option {
	return func(c *config) error { c.refreshInterval = d; return nil }
}

// WithClockSkew sets the largest clock difference between servers the
// ring tolerates (default DefaultClockSkew).
func WithClockSkew(d time.Duration) Option {
	return func(c *config) error { c.clockSkew = d; return nil }
}

// WithReloadInterval sets the least time between two reloads triggered by
// an unknown key id (default DefaultReloadInterval).
func WithReloadInterval(d time.Duration) Option {
	return func(c *config) error { c.reloadInterval = d; return nil }
}

// WithAutoRefresh turns the background refresh on (the default) or off.
// With it off, call Refresh yourself at least once per refresh interval;
// the ring then does not watch its store for changes either.
func WithAutoRefresh(on bool) Option {
	return func(c *config) error { c.autoRefresh = on; return nil }
}

// WithLogger sets where the ring reports what it repairs or fails to do in
// the background (default slog.Default()). Records carry key ids and store
// keys, never key material.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error {
		if l == nil {
			return errors.New("protect: WithLogger(nil): pass a logger, e.g. slog.New(slog.DiscardHandler)")
		}
		c.logger = l
		return nil
	}
}
