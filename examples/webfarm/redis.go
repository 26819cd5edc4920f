package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// ownRedis is the redis-server the example starts when no -redis is
// given, so that it never writes into a server the user did not name
// (whatever happens to listen on 6379 may hold someone's data).
type ownRedis struct {
	addr, dir string
	cmd       *exec.Cmd
	exited    chan struct{} // closed once cmd.Wait returned
}

// errPortTaken marks a start lost to another process binding the port
// between our check and redis-server's bind.
var errPortTaken = errors.New("port taken")

// startRedis starts redis-server from $PATH on a free loopback port, with
// its data in a new temporary directory, and returns once that very
// process answers.
func startRedis(ctx context.Context) (*ownRedis, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("no -redis given, and redis-server is not in $PATH (%v): install it (apt-get install redis-server) so that the example runs one of its own, or pass -redis host:port to name the Redis it may write into", err)
	}
	dir, err := os.MkdirTemp("", "msalcache-webfarm-redis-")
	if err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		var port int
		if port, err = freePort(); err != nil {
			break
		}
		var r *ownRedis
		if r, err = launchRedis(ctx, bin, dir, port); err == nil {
			return r, nil
		}
		if !errors.Is(err, errPortTaken) || attempt == 2 {
			break
		}
	}
	os.RemoveAll(dir)
	return nil, err
}

// freePort returns a loopback port that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func launchRedis(ctx context.Context, bin, dir string, port int) (*ownRedis, error) {
	logPath := filepath.Join(dir, "redis.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	// Persistent like the Redis the example asks for when you name one
	// (the key ring lives there), though its directory goes at exit.
	cmd := exec.Command(bin,
		"--port", strconv.Itoa(port),
		"--bind", "127.0.0.1",
		"--daemonize", "no", // keep the pid we stop
		"--save", "",
		"--appendonly", "yes",
		"--dir", dir)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	r := &ownRedis{addr: "127.0.0.1:" + strconv.Itoa(port), dir: dir, cmd: cmd, exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(r.exited)
	}()
	if err := r.waitReady(ctx, logPath); err != nil {
		r.kill()
		return nil, err
	}
	return r, nil
}

// waitReady polls until the server answers as our process: another server
// that grabbed the port must never be mistaken for ours.
func (r *ownRedis) waitReady(ctx context.Context, logPath string) error {
	rdb := redis.NewClient(&redis.Options{Addr: r.addr, DialTimeout: 200 * time.Millisecond, MaxRetries: -1})
	defer rdb.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-r.exited:
			log, _ := os.ReadFile(logPath)
			if bytes.Contains(bytes.ToLower(log), []byte("address already in use")) {
				return fmt.Errorf("redis-server on %s: %w", r.addr, errPortTaken)
			}
			return fmt.Errorf("redis-server exited before serving %s; its log:\n%s", r.addr, log)
		default:
		}
		info, err := rdb.Info(ctx, "server").Result()
		if err == nil {
			if pid, ok := infoField(info, "process_id"); ok && pid == strconv.Itoa(r.pid()) {
				return nil
			}
			err = fmt.Errorf("another process answers on %s", r.addr)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redis-server not ready on %s after 10 s: %v", r.addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (r *ownRedis) pid() int { return r.cmd.Process.Pid }

// stop shuts the server down by its pid (SIGTERM, SIGKILL after 5 s) and
// removes its directory.
func (r *ownRedis) stop() {
	if err := r.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		r.kill() // no SIGTERM here (Windows), or already gone
	}
	select {
	case <-r.exited:
	case <-time.After(5 * time.Second):
		r.kill()
	}
	os.RemoveAll(r.dir)
}

func (r *ownRedis) kill() {
	_ = r.cmd.Process.Kill()
	<-r.exited
}

// infoField returns one field of an INFO reply.
func infoField(info, name string) (string, bool) {
	for line := range strings.SplitSeq(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			return v, true
		}
	}
	return "", false
}

// ringAtRisk says what a Redis without persistence costs this example.
const ringAtRisk = "the key ring lives there too, without a TTL: a restart of that Redis loses it, " +
	"and every token stored under it becomes unreadable (each call is a cache miss and a new token request). " +
	"Turn on appendonly yes (or RDB snapshots), or keep the ring in a durable store."

// checkPersistence reports whether the Redis at addr keeps its data across
// a restart. It returns a warning when it does not, or cannot tell, a note
// when it persists by RDB snapshots only, and an error only when the server
// cannot be reached. CONFIG may be renamed or forbidden on managed Redis:
// then INFO persistence still tells whether the append-only file is on.
func checkPersistence(ctx context.Context, addr string) (warning, note string, err error) {
	// One dial and one retry: a wrong address should fail in a moment.
	rdb := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true, MaxRetries: 1, DialerRetries: 1})
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()

	conf, cerr := rdb.ConfigGet(ctx, "appendonly").Result()
	var save map[string]string
	if cerr == nil {
		save, cerr = rdb.ConfigGet(ctx, "save").Result()
	}
	if cerr == nil {
		switch {
		case conf["appendonly"] == "yes":
			return "", "", nil
		case strings.TrimSpace(save["save"]) != "":
			return "", fmt.Sprintf("Redis at %s persists by RDB snapshots only (save %q): a crash loses what was written since the last snapshot, a key ring rotation included; appendonly yes is safer.", addr, save["save"]), nil
		}
		return fmt.Sprintf("Redis at %s does not persist its data (appendonly no, save \"\"): %s", addr, ringAtRisk), "", nil
	}
	if !isServerError(cerr) {
		return "", "", fmt.Errorf("redis at %s: %w", addr, cerr)
	}
	info, ierr := rdb.Info(ctx, "persistence").Result()
	if ierr != nil {
		if !isServerError(ierr) {
			return "", "", fmt.Errorf("redis at %s: %w", addr, ierr)
		}
		return fmt.Sprintf("cannot tell whether Redis at %s persists its data (CONFIG GET: %v; INFO persistence: %v); if it does not, %s", addr, cerr, ierr, ringAtRisk), "", nil
	}
	if aof, _ := infoField(info, "aof_enabled"); aof == "1" {
		return "", "", nil
	}
	return fmt.Sprintf("Redis at %s has no append-only file (INFO persistence: aof_enabled:0), and CONFIG GET is refused (%v), so RDB snapshots cannot be checked; unless they are on, %s", addr, cerr, ringAtRisk), "", nil
}

// isServerError reports an error reply of the server (such as CONFIG being
// renamed or forbidden by an ACL), as opposed to one reaching it.
func isServerError(err error) bool {
	var rerr redis.Error
	return errors.As(err, &rerr) && !errors.Is(err, redis.ErrClosed)
}
