// Package netstore holds what the stores that keep their records on a
// server (redisstore, memcachestore) share: the versions they draw for
// their writes, and the turning of a client's error into one that callers
// can test with errors.Is against the msalcache sentinels and the context
// errors. Stores may not import each other; this package is their common
// ground.
package netstore

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"

	"github.com/msalcache/msalcache"
)

// NewVersion picks a random non-zero version. Neither server keeps a
// version of its own that survives a restart (memcached's CAS ids start
// again from 1), and a counter kept in the record restarts when a key is
// deleted and created again, so that a writer that read the old key could
// overwrite the new one (the ABA problem); a random version is, in
// practice, never reused (two writes collide with probability 2^-64).
// math/rand/v2's global source is ChaCha8 seeded by the runtime from the
// OS, so two processes do not produce the same sequence.
func NewVersion() driver.Version {
	for {
		if v := driver.Version(rand.Uint64()); v != driver.NoVersion {
			return v
		}
	}
}

// IsTimeout reports the network timeouts that clients return instead of
// ctx errors: a socket deadline (os.ErrDeadlineExceeded) or any net.Error
// that says it timed out. Clients with timeouts of their own (a pool wait,
// a dial) add them at the call site.
func IsTimeout(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// Wrap turns err, the failure of a call that what names ("redisstore:
// load"), into the store's error. kind is the sentinel the store found err
// to stand for, or nil: driver.ErrNotFound for a miss,
// context.DeadlineExceeded for a timeout (see IsTimeout), or another
// msalcache sentinel such as ErrClosed or ErrTooLarge.
//
// The rules, in order: a miss is a miss even if ctx ended meanwhile, since
// the server did answer; otherwise, once ctx is done, the error wraps
// ctx.Err() (and err, unless it is that same error), so that a caller
// whose deadline passed sees context.DeadlineExceeded whatever the client
// made of it; an err that already wraps a context error is kept as it is;
// else the error wraps kind and err. The text never adds a key: callers
// pass errors that do not name one.
func Wrap(ctx context.Context, what string, err, kind error) error {
	switch {
	case kind == driver.ErrNotFound:
		return fmt.Errorf("%s: %w", what, kind)
	case ctx.Err() != nil:
		cerr := ctx.Err()
		if errors.Is(err, cerr) {
			return fmt.Errorf("%s: %w", what, err)
		}
		return fmt.Errorf("%s: %w: %w", what, cerr, err)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return fmt.Errorf("%s: %w", what, err)
	case kind != nil:
		return fmt.Errorf("%s: %w: %w", what, kind, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}
