package testserver

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// PostgresUser is the superuser of every server Postgres starts. It
// authenticates with trust (no password) on loopback and the socket.
const PostgresUser = "msalcache"

// postgresGrace is how long Stop waits after SIGINT (a fast shutdown:
// PostgreSQL's SIGTERM waits for every client to disconnect).
const postgresGrace = 5 * time.Second

// PostgresServer is one PostgreSQL postmaster started by Postgres, run in
// the foreground (the package holds its pid, as for every server here;
// pg_ctl would detach it). Kill is a crash (SIGKILL: the next start runs
// crash recovery), Stop a fast shutdown, Restart brings it back on the
// same port with its data.
type PostgresServer struct {
	*server
	data string // the data directory (initdb's -D)
	sock string // the unix socket directory
}

// PostgresOption configures a server started by Postgres.
type PostgresOption func(*postgresConfig)

type postgresConfig struct {
	settings []string
}

// PostgresSetting adds "-c name=value" to the postmaster's command line,
// after the defaults, so it overrides them.
func PostgresSetting(name, value string) PostgresOption {
	return func(c *postgresConfig) { c.settings = append(c.settings, "-c", name+"="+value) }
}

// Postgres runs initdb into a fresh directory and starts a postmaster on a
// free loopback port, with its unix socket in that directory, and returns
// it once it answers a query. The binaries (initdb, postgres) are looked
// up in $PATH, then in /usr/lib/postgresql/*/bin (Debian's postgresql
// package, newest version first); when absent the test is skipped (fails
// under RequireServers). PostgreSQL refuses to run as root: under root the
// server runs as the "postgres" user (or "nobody"), and its directory is
// made theirs. fsync is off: these servers hold test data.
func Postgres(t testing.TB, opts ...PostgresOption) *PostgresServer {
	t.Helper()
	var cfg postgresConfig
	for _, o := range opts {
		o(&cfg)
	}
	initdb, postgres := lookPostgres(t)
	dir, err := os.MkdirTemp("", "msalcache-pg-")
	if err != nil {
		t.Fatalf("testserver: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	setAttr, chown, err := postgresCredential()
	if err != nil {
		t.Fatalf("testserver: %v", err)
	}
	p := &PostgresServer{data: filepath.Join(dir, "data"), sock: dir}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatalf("testserver: %v", err)
	}
	if err := chown(dir); err != nil {
		t.Fatalf("testserver: %v", err)
	}
	logPath := filepath.Join(dir, "server.log")
	cmd := exec.Command(initdb, "-D", p.data, "-U", PostgresUser, "-A", "trust", "-E", "UTF8", "--no-locale", "--no-sync", "--no-instructions")
	cmd.Dir = dir
	cmd.SysProcAttr = sysProcAttr()
	if setAttr != nil {
		if cmd.SysProcAttr == nil {
			cmd.SysProcAttr = &syscall.SysProcAttr{}
		}
		setAttr(cmd.SysProcAttr)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("testserver: initdb: %v\n%s", err, out)
	}
	args := func(ports []int) []string {
		a := []string{"-D", p.data,
			"-p", strconv.Itoa(ports[0]),
			"-c", "listen_addresses=127.0.0.1",
			"-c", "unix_socket_directories=" + p.sock,
			"-c", "fsync=off",
			"-c", "full_page_writes=off",
			"-c", "shared_buffers=16MB",
			"-c", "max_connections=200",
		}
		return append(a, cfg.settings...)
	}
	s := newServer(t, "postgres", postgres, 1, args, p.probe)
	s.dir, s.logPath = dir, logPath
	s.grace = postgresGrace
	s.stopSig = sigInt
	s.setAttr = setAttr
	p.server = s
	p.launch(t)
	return p
}

// lookPostgres finds initdb and the postgres beside it.
func lookPostgres(t testing.TB) (initdb, postgres string) {
	t.Helper()
	var dirs []string
	if p, err := exec.LookPath("initdb"); err == nil {
		if r, err := filepath.EvalSymlinks(p); err == nil {
			p = r
		}
		dirs = append(dirs, filepath.Dir(p))
	}
	found, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(found, func(i, j int) bool { return pgMajor(found[i]) > pgMajor(found[j]) })
	dirs = append(dirs, found...)
	for _, d := range dirs {
		i, p := filepath.Join(d, "initdb"), filepath.Join(d, "postgres")
		if isExec(i) && isExec(p) {
			return i, p
		}
	}
	msg := "testserver: PostgreSQL's initdb and postgres not found in $PATH or /usr/lib/postgresql/*/bin; install them with `apt-get install postgresql`"
	if RequireServers() {
		t.Fatal(msg + " (MSALCACHE_REQUIRE_SERVERS is set, so this fails instead of skipping)")
	}
	t.Skip(msg + " (set MSALCACHE_REQUIRE_SERVERS=1 to fail instead of skipping)")
	return "", ""
}

func pgMajor(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

func isExec(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// postgresCredential returns, when the test runs as root, what makes a
// process run as an unprivileged user and a function that hands a path to
// that user; otherwise nothing to change.
func postgresCredential() (setAttr func(*syscall.SysProcAttr), chown func(string) error, err error) {
	if os.Geteuid() != 0 {
		return nil, func(string) error { return nil }, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		if u, err = user.Lookup("nobody"); err != nil {
			return nil, nil, fmt.Errorf("PostgreSQL refuses to run as root, and neither a postgres nor a nobody user exists: %v", err)
		}
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return nil, nil, fmt.Errorf("user %s has a non-numeric uid or gid", u.Username)
	}
	return credential(uint32(uid), uint32(gid)), func(p string) error { return os.Chown(p, int(uid), int(gid)) }, nil
}

// probe checks that the postmaster recorded pid in postmaster.pid, and
// that it answers a query on addr.
func (p *PostgresServer) probe(addr string, pid int) error {
	b, err := os.ReadFile(filepath.Join(p.data, "postmaster.pid"))
	if err != nil {
		return err
	}
	first, _, _ := strings.Cut(string(b), "\n")
	if strings.TrimSpace(first) != strconv.Itoa(pid) {
		return fmt.Errorf("postmaster.pid names pid %q, not ours (%d)", first, pid)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, "postgres://"+PostgresUser+"@"+addr+"/postgres?sslmode=disable")
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	var one int
	return conn.QueryRow(ctx, "SELECT 1").Scan(&one)
}

// URL returns a connection URL for database db ("postgres" always
// exists) as the superuser, over TCP loopback without TLS.
func (p *PostgresServer) URL(db string) string {
	return "postgres://" + PostgresUser + "@" + p.Addr() + "/" + url.PathEscape(db) + "?sslmode=disable"
}

// SocketDir returns the directory of the server's unix socket.
func (p *PostgresServer) SocketDir() string { return p.sock }
