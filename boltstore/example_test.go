package boltstore_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/boltstore"
)

// Example stores a value, updates it with compare-and-set, and shows that
// the file keeps it across a restart and that the file is locked while
// open.
func Example() {
	dir, err := os.MkdirTemp("", "boltstore-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "msalcache.db")
	ctx := context.Background()

	store, err := boltstore.Open(path)
	if err != nil {
		log.Fatal(err)
	}
	v, err := store.Save(ctx, "app:partition", []byte("token cache v1"), msalcache.NoVersion, 24*time.Hour)
	if err != nil {
		log.Fatal(err)
	}
	// A writer that read v updates; one that read an older version loses.
	if _, err := store.Save(ctx, "app:partition", []byte("token cache v2"), v, 24*time.Hour); err != nil {
		log.Fatal(err)
	}
	_, err = store.Save(ctx, "app:partition", []byte("stale"), v, 24*time.Hour)
	fmt.Println("stale write:", errors.Is(err, msalcache.ErrConflict))

	// While the store is open, nobody else may open the file.
	_, err = boltstore.Open(path, boltstore.WithLockTimeout(100*time.Millisecond))
	fmt.Println("second open:", errors.Is(err, boltstore.ErrLocked))

	store.Close()
	store, err = boltstore.Open(path)
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	b, _, err := store.Load(ctx, "app:partition")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("after reopening: %s\n", b)
	// Output:
	// stale write: true
	// second open: true
	// after reopening: token cache v2
}
