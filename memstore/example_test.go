package memstore_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"slices"
	"time"

	"github.com/msalcache/msalcache/driver"
	"github.com/msalcache/msalcache/memstore"
)

// Example shows the Store contract on the reference implementation:
// create and compare-and-set.
func Example() {
	ctx := context.Background()
	store := memstore.New()
	defer store.Close()

	v1, err := store.Save(ctx, "app:partition", []byte("v1"), driver.NoVersion, time.Hour)
	if err != nil {
		log.Fatal(err)
	}
	// Creating a key that exists fails: two instances racing to create the
	// same partition cannot both win.
	_, err = store.Save(ctx, "app:partition", []byte("other"), driver.NoVersion, time.Hour)
	fmt.Println("create again:", errors.Is(err, driver.ErrConflict))

	if _, err := store.Save(ctx, "app:partition", []byte("v2"), v1, time.Hour); err != nil {
		log.Fatal(err)
	}
	b, _, _ := store.Load(ctx, "app:partition")
	fmt.Printf("loaded: %s\n", b)
	// Output:
	// create again: true
	// loaded: v2
}

// ExampleStore_List walks the keys under a prefix, as code that inspects or
// copies a store's partitions would. Keys come in no particular order.
func ExampleStore_List() {
	ctx := context.Background()
	store := memstore.New()
	defer store.Close()
	for _, k := range []string{"app1:alice", "app1:bob", "app2:carol"} {
		if _, err := store.Save(ctx, k, []byte("cache"), driver.NoVersion, time.Hour); err != nil {
			log.Fatal(err)
		}
	}
	var keys []string
	err := store.List(ctx, "app1:", func(key string) error {
		keys = append(keys, key)
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
	slices.Sort(keys)
	fmt.Println(keys)
	// Output:
	// [app1:alice app1:bob]
}

// ExampleStore_Watch shows what an Adapter with msalcache.WithL1 relies
// on: every write and delete through the Store, by any Adapter in the
// process, reaches every watcher before the write returns, so an L1 drops
// what another instance overwrote before anyone can read it.
func ExampleStore_Watch() {
	ctx := context.Background()
	store := memstore.New()
	defer store.Close()

	stop, err := store.Watch(ctx, func(c driver.Change) {
		switch c.Kind {
		case driver.ChangeWatchUp:
			fmt.Println("watching")
		case driver.ChangeKey:
			fmt.Printf("changed: %s, deleted: %v\n", c.Key, c.Version == driver.NoVersion)
		}
	})
	if err != nil {
		log.Fatal(err)
	}
	defer stop()

	if _, err := store.Save(ctx, "app:partition", []byte("tokens"), driver.NoVersion, time.Hour); err != nil {
		log.Fatal(err)
	}
	fmt.Println("saved") // printed after the watcher heard of it
	if err := store.Delete(ctx, "app:partition"); err != nil {
		log.Fatal(err)
	}
	// Output:
	// watching
	// changed: app:partition, deleted: false
	// saved
	// changed: app:partition, deleted: true
}
