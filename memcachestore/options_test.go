package memcachestore_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/internal/storetest"
	"github.com/msalcache/msalcache/internal/testserver"
	"github.com/msalcache/msalcache/memcachestore"
)

// TestInvalidOptionFailsEveryCall builds stores with each option value the
// package refuses. New cannot return an error, so every call must fail
// with one that names the call, the option and what to pass, before
// anything is sent: nothing listens on the client's address, so an error
// from the network would mean the option was clamped or ignored.
func TestInvalidOptionFailsEveryCall(t *testing.T) {
	t.Parallel()
	c := memcache.New("127.0.0.1:1")
	for _, tc := range []struct {
		name       string
		opts       []memcachestore.Option
		want       string
		invalidKey bool // the error wraps ErrInvalidKey
	}{
		{"zero size", []memcachestore.Option{memcachestore.WithMaxValueSize(0)},
			"WithMaxValueSize(0): pass a positive size in bytes, or omit the option for the default of 1 MiB less 512 bytes", false},
		{"negative size", []memcachestore.Option{memcachestore.WithMaxValueSize(-1)},
			"WithMaxValueSize(-1): pass a positive size in bytes", false},
		{"size over memcached's limit", []memcachestore.Option{memcachestore.WithMaxValueSize(memcachestore.MaxValueSize + 1)},
			"WithMaxValueSize(1073741313): memcached holds at most 1 GiB per item (-I 1024m), key and item header included; pass at most 1073741312, or omit the option for the default of 1 MiB less 512 bytes", false},
		{"prefix with a space", []memcachestore.Option{memcachestore.WithPrefix("my app:")},
			`WithPrefix("my app:"): byte 2 is 0x20, and memcached keys have no spaces or control characters; pass a prefix without them`, true},
		{"prefix too long", []memcachestore.Option{memcachestore.WithPrefix(strings.Repeat("p", memcachestore.MaxPrefixLen+1))},
			"WithPrefix: the prefix is 207 bytes; pass at most MaxPrefixLen (206)", true},
		{"nil option", []memcachestore.Option{memcachestore.WithPrefix("app:"), nil},
			"option 2 of 2 is nil: leave it out, or pass one of the package's With options", false},
		{"first error kept", []memcachestore.Option{memcachestore.WithMaxValueSize(-2), memcachestore.WithPrefix("a b")},
			"WithMaxValueSize(-2):", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := memcachestore.New(c, tc.opts...)
			for op, err := range storetest.RefusesEveryCall(t, s, "memcachestore", tc.want) {
				if errors.Is(err, memcachestore.ErrInvalidKey) != tc.invalidKey {
					t.Errorf("%s = %v; wraps ErrInvalidKey: %v, want %v", op, err, !tc.invalidKey, tc.invalidKey)
				}
			}
			if err := s.Close(); err != nil {
				t.Errorf("Close = %v", err)
			}
		})
	}
	// The limits themselves are accepted.
	for _, n := range []int{1, memcachestore.MaxValueSize} {
		if got := memcachestore.New(c, memcachestore.WithMaxValueSize(n)).MaxValueSize(); got != n {
			t.Errorf("WithMaxValueSize(%d): MaxValueSize = %d", n, got)
		}
	}
}

func TestNilClientNamesTheFix(t *testing.T) {
	t.Parallel()
	storetest.RefusesEveryCall(t, memcachestore.New(nil), "memcachestore", "New(nil): pass a *memcache.Client")
}

// TestEmptyPrefixMeansNoPrefix: WithPrefix("") is documented to use the
// store's keys as the memcached keys, with nothing in front.
func TestEmptyPrefixMeansNoPrefix(t *testing.T) {
	t.Parallel()
	srv := testserver.Memcached(t)
	c := newClient(t, srv.Addr())
	s := memcachestore.New(c, memcachestore.WithPrefix(""))
	defer s.Close()
	ctx := context.Background()
	if _, err := s.Save(ctx, "bare", []byte("v"), driver.NoVersion, time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get("bare"); err != nil {
		t.Fatalf("item bare: %v; the empty prefix put something in front of the key", err)
	}
	if _, err := c.Get(memcachestore.DefaultPrefix + "bare"); !errors.Is(err, memcache.ErrCacheMiss) {
		t.Fatalf("item under the default prefix: %v, want a miss", err)
	}
}
