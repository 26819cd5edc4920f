package memcachestore_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/cache"
	"github.com/bradfitz/gomemcache/memcache"
	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/internal/testserver"
	"github.com/msalcache/msalcache/memcachestore"
)

// memcached can neither push changes nor read a version without its
// value, so the Store must not claim either: an Adapter would trust a
// watch that never reports, or a probe no cheaper than a Load (see the
// package documentation).
func TestNeitherWatcherNorVersioner(t *testing.T) {
	var s msalcache.Store = memcachestore.New(memcache.New("127.0.0.1:1"))
	if _, ok := s.(msalcache.Watcher); ok {
		t.Error("the Store claims to be a Watcher; memcached cannot push")
	}
	if _, ok := s.(msalcache.Versioner); ok {
		t.Error("the Store claims to be a Versioner; memcached cannot read a version without the value")
	}
}

// target stands in for MSAL's cache: what the adapter hands it on
// Replace, and what it exports.
type target struct {
	mu   sync.Mutex
	data []byte
}

func (c *target) Unmarshal(b []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.data = bytes.Clone(b)
	return nil
}

func (c *target) Marshal() ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Clone(c.data), nil
}

const (
	appKey   = "c_t_AppTokenCache"
	appToken = `{"AccessToken":{"at":{"client_id":"c","realm":"t","expires_on":"1900000000","secret":"%s"}}}`
)

// Two Adapters with an L1 over one memcached: B may serve what it
// confirmed for MaxStale, but never longer. A write or a Remove through A
// is what every read of B that starts more than MaxStale after it
// returned gets.
func TestTwoAdaptersWithL1BoundedStaleness(t *testing.T) {
	t.Parallel()
	srv := testserver.Memcached(t)
	s := memcachestore.New(newClient(t, srv.Addr()), memcachestore.WithPrefix(uniquePrefix("l1:")))
	defer s.Close()
	const maxStale = 200 * time.Millisecond
	newAdapter := func() *msalcache.Adapter {
		a, err := msalcache.New(s, msalcache.WithPlaintext(), msalcache.WithLogger(slog.New(slog.DiscardHandler)),
			msalcache.WithL1(msalcache.L1Options{MaxStale: maxStale}))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { a.Close() })
		return a
	}
	ctx := context.Background()
	read := func(a *msalcache.Adapter) string {
		t.Helper()
		c := &target{}
		if err := a.Replace(ctx, c, cache.ReplaceHints{PartitionKey: appKey}); err != nil {
			t.Fatal(err)
		}
		return string(c.data)
	}
	write := func(a *msalcache.Adapter, secret string) {
		t.Helper()
		c := &target{}
		if err := a.Replace(ctx, c, cache.ReplaceHints{PartitionKey: appKey}); err != nil {
			t.Fatal(err)
		}
		c.data = []byte(fmt.Sprintf(appToken, secret))
		if err := a.Export(ctx, c, cache.ExportHints{PartitionKey: appKey}); err != nil {
			t.Fatal(err)
		}
	}
	// seenWithin reads through b until it gets want, failing if a read
	// that started more than maxStale after changed returned anything
	// else, or if want does not come within a generous deadline.
	seenWithin := func(b *msalcache.Adapter, changed time.Time, old, want string) {
		t.Helper()
		deadline := changed.Add(maxStale + 10*time.Second)
		for {
			start := time.Now()
			got := read(b)
			if got == want {
				return
			}
			if got != old {
				t.Fatalf("b read %q; want %q, or %q within MaxStale", got, want, old)
			}
			if late := start.Sub(changed); late > maxStale {
				t.Fatalf("a read of b that started %v after the change returned still served the old data; MaxStale is %v", late, maxStale)
			}
			if time.Now().After(deadline) {
				t.Fatalf("b still reads %q", got)
			}
			time.Sleep(time.Millisecond)
		}
	}

	a, b := newAdapter(), newAdapter()
	write(a, "one")
	one := fmt.Sprintf(appToken, "one")
	for range 3 {
		if got := read(b); got != one {
			t.Fatalf("b read %q; want %q", got, one)
		}
	}
	if st := b.Stats(); st.L1Hits == 0 {
		t.Fatal("b's L1 served none of 3 reads in a row; the test needs the L1 in play")
	}
	write(a, "two")
	seenWithin(b, time.Now(), one, fmt.Sprintf(appToken, "two"))
	if err := a.Remove(ctx, appKey); err != nil {
		t.Fatal(err)
	}
	seenWithin(b, time.Now(), fmt.Sprintf(appToken, "two"), "{}")
}
