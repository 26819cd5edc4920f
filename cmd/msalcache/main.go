// Command msalcache is the operator's tool for an msalcache token cache:
// check a deployment, look at what is stored, rotate and revoke the keys
// that encrypt it, re-encrypt, migrate between stores, remove a user's
// partition and reset a key ring whose KEK is lost.
//
//	msalcache [global flags] <command> [flags]
//
// Commands:
//
//	doctor        reachability, latency, persistence, clocks, the key ring's health
//	stats         partitions by kind, sizes, lifetimes, blobs per data key
//	inspect       one partition, decrypted and redacted (never a token)
//	keys list     the ring's keys, their dates and status
//	keys rotate   a new default key, now
//	keys revoke   stop a key for good (asks first; -yes to skip)
//	rewrap        re-encrypt every blob not under the current key
//	migrate       copy every partition (and -ring) to another store, lifetimes kept
//	rm            remove one partition, or -expired ones
//	ring reset    delete a ring whose KEK is lost (needs -yes)
//	help [cmd]    this list, or a command's flags
//
// Global flags, each also read from the environment (the flag wins):
//
//	-store URL        MSALCACHE_STORE       the token cache (see package storeurl)
//	-ring-store URL   MSALCACHE_RING_STORE  where the key ring lives, if not in -store
//	-kek-file PATH    MSALCACHE_KEK_FILE    the KEK, as protect.LoadKeyFile reads it
//	-kek-env NAME     (default MSALCACHE_KEK) variable holding the KEK, as protect.KeyFromEnv reads it
//	-kek-id ID        MSALCACHE_KEK_ID      the KEK's id (default: the one the ring names)
//	-kek-cert PATH    MSALCACHE_KEK_CERT    a certificate KEK (PEM), as protect.LoadCertificateKeyWrapper reads it
//	-kek-key PATH     MSALCACHE_KEK_KEY     its private key, mode 0600 (default: in the -kek-cert file)
//	-namespace NS     MSALCACHE_NAMESPACE   the Adapter's WithNamespace (default "default")
//	-prefix P         MSALCACHE_PREFIX      the Redis/memcached key prefix (default: the store's)
//
// Given a certificate and an AES KEK (a file or the variable), the
// certificate is the primary and the AES KEK unwraps what it still wraps,
// as a server in the middle of a migration holds them.
//
// Commands that only read (doctor, stats, inspect, keys list, and the
// -dry-run of rewrap, migrate and rm) never create or modify anything: a
// bbolt file is opened read-only (a missing one is an error, never a new
// file) and the ring with protect.OpenReadOnly. A problem with the KEK (a
// missing or loose key file, a bad encoding, a key that does not unwrap
// the ring) is reported as such, before anything else. rm refuses the key
// ring's records without -yes, and migrate -ring refuses a destination that
// does not persist without -force. Exit status: 0 success, 1 failure, 2
// usage (a bad flag, no store, an unknown command).
//
// Long commands (stats, rewrap, migrate, rm -expired) show their progress
// on stderr when it is a terminal, and nothing when it is not. Ctrl-C (or
// SIGTERM) stops them between two records: the one in flight is finished,
// the command says how far it got and exits 1, and running it again
// resumes (rewrap skips what is under the current key, migrate what the
// destination holds). A second Ctrl-C quits at once, which leaves no
// half-written record either.
// Nothing printed ever holds a token, a secret, a partition's data or a
// password.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

func main() {
	redis.SetLogger(silentRedisLog{})
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sigs
		// The loops stop between records, but a store call in flight
		// may take up to -timeout: say at once that the signal was
		// heard. A second one ends the process there and then, which
		// leaves no half-written record either: each write is one bbolt
		// transaction or one Redis or memcached command.
		signal.Stop(sigs)
		fmt.Fprintln(os.Stderr, "msalcache: interrupted: stopping after the record in flight (interrupt again to quit at once)")
		cancel()
	}()
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	os.Exit(code)
}

// silentRedisLog drops go-redis's own log lines (a Sentinel client logs
// every master it finds): stderr carries the command's errors alone, and
// the progress of a terminal.
type silentRedisLog struct{}

func (silentRedisLog) Printf(context.Context, string, ...any) {}

// errUsage marks an error that exits with status 2.
var errUsage = errors.New("usage")

