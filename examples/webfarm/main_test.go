package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/msalcache/msalcache/examples/internal/exampletest"
	"github.com/msalcache/msalcache/internal/testserver"
)

// None of these tests touch port 6379: each runs on a redis-server of its
// own, started by testserver or by the example itself.

func testConfig(t *testing.T, addr string) config {
	return config{redis: addr, prefix: "webfarm-test:", keyFile: filepath.Join(t.TempDir(), "kek"), metrics: "127.0.0.1:0"}
}

func runFarm(t *testing.T, addr string) string {
	t.Helper()
	var out bytes.Buffer
	if err := run(context.Background(), &out, testConfig(t, addr)); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	return out.String()
}

// checkFarm checks the example's promise: 12 requests spread over two
// servers cost one token request per tenant.
func checkFarm(t *testing.T, out string) {
	t.Helper()
	if !strings.Contains(out, "Token requests for the farm: 3 ") {
		t.Fatalf("want 3 token requests for the farm:\n%s", out)
	}
	if !strings.Contains(out, "web-1") || !strings.Contains(out, "web-2") {
		t.Fatalf("both servers should have served:\n%s", out)
	}
}

func TestWebfarm(t *testing.T) {
	srv := testserver.Redis(t, testserver.RedisArgs("--appendonly", "yes"))
	out := runFarm(t, srv.Addr())
	checkFarm(t, out)
	if strings.Contains(out, "WARNING") || strings.Contains(out, "Note:") {
		t.Fatalf("a Redis with appendonly yes needs no warning:\n%s", out)
	}
}

// testserver's default Redis keeps nothing (save "", appendonly no).
func TestWebfarmWarnsWithoutPersistence(t *testing.T) {
	srv := testserver.Redis(t)
	out := runFarm(t, srv.Addr())
	checkFarm(t, out)
	if !strings.Contains(out, "WARNING: Redis at "+srv.Addr()+" does not persist") || !strings.Contains(out, "key ring") {
		t.Fatalf("no warning for a Redis that does not persist:\n%s", out)
	}
}

func TestWebfarmNotesSnapshotsOnly(t *testing.T) {
	srv := testserver.Redis(t, testserver.RedisArgs("--save", "3600 1"))
	out := runFarm(t, srv.Addr())
	checkFarm(t, out)
	if strings.Contains(out, "WARNING") || !strings.Contains(out, "Note: Redis at "+srv.Addr()+" persists by RDB snapshots only") {
		t.Fatalf("want a note, not a warning, for RDB snapshots only:\n%s", out)
	}
}

// Managed Redis often renames or forbids CONFIG: the check falls back to
// INFO persistence.
func TestWebfarmToleratesDisabledConfig(t *testing.T) {
	t.Run("NoAOF", func(t *testing.T) {
		srv := testserver.Redis(t, testserver.RedisArgs("--rename-command", "CONFIG", ""))
		out := runFarm(t, srv.Addr())
		checkFarm(t, out)
		if !strings.Contains(out, "WARNING: Redis at "+srv.Addr()+" has no append-only file") {
			t.Fatalf("want a warning from INFO persistence:\n%s", out)
		}
	})
	t.Run("AOF", func(t *testing.T) {
		srv := testserver.Redis(t, testserver.RedisArgs("--rename-command", "CONFIG", "", "--appendonly", "yes"))
		out := runFarm(t, srv.Addr())
		checkFarm(t, out)
		if strings.Contains(out, "WARNING") {
			t.Fatalf("INFO persistence shows the append-only file on, yet:\n%s", out)
		}
	})
}

// Without -redis the example runs on a redis-server of its own, says so,
// and stops it on exit.
func TestWebfarmOwnServer(t *testing.T) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		if testserver.RequireServers() {
			t.Fatalf("redis-server not in $PATH and MSALCACHE_REQUIRE_SERVERS is set: %v", err)
		}
		t.Skipf("redis-server not in $PATH (apt-get install redis-server): %v", err)
	}
	out := runFarm(t, "")
	checkFarm(t, out)
	m := regexp.MustCompile(`started redis-server \(pid (\d+)\) on (127\.0\.0\.1:\d+), data in (\S+);`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("the start-up message does not say which server it started:\n%s", out)
	}
	if strings.Contains(out, "WARNING") {
		t.Fatalf("its own server persists, yet:\n%s", out)
	}
	// run has returned: the server is stopped (stop waited for its exit,
	// so its port is closed now, not eventually).
	if c, err := net.DialTimeout("tcp", m[2], time.Second); err == nil {
		c.Close()
		t.Fatalf("redis-server pid %s still listens on %s after the example ended", m[1], m[2])
	}
}

// stop ends the server by its pid and removes its data directory.
func TestOwnRedisStops(t *testing.T) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		if testserver.RequireServers() {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	r, err := startRedis(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	r.stop()
	select {
	case <-r.exited:
	default:
		t.Fatal("stop returned while redis-server still runs")
	}
	if _, err := os.Stat(r.dir); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("its data directory %s is still there: %v", r.dir, err)
	}
}

// Without redis-server installed and no -redis, the example fails with a
// message saying how to go on, rather than looking for a Redis elsewhere.
func TestWebfarmWithoutRedisServer(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	var out bytes.Buffer
	err := run(context.Background(), &out, testConfig(t, ""))
	if err == nil {
		t.Fatalf("run without redis-server and without -redis succeeded:\n%s", out.String())
	}
	for _, want := range []string{"apt-get install redis-server", "-redis"} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("error %q does not mention %q", err, want)
		}
	}
}

