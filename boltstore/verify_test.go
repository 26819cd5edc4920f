package boltstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/msalcache/msalcache"
)

// fuzzSeedFile is a small store file, with a branch page when big, for
// the fuzz seeds.
func fuzzSeedFile(f *testing.F, records int) []byte {
	path := filepath.Join(f.TempDir(), fmt.Sprintf("seed%d.db", records))
	s, err := Open(path)
	if err != nil {
		f.Fatal(err)
	}
	for i := range records {
		if _, err := s.Save(context.Background(), fmt.Sprintf("k%03d", i), bytes.Repeat([]byte{'v'}, 300), driver.NoVersion, time.Hour); err != nil {
			f.Fatal(err)
		}
	}
	s.Close()
	b, err := os.ReadFile(path)
	if err != nil {
		f.Fatal(err)
	}
	return b
}

// FuzzVerifyFile gives verifyFile arbitrary bytes as a file. It must never
// panic, and a file it passes must be one bbolt opens and walks (every
// key of every page read) without a panic: that is the promise Open
// relies on, since a stack overflow or a fault from a cycle or a stray
// offset would kill the process whatever recovers.
func FuzzVerifyFile(f *testing.F) {
	for _, n := range []int{0, 3, 40} {
		b := fuzzSeedFile(f, n)
		f.Add(b)
		f.Add(b[:len(b)/2])
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 1<<20 {
			return
		}
		path := filepath.Join(t.TempDir(), "f.db")
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := verifyFile(context.Background(), path, []byte(DefaultBucket)); err != nil {
			if !errors.Is(err, ErrDamaged) {
				t.Fatalf("verifyFile: %v; want nil or ErrDamaged", err)
			}
			return
		}
		if len(b) == 0 {
			return
		}
		s, err := Open(path, WithReadOnly(), WithLockTimeout(time.Second))
		if err != nil {
			return // refused by bbolt itself or by bbolt's check
		}
		defer s.Close()
		ctx := context.Background()
		_ = s.List(ctx, "", func(k string) error {
			_, _, _ = s.Load(ctx, k)
			return nil
		})
		if s.broken.Load() != nil {
			t.Fatalf("verifyFile passed a file on which bbolt panicked: %v", s.broken.Load())
		}
	})
}
