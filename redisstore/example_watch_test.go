package redisstore_test

import (
	"context"
	"fmt"
	"time"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/redisstore"
	"github.com/redis/go-redis/v9"
)

// ExampleStore_Watch shows what a Store tells its watchers: an Adapter
// built WithL1 watches by itself (first lines), so a write on any instance
// of the farm drops what the others hold in memory; a program that keeps
// its own cache of the store's keys can watch directly. It needs the
// server it names, so `go test` compiles it without running it;
// TestExampleWatch runs watchOtherInstance against a real server.
func ExampleStore_Watch() {
	rdb := redis.NewClient(&redis.Options{Addr: "localhost:6379"})
	defer rdb.Close()

	store := redisstore.New(rdb, redisstore.WithPrefix("myapp:"))
	defer store.Close()
	adapter, err := msalcache.New(store, msalcache.WithPlaintext(), msalcache.WithL1(msalcache.L1Options{}))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer adapter.Close() // ends the Adapter's watch

	// Another instance of the application: its own client, same prefix.
	other := redis.NewClient(&redis.Options{Addr: "localhost:6379"})
	defer other.Close()
	lines, err := watchOtherInstance(context.Background(), store, redisstore.New(other, redisstore.WithPrefix("myapp:")))
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, l := range lines {
		fmt.Println(l)
	}
	// It prints:
	//
	//	watch up
	//	key example written
	//	key example deleted
}

// watchOtherInstance watches store, writes and deletes a key through
// other, and returns what the watch was told, one line per change.
func watchOtherInstance(ctx context.Context, store, other *redisstore.Store) ([]string, error) {
	changes := make(chan driver.Change, 16)
	// The callback runs on the store's goroutine: hand the change over and
	// return, never call the store from it.
	stop, err := store.Watch(ctx, func(ch driver.Change) { changes <- ch })
	if err != nil {
		return nil, err
	}
	defer stop()

	var lines []string
	next := func() (driver.Change, error) {
		select {
		case ch := <-changes:
			return ch, nil
		case <-time.After(10 * time.Second):
			return driver.Change{}, fmt.Errorf("no change within 10 s; so far %q", lines)
		}
	}
	if ch, err := next(); err != nil {
		return nil, err
	} else if ch.Kind != driver.ChangeWatchUp {
		return nil, fmt.Errorf("first change %+v, want ChangeWatchUp", ch)
	}
	lines = append(lines, "watch up") // from now on every change is reported

	_ = other.Delete(ctx, "example")
	if ch, err := next(); err != nil { // the Delete above is reported too
		return nil, err
	} else if ch.Key != "example" {
		return nil, fmt.Errorf("change %+v, want key example", ch)
	}
	v, err := other.Save(ctx, "example", []byte("token cache"), driver.NoVersion, time.Hour)
	if err != nil {
		return nil, err
	}
	if err := other.Delete(ctx, "example"); err != nil {
		return nil, err
	}
	for range 2 {
		ch, err := next()
		if err != nil {
			return nil, err
		}
		switch {
		case ch.Kind != driver.ChangeKey:
			lines = append(lines, fmt.Sprintf("unexpected change %+v", ch))
		case ch.Version == v:
			lines = append(lines, "key "+ch.Key+" written")
		case ch.Version == driver.NoVersion:
			lines = append(lines, "key "+ch.Key+" deleted")
		}
	}
	return lines, nil
}
