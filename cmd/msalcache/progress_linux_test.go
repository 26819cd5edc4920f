package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"unsafe"
)

// openPTY opens a pseudo-terminal: what the binary writes to tty the
// test reads from pty.
func openPTY(t *testing.T) (pty, tty *os.File) {
	t.Helper()
	pty, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	var n uint32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, pty.Fd(), syscall.TIOCGPTN, uintptr(unsafe.Pointer(&n))); e != 0 {
		pty.Close()
		t.Skipf("no pseudo-terminal: TIOCGPTN: %v", e)
	}
	var unlock int32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, pty.Fd(), syscall.TIOCSPTLCK, uintptr(unsafe.Pointer(&unlock))); e != 0 {
		pty.Close()
		t.Skipf("no pseudo-terminal: TIOCSPTLCK: %v", e)
	}
	tty, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		pty.Close()
		t.Skipf("no pseudo-terminal: %v", err)
	}
	return pty, tty
}

// cliTerminal runs the binary with its stderr on a terminal and returns
// what it wrote there.
func (f *farm) cliTerminal(env []string, args ...string) result {
	f.t.Helper()
	pty, tty := openPTY(f.t)
	defer pty.Close()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(cleanEnv(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr, cmd.Stdin = &out, tty, strings.NewReader("")
	if err := cmd.Start(); err != nil {
		tty.Close()
		f.t.Fatal(err)
	}
	// Only the child holds the terminal now: once it exits, reading
	// pty ends (EIO) after what it wrote.
	tty.Close()
	var term bytes.Buffer
	copied := make(chan struct{})
	go func() {
		io.Copy(&term, pty)
		close(copied)
	}()
	err := cmd.Wait()
	<-copied
	return f.check(args, err, out.String(), term.String())
}

// TestProgress holds the rule for progress: on stderr with count, rate
// and ETA when it is a terminal, nothing at all when it is a pipe.
func TestProgress(t *testing.T) {
	f, _, env := boltFarm(t, 3)
	f.cli(env, "keys", "rotate").must(t, 0)
	to := "bbolt://" + filepath.Join(t.TempDir(), "copy.db")
	for _, c := range []struct {
		args []string
		line string
	}{
		{[]string{"stats"}, "stats: 4/4"},
		{[]string{"rewrap", "-dry-run"}, "rewrap: 4/4"},
		{[]string{"migrate", "-to", to, "-dry-run"}, "migrate: 4/4"},
		{[]string{"rm", "-expired", "-dry-run"}, "rm -expired: 4/4"},
	} {
		r := f.cliTerminal(env, c.args...).must(t, 0)
		if !strings.Contains(r.stderr, c.line) || !strings.Contains(r.stderr, "ETA") || !strings.Contains(r.stderr, "/s") {
			t.Fatalf("msalcache %v on a terminal: no progress line %q:\n%q", c.args, c.line, r.stderr)
		}
		if strings.Contains(r.stdout, c.line) {
			t.Fatalf("msalcache %v: progress on stdout:\n%s", c.args, r.stdout)
		}
		if n := strings.Count(r.stderr, "\n"); n != 1 {
			t.Fatalf("msalcache %v on a terminal: the progress line ends %d times, want once:\n%q", c.args, n, r.stderr)
		}
		stderrQuiet(t, f.cli(env, c.args...).must(t, 0))
	}
}
