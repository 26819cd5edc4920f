package pgstore

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/msalcache/msalcache"
)

// listBatch is how many keys one statement of List reads.
const listBatch = 1000

// List implements driver.Lister: it reads the live keys that start with
// prefix in key order, listBatch at a time (each batch one statement that
// resumes after the last key seen), and calls fn with each between
// batches, holding no connection, so fn may call the store. Keys created
// or deleted during the walk may or may not be reported.
func (s *Store) List(ctx context.Context, prefix string, fn func(key string) error) error {
	if err := s.start(ctx, "list"); err != nil {
		return err
	}
	after := ""
	for {
		rows, err := s.pool.Query(ctx, s.q.list, prefix, after)
		if err != nil {
			return s.wrap(ctx, "list", err)
		}
		keys, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return s.wrap(ctx, "list", err)
		}
		for _, k := range keys {
			if err := ctx.Err(); err != nil {
				return s.wrap(ctx, "list", err)
			}
			if err := fn(k); err != nil {
				return err
			}
		}
		if len(keys) < listBatch {
			return nil
		}
		after = keys[len(keys)-1]
	}
}

// Lifetime implements driver.Lifetimer: the row's remaining lifetime by
// the database's clock, to the microsecond (at least one), NoExpiry for a
// row without one, or an error wrapping driver.ErrNotFound.
func (s *Store) Lifetime(ctx context.Context, key string) (time.Duration, error) {
	if err := s.start(ctx, "lifetime"); err != nil {
		return 0, err
	}
	var us int64
	if err := s.pool.QueryRow(ctx, s.q.lifetime, key).Scan(&us); err != nil {
		return 0, s.wrap(ctx, "lifetime", err)
	}
	if us < 0 {
		return driver.NoExpiry, nil
	}
	return time.Duration(us) * time.Microsecond, nil
}

// Sweep deletes the expired rows now, SweepBatch per statement, and
// returns how many it deleted. The background sweep calls it every sweep
// interval; a deployment that runs WithoutSweep calls it itself.
func (s *Store) Sweep(ctx context.Context) (int64, error) {
	if err := s.start(ctx, "sweep"); err != nil {
		return 0, err
	}
	s.sweepMu.Lock()
	defer s.sweepMu.Unlock()
	var total int64
	for {
		tag, err := s.pool.Exec(ctx, s.q.sweep)
		if err != nil {
			return total, s.wrap(ctx, "sweep", err)
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < SweepBatch {
			return total, nil
		}
	}
}

// sweepTimeout bounds one background sweep, so that a hung server does not
// hold the sweep (and Close) for long.
const sweepTimeout = 30 * time.Second

// sweepLoop runs Sweep every sweep interval until ctx ends. Errors are
// dropped: a database that is down fails the token calls' own statements,
// which the Adapter reports, and the next sweep catches up.
func (s *Store) sweepLoop(ctx context.Context) {
	defer close(s.sweepDone)
	t := time.NewTicker(s.sweepEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		sctx, cancel := context.WithTimeout(ctx, sweepTimeout)
		_, _ = s.Sweep(sctx)
		cancel()
	}
}
