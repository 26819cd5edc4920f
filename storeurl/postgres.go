package storeurl

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/msalcache/msalcache/pgstore"
)

// Postgres is the kind of a postgres:// or postgresql:// URL: a table in a
// PostgreSQL database, through pgxpool (pgstore).
const Postgres Kind = "postgres"

// parsePostgres reads a PostgreSQL URL: pgx's syntax and query options
// (sslmode, pool_max_conns, connect_timeout, target_session_attrs, …),
// plus table= (pgstore.WithTable) and unlogged=true (pgstore.WithUnlogged,
// for a table New creates). storeurl removes its own options before pgx
// sees the URL: pgx sends any option it does not know to the server as a
// run-time parameter, which the server refuses.
func (u *URL) parsePostgres(raw string) error {
	base, query, _ := strings.Cut(raw, "?")
	q, err := url.ParseQuery(query)
	if err != nil {
		return errors.New("the query does not parse")
	}
	u.pgTable = pgstore.DefaultTable
	for k, v := range q {
		val := v[len(v)-1]
		switch k {
		case "table":
			u.pgTable = val
			if !pgstore.ValidTable(val) {
				return fmt.Errorf("table=%q: use 1 to 48 lower-case letters, digits or underscores", truncate(val, 60))
			}
		case "unlogged":
			switch val {
			case "true", "1":
				u.pgUnlogged = true
			case "false", "0", "":
			default:
				return fmt.Errorf("unlogged=%q: pass true or false", truncate(val, 20))
			}
		default:
			continue
		}
		q.Del(k)
	}
	rest := base
	if enc := q.Encode(); enc != "" {
		rest += "?" + enc
	}
	cfg, err := pgxpool.ParseConfig(rest)
	if err != nil {
		return errors.New(scrub(err, raw))
	}
	u.Pool = cfg
	return nil
}

// openPostgres opens the pool and the store of a Postgres URL. pgstore.New
// connects (it creates the table when absent), so unlike the other kinds
// this one does I/O, bounded by ctx.
func (u *URL) openPostgres(ctx context.Context, out *Store, o options) error {
	if o.hasPrefix && o.prefix != "" {
		return fmt.Errorf("storeurl: %s: PostgreSQL has no key prefix; separate data by table (?table=name)", u)
	}
	pool, err := pgxpool.NewWithConfig(ctx, u.Pool.Copy())
	if err != nil {
		return fmt.Errorf("storeurl: open %s: %s", u, scrubText(err.Error(), u))
	}
	opts := []pgstore.Option{pgstore.WithTable(u.pgTable)}
	if u.pgUnlogged {
		opts = append(opts, pgstore.WithUnlogged())
	}
	s, err := pgstore.New(ctx, pool, opts...)
	if err != nil {
		pool.Close()
		return fmt.Errorf("storeurl: open %s: %s", u, scrubText(err.Error(), u))
	}
	out.Store, out.Postgres = s, pool
	return nil
}

// scrubText drops the password of u's pool configuration from an error's
// text, should a driver ever quote it.
func scrubText(msg string, u *URL) string {
	if u.Pool != nil && u.Pool.ConnConfig.Password != "" && strings.Contains(msg, u.Pool.ConnConfig.Password) {
		return "the connection failed (the error quoted the password, so it is not shown)"
	}
	return msg
}
