package testserver

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	// readyTimeout bounds how long a started server may take to answer.
	readyTimeout = 10 * time.Second
	// stopGrace is how long a SIGTERM'ed server may take before SIGKILL.
	stopGrace = 3 * time.Second
	// startAttempts is how many times a start lost to a port race is retried.
	startAttempts = 5
	// logTailBytes is how much of a server's log goes into an error.
	logTailBytes = 3000
)

// RequireServers reports whether the environment demands real servers: it
// is true when MSALCACHE_REQUIRE_SERVERS is set to a true value ("1",
// "true"). Then a missing server binary fails the test instead of skipping
// it. CI sets it so that integration tests cannot pass by being skipped.
func RequireServers() bool {
	v, err := strconv.ParseBool(os.Getenv("MSALCACHE_REQUIRE_SERVERS"))
	return err == nil && v
}

// RedisServerEnv names the environment variable that picks another
// binary for redis-server: a path or a name in $PATH, such as a Valkey's
// valkey-server, which CI runs the redisstore suite on as well. Sentinels
// and clusters use it too (valkey-server --sentinel).
const RedisServerEnv = "MSALCACHE_REDIS_SERVER"

// binaryEnv maps a binary's usual name to the variable that replaces it.
var binaryEnv = map[string]string{"redis-server": RedisServerEnv}

// lookBinary finds a server binary in $PATH, or the one its variable in
// binaryEnv names, or skips (fails, under RequireServers) the test with
// install instructions.
func lookBinary(t testing.TB, name string) string {
	t.Helper()
	if env := binaryEnv[name]; env != "" {
		if alt := os.Getenv(env); alt != "" {
			path, err := exec.LookPath(alt)
			if err != nil {
				// Set on purpose, so never a skip: the run meant to test it.
				t.Fatalf("testserver: %s=%q: %v", env, alt, err)
			}
			return path
		}
	}
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	msg := fmt.Sprintf("testserver: %s not found in $PATH (%v); install the servers with `apt-get install redis-server memcached`", name, err)
	if RequireServers() {
		t.Fatal(msg + " (MSALCACHE_REQUIRE_SERVERS is set, so this fails instead of skipping)")
	}
	t.Skip(msg + " (set MSALCACHE_REQUIRE_SERVERS=1 to fail instead of skipping)")
	return ""
}

// freePorts returns n distinct loopback ports that were free a moment ago.
// They are held open together so that they differ, then released; the
// server may still lose a race for them, which start detects and retries.
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("testserver: find a free port: %w", err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// process is one run of a server binary.
type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once cmd.Wait returned
	err  error         // cmd.Wait's result, valid once done is closed
}

func startProcess(bin string, args []string, dir, logPath string, setAttr func(*syscall.SysProcAttr)) (*process, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	fmt.Fprintf(logf, "=== testserver %s: %s %s\n", time.Now().Format(time.RFC3339Nano), bin, strings.Join(args, " "))
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Stdout = logf // an *os.File is handed to the child as is: no copying goroutine
	cmd.Stderr = logf
	cmd.SysProcAttr = sysProcAttr()
	if setAttr != nil {
		if cmd.SysProcAttr == nil {
			cmd.SysProcAttr = &syscall.SysProcAttr{}
		}
		setAttr(cmd.SysProcAttr)
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

func (p *process) pid() int { return p.cmd.Process.Pid }

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *process) signal(sig os.Signal) {
	if sig != nil {
		_ = p.cmd.Process.Signal(sig) // fails only once the process is gone
	}
}

// kill sends SIGKILL and waits for the process to be reaped.
func (p *process) kill() {
	p.signal(os.Kill)
	<-p.done
}

// stop sends sig (SIGTERM when nil), and SIGCONT in case the process is
// frozen, and waits for the process; after grace it is killed.
func (p *process) stop(sig os.Signal, grace time.Duration) {
	if sig == nil {
		sig = sigTerm
	}
	p.signal(sig)
	p.signal(sigCont)
	timer := time.NewTimer(grace)
	defer timer.Stop()
	select {
	case <-p.done:
	case <-timer.C:
		p.kill()
	}
}

// errAddrInUse marks a start lost to a port race.
var errAddrInUse = errors.New("address already in use")

// server is one server instance: a binary, its ports, its directory, and
// the process currently running it (if any). RedisServer and
// MemcachedServer embed it, so that they share the methods that control
// the process (Addr, PID, Dir, Kill, Stop, Restart, Freeze, Thaw); each
// adds what is its own.
type server struct {
	name    string // for messages: "redis-server", "memcached", "redis-sentinel"
	bin     string
	dir     string
	logPath string
	grace   time.Duration                    // SIGTERM to SIGKILL
	nports  int                              // ports[0] is the client port
	args    func(ports []int) []string       // command line for the given ports
	probe   func(addr string, pid int) error // nil once addr is served by pid and ready
	stopSig os.Signal                        // what Stop sends first; nil: SIGTERM
	setAttr func(*syscall.SysProcAttr)       // adjusts the process attributes (PostgreSQL: run as a user other than root)

	mu      sync.Mutex
	ports   []int
	proc    *process
	lastPID int
}

func newServer(t testing.TB, name, bin string, nports int, args func([]int) []string, probe func(string, int) error) *server {
	dir := t.TempDir()
	s := &server{
		name:    name,
		bin:     bin,
		dir:     dir,
		logPath: filepath.Join(dir, "server.log"),
		grace:   stopGrace,
		nports:  nports,
		args:    args,
		probe:   probe,
	}
	return s
}

// launch starts the server on fresh ports, fails the test if it cannot, and
// registers the cleanup that stops it.
func (s *server) launch(t testing.TB) {
	t.Helper()
	if err := s.start(true); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
}

// Addr returns the server's "127.0.0.1:port". The port stays the same
// across Restart.
func (s *server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return "127.0.0.1:" + strconv.Itoa(s.ports[0])
}

// Dir returns the server's own directory, in t.TempDir(): its working
// directory (a redis-server's --dir, holding redis.conf and its data), and
// the home of its log, server.log. It survives Restart.
func (s *server) Dir() string { return s.dir }

func (s *server) port(i int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ports[i]
}

// PID returns the pid of the last process started for the server; after
// Kill or Stop it still returns the pid of the process that is now gone.
func (s *server) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastPID
}

