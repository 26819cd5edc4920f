package testserver

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// memcachedGrace is how long Stop waits for memcached after SIGTERM.
const memcachedGrace = 100 * time.Millisecond

// MemcachedServer is one memcached process started by Memcached. It is
// stopped when the test that started it ends. Its methods may be called
// from any goroutine, except Restart, which belongs to the test goroutine.
type MemcachedServer struct {
	*server
}

// MemcachedOption configures a server started by Memcached.
type MemcachedOption func(*memcachedConfig)

type memcachedConfig struct {
	args []string
}

// MemcachedArgs appends command line arguments to memcached's, after the
// defaults, so they override them: MemcachedArgs("-m", "2") for a 2 MiB
// cache in eviction tests, MemcachedArgs("-I", "2m") for larger items.
func MemcachedArgs(args ...string) MemcachedOption {
	return func(c *memcachedConfig) { c.args = append(c.args, args...) }
}

// Memcached starts a memcached on a free loopback port and returns it once
// it answers:
//
//	memcached -l 127.0.0.1 -p P -U 0 -m 64 -t 2 [-u root]
//
// followed by the arguments of MemcachedArgs (-u root only when running as
// root, which memcached otherwise refuses). Its working directory and log
// are in a t.TempDir(). t.Cleanup stops it. When memcached is not installed
// the test is skipped (fails under RequireServers).
func Memcached(t testing.TB, opts ...MemcachedOption) *MemcachedServer {
	t.Helper()
	var cfg memcachedConfig
	for _, o := range opts {
		o(&cfg)
	}
	bin := lookBinary(t, "memcached")
	args := func(ports []int) []string {
		a := []string{"-l", "127.0.0.1", "-p", strconv.Itoa(ports[0]), "-U", "0", "-m", "64", "-t", "2"}
		if os.Geteuid() == 0 {
			a = append(a, "-u", "root")
		}
		return append(a, cfg.args...)
	}
	m := &MemcachedServer{newServer(t, "memcached", bin, 1, args, probeMemcached)}
	// memcached acts on SIGTERM only at its next clock tick, up to 1 s later,
	// and has nothing to save: do not wait for it.
	m.grace = memcachedGrace
	m.launch(t)
	return m
}

// probeMemcached checks that addr answers "version" and "stats", and that
// its pid is pid.
func probeMemcached(addr string, pid int) error {
	conn, err := net.DialTimeout("tcp", addr, respTimeout)
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(respTimeout)); err != nil {
		return err
	}
	if _, err := conn.Write([]byte("version\r\nstats\r\n")); err != nil {
		return err
	}
	r := bufio.NewReader(conn)
	line, err := r.ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "VERSION ") {
		return fmt.Errorf("version: unexpected reply %q", line)
	}
	got := ""
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return err
		}
		line = strings.TrimSpace(line)
		if line == "END" {
			break
		}
		if v, ok := strings.CutPrefix(line, "STAT pid "); ok {
			got = v
		}
	}
	if got != strconv.Itoa(pid) {
		return fmt.Errorf("%s is served by pid %q, not by ours (%d)", addr, got, pid)
	}
	return nil
}
