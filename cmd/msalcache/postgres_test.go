package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/internal/testserver"
	"github.com/msalcache/msalcache/storeurl"
)

// TestPostgres migrates a farm from bbolt to PostgreSQL (lifetimes kept),
// runs doctor on it (table, grants, listener), serves every user from it,
// and migrates it on to Redis (lifetimes kept again).
func TestPostgres(t *testing.T) {
	srv := testserver.Postgres(t)
	to := srv.URL("postgres") + "&table=farm"
	f, path, env := boltFarm(t, 4)
	ctx := context.Background()

	src, err := storeurl.Open(ctx, "bbolt://"+path)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]time.Duration{}
	for k := range storeBlobKeys(t, src.Store) {
		d, err := src.Store.(driver.Lifetimer).Lifetime(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		want[k] = d
	}
	measured := time.Now()
	src.Close()
	r := f.cli(env, "migrate", "-to", to, "-ring", "-json").must(t, 0)
	var out migrateOut
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatal(err)
	}
	if out.Copied != len(want) || out.Verified != len(want) || out.RingCopied != "copied" {
		t.Fatalf("migrate = %s; want %d partitions copied with the ring", r.stdout, len(want))
	}
	stderrQuiet(t, r)
	dst, err := storeurl.Open(ctx, to)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	elapsed := time.Since(measured)
	for k, d := range want {
		got, err := dst.Store.(driver.Lifetimer).Lifetime(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		if diff := d - elapsed - got; diff < -time.Second || diff > time.Second {
			t.Fatalf("%s: lifetime %v in PostgreSQL, %v in bbolt %v earlier", k, got, d, elapsed)
		}
	}
	f.serveAll(dst.Store)

	penv := []string{"MSALCACHE_STORE=" + to, "MSALCACHE_KEK_FILE=" + f.kekFile}
	r = f.cli(penv, "doctor").must(t, 0)
	for _, want := range []string{"table", "grants", "listener", "notification reached"} {
		if !strings.Contains(r.stdout, want) {
			t.Fatalf("doctor lacks %q:\n%s", want, r.stdout)
		}
	}
	f.cli(penv, "stats").must(t, 0)

	// PostgreSQL to Redis: checkMigrate compares the lifetimes again.
	checkMigrate(t, f, penv, to, "redis://"+redisServer(t))
}
