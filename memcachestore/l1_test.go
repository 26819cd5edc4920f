package memcachestore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/internal/storetest"
	"github.com/msalcache/msalcache/internal/testserver"
	"github.com/msalcache/msalcache/memcachestore"
)

// memcached can neither push changes nor read a version without its
// value, so the Store must not claim either: an Adapter would trust a
// watch that never reports, or a probe no cheaper than a Load (see the
// package documentation).
func TestNeitherWatcherNorVersioner(t *testing.T) {
	var s driver.Store = memcachestore.New(memcache.New("127.0.0.1:1"))
	if _, ok := s.(driver.Watcher); ok {
		t.Error("the Store claims to be a Watcher; memcached cannot push")
	}
	if _, ok := s.(driver.Versioner); ok {
		t.Error("the Store claims to be a Versioner; memcached cannot read a version without the value")
	}
}

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
	newAdapter := func() *msalcache.Adapter { return storetest.NewL1Adapter(t, s, maxStale) }
	read := func(a *msalcache.Adapter) string { t.Helper(); return storetest.ReadApp(t, a) }
	write := func(a *msalcache.Adapter, secret string) { t.Helper(); storetest.WriteApp(t, a, secret) }
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
	one := fmt.Sprintf(storetest.AppToken, "one")
	for range 3 {
		if got := read(b); got != one {
			t.Fatalf("b read %q; want %q", got, one)
		}
	}
	if st := b.Stats(); st.L1Hits == 0 {
		t.Fatal("b's L1 served none of 3 reads in a row; the test needs the L1 in play")
	}
	write(a, "two")
	seenWithin(b, time.Now(), one, fmt.Sprintf(storetest.AppToken, "two"))
	if err := a.Remove(context.Background(), storetest.AppKey); err != nil {
		t.Fatal(err)
	}
	seenWithin(b, time.Now(), fmt.Sprintf(storetest.AppToken, "two"), "{}")
}
