package testserver

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// RedisServer is one redis-server process started by Redis, RedisCluster or
// RedisSentinel. It is stopped when the test that started it ends. Its
// methods may be called from any goroutine, except Restart, which fails the
// test on error and so belongs to the test goroutine.
type RedisServer struct {
	srv      *server
	password string
}

// RedisOption configures a server started by Redis.
type RedisOption func(*redisConfig)

type redisConfig struct {
	args     []string
	password string
	conf     string // initial content of redis.conf
}

// RedisArgs appends command line arguments to redis-server's, after the
// defaults, so they override them. For example RedisArgs("--appendonly",
// "yes") turns persistence on, so that data survives Kill and Restart.
func RedisArgs(args ...string) RedisOption {
	return func(c *redisConfig) { c.args = append(c.args, args...) }
}

// RedisPassword makes the server require the password (requirepass).
func RedisPassword(password string) RedisOption {
	return func(c *redisConfig) { c.password = password }
}

// Redis starts a single redis-server on a free loopback port and returns it
// once it answers. It runs from a redis.conf in its own t.TempDir(), with
//
//	--port P --bind 127.0.0.1 --protected-mode no --daemonize no
//	--dir <tempdir> --save "" --appendonly no
//
// followed by the arguments of RedisArgs. t.Cleanup stops it. When
// redis-server is not installed the test is skipped (fails under
// RequireServers).
func Redis(t testing.TB, opts ...RedisOption) *RedisServer {
	t.Helper()
	var cfg redisConfig
	for _, o := range opts {
		o(&cfg)
	}
	return startRedis(t, cfg, 1, nil)
}

// startRedis starts a redis-server with nports ports (the client port, then
// the ones extra uses) and extra(ports) appended to its command line.
func startRedis(t testing.TB, cfg redisConfig, nports int, extra func(ports []int) []string) *RedisServer {
	t.Helper()
	bin := lookBinary(t, "redis-server")
	r := &RedisServer{password: cfg.password}
	var confPath string
	args := func(ports []int) []string {
		a := []string{confPath,
			"--port", strconv.Itoa(ports[0]),
			"--bind", "127.0.0.1",
			"--protected-mode", "no",
			"--daemonize", "no",
			"--dir", r.srv.dir,
			"--save", "",
			"--appendonly", "no",
		}
		if cfg.password != "" {
			a = append(a, "--requirepass", cfg.password)
		}
		if extra != nil {
			a = append(a, extra(ports)...)
		}
		return append(a, cfg.args...)
	}
	r.srv = newServer(t, "redis-server", bin, nports, args, probeRedis(cfg.password))
	confPath = filepath.Join(r.srv.dir, "redis.conf")
	if err := os.WriteFile(confPath, []byte(cfg.conf), 0o644); err != nil {
		t.Fatalf("testserver: write %s: %v", confPath, err)
	}
	r.srv.launch(t)
	return r
}

// Addr returns the server's "127.0.0.1:port". The port stays the same
// across Restart.
func (r *RedisServer) Addr() string { return r.srv.addr() }

// Password returns the password set with RedisPassword, or "".
func (r *RedisServer) Password() string { return r.password }

// Dir returns the server's data directory (its --dir, also holding
// redis.conf and server.log). It survives Restart.
func (r *RedisServer) Dir() string { return r.srv.dir }

// PID returns the pid of the last process started for the server; after
// Kill or Stop it still returns the pid of the process that is now gone.
func (r *RedisServer) PID() int { return r.srv.pid() }

// Kill kills the server with SIGKILL, simulating a crash, and waits for it
// to be gone. It does nothing if the server is not running.
func (r *RedisServer) Kill() { r.srv.kill() }

// Stop shuts the server down with SIGTERM (SIGKILL after a short grace) and
// waits for it to be gone. It does nothing if the server is not running.
func (r *RedisServer) Stop() { r.srv.stop() }

// Restart stops the server if it is running and starts it again with the
// same port, directory and arguments, so that with --appendonly yes the data
// comes back. It returns once the server answers and has loaded its data.
func (r *RedisServer) Restart(t testing.TB) {
	t.Helper()
	r.srv.restart(t)
}

// Freeze stops the server with SIGSTOP and returns once all its threads
// are stopped: it keeps its port and the kernel still accepts connections,
// but it answers nothing until Thaw, like a hung server.
// Stop, Kill and the test cleanup also work on a frozen server.
func (r *RedisServer) Freeze() { r.srv.freeze() }

// Thaw resumes a server stopped by Freeze (SIGCONT).
func (r *RedisServer) Thaw() { r.srv.signal(sigCont) }