// usageError reports a command line that cannot be run.
func usageError(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errUsage, fmt.Sprintf(format, args...))
}

// app is one run of the command: its streams and global settings.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer

	store, ringStore string
	kekFile, kekEnv  string
	kekID            string
	kekCert, kekKey  string
	namespace        string
	prefix           string
	prefixSet        bool
	// skipKEK makes open ignore the KEK: doctor, once it has reported
	// a KEK problem, goes on to check the store.
	skipKEK bool
	timeout time.Duration
}

type command struct {
	name, args, help string
	run              func(ctx context.Context, a *app, args []string) error
}

var commands []command

func init() {
	commands = []command{
		{"doctor", "", "check reachability, latency, persistence, clocks and the key ring", runDoctor},
		{"stats", "", "partitions by kind, sizes, lifetimes and blobs per data key", runStats},
		{"inspect", "-key K | -partition PK", "one partition, decrypted and redacted", runInspect},
		{"keys", "list | rotate | revoke ID", "the key ring's keys", runKeys},
		{"rewrap", "[-dry-run] [-delete]", "re-encrypt every blob not under the current key", runRewrap},
		{"migrate", "-to URL [-ring [-force]] [-dry-run]", "copy every partition to another store, lifetimes kept", runMigrate},
		{"rm", "-key K | -partition PK | -expired [-yes]", "remove partitions", runRm},
		{"ring", "reset -yes", "delete a key ring whose KEK is lost", runRing},
	}
}

func envOr(name, def string) string {
	if v, ok := os.LookupEnv(name); ok {
		return v
	}
	return def
}

// globals registers the global flags on fs, bound to a's settings, so
// that they may come before the command or after it.
func (a *app) globals(fs *flag.FlagSet) {
	fs.StringVar(&a.store, "store", a.store, "store `URL` of the token cache (env MSALCACHE_STORE)")
	fs.StringVar(&a.ringStore, "ring-store", a.ringStore, "store `URL` of the key ring, if not in -store (env MSALCACHE_RING_STORE)")
	fs.StringVar(&a.kekFile, "kek-file", a.kekFile, "`file` holding the KEK, mode 0600 (env MSALCACHE_KEK_FILE)")
	fs.StringVar(&a.kekEnv, "kek-env", a.kekEnv, "environment `variable` holding the KEK, base64 or hex")
	fs.StringVar(&a.kekID, "kek-id", a.kekID, "the KEK's `id` (env MSALCACHE_KEK_ID; default: the id the ring names)")
	fs.StringVar(&a.kekCert, "kek-cert", a.kekCert, "PEM `file` of a certificate KEK (env MSALCACHE_KEK_CERT)")
	fs.StringVar(&a.kekKey, "kek-key", a.kekKey, "PEM `file` of the -kek-cert private key, mode 0600 (env MSALCACHE_KEK_KEY; default: the -kek-cert file)")
	fs.StringVar(&a.namespace, "namespace", a.namespace, "the Adapter's `namespace` (env MSALCACHE_NAMESPACE)")
	fs.Func("prefix", "Redis or memcached key `prefix` (env MSALCACHE_PREFIX; default: the store's own)", func(s string) error {
		a.prefix, a.prefixSet = s, true
		return nil
	})
	fs.DurationVar(&a.timeout, "timeout", a.timeout, "bound on each store call")
}

func newApp(stdin io.Reader, stdout, stderr io.Writer) *app {
	a := &app{
		stdin: stdin, stdout: stdout, stderr: stderr,
		store:     os.Getenv("MSALCACHE_STORE"),
		ringStore: os.Getenv("MSALCACHE_RING_STORE"),
		kekFile:   os.Getenv("MSALCACHE_KEK_FILE"),
		kekEnv:    "MSALCACHE_KEK",
		kekID:     os.Getenv("MSALCACHE_KEK_ID"),
		kekCert:   os.Getenv("MSALCACHE_KEK_CERT"),
		kekKey:    os.Getenv("MSALCACHE_KEK_KEY"),
		namespace: envOr("MSALCACHE_NAMESPACE", "default"),
		timeout:   10 * time.Second,
	}
	if p, ok := os.LookupEnv("MSALCACHE_PREFIX"); ok {
		a.prefix, a.prefixSet = p, true
	}
	return a
}

