package main

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/msalcache/msalcache/internal/testserver"
)

// None of these tests touch port 6379: each runs on a redis-server of its
// own, started by testserver or by the example itself.

func runFarm(t *testing.T, addr string) string {
	t.Helper()
	var out bytes.Buffer
	if err := run(context.Background(), &out, addr, "webfarm-test:", filepath.Join(t.TempDir(), "kek")); err != nil {
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
	err := run(context.Background(), &out, "", "webfarm-test:", filepath.Join(t.TempDir(), "kek"))
	if err == nil {
		t.Fatalf("run without redis-server and without -redis succeeded:\n%s", out.String())
	}
	for _, want := range []string{"apt-get install redis-server", "-redis"} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("error %q does not mention %q", err, want)
		}
	}
}
