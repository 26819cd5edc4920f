package exampletest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// childArgs is the environment variable that makes a test binary run the
// example's main instead of its tests; it holds the arguments as JSON.
const childArgs = "EXAMPLETEST_MAIN_ARGS"

// AsMain runs main, with the arguments RunMain gave, when this test
// binary is RunMain's child, and exits 0 when main returns; it returns at
// once otherwise. Call it first in TestMain, so that a test can watch the
// example's real main fail as an operator would see it (exit status,
// stderr, a panic) without building another binary.
func AsMain(main func()) {
	raw, ok := os.LookupEnv(childArgs)
	if !ok {
		return
	}
	var args []string
	if err := json.Unmarshal([]byte(raw), &args); err != nil {
		os.Stderr.WriteString("exampletest: bad " + childArgs + "\n")
		os.Exit(3)
	}
	os.Args = append([]string{os.Args[0]}, args...)
	flag.CommandLine = flag.NewFlagSet(os.Args[0], flag.ExitOnError)
	main()
	os.Exit(0)
}

// Result is how a run of main ended.
type Result struct {
	Code           int
	Stdout, Stderr string
}

// RunMain runs the example's main (see AsMain) in a child process with
// args, and returns its exit status and output once it exits; it fails
// the test if it runs longer than a minute.
func RunMain(t *testing.T, args ...string) Result {
	t.Helper()
	raw, err := json.Marshal(args)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childArgs+"="+string(raw))
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	r := Result{Stdout: out.String(), Stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("main %v did not exit within a minute:\n%s\n%s", args, r.Stdout, r.Stderr)
	case errors.As(err, &ee):
		r.Code = ee.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return r
}

// FailsCleanly checks that r is a start-up failure as an operator should
// see it: a non-zero exit, no panic, and stderr naming the cause (every
// string of want).
func (r Result) FailsCleanly(t *testing.T, want ...string) {
	t.Helper()
	if r.Code == 0 || strings.Contains(r.Stderr, "panic:") || strings.Contains(r.Stderr, "goroutine ") {
		t.Fatalf("exit %d; want a clean failure\nstdout:\n%s\nstderr:\n%s", r.Code, r.Stdout, r.Stderr)
	}
	for _, w := range want {
		if !strings.Contains(r.Stderr, w) {
			t.Fatalf("stderr lacks %q:\n%s", w, r.Stderr)
		}
	}
}

// TakenPort returns a loopback address another listener holds until the
// test ends.
func TakenPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l.Addr().String()
}

// ClosedPort returns a loopback address nothing listens on: an
// unreachable Redis that refuses at once.
func ClosedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}
