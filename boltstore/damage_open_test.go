package boltstore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/boltstore"
)

// smallTokenFile writes a file with a branch page and free pages through
// the store itself (no MSAL: the damage tests here need only the shape)
// and returns its bytes.
func smallTokenFile(t *testing.T, path string) []byte {
	t.Helper()
	ctx := context.Background()
	s, err := boltstore.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	for round := range 2 {
		for i := range 60 {
			if _, err := s.Save(ctx, fmt.Sprintf("app:user%02d", i), bytes.Repeat([]byte{byte('a' + round)}, 1500),
				driver.NoVersion, time.Hour); err != nil && !errors.Is(err, driver.ErrConflict) {
				t.Fatal(err)
			}
		}
		for i := range 60 {
			if err := s.Delete(ctx, fmt.Sprintf("app:user%02d", i)); err != nil && round == 0 {
				t.Fatal(err)
			}
		}
	}
	for i := range 60 {
		if _, err := s.Save(ctx, fmt.Sprintf("app:user%02d", i), bytes.Repeat([]byte{'z'}, 1500), driver.NoVersion, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// damagedFile writes a copy of a small token file whose store bucket's
// branch page points at itself (a cycle: bbolt overflows its stack on it,
// which no recover catches) and returns its path and bytes.
func damagedFile(t *testing.T) (string, []byte) {
	t.Helper()
	dir := t.TempDir()
	good := smallTokenFile(t, filepath.Join(dir, "good.db"))
	var v variant
	for _, d := range damagedVariants {
		if d.name == "branch-child-is-self" {
			v = d
		}
	}
	bad := v.damage(bytes.Clone(good), readLayout(t, good))
	path := filepath.Join(dir, "tokens.db")
	if err := os.WriteFile(path, bad, 0o600); err != nil {
		t.Fatal(err)
	}
	return path, bad
}

// TestOpenMovesDamagedAside opens a damaged file: Open must move it aside,
// byte for byte and 0600, log at ERROR what was lost without a key, and
// give a working store over a new file.
func TestOpenMovesDamagedAside(t *testing.T) {
	path, bad := damagedFile(t)
	var logs bytes.Buffer
	s, err := boltstore.Open(path, boltstore.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close()
	moved, _ := filepath.Glob(path + ".damaged-*")
	if len(moved) != 1 {
		t.Fatalf("moved-aside files: %v; want one %s.damaged-<time>", moved, path)
	}
	if got, err := os.ReadFile(moved[0]); err != nil || !bytes.Equal(got, bad) {
		t.Errorf("the moved file differs from the damaged one (%v)", err)
	}
	if fi, err := os.Stat(moved[0]); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("moved file mode %v (%v); want 0600", fi.Mode(), err)
	}
	line := logs.String()
	for _, want := range []string{"level=ERROR", "moved_to=" + moved[0], "reached twice", "records_seen=", "bytes="} {
		if !strings.Contains(line, want) {
			t.Errorf("log %q lacks %q", line, want)
		}
	}
	if strings.Contains(line, "app:user") {
		t.Errorf("log names a key: %s", line)
	}
	ctx := context.Background()
	if _, err := s.Save(ctx, "k", []byte("v"), driver.NoVersion, 0); err != nil {
		t.Fatalf("Save on the new file: %v", err)
	}
	if err := s.Check(ctx); err != nil {
		t.Errorf("Check of the new file: %v", err)
	}
}

// TestRefuseDamaged opens a damaged file WithRefuseDamaged and read-only,
// and checks it: each must fail with an error that wraps ErrDamaged and
// names the file, and leave the file as it was.
func TestRefuseDamaged(t *testing.T) {
	path, bad := damagedFile(t)
	ctx := context.Background()
	for name, try := range map[string]func() error{
		"WithRefuseDamaged": func() error {
			s, err := boltstore.Open(path, boltstore.WithRefuseDamaged())
			if err == nil {
				s.Close()
			}
			return err
		},
		"WithReadOnly": func() error {
			s, err := boltstore.Open(path, boltstore.WithReadOnly())
			if err == nil {
				s.Close()
			}
			return err
		},
		"Check": func() error { return boltstore.Check(ctx, path) },
	} {
		err := try()
		if !errors.Is(err, boltstore.ErrDamaged) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "Move the file aside") && !strings.Contains(err.Error(), "move it aside") {
			t.Errorf("%s: %v; want an error wrapping ErrDamaged that names %s and says to move it aside", name, err, path)
		}
		if got, _ := os.ReadFile(path); !bytes.Equal(got, bad) {
			t.Fatalf("%s changed the file", name)
		}
		if m, _ := filepath.Glob(path + ".damaged-*"); len(m) > 0 {
			t.Fatalf("%s moved the file aside", name)
		}
	}
}

// TestOpenNeverMovesOtherFiles gives Open a path that names a file of
// another kind: it must refuse it and leave it in place.
func TestOpenNeverMovesOtherFiles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notes.txt")
	text := bytes.Repeat([]byte("my notes, not a database\n"), 1000)
	if err := os.WriteFile(path, text, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := boltstore.Open(path)
	if err == nil || !strings.Contains(err.Error(), "not a bbolt file") {
		t.Fatalf("Open = %v; want not a bbolt file", err)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, text) {
		t.Fatal("Open changed the file")
	}
}

// TestRunTimePanicBecomesError damages the file under an open store (as a
// disk fault or another program might; bbolt reads the file through its
// memory map, so it sees the change): the calls that reach the damage
// must fail with ErrDamaged instead of panicking, every later call must
// fail the same way at once, the writer and the sweeper must not take the
// process down, and Close must return. Without the guards, this test
// binary dies.
func TestRunTimePanicBecomesError(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "tokens.db")
	good := smallTokenFile(t, path)
	l := readLayout(t, good)
	var logs bytes.Buffer
	s, err := boltstore.Open(path, boltstore.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))),
		boltstore.WithSweepInterval(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	// Every element of every leaf under the store's branch page puts its
	// key 2 GiB past itself.
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, leaf := range l.leaves {
		page := int64(leaf) * int64(l.psize)
		for i := range int64(u16(good, int(page)+10)) {
			if _, err := f.WriteAt([]byte{0xff, 0xff, 0xff, 0x7f}, page+pageHeader+i*elemSize+4); err != nil {
				t.Fatal(err)
			}
		}
	}
	f.Close()

	failures := 0
	for i := range 60 {
		if _, _, err := s.Load(ctx, fmt.Sprintf("app:user%02d", i)); err != nil {
			if !errors.Is(err, boltstore.ErrDamaged) {
				t.Fatalf("Load: %v; want ErrDamaged", err)
			}
			failures++
		}
	}
	if failures == 0 {
		t.Fatal("no Load reached the damage")
	}
	if _, err := s.Save(ctx, "new", []byte("v"), driver.NoVersion, time.Hour); !errors.Is(err, boltstore.ErrDamaged) {
		t.Errorf("Save after the panic: %v; want ErrDamaged", err)
	}
	if err := s.List(ctx, "", func(string) error { return nil }); !errors.Is(err, boltstore.ErrDamaged) {
		t.Errorf("List after the panic: %v; want ErrDamaged", err)
	}
	if err := s.Ping(ctx); !errors.Is(err, boltstore.ErrDamaged) {
		t.Errorf("Ping after the panic: %v; want ErrDamaged", err)
	}
	if err := s.Close(); err != nil {
		t.Logf("Close: %v", err)
	}
	if n := strings.Count(logs.String(), "level=ERROR"); n != 1 {
		t.Errorf("%d ERROR lines; want one for the first panic:\n%s", n, logs.String())
	}
}
