package pgstore_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/pgstore"
)

// TestExamples runs what the Examples do against a real server: the
// Adapter over the store, and a pool whose every connection, the
// listener's included, logs in through the token callback (the test
// server trusts loopback, so any password logs in).
func TestExamples(t *testing.T) {
	srv := server(t)
	ctx := context.Background()
	got, err := saveThroughAdapter(ctx, newPool(t, srv))
	if err != nil || got != "postgresql, watched: true" {
		t.Fatalf("saveThroughAdapter = %q, %v", got, err)
	}

	var calls atomic.Int64
	pool, err := tokenPool(ctx, srv.URL("postgres"), func(context.Context) (string, error) {
		calls.Add(1)
		return "token", nil
	})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	s := newStore(t, pool, freshTable())
	up := make(chan struct{}, 1)
	stop, err := s.Watch(ctx, func(ch driver.Change) {
		if ch.Kind == driver.ChangeWatchUp {
			up <- struct{}{}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	select {
	case <-up:
	case <-time.After(10 * time.Second):
		t.Fatal("the watch did not come up")
	}
	if _, err := s.Save(ctx, "k", []byte("v"), driver.NoVersion, time.Minute); err != nil {
		t.Fatal(err)
	}
	// New's connection was taken for the listener; the Save needed
	// another: both logged in through the callback.
	if n := calls.Load(); n < 2 {
		t.Fatalf("the token callback ran %d times; want one per connection, the listener's included", n)
	}
	if pgstore.ListenerPID(s) == 0 {
		t.Fatal("no listener")
	}
}