func (a *app) usage() {
	fmt.Fprintf(a.stderr, "usage: msalcache [global flags] <command> [flags]\n\ncommands:\n")
	for _, c := range commands {
		fmt.Fprintf(a.stderr, "  %-8s %-34s %s\n", c.name, c.args, c.help)
	}
	fmt.Fprintf(a.stderr, "  %-8s %-34s %s\n", "help", "[command]", "this text, or a command's flags")
	fmt.Fprint(a.stderr, urlForms)
	fmt.Fprintf(a.stderr, "\nglobal flags (also accepted after the command):\n")
	fs := flag.NewFlagSet("msalcache", flag.ContinueOnError)
	a.globals(fs)
	fs.SetOutput(a.stderr)
	fs.PrintDefaults()
	fmt.Fprintf(a.stderr, "\nrun 'msalcache help <command>' or 'msalcache <command> -h' for a command's flags\n")
	fmt.Fprintf(a.stderr, "exit status: 0 success, 1 failure, 2 usage\n")
}

// urlForms is the store URL syntax, as package storeurl parses it; the
// password of a URL is never printed back.
const urlForms = `
store URLs (-store, -ring-store, migrate -to):
  bbolt:///var/lib/app/tokens.db             a bbolt file, absolute path
  bbolt:tokens.db?bucket=b&lock_timeout=2s   relative path, bucket, lock wait
  redis://user:pass@host:6379/0              one Redis node (rediss:// for TLS)
  redis+cluster://h1:6379,h2:6379            Redis Cluster, seed nodes
  redis+sentinel://s1:26379,s2:26379/mymaster[/db]   Redis through its sentinels
  memcache://h1:11211,h2:11211               memcached (cannot be listed, cannot hold the ring)
`

// runHelp prints the usage, or a command's.
func runHelp(_ context.Context, a *app, args []string) error {
	switch len(args) {
	case 0:
		a.usage()
		return nil
	case 1:
		if args[0] == "help" {
			a.usage()
			return nil
		}
		for _, c := range commands {
			if c.name == args[0] {
				return c.run(context.Background(), a, []string{"-h"})
			}
		}
		return usageError("unknown command %q; run 'msalcache help' for the list", args[0])
	default:
		return usageError("help takes one command name")
	}
}

// run is main without the process: it returns the exit status.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	a := newApp(stdin, stdout, stderr)
	top := flag.NewFlagSet("msalcache", flag.ContinueOnError)
	top.SetOutput(io.Discard)
	a.globals(top)
	if err := top.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			a.usage()
			return 0
		}
		fmt.Fprintf(stderr, "msalcache: %v\n", err)
		a.usage()
		return 2
	}
	if top.NArg() == 0 {
		a.usage()
		return 2
	}
	name := top.Arg(0)
	if name == "help" {
		return exitCode(a, name, runHelp(ctx, a, top.Args()[1:]))
	}
	for _, c := range commands {
		if c.name != name {
			continue
		}
		return exitCode(a, name, c.run(ctx, a, top.Args()[1:]))
	}
	fmt.Fprintf(stderr, "msalcache: unknown command %q\n", name)
	a.usage()
	return 2
}

// exitCode prints a command's error and returns its exit status.
func exitCode(a *app, name string, err error) int {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(a.stderr, "msalcache %s: %v\n", name, err)
		return 2
	case errors.Is(err, errReported):
		return 1
	default:
		fmt.Fprintf(a.stderr, "msalcache %s: %v\n", name, err)
		return 1
	}
}

// errReported is a failure whose details the command already printed.
var errReported = errors.New("failed (see above)")

// flags returns a FlagSet for a command, with the global flags on it.
func (a *app) flags(name, args, help string) *flag.FlagSet {
	fs := flag.NewFlagSet("msalcache "+name, flag.ContinueOnError)
	fs.SetOutput(a.stderr)
	fs.Usage = func() {
		fmt.Fprintf(a.stderr, "usage: msalcache %s %s\n\n%s\n\nflags:\n", name, args, help)
		fs.PrintDefaults()
		fmt.Fprint(a.stderr, urlForms)
	}
	a.globals(fs)
	return fs
}

// parse parses a command's flags; a bad flag is a usage error (the
// FlagSet already printed why).
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError("%v", err)
	}
	return nil
}
