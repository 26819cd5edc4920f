package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/redisstore"
	"github.com/redis/go-redis/v9"
)

// A value over the limit is refused before anything is sent, so this
// example needs no server: nothing listens on port 1.
func ExampleWithMaxValueSize() {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer c.Close()
	store := redisstore.New(c, redisstore.WithMaxValueSize(1<<20))

	_, err := store.Save(context.Background(), "partition", make([]byte, 2<<20), driver.NoVersion, time.Hour)
	fmt.Println(errors.Is(err, driver.ErrTooLarge))
	fmt.Println(err)
	// Output:
	// true
	// redisstore: save: 2097152 bytes, limit 1048576: msalcache: value too large
}

// New returns no error, so an option it cannot honour makes every call of
// the store fail with an error that says what to pass; nothing is sent,
// and nothing listens on port 1 here.
func ExampleNew_invalidOption() {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer c.Close()
	store := redisstore.New(c, redisstore.WithMaxValueSize(-1))

	_, _, err := store.Load(context.Background(), "partition")
	fmt.Println(err)
	// Output:
	// redisstore: load: WithMaxValueSize(-1): pass a positive size in bytes, or omit the option for the default 64 MiB
}
