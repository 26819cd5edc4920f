package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/internal/testserver"
	"github.com/msalcache/msalcache/redisstore"
	"github.com/msalcache/msalcache/storeurl"
)

// checkMigrate migrates the farm in the store at from (of any kind, env
// naming it) to the Redis store at to (of any kind), with the ring, and
// checks what the issue asks: every partition copied and verified, each
// key's TTL within a second of the source's, create-only on a second run,
// and every user served from the destination with no token request.
func checkMigrate(t *testing.T, f *farm, env []string, from, to string) {
	t.Helper()
	ctx := context.Background()
	want := map[string]time.Duration{}
	src, err := storeurl.Open(ctx, from)
	if err != nil {
		t.Fatal(err)
	}
	for k := range storeBlobKeys(t, src.Store) {
		d, err := src.Store.(driver.Lifetimer).Lifetime(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		want[k] = d
	}
	measured := time.Now()
	src.Close() // bbolt: let the binary take the file's lock
	// The testservers' Redis does not persist: -force lets the ring in
	// (TestMigrateRingNeedsPersistence checks the refusal without it).
	r := f.cli(env, "migrate", "-to", to, "-ring", "-force", "-dry-run", "-json").must(t, 0)
	if !strings.Contains(r.stdout, `"dry_run": true`) {
		t.Fatalf("dry run:\n%s", r.stdout)
	}
	dst, err := storeurl.Open(ctx, to)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	if n := len(storeBlobKeys(t, dst.Store)); n != 0 {
		t.Fatalf("migrate -dry-run wrote %d partitions", n)
	}
	r = f.cli(env, "migrate", "-to", to, "-ring", "-force", "-json").must(t, 0)
	var out migrateOut
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatal(err)
	}
	if out.Copied != len(want) || out.Verified != len(want) || out.Missing != 0 || out.RingCopied != "copied" {
		t.Fatalf("migrate = %s; want %d partitions copied with the ring", r.stdout, len(want))
	}
	stderrQuiet(t, r)
	elapsed := time.Since(measured)
	for k, d := range want {
		pttl, err := dst.Redis.PTTL(ctx, redisstore.DefaultPrefix+k).Result()
		if err != nil {
			t.Fatal(err)
		}
		if diff := d - elapsed - pttl; diff < -time.Second || diff > time.Second {
			t.Fatalf("%s: TTL %v at the destination, %v at the source %v earlier", k, pttl, d, elapsed)
		}
	}
	// Create-only: a second run keeps what the destination holds.
	r = f.cli(env, "migrate", "-to", to, "-ring", "-force", "-json").must(t, 0)
	if !strings.Contains(r.stdout, `"kept_at_destination": `+itoa(len(want))) {
		t.Fatalf("second migrate:\n%s", r.stdout)
	}
	f.serveAll(dst.Store)
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// stderrQuiet checks that a command that did its job printed nothing on
// stderr: progress goes there only when it is a terminal (the tests' is a
// pipe), and no client library's log lines go there at all.
func stderrQuiet(t *testing.T, r result) {
	t.Helper()
	if r.stderr != "" {
		t.Fatalf("stderr is a pipe, yet the command printed on it:\n%q", r.stderr)
	}
}

// checkRedisCommands writes a farm straight into the Redis deployment at
// url (under prefix, which the commands get from MSALCACHE_PREFIX) and
// runs every command on it.
func checkRedisCommands(t *testing.T, url, prefix string, nusers int, beforeRm func(f *farm, env []string)) {
	t.Helper()
	ctx := context.Background()
	s, err := storeurl.Open(ctx, url, storeurl.WithPrefix(prefix))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	f := newFarm(t, s.Store, nusers)
	env := []string{"MSALCACHE_STORE=" + url, "MSALCACHE_KEK_FILE=" + f.kekFile, "MSALCACHE_PREFIX=" + prefix}
	parts := nusers + 1

	// doctor: everything answers and the KEK unwraps the ring; the one
	// failure is the testservers' lack of persistence.
	r := f.cli(env, "doctor").must(t, 1)
	wants := []string{"answers in", "unwraps every key", "current key", "does not persist", "clock"}
	if strings.HasPrefix(url, "redis+cluster:") {
		// Each master is checked, not whichever the client picks.
		wants = append(wants, "every master (3)", "clocks of the 3 masters")
	}
	for _, want := range wants {
		if !strings.Contains(r.stdout, want) {
			t.Fatalf("doctor lacks %q:\n%s", want, r.stdout)
		}
	}
	stderrQuiet(t, r)
	r = f.cli(env, "doctor", "-json").must(t, 1)
	var doc struct {
		OK       bool      `json:"ok"`
		Findings []finding `json:"findings"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
		t.Fatal(err)
	}
	for _, fd := range doc.Findings {
		if fd.Level == "fail" && fd.Check != "persistence" {
			t.Fatalf("doctor fails %s: %s", fd.Check, fd.Detail)
		}
	}

	// stats lists every master (a Cluster's keys are spread over them).
	var st statsOut
	r = f.cli(env, "stats", "-json").must(t, 0)
	stderrQuiet(t, r)
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		t.Fatal(err)
	}
	if st.Partitions != parts || st.ByKind["user"] != nusers || st.ByKind["app"] != 1 || len(st.ByDataKey) != 1 || st.Lifetimes["unknown"] != 0 {
		t.Fatalf("stats = %+v; want %d user and 1 app partitions under one key, lifetimes known", st, nusers)
	}
	stderrQuiet(t, f.cli(env, "stats").must(t, 0))

	// inspect by partition key and by store key.
	r = f.cli(env, "inspect", "-partition", f.users[0].HomeAccountID, "-json").must(t, 0)
	var in inspectOut
	if err := json.Unmarshal([]byte(r.stdout), &in); err != nil {
		t.Fatal(err)
	}
	if !in.Readable || in.Summary.Kind != "user" || len(in.Summary.Accounts) != 1 || in.Summary.Accounts[0].HomeAccountID != f.users[0].HomeAccountID || in.Lifetime == "unknown" {
		t.Fatalf("inspect = %s", r.stdout)
	}
	r = f.cli(env, "inspect", "-key", in.Key).must(t, 0)
	if !strings.Contains(r.stdout, userScope) {
		t.Fatalf("inspect -key:\n%s", r.stdout)
	}

	// keys list, rotate, rewrap: every blob under the new key, still served.
	var before []keyOut
	r = f.cli(env, "keys", "list", "-json").must(t, 0)
	if err := json.Unmarshal([]byte(r.stdout), &before); err != nil || len(before) == 0 {
		t.Fatalf("keys list: %v\n%s", err, r.stdout)
	}
	old := storeBlobKeys(t, s.Store)
	f.cli(env, "keys", "rotate").must(t, 0)
	r = f.cli(env, "rewrap", "-json").must(t, 0)
	stderrQuiet(t, r)
	if !strings.Contains(r.stdout, `"rewrapped": `+itoa(parts)) {
		t.Fatalf("rewrap:\n%s", r.stdout)
	}
	current := ""
	for k, id := range storeBlobKeys(t, s.Store) {
		if id == old[k] || (current != "" && id != current) {
			t.Fatalf("after rewrap: %s under %s (was %s, others under %s)", k, id, old[k], current)
		}
		current = id
	}
	for k := range old {
		if d, err := s.Store.(driver.Lifetimer).Lifetime(ctx, k); err != nil || d <= 0 {
			t.Fatalf("%s: lifetime %v (%v) after rewrap; want it kept", k, d, err)
		}
	}
	r = f.cli(env, "rewrap", "-json").must(t, 0)
	if !strings.Contains(r.stdout, `"already_current": `+itoa(parts)) {
		t.Fatalf("second rewrap:\n%s", r.stdout)
	}
	f.serveAll(s.Store)

	if beforeRm != nil {
		beforeRm(f, env)
	}

	// rm: one partition, then the expired ones (none).
	f.cli(env, "rm", "-partition", f.users[0].HomeAccountID).must(t, 0)
	if n := len(storeBlobKeys(t, s.Store)); n != parts-1 {
		t.Fatalf("%d partitions after rm -partition, want %d", n, parts-1)
	}
	r = f.cli(env, "rm", "-expired").must(t, 0)
	if !strings.Contains(r.stdout, "removed 0") {
		t.Fatalf("rm -expired:\n%s", r.stdout)
	}
}

// TestRedisCluster runs the binary on one 3-master Cluster: a migration
// from bbolt, then every command on a farm written to the Cluster.
func TestRedisCluster(t *testing.T) {
	c := testserver.RedisCluster(t, 3)
	c.WaitHealthy(t)
	url := "redis+cluster://" + strings.Join(c.Addrs(), ",")
	t.Run("migrate", func(t *testing.T) {
		f, path, env := boltFarm(t, 5)
		checkMigrate(t, f, env, "bbolt://"+path, url)
	})
	t.Run("commands", func(t *testing.T) {
		checkRedisCommands(t, url, "direct:", 5, nil)
	})
}

// TestRedisSentinel runs every command on a farm written to a Redis
// reached through its sentinels, and migrates it to another Redis
// deployment.
func TestRedisSentinel(t *testing.T) {
	s := testserver.RedisSentinel(t)
	url := "redis+sentinel://" + strings.Join(s.SentinelAddrs(), ",") + "/" + s.MasterName()
	checkRedisCommands(t, url, redisstore.DefaultPrefix, 4, func(f *farm, env []string) {
		checkMigrate(t, f, env, url, "redis://"+redisServer(t))
	})
}
