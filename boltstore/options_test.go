package boltstore_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/msalcache/msalcache/boltstore"
	bolt "go.etcd.io/bbolt"
)

// TestInvalidOptionFailsOpen gives Open each option value the package
// refuses: Open must fail with an error that names the option and what to
// pass, before it creates the file, rather than fall back to a default.
func TestInvalidOptionFailsOpen(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		opts []boltstore.Option
		want string
	}{
		{"empty bucket", []boltstore.Option{boltstore.WithBucket("")},
			`WithBucket(""): pass a bucket name, or omit the option for the default "msalcache"`},
		{"bucket too long", []boltstore.Option{boltstore.WithBucket(strings.Repeat("b", bolt.MaxKeySize+1))},
			"WithBucket: the name is 32769 bytes; pass at most 32768, bbolt's limit"},
		{"zero lock timeout", []boltstore.Option{boltstore.WithLockTimeout(0)},
			"WithLockTimeout(0s): pass a positive duration, or omit the option for the default 2s"},
		{"negative lock timeout", []boltstore.Option{boltstore.WithLockTimeout(-time.Second)},
			"WithLockTimeout(-1s): pass a positive duration"},
		{"zero sweep interval", []boltstore.Option{boltstore.WithSweepInterval(0)},
			"WithSweepInterval(0s): pass a positive duration, or omit the option for the default 1m0s"},
		{"negative sweep interval", []boltstore.Option{boltstore.WithSweepInterval(-1)},
			"WithSweepInterval(-1ns): pass a positive duration"},
		{"nil clock", []boltstore.Option{boltstore.WithClock(nil)},
			"WithClock(nil): pass a func that returns the time, or omit the option for time.Now"},
		{"nil option", []boltstore.Option{boltstore.WithBucket("b"), nil},
			"option 2 of 2 is nil: leave it out, or pass one of the package's With options"},
		{"first error kept", []boltstore.Option{boltstore.WithLockTimeout(0), boltstore.WithBucket("")},
			"WithLockTimeout(0s):"},
	} {
		path := filepath.Join(dir, tc.name+".db")
		s, err := boltstore.Open(path, tc.opts...)
		if err == nil {
			s.Close()
			t.Errorf("%s: Open succeeded", tc.name)
			continue
		}
		if msg := err.Error(); !strings.HasPrefix(msg, "boltstore: open "+path+": ") || !strings.Contains(msg, tc.want) {
			t.Errorf("%s: Open = %v; want boltstore: open %s: ...%s...", tc.name, err, path, tc.want)
		}
		if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: Open refused an option but left a file behind (%v)", tc.name, err)
		}
	}
}

// TestOptionLimitsAccepted opens with the smallest and largest values the
// options accept.
func TestOptionLimitsAccepted(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cache.db")
	s := open(t, path, boltstore.WithBucket("b"), boltstore.WithLockTimeout(time.Nanosecond), boltstore.WithSweepInterval(time.Hour),
		boltstore.WithClock(time.Now))
	s.Close()
	s = open(t, path, boltstore.WithBucket(strings.Repeat("b", bolt.MaxKeySize)))
	s.Close()
}
