//go:build unix

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/internal/testserver"
	"github.com/msalcache/msalcache/protect"
	"github.com/msalcache/msalcache/storeurl"
)

// syncBuffer is a bytes.Buffer that the test may read while the binary
// writes to it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// ackInterrupt is what the binary prints as soon as it hears Ctrl-C.
const ackInterrupt = "interrupted: stopping after the record in flight"

// interruptMidway runs the binary with args and sends it SIGINT in the
// middle of its job. It waits until underway reports the job's first
// write, then freezes srv, the Redis the job writes to, so that no
// record can complete and the job cannot end before the signal is heard;
// sends SIGINT; waits for the binary's acknowledgment on stderr; thaws
// srv; and returns how the binary ended. With twice, a second SIGINT
// follows the acknowledgment, and the binary is waited for before srv
// thaws: it must quit at once. finished is true when the job was already
// done when srv froze (it had only its summary left): the caller resets
// and tries again.
func (f *farm) interruptMidway(env []string, srv *testserver.RedisServer, twice bool, underway func() bool, args ...string) (r result, finished bool) {
	t := f.t
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(cleanEnv(), env...)
	var out, errb syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.Stdin = strings.NewReader("")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var exitErr error
	exited := false
	wait := func(what string, cond func() bool) bool {
		deadline := time.Now().Add(30 * time.Second)
		for !cond() {
			select {
			case exitErr = <-done:
				exited = true
				return false
			default:
			}
			if time.Now().After(deadline) {
				cmd.Process.Kill()
				t.Fatalf("msalcache %v: no %s after 30 s; stderr:\n%s", args, what, errb.String())
			}
			time.Sleep(time.Millisecond) // a poll interval, not a margin
		}
		return true
	}
	if !wait("first write", underway) {
		return f.check(args, exitErr, out.String(), errb.String()), true
	}
	srv.Freeze()
	thawed := false
	thaw := func() {
		if !thawed {
			srv.Thaw()
			thawed = true
		}
	}
	defer thaw()
	if err := cmd.Process.Signal(os.Interrupt); err != nil && !exited {
		// Already gone: it had finished.
		exitErr = <-done
		exited = true
	}
	if !exited && wait("acknowledgment of the interrupt", func() bool { return strings.Contains(errb.String(), ackInterrupt) }) && twice {
		if err := cmd.Process.Signal(os.Interrupt); err != nil {
			t.Fatal(err)
		}
		wait("exit on the second interrupt, with the store frozen", func() bool { return false })
	}
	thaw()
	if !exited {
		exitErr = <-done
	}
	r = f.check(args, exitErr, out.String(), errb.String())
	return r, r.code == 0
}

// decodeAll checks that every partition in s, and the ring, is whole: each
// one decrypts under the ring and is an MSAL cache document.
func (f *farm) decodeAll(s driver.Store) int {
	f.t.Helper()
	ctx := context.Background()
	ring := f.ring(s)
	defer ring.Close()
	n := 0
	err := s.(driver.Lister).List(ctx, "tc/", func(k string) error {
		b, _, err := s.Load(ctx, k)
		if err != nil {
			return err
		}
		plain, err := ring.Unprotect(ctx, b, []byte(k))
		if err != nil {
			f.t.Fatalf("%s does not decrypt: %v", k, err)
		}
		if _, err := summarize(plain, time.Now(), false); err != nil {
			f.t.Fatalf("%s is not an MSAL cache document: %v", k, err)
		}
		n++
		return nil
	})
	if err != nil {
		f.t.Fatal(err)
	}
	return n
}

