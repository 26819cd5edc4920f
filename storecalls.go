package msalcache

import (
	"context"
	"errors"
	"time"

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

func (a *Adapter) load(ctx context.Context, key string) ([]byte, driver.Version, error) {
	if a.direct {
		blob, v, err := a.store.Load(ctx, key)
		a.observe(key, err)
		return blob, v, err
	}
	var r struct {
		blob []byte
		v    driver.Version
	}
	// r is written only by the call and read only when Do returns nil, so
	// an abandoned call that finishes late writes to nothing anyone reads.
	err := ctxrun.Do(ctx, func() (err error) {
		r.blob, r.v, err = a.store.Load(ctx, key)
		return err
	})
	a.observe(key, err)
	if err != nil {
		return nil, driver.NoVersion, err
	}
	return r.blob, r.v, nil
}

func (a *Adapter) version(ctx context.Context, key string) (driver.Version, error) {
	var v driver.Version
	var err error
	if a.direct {
		v, err = a.versioner.Version(ctx, key)
	} else {
		err = ctxrun.Do(ctx, func() (err error) {
			v, err = a.versioner.Version(ctx, key)
			return err
		})
	}
	a.observe(key, err)
	return v, err
}

func (a *Adapter) save(ctx context.Context, key string, value []byte, ifVersion driver.Version, ttl time.Duration) (driver.Version, error) {
	var v driver.Version
	var err error
	if a.direct {
		v, err = a.store.Save(ctx, key, value, ifVersion, ttl)
	} else {
		err = ctxrun.Do(ctx, func() (err error) {
			v, err = a.store.Save(ctx, key, value, ifVersion, ttl)
			return err
		})
	}
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
	if a.directProtector {
		return a.cfg.protector.Unprotect(ctx, blob, []byte(key))
	}
	var plain []byte
	err := ctxrun.Do(ctx, func() (err error) {
		plain, err = a.cfg.protector.Unprotect(ctx, blob, []byte(key))
		return err
	})
	if err != nil {
		return nil, err
	}
	return plain, nil
}

func (a *Adapter) seal(ctx context.Context, plain []byte, key string) ([]byte, error) {
	if a.cfg.protector == nil {
		return plain, nil
	}
	if a.directProtector {
		return a.cfg.protector.Protect(ctx, plain, []byte(key))
	}
	var sealed []byte
	err := ctxrun.Do(ctx, func() (err error) {
		sealed, err = a.cfg.protector.Protect(ctx, plain, []byte(key))
		return err
	})
	if err != nil {
		return nil, err
	}
	return sealed, nil
}

func (a *Adapter) needsReprotect(blob []byte) bool {
	return a.reprotector != nil && a.reprotector.NeedsReprotect(blob)
}

func (a *Adapter) deleteKey(ctx context.Context, key string) error {
	var err error
	if a.direct {
		err = a.store.Delete(ctx, key)
	} else {
		err = ctxrun.Do(ctx, func() error { return a.store.Delete(ctx, key) })
	}
	a.observe(key, err)
	return err
}

// saveRemoval saves a removal record: through SaveDurable on a store that
// can wait for a replica, else as any write.
func (a *Adapter) saveRemoval(ctx context.Context, key string, sealed []byte, ifVersion driver.Version) (driver.Version, error) {
	d, ok := a.store.(driver.DurableSaver)
	if !ok {
		return a.save(ctx, key, sealed, ifVersion, a.cfg.userTTL)
	}
	var v driver.Version
	var err error
	if a.direct {
		v, err = d.SaveDurable(ctx, key, sealed, ifVersion, a.cfg.userTTL)
	} else {
		err = ctxrun.Do(ctx, func() (err error) {
			v, err = d.SaveDurable(ctx, key, sealed, ifVersion, a.cfg.userTTL)
			return err
		})
	}
	if errors.Is(err, driver.ErrNotReplicated) {
		// Written on the primary (and v set: the call returned).
		a.observe(key, nil)
		return v, err
	}
	a.observe(key, err)
	if err != nil {
		return driver.NoVersion, err
	}
	return v, nil
}
