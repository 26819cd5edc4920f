package boltstore_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/boltstore"
	"github.com/msalcache/msalcache/conformance"
	bolt "go.etcd.io/bbolt"
)

// holdLockEnv makes the test binary, re-executed by
// TestLockHeldByAnotherProcess, open the file it names, say so on stdout
// and keep it open until its stdin closes.
const holdLockEnv = "BOLTSTORE_TEST_HOLD_LOCK"

func TestMain(m *testing.M) {
	if path := os.Getenv(holdLockEnv); path != "" {
		os.Exit(holdLock(path))
	}
	if path := os.Getenv(damagedEnv); path != "" {
		os.Exit(useDamaged(path))
	}
	os.Exit(m.Run())
}

func holdLock(path string) int {
	s, err := boltstore.Open(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("locked")
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n') // until the parent lets go
	_ = s.Close()
	return 0
}

func open(t *testing.T, path string, opts ...boltstore.Option) *boltstore.Store {
	t.Helper()
	s, err := boltstore.Open(path, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformance(t *testing.T) {
	conformance.RunStoreTests(t, func(t *testing.T) driver.Store {
		return open(t, filepath.Join(t.TempDir(), "cache.db"))
	}, conformance.Capabilities{
		MaxValueSize:   boltstore.MaxValueSize,
		PutRaw:         boltstore.PutRaw,
		CorruptRecords: boltstore.CorruptRecords,
	})
}

func TestFileMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cache.db")
	s := open(t, path)
	defer s.Close()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if mode := fi.Mode().Perm(); mode != 0o600 {
		t.Fatalf("the file was created with mode %v, want -rw------- (it holds refresh tokens)", mode)
	}
}

// TestOpenTightensMode opens existing databases that other users may read:
// Open must leave each at 0600, as it creates a new one, and keep its data.
func TestOpenTightensMode(t *testing.T) {
	ctx := context.Background()
	for _, mode := range []os.FileMode{0o666, 0o644, 0o640, 0o604, 0o660} {
		t.Run(mode.String(), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "cache.db")
			s := open(t, path)
			v, err := s.Save(ctx, "kept", []byte("value"), driver.NoVersion, 0)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			// os.Chmod, not the mode of a create: the umask must not decide.
			if err := os.Chmod(path, mode); err != nil {
				t.Fatal(err)
			}
			if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != mode {
				t.Fatalf("the test could not set mode %v: %v, %v", mode, fi.Mode(), err)
			}
			s = open(t, path)
			defer s.Close()
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if got := fi.Mode().Perm(); got != 0o600 {
				t.Fatalf("after Open of a %v file its mode is %v, want -rw------- (it holds refresh tokens)", mode, got)
			}
			if b, got, err := s.Load(ctx, "kept"); err != nil || got != v || string(b) != "value" {
				t.Fatalf("Load after tightening = %q, %d, %v; want the data kept", b, got, err)
			}
		})
	}
}

// TestOpenRefusesLooseFileItCannotTighten: when chmod fails (a process that
// is not the file's owner), Open must refuse the file and say how to fix
// it, not use it as it is. Root may chmod any file, so the failure is
// injected.
func TestOpenRefusesLooseFileItCannotTighten(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cache.db")
	open(t, path).Close()
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	restore := boltstore.SetChmod(func(name string, _ os.FileMode) error {
		return &os.PathError{Op: "chmod", Path: name, Err: os.ErrPermission}
	})
	_, err := boltstore.Open(path)
	restore()
	if err == nil {
		t.Fatal("Open of a 0644 file it could not tighten succeeded")
	}
	if msg := err.Error(); !errors.Is(err, os.ErrPermission) || !strings.Contains(msg, "chmod 600 "+path) || !strings.Contains(msg, "-rw-r--r--") {
		t.Fatalf("Open returned %q; want an error wrapping the chmod failure that gives the mode and says to run chmod 600 on the file", msg)
	}
	// The refused Open did not keep the lock.
	s := open(t, path)
	defer s.Close()
}

func TestOpenMissingDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "missing")
	path := filepath.Join(dir, "cache.db")
	_, err := boltstore.Open(path)
	if err == nil {
		t.Fatal("Open in a directory that does not exist succeeded")
	}
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("Open in a missing directory returned %q; want an error wrapping os.ErrNotExist that names the directory", err)
	}
	if _, err := boltstore.Open(""); err == nil {
		t.Fatal("Open(\"\") succeeded")
	}
}

