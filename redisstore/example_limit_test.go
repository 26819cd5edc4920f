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

	_, err := store.Save(context.Background(), "partition", make([]byte, 2<<20), msalcache.NoVersion, time.Hour)
	fmt.Println(errors.Is(err, msalcache.ErrTooLarge))
	fmt.Println(err)
	// Output:
	// true
	// redisstore: save: 2097152 bytes, limit 1048576: msalcache: value too large
}
