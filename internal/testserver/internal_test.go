package testserver

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// fakeTB records Skip and Fatal instead of ending a real test.
type fakeTB struct {
	testing.TB
	skipped, fatal string
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Skip(args ...any) {
	f.skipped = fmt.Sprint(args...)
	runtime.Goexit()
}
func (f *fakeTB) Fatal(args ...any) {
	f.fatal = fmt.Sprint(args...)
	runtime.Goexit()
}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.fatal = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func runFake(t *testing.T, fn func(tb testing.TB)) *fakeTB {
	f := &fakeTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(f)
	}()
	<-done
	return f
}

func TestMissingBinarySkipsOrFails(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	t.Setenv(RedisServerEnv, "") // as CI's Valkey step sets it
	t.Setenv("MSALCACHE_REQUIRE_SERVERS", "")
	f := runFake(t, func(tb testing.TB) { Redis(tb) })
	if f.fatal != "" || !strings.Contains(f.skipped, "apt-get install redis-server memcached") {
		t.Errorf("without MSALCACHE_REQUIRE_SERVERS: skip %q, fatal %q; want a skip with install hint", f.skipped, f.fatal)
	}
	t.Setenv("MSALCACHE_REQUIRE_SERVERS", "1")
	f = runFake(t, func(tb testing.TB) { Memcached(tb) })
	if f.skipped != "" || !strings.Contains(f.fatal, "apt-get install redis-server memcached") {
		t.Errorf("with MSALCACHE_REQUIRE_SERVERS=1: skip %q, fatal %q; want a failure with install hint", f.skipped, f.fatal)
	}
}

func TestStartErrorHasLogTail(t *testing.T) {
	t.Parallel()
	bin := lookBinary(t, "redis-server")
	args := func(p []int) []string {
		return []string{"--port", strconv.Itoa(p[0]), "--no-such-directive", "x"}
	}
	s := newServer(t, "redis-server", bin, 1, args, probeRedis(""))
	err := s.start(true)
	if err == nil {
		s.Kill()
		t.Fatal("start with a bad directive succeeded")
	}
	if msg := err.Error(); !strings.Contains(msg, "exited before serving") || !strings.Contains(msg, "no-such-directive") {
		t.Errorf("error lacks the exit or the log tail:\n%s", msg)
	}
}

// TestRestartRetriesBusyPort restarts a server whose port is taken for a
// moment: the start fails with "Address already in use" and is retried.
func TestRestartRetriesBusyPort(t *testing.T) {
	t.Parallel()
	r := Redis(t)
	r.Kill()
	l, err := net.Listen("tcp", r.Addr())
	if err != nil {
		t.Fatal(err)
	}
	// Free the port once a start has found it busy, not after a guessed
	// delay: the retry, not the timing, is under test.
	busy := make(chan bool, 1)
	logOffset := fileSize(r.logPath)
	go func() {
		defer l.Close()
		deadline := time.Now().Add(readyTimeout)
		for time.Now().Before(deadline) {
			if strings.Contains(strings.ToLower(readFrom(r.logPath, logOffset)), "address already in use") {
				busy <- true
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		busy <- false
	}()
	r.Restart(t)
	if !<-busy {
		t.Error("the port was never found busy")
	}
	if _, err := redisDo(r.Addr(), "", "PING"); err != nil {
		t.Fatal(err)
	}
}

func TestClusterNodeLines(t *testing.T) {
	const nodes = `07c3 127.0.0.1:30004@31004 slave e7d1 0 1426238317239 4 connected
67ed 127.0.0.1:30002@31002 master - 0 1426238316232 2 connected 5461-10922 [5462->-e7d1]
e7d1 127.0.0.1:30001@31001 myself,master - 0 0 1 connected 0-5460 12000
`
	lines := clusterNodeLines(nodes)
	if len(lines) != 3 || lines[2].addr != "127.0.0.1:30001" || !lines[2].flags["myself"] {
		t.Fatalf("parsed %+v", lines)
	}
	for slot, want := range map[int]string{0: "e7d1", 5460: "e7d1", 5461: "67ed", 10922: "67ed", 12000: "e7d1", 12001: ""} {
		if got := slotOwnerID(lines, slot); got != want {
			t.Errorf("owner of %d = %q, want %q", slot, got, want)
		}
	}
}

// TestRedisServerEnv runs the binary MSALCACHE_REDIS_SERVER names, by
// path, instead of the redis-server in $PATH (here a copy under another
// name, the way CI runs valkey-server), and fails, never skips, when it
// names nothing runnable.
func TestRedisServerEnv(t *testing.T) {
	orig := lookBinary(t, "redis-server")
	data, err := os.ReadFile(orig)
	if err != nil {
		t.Fatal(err)
	}
	alt := filepath.Join(t.TempDir(), "other-server")
	if err := os.WriteFile(alt, data, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Setenv(RedisServerEnv, alt)
	if got := lookBinary(t, "redis-server"); got != alt {
		t.Fatalf("lookBinary = %q, want %q", got, alt)
	}
	r := Redis(t)
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", r.PID()))
	if err != nil {
		t.Skipf("no /proc to check the binary: %v", err)
	}
	if exe != alt {
		t.Errorf("the server runs %q, want %q", exe, alt)
	}
	t.Setenv(RedisServerEnv, filepath.Join(t.TempDir(), "missing"))
	t.Setenv("MSALCACHE_REQUIRE_SERVERS", "")
	f := runFake(t, func(tb testing.TB) { Redis(tb) })
	if f.skipped != "" || !strings.Contains(f.fatal, RedisServerEnv) {
		t.Errorf("with %s naming nothing: skip %q, fatal %q; want a failure naming the variable", RedisServerEnv, f.skipped, f.fatal)
	}
}