// TestSecondOpenSameProcess: bbolt's flock is per open file, so a second
// Open in the same process is refused just like one from another process.
func TestSecondOpenSameProcess(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cache.db")
	s := open(t, path)
	start := time.Now()
	_, err := boltstore.Open(path, boltstore.WithLockTimeout(100*time.Millisecond))
	elapsed := time.Since(start)
	if !errors.Is(err, boltstore.ErrLocked) {
		t.Fatalf("a second Open of a file in use returned %v, want an error wrapping ErrLocked", err)
	}
	if msg := err.Error(); !strings.Contains(msg, path) || !strings.Contains(msg, "another process") {
		t.Fatalf("the lock error %q does not name the file and say another process or Store holds it", msg)
	}
	if elapsed > 5*time.Second {
		t.Fatalf("the second Open took %v to fail with a 100ms lock timeout", elapsed)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Close releases the lock.
	open(t, path).Close()
}

// TestLockHeldByAnotherProcess re-executes the test binary to hold the
// file's lock, and opens the file with the default lock timeout: the
// second process must be told, not left waiting.
func TestLockHeldByAnotherProcess(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cache.db")
	child := exec.Command(os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(), holdLockEnv+"="+path)
	stdin, err := child.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	child.Stderr = os.Stderr
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = stdin.Close()
		_ = child.Process.Kill()
		_ = child.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "locked\n" {
		t.Fatalf("the child process did not take the lock: %q, %v", line, err)
	}

	start := time.Now()
	_, err = boltstore.Open(path)
	elapsed := time.Since(start)
	if !errors.Is(err, boltstore.ErrLocked) {
		t.Fatalf("Open of a file another process holds returned %v, want an error wrapping ErrLocked", err)
	}
	if msg := err.Error(); !strings.Contains(msg, path) || !strings.Contains(msg, "another process") {
		t.Fatalf("the lock error %q does not name the file and say another process holds it", msg)
	}
	if elapsed > boltstore.DefaultLockTimeout+3*time.Second {
		t.Fatalf("Open took %v to give up; the default lock timeout is %v", elapsed, boltstore.DefaultLockTimeout)
	}

	// Once the other process exits, the file is free again.
	_ = stdin.Close()
	if err := child.Wait(); err != nil {
		t.Fatalf("the child process failed: %v", err)
	}
	open(t, path).Close()
}

func TestReopenKeepsDataAndVersions(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "cache.db")
	s := open(t, path)
	v1, err := s.Save(ctx, "kept", []byte("value"), driver.NoVersion, 0)
	if err != nil {
		t.Fatal(err)
	}
	v2, err := s.Save(ctx, "ttl", []byte("for an hour"), driver.NoVersion, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	vGone, err := s.Save(ctx, "gone", []byte("x"), driver.NoVersion, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = open(t, path)
	defer s.Close()
	for key, want := range map[string]struct {
		value   string
		version driver.Version
	}{"kept": {"value", v1}, "ttl": {"for an hour", v2}} {
		b, v, err := s.Load(ctx, key)
		if err != nil || string(b) != want.value || v != want.version {
			t.Fatalf("after reopening, Load(%q) = %q, %d, %v; want %q, %d", key, b, v, err, want.value, want.version)
		}
	}
	// The version counter survives the restart: a re-created key gets a
	// version never seen before, so a writer holding the old one loses.
	v3, err := s.Save(ctx, "gone", []byte("y"), driver.NoVersion, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, old := range []driver.Version{v1, v2, vGone} {
		if v3 == old {
			t.Fatalf("after reopening, Save returned version %d, which was handed out before the restart", v3)
		}
	}
	if _, err := s.Save(ctx, "gone", []byte("z"), vGone, 0); !errors.Is(err, driver.ErrConflict) {
		t.Fatalf("Save with the version of a key deleted before the restart returned %v, want ErrConflict", err)
	}
	if _, err := s.Save(ctx, "kept", []byte("new"), v1, 0); err != nil {
		t.Fatalf("Save with the version read before the restart failed: %v", err)
	}
}

// TestCorruptRecords writes records this package did not produce into its
// bucket with bbolt directly.
func TestCorruptRecords(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "cache.db")
	open(t, path).Close()

	bad := map[string][]byte{
		"bad:empty":      {},
		"bad:short":      {1, 0, 0, 0, 0, 0, 0, 0, 1},
		"bad:format":     append([]byte{9}, make([]byte, 20)...),
		"bad:version0":   append([]byte{1}, make([]byte, 16)...),
		"bad:negexpiry":  {1, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
		"bad:plain-json": []byte(`{"AccessToken":{}}`),
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(boltstore.DefaultBucket))
		for k, v := range bad {
			if err := b.Put([]byte(k), v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	s := open(t, path)
	defer s.Close()
	for k := range bad {
		_, _, err := s.Load(ctx, k)
		if !errors.Is(err, boltstore.ErrCorrupt) || !errors.Is(err, driver.ErrCorrupt) {
			t.Errorf("Load of a %s record returned %v, want an error wrapping ErrCorrupt", k, err)
		}
		if strings.Contains(err.Error(), k) {
			t.Errorf("the error %q names the key", err)
		}
	}
	// Corrupt records stay visible to an operator...
	var listed int
	if err := s.List(ctx, "", func(string) error { listed++; return nil }); err != nil {
		t.Fatal(err)
	}
	if listed != len(bad) {
		t.Fatalf("List reported %d keys, want the %d corrupt ones", listed, len(bad))
	}
	// ...and a create replaces them, so the Adapter heals them on Export.
	for k := range bad {
		if _, err := s.Save(ctx, k, []byte("fresh"), driver.NoVersion, 0); err != nil {
			t.Fatalf("Save with NoVersion over a corrupt record failed: %v", err)
		}
		if b, _, err := s.Load(ctx, k); err != nil || string(b) != "fresh" {
			t.Fatalf("Load after replacing a corrupt record = %q, %v", b, err)
		}
	}
}

func TestWithBucket(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "cache.db")
	a := open(t, path, boltstore.WithBucket("a"))
	if _, err := a.Save(ctx, "k", []byte("in a"), driver.NoVersion, 0); err != nil {
		t.Fatal(err)
	}
	a.Close()
	b := open(t, path, boltstore.WithBucket("b"))
	defer b.Close()
	if _, _, err := b.Load(ctx, "k"); !errors.Is(err, driver.ErrNotFound) {
		t.Fatalf("a key saved in bucket a is visible in bucket b: %v", err)
	}
}

func TestInvalidKeys(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "cache.db"))
	defer s.Close()
	for _, key := range []string{"", strings.Repeat("k", bolt.MaxKeySize+1)} {
		if _, err := s.Save(ctx, key, []byte("v"), driver.NoVersion, 0); err == nil {
			t.Errorf("Save with a %d-byte key succeeded", len(key))
		}
		if _, _, err := s.Load(ctx, key); err == nil || errors.Is(err, driver.ErrNotFound) {
			t.Errorf("Load with a %d-byte key returned %v, want an invalid-key error", len(key), err)
		}
		if err := s.Delete(ctx, key); err == nil {
			t.Errorf("Delete with a %d-byte key succeeded", len(key))
		}
	}
	if _, err := s.Save(ctx, strings.Repeat("k", bolt.MaxKeySize), nil, driver.NoVersion, 0); err != nil {
		t.Errorf("Save with a key of bbolt's maximum size failed: %v", err)
	}
}

// TestListManyKeys crosses List's internal chunk boundary.
func TestListManyKeys(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "cache.db"))
	defer s.Close()
	const n = 700
	for i := range n {
		if _, err := s.Save(ctx, fmt.Sprintf("p:%04d", i), nil, driver.NoVersion, 0); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Save(ctx, "q", nil, driver.NoVersion, 0); err != nil {
		t.Fatal(err)
	}
	var got []string
	if err := s.List(ctx, "p:", func(k string) error { got = append(got, k); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != n {
		t.Fatalf("List reported %d keys, want %d", len(got), n)
	}
	for i, k := range got {
		if want := fmt.Sprintf("p:%04d", i); k != want {
			t.Fatalf("List reported %q at position %d, want %q (each key once, in order)", k, i, want)
		}
	}
}

func TestOpenNotABoltFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cache.db")
	if err := os.WriteFile(path, []byte("not a database, but long enough to have a header of sorts....."), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := boltstore.Open(path); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("Open of a file that is not a bbolt database returned %v, want an error naming it", err)
	}
	if _, err := boltstore.Open(t.TempDir()); err == nil {
		t.Fatal("Open of a directory succeeded")
	}
}
