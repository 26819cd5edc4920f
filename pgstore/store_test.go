package pgstore_test

import (
	"context"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/pgstore"
	"github.com/msalcache/msalcache/protect"
)

func TestOptions(t *testing.T) {
	ctx := context.Background()
	srv := server(t)
	pool := newPool(t, srv)

	if _, err := pgstore.New(ctx, nil); err == nil {
		t.Fatal("New(nil pool) succeeded")
	}
	for _, bad := range []pgstore.Option{pgstore.WithTable("Bad-Name"), pgstore.WithTable(""), pgstore.WithMaxValueSize(0),
		pgstore.WithSweepInterval(0), nil} {
		if _, err := pgstore.New(ctx, pool, bad); err == nil {
			t.Fatal("New with an invalid option succeeded")
		}
	}

	// WithoutCreate names the statements an operator runs.
	_, err := pgstore.New(ctx, pool, pgstore.WithTable("absent_table"), pgstore.WithoutCreate())
	if err == nil || !strings.Contains(err.Error(), `CREATE TABLE IF NOT EXISTS "absent_table"`) {
		t.Fatalf("New WithoutCreate on an absent table = %v; want the statements to run", err)
	}

	// WithUnlogged: volatile, and the key ring refuses it.
	u := newStore(t, pool, freshTable(), pgstore.WithUnlogged())
	if !driver.IsVolatile(u) {
		t.Fatal("an UNLOGGED store does not report itself volatile")
	}
	kek := make([]byte, 32)
	rand.Read(kek)
	w, err := protect.NewAESKeyWrapper("k", kek)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := protect.NewKeyRing(ctx, u, w); err == nil {
		t.Fatal("the key ring accepted an UNLOGGED table")
	}
	// A second New on the same table reads its kind, whatever the options.
	again := newStore(t, pool, u.Table())
	if !again.Volatile() {
		t.Fatal("New over an existing UNLOGGED table does not report it volatile")
	}
	if logged := newStore(t, pool, freshTable()); logged.Volatile() || logged.SystemName() != "postgresql" || !logged.BoundsContext() {
		t.Fatal("a logged table: wrong Volatile, SystemName or BoundsContext")
	}
}

// TestRoleWithoutDDL runs the store as a role that may only read and
// write the table an operator created from the documented schema.
func TestRoleWithoutDDL(t *testing.T) {
	ctx := context.Background()
	srv := server(t)
	admin := newPool(t, srv)
	table := freshTable()
	owner := newStore(t, admin, table) // creates it, as an operator would from Schema
	for _, q := range []string{
		`CREATE ROLE app LOGIN`,
		`REVOKE CREATE ON SCHEMA public FROM PUBLIC`,
		`GRANT SELECT, INSERT, UPDATE, DELETE ON ` + pgx.Identifier{table}.Sanitize() + ` TO app`,
	} {
		if _, err := admin.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := pgxpool.ParseConfig(srv.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.User = "app"
	app, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(app.Close)
	s := newStore(t, app, table)
	v, err := s.Save(ctx, "k", []byte("v"), driver.NoVersion, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, got, err := owner.Load(ctx, "k"); err != nil || got != v {
		t.Fatalf("Load through the owner = %x, %v", got, err)
	}
	// A table it may not create: the error says what to run.
	_, err = pgstore.New(ctx, app, pgstore.WithTable("not_there"))
	if err == nil || !strings.Contains(err.Error(), "have an operator run") {
		t.Fatalf("New without CREATE = %v; want the statements to run", err)
	}
	// Without the grants: an error naming them.
	other := freshTable()
	newStore(t, admin, other)
	ns := newStore(t, app, other)
	if _, err := ns.Save(ctx, "k", []byte("v"), driver.NoVersion, 0); err == nil || !strings.Contains(err.Error(), "grant SELECT, INSERT, UPDATE, DELETE") {
		t.Fatalf("Save without grants = %v", err)
	}
}

// TestSweep: expired rows are invisible at once, and the sweep deletes
// them in batches, leaving live rows alone.
func TestSweep(t *testing.T) {
	ctx := context.Background()
	srv := server(t)
	pool := newPool(t, srv)
	table := freshTable()
	s := newStore(t, pool, table, pgstore.WithoutSweep())
	const n = 2*pgstore.SweepBatch + 10
	if _, err := pool.Exec(ctx, `INSERT INTO `+pgx.Identifier{table}.Sanitize()+` (key, value, version, expires_at)
SELECT 'old/' || i, '\x00'::bytea, i, now() - interval '1 second' FROM generate_series(1, $1) i`, n); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Save(ctx, "live", []byte("v"), driver.NoVersion, time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Load(ctx, "old/1"); !errors.Is(err, driver.ErrNotFound) {
		t.Fatalf("Load of an expired row = %v", err)
	}
	got, err := s.Sweep(ctx)
	if err != nil || got != n {
		t.Fatalf("Sweep = %d, %v; want %d", got, err, n)
	}
	var left int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM `+pgx.Identifier{table}.Sanitize()).Scan(&left); err != nil || left != 1 {
		t.Fatalf("%d rows left (%v), want the live one", left, err)
	}

	// The background sweep does the same on its own.
	bg := newStore(t, pool, table, pgstore.WithSweepInterval(20*time.Millisecond))
	if _, err := bg.Save(ctx, "short", []byte("v"), driver.NoVersion, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		var n int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM `+pgx.Identifier{table}.Sanitize()+` WHERE key = 'short'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the background sweep did not delete an expired row in 10 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestListPages lists more keys than one statement reads, under a prefix
// that sorts between other keys, and calls the store from fn.
func TestListPages(t *testing.T) {
	ctx := context.Background()
	srv := server(t)
	pool := newPool(t, srv)
	table := freshTable()
	s := newStore(t, pool, table)
	if _, err := pool.Exec(ctx, `INSERT INTO `+pgx.Identifier{table}.Sanitize()+` (key, value, version)
SELECT p || i, '\x00'::bytea, i FROM generate_series(1, 2500) i, (VALUES ('a/'), ('tc/'), ('z/')) v(p)`); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	err := s.List(ctx, "tc/", func(k string) error {
		if !strings.HasPrefix(k, "tc/") || seen[k] {
			t.Fatalf("List reported %q (seen before: %v)", k, seen[k])
		}
		seen[k] = true
		_, err := s.Version(ctx, k)
		return err
	})
	if err != nil || len(seen) != 2500 {
		t.Fatalf("List = %d keys, %v; want 2500", len(seen), err)
	}
}
