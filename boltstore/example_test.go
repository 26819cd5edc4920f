package boltstore_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/msalcache/msalcache/boltstore"
	"github.com/msalcache/msalcache/driver"
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
	v, err := store.Save(ctx, "app:partition", []byte("token cache v1"), driver.NoVersion, 24*time.Hour)
	if err != nil {
		log.Fatal(err)
	}
	// A writer that read v updates; one that read an older version loses.
	if _, err := store.Save(ctx, "app:partition", []byte("token cache v2"), v, 24*time.Hour); err != nil {
		log.Fatal(err)
	}
	_, err = store.Save(ctx, "app:partition", []byte("stale"), v, 24*time.Hour)
	fmt.Println("stale write:", errors.Is(err, driver.ErrConflict))

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

// Open fails with the first option it cannot honour, before it touches the
// file, and says what to pass instead.
func ExampleOpen_invalidOption() {
	_, err := boltstore.Open("msalcache.db", boltstore.WithSweepInterval(-time.Second))
	fmt.Println(err)
	// Output:
	// boltstore: open msalcache.db: WithSweepInterval(-1s): pass a positive duration, or omit the option for the default 1m0s
}

// ExampleWithReadOnly opens a store for reading only, as a tool that
// inspects a file must: nothing is created or written, and a missing file
// is an error.
func ExampleWithReadOnly() {
	dir, err := os.MkdirTemp("", "boltstore-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "msalcache.db")
	ctx := context.Background()

	_, err = boltstore.Open(path, boltstore.WithReadOnly())
	fmt.Println("missing file:", errors.Is(err, fs.ErrNotExist))

	store, err := boltstore.Open(path)
	if err != nil {
		log.Fatal(err)
	}
	if _, err := store.Save(ctx, "app:partition", []byte("token cache"), driver.NoVersion, time.Hour); err != nil {
		log.Fatal(err)
	}
	store.Close()

	ro, err := boltstore.Open(path, boltstore.WithReadOnly())
	if err != nil {
		log.Fatal(err)
	}
	defer ro.Close()
	value, _, err := ro.Load(ctx, "app:partition")
	fmt.Println("load:", string(value), err)
	_, err = ro.Save(ctx, "app:partition", nil, driver.NoVersion, 0)
	fmt.Println("save:", errors.Is(err, boltstore.ErrReadOnly))
	// Output:
	// missing file: true
	// load: token cache <nil>
	// save: true
}

// ExampleCheck runs the consistency check that the msalcache command's
// doctor runs, without opening the file for writing.
func ExampleCheck() {
	dir, err := os.MkdirTemp("", "boltstore-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "msalcache.db")
	store, err := boltstore.Open(path)
	if err != nil {
		log.Fatal(err)
	}
	store.Close()

	fmt.Println("check:", boltstore.Check(context.Background(), path))
	// Output:
	// check: <nil>
}

// ExampleWithRefuseDamaged opens a damaged file: by default Open moves it
// aside and starts an empty one (logging what was lost); with
// WithRefuseDamaged it fails and leaves the file for an operator.
func ExampleWithRefuseDamaged() {
	dir, err := os.MkdirTemp("", "boltstore-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "msalcache.db")
	store, err := boltstore.Open(path)
	if err != nil {
		log.Fatal(err)
	}
	store.Close()
	// Damage the file: cut it after its two meta pages, as a full disk
	// or a bad copy might.
	if err := os.Truncate(path, 2*int64(os.Getpagesize())); err != nil {
		log.Fatal(err)
	}

	_, err = boltstore.Open(path, boltstore.WithRefuseDamaged())
	fmt.Println("refused:", errors.Is(err, boltstore.ErrDamaged))

	quiet := slog.New(slog.DiscardHandler) // in production: the application's logger
	store, err = boltstore.Open(path, boltstore.WithLogger(quiet))
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	moved, _ := filepath.Glob(path + ".damaged-*")
	fmt.Println("moved aside:", len(moved))
	// Output:
	// refused: true
	// moved aside: 1
}
