package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/pgstore"
	"github.com/msalcache/msalcache/storeurl"
)

// doctorPostgresAll checks every PostgreSQL store the command opened (the
// store, and the ring's store when it is another one).
func doctorPostgresAll(ctx context.Context, a *app, e *env, add func(level, check, detail, action string)) {
	doctorPostgres(ctx, a, e.store, add)
	if e.ringStore != e.store {
		doctorPostgres(ctx, a, e.ringStore, add)
	}
}

// pgColumns are the columns pgstore reads and writes, and their types.
var pgColumns = map[string]string{"key": "text", "value": "bytea", "version": "bigint", "expires_at": "timestamp with time zone"}

// doctorPostgres checks the table's shape and kind, the role's grants on
// it, the expiry index and backlog, the server's clock, and that a write's
// notification reaches a listener.
func doctorPostgres(ctx context.Context, a *app, s *storeurl.Store, add func(level, check, detail, action string)) {
	ps, ok := s.Store.(*pgstore.Store)
	if s.Postgres == nil || !ok {
		return
	}
	pool, table := s.Postgres, ps.Table()
	reg := pgx.Identifier{table}.Sanitize()
	cctx, cancel := a.callCtx(ctx)
	defer cancel()

	// The table: columns, kind, index.
	rows, err := pool.Query(cctx, `SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute
WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped`, reg)
	var got map[string]string
	if err == nil {
		got = map[string]string{}
		var name, typ string
		_, err = pgx.ForEachRow(rows, []any{&name, &typ}, func() error { got[name] = typ; return nil })
	}
	switch {
	case err != nil:
		add("fail", "table", fmt.Sprintf("table %q cannot be read: %v", table, err), "check the role's USAGE on the schema")
	default:
		var wrong []string
		for col, typ := range pgColumns {
			if got[col] != typ {
				wrong = append(wrong, fmt.Sprintf("%s (want %s, found %q)", col, typ, got[col]))
			}
		}
		kind := "logged"
		if ps.Volatile() {
			kind = "UNLOGGED: emptied by a crash or a failover"
		}
		if len(wrong) > 0 {
			add("fail", "table", fmt.Sprintf("table %q lacks or mistypes %s", table, strings.Join(wrong, ", ")), "recreate it as pgstore's documentation shows:\n"+ps.Schema())
		} else {
			add("ok", "table", fmt.Sprintf("table %q has pgstore's columns (%s)", table, kind), "")
		}
	}
	var indexed bool
	if err := pool.QueryRow(cctx, `SELECT EXISTS (SELECT 1 FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
WHERE i.indrelid = to_regclass($1) AND a.attname = 'expires_at')`, reg).Scan(&indexed); err == nil && !indexed {
		add("warn", "index", fmt.Sprintf("no index on %s.expires_at: every sweep scans the whole table", table),
			fmt.Sprintf("CREATE INDEX %s ON %s (expires_at) WHERE expires_at IS NOT NULL", pgx.Identifier{table + "_expires_at"}.Sanitize(), reg))
	}
	var expired int64
	if err := pool.QueryRow(cctx, `SELECT count(*) FROM `+reg+` WHERE expires_at <= now()`).Scan(&expired); err == nil && expired > 100*pgstore.SweepBatch {
		add("warn", "sweep", fmt.Sprintf("%d expired rows await the sweep", expired), "check that an application server runs the sweep (it is on by default), or run pgstore's Sweep")
	}

	// The grants.
	var missing []string
	for _, priv := range []string{"SELECT", "INSERT", "UPDATE", "DELETE"} {
		var has bool
		if err := pool.QueryRow(cctx, `SELECT has_table_privilege(current_user, to_regclass($1), $2)`, reg, priv).Scan(&has); err != nil || !has {
			missing = append(missing, priv)
		}
	}
	if len(missing) > 0 {
		add("fail", "grants", fmt.Sprintf("the role lacks %s on %q", strings.Join(missing, ", "), table),
			fmt.Sprintf("GRANT %s ON %s TO <role>", strings.Join(missing, ", "), reg))
	} else {
		add("ok", "grants", fmt.Sprintf("the role may SELECT, INSERT, UPDATE and DELETE on %q", table), "")
	}

	// The clock: expiry is the server's, the key ring's activation ours.
	t0 := time.Now()
	var now time.Time
	if err := pool.QueryRow(cctx, `SELECT clock_timestamp()`).Scan(&now); err == nil {
		skew := now.Sub(t0.Add(time.Since(t0) / 2))
		if skew < 0 {
			skew = -skew
		}
		if skew > 2*time.Second {
			add("warn", "clock", fmt.Sprintf("the server's clock is %v away from this host's", skew.Round(time.Millisecond)), "run NTP on both: key activation allows for 5 minutes of skew")
		} else {
			add("ok", "clock", fmt.Sprintf("the server's clock is within %v of this host's", skew.Round(time.Millisecond)), "")
		}
	}

	// The listener: a Delete of a key no one uses must reach a watch.
	doctorListener(ctx, a, ps, add)
}

// doctorProbeKey is the key whose Delete tests the notifications: no
// Adapter key has this shape, and deleting an absent key writes nothing.
const doctorProbeKey = "msalcache-doctor-probe"

func doctorListener(ctx context.Context, a *app, ps *pgstore.Store, add func(level, check, detail, action string)) {
	up := make(chan struct{}, 1)
	heard := make(chan struct{}, 1)
	stop, err := ps.Watch(ctx, func(ch driver.Change) {
		switch {
		case ch.Kind == driver.ChangeWatchUp:
			select {
			case up <- struct{}{}:
			default:
			}
		case ch.Kind == driver.ChangeKey && ch.Key == doctorProbeKey:
			select {
			case heard <- struct{}{}:
			default:
			}
		}
	})
	if err != nil {
		add("fail", "listener", err.Error(), "")
		return
	}
	defer stop()
	timer := time.NewTimer(a.timeout + 2*time.Second)
	defer timer.Stop()
	select {
	case <-up:
	case <-timer.C:
		add("fail", "listener", "LISTEN did not come up: Adapters with an L1 would bypass it", "check max_connections (each Store holds one more connection) and that no pooler in transaction mode (PgBouncer) sits in between: LISTEN needs a session")
		return
	}
	cctx, cancel := a.callCtx(ctx)
	t0 := time.Now()
	err = ps.Delete(cctx, doctorProbeKey)
	cancel()
	if err != nil {
		add("fail", "listener", fmt.Sprintf("the probe delete failed: %v", err), "")
		return
	}
	select {
	case <-heard:
		add("ok", "listener", fmt.Sprintf("a write's notification reached a listener in %v", time.Since(t0).Round(time.Microsecond)), "")
	case <-timer.C:
		add("fail", "listener", "a write's notification did not reach the listener: Adapters' L1s would serve stale data until MaxStale",
			"NOTIFY must reach the server LISTEN is on: no pooler in transaction mode, no read replica in the URL")
	}
}