// TestInterrupt sends Ctrl-C to migrate and to rewrap in mid-job: each
// exits 1 saying how far it got, leaves every record whole (it decrypts
// and serves), and a second run finishes the job.
func TestInterrupt(t *testing.T) {
	const nusers = 40
	parts := nusers + 1
	f, path, env := boltFarm(t, nusers)
	srv := testserver.Redis(t)
	to := "redis://" + srv.Addr()
	ctx := context.Background()
	dst, err := storeurl.Open(ctx, to)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	keys := make([]string, 0, parts)
	for k := range blobKeys(t, path) {
		keys = append(keys, k)
	}
	slices.Sort(keys) // the order the commands go in
	first := keys[0]

	t.Run("migrate", func(t *testing.T) {
		f.t = t
		var r result
		for attempt := 1; ; attempt++ {
			var finished bool
			r, finished = f.interruptMidway(env, srv, false, func() bool {
				_, _, err := dst.Load(ctx, first)
				return err == nil
			}, "migrate", "-to", to, "-ring", "-force", "-json")
			if !finished {
				break
			}
			if attempt == 3 {
				t.Fatalf("migrate finished each time before it could be interrupted:\n%s", r.stdout)
			}
			t.Logf("attempt %d: migrate finished before the interrupt; again", attempt)
			if err := dst.Redis.FlushAll(ctx).Err(); err != nil {
				t.Fatal(err)
			}
		}
		if r.code != 1 || !strings.Contains(r.stderr, "interrupted after") || !strings.Contains(r.stderr, "run the command again to resume") {
			t.Fatalf("interrupted migrate: exit %d\n%s", r.code, r.stderr)
		}
		t.Logf("msalcache migrate: %s", strings.TrimSpace(r.stderr))
		copied := f.decodeAll(dst.Store)
		if copied == 0 || copied >= parts {
			t.Fatalf("%d of %d partitions at the destination after the interrupt; want some, not all", copied, parts)
		}
		r = f.cli(env, "migrate", "-to", to, "-ring", "-force", "-json").must(t, 0)
		var out migrateOut
		if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
			t.Fatal(err)
		}
		if out.KeptNewer != copied || out.Copied != parts-copied || out.Verified != parts || out.Missing != 0 {
			t.Fatalf("resumed migrate = %s; want %d kept and %d copied", r.stdout, copied, parts-copied)
		}
		f.decodeAll(dst.Store)
		f.serveAll(dst.Store)
	})

	for _, twice := range []bool{false, true} {
		name := "rewrap"
		if twice {
			name = "rewrap-twice"
		}
		t.Run(name, func(t *testing.T) { rewrapInterrupted(t, f, srv, dst, first, parts, twice) })
	}
}

// rewrapInterrupted rotates the ring on the Redis srv and interrupts the
// rewrap that follows, once (it stops after the record in flight) or
// twice (it quits at once).
func rewrapInterrupted(t *testing.T, f *farm, srv *testserver.RedisServer, dst *storeurl.Store, first string, parts int, twice bool) {
	ctx := context.Background()
	to := "redis://" + srv.Addr()
	{
		f.t = t
		renv := []string{"MSALCACHE_STORE=" + to, "MSALCACHE_KEK_FILE=" + f.kekFile}
		var r result
		var old map[string]string
		for attempt := 1; ; attempt++ {
			f.cli(renv, "keys", "rotate").must(t, 0)
			old = storeBlobKeys(t, dst.Store)
			var finished bool
			r, finished = f.interruptMidway(renv, srv, twice, func() bool {
				b, _, err := dst.Load(ctx, first)
				if err != nil {
					return false
				}
				id, err := protect.PayloadKeyID(b)
				return err == nil && id != old[first]
			}, "rewrap", "-json")
			if !finished {
				break
			}
			if attempt == 3 {
				t.Fatalf("rewrap finished each time before it could be interrupted:\n%s", r.stdout)
			}
			t.Logf("attempt %d: rewrap finished before the interrupt; rotate and again", attempt)
		}
		switch {
		case twice && r.code != -1:
			t.Fatalf("rewrap interrupted twice: exit %d, want killed by the signal\n%s", r.code, r.stderr)
		case !twice && (r.code != 1 || !strings.Contains(r.stderr, "interrupted after") || !strings.Contains(r.stderr, "run the command again to resume")):
			t.Fatalf("interrupted rewrap: exit %d\n%s", r.code, r.stderr)
		}
		t.Logf("msalcache rewrap: %s", strings.TrimSpace(r.stderr))
		moved := 0
		for k, id := range storeBlobKeys(t, dst.Store) {
			if id != old[k] {
				moved++
			}
		}
		if moved == 0 || moved >= parts {
			t.Fatalf("%d of %d partitions rewrapped after the interrupt; want some, not all", moved, parts)
		}
		if n := f.decodeAll(dst.Store); n != parts {
			t.Fatalf("%d partitions after the interrupt, want %d", n, parts)
		}
		f.serveAll(dst.Store)
		r = f.cli(renv, "rewrap", "-json").must(t, 0)
		var out rewrapOut
		if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
			t.Fatal(err)
		}
		// serveAll's silent calls may write a partition back under the
		// new key, so count from what the store holds now. A killed
		// binary's last write, sent whole before it died, may land
		// after this run read the partition: a conflict, left to it.
		if out.Rewrapped+out.Current0+out.Changed != parts || out.Rewrapped == 0 || out.Changed > 0 && !twice || out.Changed > 1 {
			t.Fatalf("resumed rewrap = %s; want the %d partitions left rewrapped", r.stdout, parts-moved)
		}
		for k, id := range storeBlobKeys(t, dst.Store) {
			if id == old[k] {
				t.Fatalf("%s still under the old key after the resumed rewrap", k)
			}
		}
		f.serveAll(dst.Store)
	}
}
