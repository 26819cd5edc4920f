package msalcache

import (
	"context"
	"errors"
	"time"

	"github.com/msalcache/msalcache/driver"
	"github.com/msalcache/msalcache/internal/ctxrun"
)

// The store and the Protector are called through the helpers below, which
// return when ctx is done whatever the call does: MSAL holds its client lock
// across every hook call, so one store call that ignores its context (a
// client bug such as go-redis 9.17's pool deadlock, a server that accepts
// and never answers) would otherwise stall every token call of that client.
// A call abandoned this way finishes on its own goroutine; compare-and-set
// keeps whatever it wrote late from overwriting newer data. A callee that
// declares ContextBounder does that bounding itself (every store of this
// module does) and is called directly, saving a goroutine and its wake-up
// on every call.

// storeCall is what a call through bounded needs: the store, Protector
// and settings through a, and the call's arguments (a field the call does
// not use stays zero).
type storeCall struct {
	a         *Adapter
	key       string
	value     []byte
	ifVersion driver.Version
	ttl       time.Duration
}

// bounded returns f(ctx, c): called directly when direct, else through
// ctxrun.Do, so that it returns when ctx is done. On an error the result
// is R's zero value, never what an abandoned call may still write.
//
// f is a func literal that captures nothing and c carries what it needs,
// so that the direct call (the hot path: every store of this module
// bounds its calls) allocates nothing: a closure capturing the call's
// arguments would escape through the goroutine of the other path and be
// built on the heap on every call, direct or not. For the same reason the
// other path is a function of its own (detached): the closure there moves
// its copy of c to the heap, which must not happen before direct is read.
func bounded[R any](ctx context.Context, direct bool, f func(context.Context, storeCall) (R, error), c storeCall) (R, error) {
	if direct {
		return f(ctx, c)
	}
	return detached(ctx, f, c)
}

// detached is bounded's call on a goroutine of its own.
func detached[R any](ctx context.Context, f func(context.Context, storeCall) (R, error), c storeCall) (R, error) {
	var r R
	// r is written only by the call and read only when Do returns nil, so
	// an abandoned call that finishes late writes to nothing anyone reads.
	err := ctxrun.Do(ctx, func() (err error) {
		r, err = f(ctx, c)
		return err
	})
	if err != nil {
		var zero R
		return zero, err
	}
	return r, nil
}

// loaded is a Load's two results, as one for bounded.
type loaded struct {
	blob []byte
	v    driver.Version
}

func (a *Adapter) load(ctx context.Context, key string) ([]byte, driver.Version, error) {
	r, err := bounded(ctx, a.direct, func(ctx context.Context, c storeCall) (loaded, error) {
		blob, v, err := c.a.store.Load(ctx, c.key)
		return loaded{blob, v}, err
	}, storeCall{a: a, key: key})
	a.observe(key, err)
	if err != nil {
		return nil, driver.NoVersion, err
	}
	return r.blob, r.v, nil
}

func (a *Adapter) version(ctx context.Context, key string) (driver.Version, error) {
	v, err := bounded(ctx, a.direct, func(ctx context.Context, c storeCall) (driver.Version, error) {
		return c.a.versioner.Version(ctx, c.key)
	}, storeCall{a: a, key: key})
	a.observe(key, err)
	if err != nil {
		return driver.NoVersion, err
	}
	return v, nil
}

func (a *Adapter) save(ctx context.Context, key string, value []byte, ifVersion driver.Version, ttl time.Duration) (driver.Version, error) {
	v, err := bounded(ctx, a.direct, func(ctx context.Context, c storeCall) (driver.Version, error) {
		return c.a.store.Save(ctx, c.key, c.value, c.ifVersion, c.ttl)
	}, storeCall{a: a, key: key, value: value, ifVersion: ifVersion, ttl: ttl})
	a.observe(key, err)
	if err != nil {
		return driver.NoVersion, err
	}
	return v, nil
}

func (a *Adapter) open(ctx context.Context, blob []byte, key string) ([]byte, error) {
	if a.cfg.protector == nil {
		return blob, nil
	}
	return bounded(ctx, a.directProtector, func(ctx context.Context, c storeCall) ([]byte, error) {
		return c.a.cfg.protector.Unprotect(ctx, c.value, []byte(c.key))
	}, storeCall{a: a, key: key, value: blob})
}

func (a *Adapter) seal(ctx context.Context, plain []byte, key string) ([]byte, error) {
	if a.cfg.protector == nil {
		return plain, nil
	}
	return bounded(ctx, a.directProtector, func(ctx context.Context, c storeCall) ([]byte, error) {
		return c.a.cfg.protector.Protect(ctx, c.value, []byte(c.key))
	}, storeCall{a: a, key: key, value: plain})
}

func (a *Adapter) needsReprotect(blob []byte) bool {
	return a.reprotector != nil && a.reprotector.NeedsReprotect(blob)
}

func (a *Adapter) deleteKey(ctx context.Context, key string) error {
	_, err := bounded(ctx, a.direct, func(ctx context.Context, c storeCall) (struct{}, error) {
		return struct{}{}, c.a.store.Delete(ctx, c.key)
	}, storeCall{a: a, key: key})
	a.observe(key, err)
	return err
}

// durable is a SaveDurable's two results, as one for bounded: the call's
// error travels in err, so that the version of a write that reached only
// the primary (ErrNotReplicated) is not dropped as an error's result.
type durable struct {
	v   driver.Version
	err error
}

// saveRemoval saves a removal record: through SaveDurable on a store that
// can wait for a replica, else as any write.
func (a *Adapter) saveRemoval(ctx context.Context, key string, sealed []byte, ifVersion driver.Version) (driver.Version, error) {
	if _, ok := a.store.(driver.DurableSaver); !ok {
		return a.save(ctx, key, sealed, ifVersion, a.cfg.userTTL)
	}
	r, err := bounded(ctx, a.direct, func(ctx context.Context, c storeCall) (durable, error) {
		v, err := c.a.store.(driver.DurableSaver).SaveDurable(ctx, c.key, c.value, c.ifVersion, c.a.cfg.userTTL)
		return durable{v, err}, nil
	}, storeCall{a: a, key: key, value: sealed, ifVersion: ifVersion})
	if err == nil {
		err = r.err
	}
	if errors.Is(err, driver.ErrNotReplicated) {
		// Written on the primary (and r.v set: the call returned).
		a.observe(key, nil)
		return r.v, err
	}
	a.observe(key, err)
	if err != nil {
		return driver.NoVersion, err
	}
	return r.v, nil
}
