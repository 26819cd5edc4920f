package memcachestore

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/msalcache/msalcache"
)

func TestExpiration(t *testing.T) {
	now := time.Unix(1_750_000_000, 0)
	const day = 24 * time.Hour
	for _, tc := range []struct {
		ttl  time.Duration
		want int64
	}{
		{0, 0},
		{-time.Second, 0},
		{time.Nanosecond, 2},
		{time.Millisecond, 2},
		{time.Second, 2},
		{1500 * time.Millisecond, 2},
		{2 * time.Second, 2},
		{2001 * time.Millisecond, 3},
		{time.Hour, 3600},
		{30 * day, 30 * 24 * 3600},
		{30*day + time.Nanosecond, now.Unix() + 30*24*3600 + 1},
		{31 * day, now.Unix() + 31*24*3600},
		{200 * 365 * day, math.MaxInt32},
	} {
		if got := expiration(tc.ttl, now); int64(got) != tc.want {
			t.Errorf("expiration(%v) = %d, want %d", tc.ttl, got, tc.want)
		}
	}
}

func TestItemKey(t *testing.T) {
	s := New(memcache.New("127.0.0.1:1"), WithPrefix(strings.Repeat("p", MaxPrefixLen)))
	long := strings.Repeat("k", 200)
	a, err := s.itemKey(long)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := s.itemKey(long[:199] + "z")
	again, _ := s.itemKey(long)
	switch {
	case len(a) != MaxKeyLen || len(b) != MaxKeyLen:
		t.Errorf("shortened keys are %d and %d bytes, want exactly %d", len(a), len(b), MaxKeyLen)
	case a == b:
		t.Error("two keys that differ only past the cut map to the same item")
	case a != again:
		t.Error("shortening is not deterministic")
	case !strings.HasPrefix(a, s.prefix) || !strings.Contains(a, "#"):
		t.Errorf("shortened key %q lost its prefix or its '#' marker", a)
	case badByte(a) >= 0:
		t.Errorf("shortened key %q has a byte memcached refuses", a)
	}
	short := New(memcache.New("127.0.0.1:1"))
	if k, _ := short.itemKey("abc"); k != DefaultPrefix+"abc" {
		t.Errorf("a key that fits is %q, want the prefix and the key unchanged", k)
	}
}

// TestWrapRedactsKey feeds wrap the one gomemcache error that quotes a
// server reply with the key in it (a malformed get response line).
func TestWrapRedactsKey(t *testing.T) {
	s := New(memcache.New("127.0.0.1:1"))
	ikey := DefaultPrefix + "alice@contoso"
	orig := fmt.Errorf("memcache: unexpected line in get response: %q", "VALUE "+ikey+" 1 x")
	err := s.wrap(context.Background(), "load", ikey, orig)
	if strings.Contains(err.Error(), "alice") {
		t.Fatalf("wrapped error %q names the key", err)
	}
	if !errors.Is(err, orig) {
		t.Fatal("redaction lost the original error for errors.Is")
	}
	tooLarge := errors.New(`memcache: unexpected response line from "add": "SERVER_ERROR object too large for cache\r\n"`)
	if err := s.wrap(context.Background(), "save", ikey, tooLarge); !errors.Is(err, driver.ErrTooLarge) {
		t.Fatalf("wrap(%v) = %v, want ErrTooLarge", tooLarge, err)
	}
}
