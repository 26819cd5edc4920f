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
	*server
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
		a := append(redisArgs(confPath, ports[0], r.dir),
			"--save", "",
			"--appendonly", "no",
		)
		if cfg.password != "" {
			a = append(a, "--requirepass", cfg.password)
		}
		if extra != nil {
			a = append(a, extra(ports)...)
		}
		return append(a, cfg.args...)
	}
	r.server = newServer(t, "redis-server", bin, nports, args, probeRedis(cfg.password))
	confPath = filepath.Join(r.dir, "redis.conf")
	if err := os.WriteFile(confPath, []byte(cfg.conf), 0o644); err != nil {
		t.Fatalf("testserver: write %s: %v", confPath, err)
	}
	r.launch(t)
	return r
}

// redisArgs is the start of every redis-server command line here, sentinels
// included: the config file, then the loopback port, in the foreground,
// with its files in dir.
func redisArgs(conf string, port int, dir string) []string {
	return []string{conf,
		"--port", strconv.Itoa(port),
		"--bind", "127.0.0.1",
		"--protected-mode", "no",
		"--daemonize", "no",
		"--dir", dir,
	}
}

// Password returns the password set with RedisPassword, or "".
func (r *RedisServer) Password() string { return r.password }