func (s *server) current() *process {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proc
}

func (s *server) running() bool {
	p := s.current()
	return p != nil && !p.exited()
}

// start runs the server and waits until it is ready. With newPorts it picks
// fresh ports for each attempt; otherwise it reuses the ports of the last
// run (a restart) and only waits between attempts.
func (s *server) start(newPorts bool) error {
	var err error
	for attempt := range startAttempts {
		if newPorts {
			ports, perr := freePorts(s.nports)
			if perr != nil {
				return perr
			}
			s.mu.Lock()
			s.ports = ports
			s.mu.Unlock()
		} else if attempt > 0 {
			time.Sleep(time.Duration(attempt) * 200 * time.Millisecond)
		}
		s.mu.Lock()
		ports := append([]int(nil), s.ports...)
		s.mu.Unlock()
		addr := "127.0.0.1:" + strconv.Itoa(ports[0])

		offset := fileSize(s.logPath)
		var p *process
		p, err = startProcess(s.bin, s.args(ports), s.dir, s.logPath, s.setAttr)
		if err != nil {
			return fmt.Errorf("testserver: start %s: %w", s.name, err)
		}
		err = s.waitReady(p, addr, offset)
		if err == nil {
			s.mu.Lock()
			s.proc = p
			s.lastPID = p.pid()
			s.mu.Unlock()
			return nil
		}
		p.kill()
		if !errors.Is(err, errAddrInUse) {
			break
		}
	}
	return fmt.Errorf("testserver: %s: %w\n--- tail of %s ---\n%s", s.name, err, s.logPath, logTail(s.logPath))
}

func (s *server) waitReady(p *process, addr string, logOffset int64) error {
	deadline := time.Now().Add(readyTimeout)
	for {
		if p.exited() {
			if strings.Contains(strings.ToLower(readFrom(s.logPath, logOffset)), "address already in use") {
				return fmt.Errorf("%s: %w", addr, errAddrInUse)
			}
			return fmt.Errorf("exited before serving %s: %v", addr, p.err)
		}
		err := s.probe(addr, p.pid())
		if err == nil && !p.exited() {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready on %s after %v: %v", addr, readyTimeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop shuts the server down with SIGTERM, and SIGKILL after a grace (3 s
// for a redis-server; 100 ms for memcached, which takes up to a second to
// act on SIGTERM and has nothing to save), and waits for it to be gone. It
// does nothing if the server is not running. It also works on a frozen
// server.
func (s *server) Stop() {
	if p := s.take(); p != nil {
		p.stop(s.stopSig, s.grace)
	}
}

// Kill kills the server with SIGKILL, simulating a crash, and waits for it
// to be gone. It does nothing if the server is not running.
func (s *server) Kill() {
	if p := s.take(); p != nil {
		p.kill()
	}
}

// take returns the running process, if any, and forgets it, so that only
// one caller stops it.
func (s *server) take() *process {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.proc
	s.proc = nil
	return p
}

// Restart stops the server if it is running and starts it again with the
// same port, directory and arguments, and returns once it answers. What
// comes back is the server's own business: a redis-server run with
// --appendonly yes has loaded its data by then; memcached comes back
// empty. Restart fails the test on error, so it belongs to the test
// goroutine.
func (s *server) Restart(t testing.TB) {
	t.Helper()
	s.Stop()
	if err := s.start(false); err != nil {
		t.Fatal(err)
	}
}

func (s *server) signal(sig os.Signal) {
	if p := s.current(); p != nil {
		p.signal(sig)
	}
}

// Freeze stops the server with SIGSTOP and returns once all its threads
// are stopped: it keeps its port and the kernel still accepts connections,
// but it answers nothing until Thaw, like a hung server.
func (s *server) Freeze() {
	if p := s.current(); p != nil && sigStop != nil {
		p.signal(sigStop)
		waitStopped(p.pid())
	}
}

// Thaw resumes a server stopped by Freeze (SIGCONT).
func (s *server) Thaw() { s.signal(sigCont) }

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// readFrom returns the file's content from offset on (at most 64 KiB).
func readFrom(path string, offset int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	b, _ := io.ReadAll(io.LimitReader(io.NewSectionReader(f, offset, 1<<16), 1<<16))
	return string(b)
}

// logTail returns the last few KiB of a log file.
func logTail(path string) string {
	off := fileSize(path) - logTailBytes
	if off < 0 {
		off = 0
	}
	tail := readFrom(path, off)
	if tail == "" {
		return "(empty log)"
	}
	return tail
}
