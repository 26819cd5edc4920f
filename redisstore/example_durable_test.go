package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/redisstore"
	"github.com/redis/go-redis/v9"
)

// A write that must survive a failover: SaveDurable waits, within the
// call's deadline, for a replica to hold it. It needs a Sentinel setup,
// so `go test` compiles it without running it; TestExampleSaveDurable runs
// saveDurably against a real master and replica.
func ExampleStore_SaveDurable() {
	c := newSentinel("mymaster", []string{"10.0.0.1:26379", "10.0.0.2:26379", "10.0.0.3:26379"})
	defer c.Close()
	// The default waits for one replica where the master has any;
	// WithReplicaWait(2) would ask for two, WithReplicaWait(0) for none.
	store := redisstore.New(c, redisstore.WithPrefix("myapp:"))
	fmt.Println(saveDurably(context.Background(), store))
}

// saveDurably writes a value that must not be lost and says how sure it
// is of it.
func saveDurably(ctx context.Context, store *redisstore.Store) string {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err := store.SaveDurable(ctx, "removed-user", []byte("tombstone"), driver.NoVersion, time.Hour)
	switch {
	case errors.Is(err, driver.ErrNotReplicated):
		// Written on the master only: a failover now could lose it.
		// Keep it, and write it again later.
		return "written, not yet replicated"
	case err != nil:
		return "not written: " + err.Error()
	}
	return "written and replicated"
}

// The example's function against a real master and replica, then with the
// replica frozen.
func TestExampleSaveDurable(t *testing.T) {
	t.Parallel()
	master, replica := replicated(t)
	store := redisstore.New(newClient(t, &redis.Options{Addr: master.Addr()}))
	if got := saveDurably(context.Background(), store); got != "written and replicated" {
		t.Fatal(got)
	}
	_ = store.Delete(context.Background(), "removed-user")
	replica.Freeze()
	defer replica.Thaw()
	if got := saveDurably(context.Background(), store); got != "written, not yet replicated" {
		t.Fatal(got)
	}
}
