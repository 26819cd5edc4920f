package memcachestore_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/memcachestore"
)

// Example shares one token cache between the instances of an application
// through two memcached servers. It needs the servers, so it only compiles.
func Example() {
	mc := memcache.New("10.0.0.1:11211", "10.0.0.2:11211")
	mc.Timeout = 200 * time.Millisecond // bounds every call, ctx or not
	store := memcachestore.New(mc, memcachestore.WithPrefix("myapp:"))
	defer store.Close()

	adapter, err := msalcache.New(store, msalcache.WithPlaintext())
	if err != nil {
		log.Fatal(err)
	}
	_ = adapter // pass adapter to MSAL as its cache accessor
}

// Example_limits shows the checks that fail before anything is sent, so
// it runs without a server.
func Example_limits() {
	store := memcachestore.New(memcache.New("127.0.0.1:11211"))
	defer store.Close()
	ctx := context.Background()

	big := make([]byte, store.MaxValueSize()+1)
	_, err := store.Save(ctx, "partition", big, driver.NoVersion, time.Hour)
	fmt.Println("too large:", errors.Is(err, driver.ErrTooLarge))

	_, _, err = store.Load(ctx, "not a memcached key")
	fmt.Println("invalid key:", errors.Is(err, memcachestore.ErrInvalidKey))

	fmt.Println("volatile:", driver.IsVolatile(store))
	// Output:
	// too large: true
	// invalid key: true
	// volatile: true
}

// New returns no error, so an option it cannot honour makes every call of
// the store fail with an error that says what to pass, before anything is
// sent: this example needs no server.
func ExampleNew_invalidOption() {
	store := memcachestore.New(memcache.New("127.0.0.1:11211"), memcachestore.WithPrefix("my app:"))
	defer store.Close()

	_, _, err := store.Load(context.Background(), "partition")
	fmt.Println(errors.Is(err, memcachestore.ErrInvalidKey))
	fmt.Println(err)
	// Output:
	// true
	// memcachestore: load: WithPrefix("my app:"): byte 2 is 0x20, and memcached keys have no spaces or control characters; pass a prefix without them (memcachestore: invalid key)
}
