package benchmarks

import (
	"context"
	"errors"
	"testing"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/cache"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/msalcache/msalcache/internal/testserver"
	"github.com/msalcache/msalcache/pgstore"
)

// openPostgres starts a PostgreSQL (fsync off, as every testserver's: the
// figures are the protocol's and the statements', not a disk's) and opens
// pgstore on a pool of default settings, the key ring in the same table.
// raw is pgx's own SELECT of the 4 KiB value from a table of its own.
func openPostgres(b *testing.B) *backend {
	srv := testserver.Postgres(b)
	pool := newPGPool(b, srv)
	ctx := context.Background()
	if _, err := pool.Exec(ctx, `CREATE TABLE naive (key text PRIMARY KEY, value bytea NOT NULL)`); err != nil {
		b.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO naive VALUES ($1, $2)`, rawKey, rawValue()); err != nil {
		b.Fatal(err)
	}
	store, err := pgstore.New(ctx, pool)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { store.Close() })
	return &backend{
		raw: func(ctx context.Context) error {
			var v []byte
			err := pool.QueryRow(ctx, `SELECT value FROM naive WHERE key = $1`, rawKey).Scan(&v)
			return checkRaw(v, err)
		},
		naive: naivePostgres{pool},
		store: store,
		ring:  newRing(b, store),
	}
}

func newPGPool(b *testing.B, srv *testserver.PostgresServer) *pgxpool.Pool {
	pool, err := pgxpool.New(context.Background(), srv.URL("postgres"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(pool.Close)
	return pool
}

// openPostgresPair opens two pgstore Stores on two pools of one server, as
// two instances of a farm.
func openPostgresPair(b *testing.B) (a, other *pgstore.Store) {
	srv := testserver.Postgres(b)
	open := func() *pgstore.Store {
		s, err := pgstore.New(context.Background(), newPGPool(b, srv))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { s.Close() })
		return s
	}
	return open(), open()
}

// naivePostgres is the upsert that IDistributedCache implementations and
// hand-written accessors run: no version, no expiry, no notification.
type naivePostgres struct{ pool *pgxpool.Pool }

func (n naivePostgres) Replace(ctx context.Context, u cache.Unmarshaler, h cache.ReplaceHints) error {
	var data []byte
	err := n.pool.QueryRow(ctx, `SELECT value FROM naive WHERE key = $1`, h.PartitionKey).Scan(&data)
	if errors.Is(err, pgx.ErrNoRows) {
		data, err = emptyCache, nil
	}
	if err != nil {
		return err
	}
	return u.Unmarshal(data)
}

func (n naivePostgres) Export(ctx context.Context, m cache.Marshaler, h cache.ExportHints) error {
	data, err := m.Marshal()
	if err != nil {
		return err
	}
	_, err = n.pool.Exec(ctx, `INSERT INTO naive VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value`, h.PartitionKey, data)
	return err
}
