package boltstore_test

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/boltstore"
)

// TestReadOnlyMissingFile opens a path that does not exist read-only, as
// a mistyped path given to a command that only reads: it must fail with an
// error that wraps fs.ErrNotExist and names the path, and leave no file.
func TestReadOnlyMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "typo.db")
	for name, open := range map[string]func() error{
		"Open": func() error {
			s, err := boltstore.Open(path, boltstore.WithReadOnly())
			if err == nil {
				s.Close()
			}
			return err
		},
		"Check": func() error { return boltstore.Check(context.Background(), path) },
	} {
		err := open()
		if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: %v; want an error wrapping fs.ErrNotExist that names %s", name, err, path)
		}
		if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("%s created the file (%v)", name, err)
		}
	}
}

// TestReadOnlyNeverWrites reads, lists, checks and tries to write a file
// opened read-only, twice at once: the file's bytes and mode must not
// change, and Save and Delete must fail with ErrReadOnly.
func TestReadOnlyNeverWrites(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "tokens.db")
	s, err := boltstore.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	v, err := s.Save(ctx, "k", []byte("value"), driver.NoVersion, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := os.Chmod(path, 0o640); err != nil { // read-only leaves the mode alone
		t.Fatal(err)
	}
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}

	r1, err := boltstore.Open(path, boltstore.WithReadOnly())
	if err != nil {
		t.Fatal(err)
	}
	// A shared lock: a second reader opens at once.
	r2, err := boltstore.Open(path, boltstore.WithReadOnly(), boltstore.WithLockTimeout(time.Second))
	if err != nil {
		t.Fatalf("second read-only open: %v", err)
	}
	defer r2.Close()
	got, gv, err := r1.Load(ctx, "k")
	if err != nil || string(got) != "value" || gv != v {
		t.Errorf("Load = %q, %v, %v; want value, %v", got, gv, err, v)
	}
	var keys []string
	if err := r2.List(ctx, "", func(k string) error { keys = append(keys, k); return nil }); err != nil || len(keys) != 1 {
		t.Errorf("List = %v, %v", keys, err)
	}
	if err := r1.Check(ctx); err != nil {
		t.Errorf("Check: %v", err)
	}
	if _, err := r1.Save(ctx, "k", []byte("x"), v, time.Hour); !errors.Is(err, boltstore.ErrReadOnly) {
		t.Errorf("Save = %v; want ErrReadOnly", err)
	}
	if err := r1.Delete(ctx, "k"); !errors.Is(err, boltstore.ErrReadOnly) {
		t.Errorf("Delete = %v; want ErrReadOnly", err)
	}
	if err := r1.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r2.Close(); err != nil {
		t.Fatal(err)
	}
	if err := boltstore.Check(ctx, path); err != nil {
		t.Errorf("Check(path): %v", err)
	}
	after, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Error("the file's bytes changed under read-only use")
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("mode after read-only use: %v, %v; want 0640 kept", fi.Mode(), err)
	}
}