var (
	reMetricsURL = regexp.MustCompile(`Metrics \(Prometheus\): (http://127\.0\.0\.1:\d+/metrics) \(until Ctrl-C\)`)
	reServing    = regexp.MustCompile(`curl '(http://127\.0\.0\.1:\d+)/orders\?tenant=\w+' +# (web-\d)`)
	reTokenRow   = regexp.MustCompile(`(?m)^\d+ +\w+ +web-\d +(\S+) +\d+$`)
)

// With -serve the farm stays up: /metrics counts the Replace calls that
// hit, the count grows with each request, and it names no tenant, token,
// partition or secret.
func TestWebfarmMetrics(t *testing.T) {
	srv := testserver.Redis(t, testserver.RedisArgs("--appendonly", "yes"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := exampletest.NewWatchWriter("| grep '^msalcache_operations_total'\n")
	cfg := testConfig(t, srv.Addr())
	cfg.serve = true
	done := make(chan error, 1)
	go func() { done <- run(ctx, out, cfg) }()
	select {
	case <-out.Seen:
	case err := <-done:
		t.Fatalf("run returned instead of serving: %v\n%s", err, out)
	case <-time.After(2 * time.Minute):
		t.Fatalf("the example did not say where it serves within 2 minutes:\n%s", out)
	}
	printed := out.String()
	checkFarm(t, printed)
	mu := reMetricsURL.FindStringSubmatch(printed)
	servers := reServing.FindAllStringSubmatch(printed, -1)
	if mu == nil || len(servers) != 2 {
		t.Fatalf("the example does not say where /metrics and its servers are:\n%s", printed)
	}

	first := exampletest.Get(t, mu[1])
	for _, want := range []string{
		"# TYPE msalcache_operations_total counter",
		"# TYPE msalcache_operation_duration_seconds histogram",
		`service_instance_id="web-1"`, `service_instance_id="web-2"`, // the gauges, one per Adapter
		`db_system_name="redis"`,
	} {
		if !strings.Contains(first, want) {
			t.Errorf("/metrics lacks %s:\n%s", want, first)
		}
	}
	hits1, all1 := exampletest.ReplaceHits(t, first)
	if hits1 == 0 {
		t.Fatalf("no replace hit counted after 12 requests for 3 tenants:\n%s", first)
	}

	tokenIDs := map[string]bool{}
	for _, m := range reTokenRow.FindAllStringSubmatch(printed, -1) {
		tokenIDs[m[1]] = true
	}
	const more = 6
	tenants := []string{"contoso", "fabrikam", "northwind"}
	for i := range more {
		body := exampletest.Get(t, servers[i%2][1]+"/orders?tenant="+tenants[i%3])
		var got map[string]string
		if err := json.Unmarshal([]byte(body), &got); err != nil || got["instance"] != servers[i%2][2] {
			t.Fatalf("request %d to %s: %q, %v", i, servers[i%2][2], body, err)
		}
		tokenIDs[got["token"]] = true
	}
	second := exampletest.Get(t, mu[1])
	hits2, all2 := exampletest.ReplaceHits(t, second)
	// Each request's silent call reads the store once and finds the token.
	if hits2-hits1 < more || all2-all1 < more {
		t.Errorf("%d more requests: replace hits %v -> %v, all %v -> %v", more, hits1, hits2, all1, all2)
	}

	// Nothing secret: the Events hold no token, partition key or tenant.
	secrets := []string{clientID, "webfarm-secret", "webfarm-test", "orders"}
	secrets = append(secrets, tenants...)
	for id := range tokenIDs {
		secrets = append(secrets, id)
	}
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rdb.Close()
	keys, err := rdb.Keys(context.Background(), "webfarm-test:*").Result()
	if err != nil || len(keys) < 3 {
		t.Fatalf("keys in Redis: %q, %v", keys, err)
	}
	for _, k := range keys {
		// The stored keys name each partition by a hash of its key
		// (tc/default/<43 characters>): none of it may show.
		for part := range strings.FieldsFuncSeq(k, func(r rune) bool { return strings.ContainsRune(":/{}", r) }) {
			if len(part) >= 16 {
				secrets = append(secrets, part)
			}
		}
	}
	for _, s := range secrets {
		if strings.Contains(strings.ToLower(second), strings.ToLower(s)) {
			t.Errorf("/metrics contains %q", s)
		}
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run after Ctrl-C: %v", err)
	}
	if c, err := net.DialTimeout("tcp", strings.TrimPrefix(strings.TrimSuffix(mu[1], "/metrics"), "http://"), time.Second); err == nil {
		c.Close()
		t.Errorf("%s still served after the example ended", mu[1])
	}
}

// A request without a tenant is answered with what to pass, as a 400, not
// with MSAL's error about an empty authority as a 502.
func TestOrdersWithoutTenant(t *testing.T) {
	for _, target := range []string{"/orders", "/orders?tenant="} {
		rec := httptest.NewRecorder()
		(&instance{}).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, target, nil))
		if rec.Code != http.StatusBadRequest {
			t.Fatalf("GET %s: status %d, want 400", target, rec.Code)
		}
		if body := rec.Body.String(); !strings.Contains(body, "/orders?tenant=contoso") || !strings.Contains(body, "missing tenant") {
			t.Fatalf("GET %s: the page does not say what to pass:\n%s", target, body)
		}
	}
}
