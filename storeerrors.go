package msalcache

import (
	"context"
	"errors"
)

// StoreError describes one store failure the Adapter absorbed: a Replace
// that became a miss, an Export attempt that failed (each retry is one).
type StoreError struct {
	// Op is the Adapter's operation: "replace" or "export".
	Op string
	// Key is the partition's fingerprint, as in the Adapter's logs: a
	// piece of the hashed store key, never the partition key.
	Key string
	// Err is the store's error. Test it with errors.Is against the
	// sentinel errors and context.DeadlineExceeded.
	Err error
}

// WithStoreErrorHandler calls fn for every store failure the Adapter
// absorbs, on the goroutine of the call that met it, so that an app can
// alert, feed its own breaker or log with its own fields (Microsoft
// .Identity.Web calls this OnL2CacheFailure). It cannot turn the failure
// into a failed token call: MSAL fails the token call for any error of the
// hook, and a cache that is down must cost a miss, never a sign-in. fn
// must be quick and must not call the Adapter. Calls the breaker keeps from
// the store (see WithBreaker) are not failures and are not reported; the
// failure that opened it is.
func WithStoreErrorHandler(fn func(ctx context.Context, e StoreError)) Option {
	return func(c *config) error {
		if fn == nil {
			return errors.New("msalcache: WithStoreErrorHandler(nil): pass a function")
		}
		c.onStoreError = fn
		return nil
	}
}

// storeFailed reports a store failure of op on key; the caller counts it
// in its Event.
func (a *Adapter) storeFailed(ctx context.Context, op, key string, err error) {
	if fn := a.cfg.onStoreError; fn != nil {
		fn(ctx, StoreError{Op: op, Key: fingerprint(key), Err: err})
	}
}
