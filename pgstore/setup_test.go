package pgstore_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/internal/testserver"
	"github.com/msalcache/msalcache/pgstore"
)

// tables numbers the tables of the run, so that the subtests sharing a
// server each start from an empty table.
var tables atomic.Int64

// server starts a PostgreSQL for the test (a second or two: tests share
// one across their subtests, each on tables of its own).
func server(t *testing.T) *testserver.PostgresServer {
	t.Helper()
	return testserver.Postgres(t)
}

// freshTable returns a table name no other test of the run uses.
func freshTable() string { return fmt.Sprintf("t%d_%d", time.Now().UnixNano()%1e9, tables.Add(1)) }

// newPool opens a pool on srv, closed when the test ends.
func newPool(t testing.TB, srv *testserver.PostgresServer) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), srv.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// newStore opens a Store on table over pool, closed when the test ends.
func newStore(t testing.TB, pool *pgxpool.Pool, table string, opts ...pgstore.Option) *pgstore.Store {
	t.Helper()
	s, err := pgstore.New(context.Background(), pool, append([]pgstore.Option{pgstore.WithTable(table)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// putRaw writes a row past the store's checks, as another program would.
func putRaw(ctx context.Context, pool *pgxpool.Pool, table, key string, value []byte, version int64) error {
	_, err := pool.Exec(ctx, `INSERT INTO `+pgx.Identifier{table}.Sanitize()+` (key, value, version) VALUES ($1, $2, $3)
ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, version = EXCLUDED.version, expires_at = NULL`, key, value, version)
	return err
}

var _ driver.Store = (*pgstore.Store)(nil)
