package msalcache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Defaults for the options below.
const (
	// DefaultTimeout bounds each Replace or Export whose context has no
	// deadline, as MSAL's ExportReplace contract asks. Replace treats a
	// store that does not answer in time as a miss.
	DefaultTimeout = 2 * time.Second
	// DefaultUserTTL is how long a user's partition lives after its last
	// write: the lifetime of an Entra ID refresh token.
	DefaultUserTTL = 90 * 24 * time.Hour
	// DefaultMaxPartitionSize bounds what one partition may hold, stored
	// or exported (see WithMaxPartitionSize). A user's partition is a few
	// KiB; an app partition with hundreds of tenants and scopes stays
	// well under a MiB.
	DefaultMaxPartitionSize = 16 << 20
	// DefaultNamespace is the namespace of an Adapter built without
	// WithNamespace.
	DefaultNamespace = "default"
)

// Option configures an Adapter.
type Option func(*config) error

type config struct {
	protector      driver.Protector
	plaintext      bool
	namespace      string
	singlePart     bool
	timeout        time.Duration
	userTTL        time.Duration
	minTTL         time.Duration
	logger         *slog.Logger
	now            func() time.Time
	lendWindow     time.Duration
	maxLent        int
	exportAttempts int
	clientIdle     time.Duration
	maxPartition   int
	l1             *L1Options // nil: no L1
	breaker        BreakerOptions
	onStoreError   func(context.Context, StoreError)
	observers      []observe.Observer
}

func defaultConfig() config {
	return config{
		namespace:      DefaultNamespace,
		timeout:        DefaultTimeout,
		userTTL:        DefaultUserTTL,
		minTTL:         time.Minute,
		logger:         slog.Default(),
		now:            time.Now,
		lendWindow:     100 * time.Millisecond,
		maxLent:        64,
		exportAttempts: 4,
		clientIdle:     defaultClientIdle,
		maxPartition:   DefaultMaxPartitionSize,
		breaker: BreakerOptions{
			Failures: DefaultBreakerFailures, ProbeMax: DefaultBreakerProbeMax,
			MaxPending: DefaultMaxPending, MaxPendingBytes: DefaultMaxPendingBytes,
		},
	}
}

// WithProtector makes the Adapter seal everything it stores with p, binding
// each blob to its store key. Use protect.NewKeyRing for keys that rotate on
// their own.
func WithProtector(p driver.Protector) Option {
	return func(c *config) error {
		if p == nil {
			return errors.New("msalcache: WithProtector(nil): pass a Protector, or WithPlaintext() to store tokens unencrypted")
		}
		c.protector = p
		return nil
	}
}

// WithPlaintext stores tokens unencrypted. New insists on WithProtector or
// WithPlaintext so that nobody stores tokens in clear by accident: anyone
// who can read the store can then use every cached token.
func WithPlaintext() Option {
	return func(c *config) error {
		c.plaintext = true
		return nil
	}
}

// WithNamespace isolates applications that share one store: each namespace
// has its own keys, and a protected blob moved to another namespace does
// not decrypt. A namespace is 1 to 64 letters, digits, '-', '_' or '.'.
func WithNamespace(ns string) Option {
	return func(c *config) error {
		if err := validNamespace(ns); err != nil {
			return err
		}
		c.namespace = ns
		return nil
	}
}

func validNamespace(ns string) error {
	if len(ns) == 0 || len(ns) > 64 {
		return fmt.Errorf("msalcache: namespace must be 1 to 64 bytes long, got %d", len(ns))
	}
	for i := 0; i < len(ns); i++ {
		c := ns[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("msalcache: namespace %q has byte %q at %d; use letters, digits, '-', '_' or '.'", ns, c, i)
		}
	}
	return nil
}

// WithSinglePartition stores the whole cache under one key and ignores
// MSAL's partition keys. Public clients need it: MSAL-Go writes their
// tokens under the empty partition key but reads them under the account's
// key, so a partitioned cache never serves their silent calls (MSAL-Go
// issue 424). Use it for one desktop or CLI user, not for a shared
// confidential client serving many users.
func WithSinglePartition() Option {
	return func(c *config) error {
		c.singlePart = true
		return nil
	}
}

// WithTimeout sets the deadline of a Replace or Export whose context has
// none (default DefaultTimeout). A context that has a deadline keeps it.
func WithTimeout(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("msalcache: WithTimeout(%v): the timeout must be positive", d)
		}
		c.timeout = d
		return nil
	}
}

// WithUserTTL sets how long a partition that holds a user's sign-in lives
// after its last write (default DefaultUserTTL). Partitions that hold only
// app tokens expire with their latest access token.
func WithUserTTL(d time.Duration) Option {
	return func(c *config) error {
		if d < time.Minute {
			return fmt.Errorf("msalcache: WithUserTTL(%v): use at least a minute", d)
		}
		c.userTTL = d
		return nil
	}
}

// WithLogger sets where the Adapter reports the store failures it absorbs
// (default slog.Default()). Records name the operation and a short,
// non-reversible fingerprint of the store key, never a partition key or a
// token.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error {
		if l == nil {
			return errors.New("msalcache: WithLogger(nil): pass a logger, e.g. slog.New(slog.DiscardHandler)")
		}
		c.logger = l
		return nil
	}
}

// WithMaxPartitionSize bounds the size of one stored partition, in bytes as
// stored (default DefaultMaxPartitionSize). Decrypting, parsing and handing
// MSAL a blob costs time and memory in proportion to its size, after the
// store call's deadline: a larger stored blob is a miss (logged with its
// size and this option's name), and a larger export is not stored, so that
// no partition can stall token calls.
func WithMaxPartitionSize(n int) Option {
	return func(c *config) error {
		if n < 64<<10 {
			return fmt.Errorf("msalcache: WithMaxPartitionSize(%d): use at least 64 KiB", n)
		}
		c.maxPartition = n
		return nil
	}
}
