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

// Example builds a store for each Redis deployment and uses it. It needs
// the servers it names, so `go test` compiles it without running it;
// TestExampleDeployments runs the same functions against real servers.
func Example() {
	ctx := context.Background()

	single := newSingleNode("localhost:6379")
	defer single.Close()
	cluster := newCluster([]string{"10.0.0.1:6379", "10.0.0.2:6379", "10.0.0.3:6379"})
	defer cluster.Close()
	sentinel := newSentinel("mymaster", []string{"10.0.0.1:26379", "10.0.0.2:26379", "10.0.0.3:26379"})
	defer sentinel.Close()

	for _, c := range []redis.UniversalClient{single, cluster, sentinel} {
		// The store does not own the client: closing the store leaves it
		// open for the rest of the program.
		store := redisstore.New(c, redisstore.WithPrefix("myapp:"))
		got, err := saveAndUpdate(ctx, store)
		if err != nil {
			fmt.Println(err)
			continue
		}
		fmt.Println(got)
		store.Close()
	}
}

// newSingleNode connects to one Redis server.
func newSingleNode(addr string) redis.UniversalClient {
	return redis.NewClient(&redis.Options{Addr: addr})
}

// newCluster connects to a Redis Cluster through any of its nodes; the
// client discovers the rest and follows MOVED and ASK redirections.
func newCluster(addrs []string) redis.UniversalClient {
	return redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
}

// newSentinel connects to the master that the sentinels monitor under
// masterName, and follows it across failovers. redis.NewUniversalClient
// with MasterName set returns the same kind of client.
func newSentinel(masterName string, sentinels []string) redis.UniversalClient {
	return redis.NewFailoverClient(&redis.FailoverOptions{
		MasterName:    masterName,
		SentinelAddrs: sentinels,
	})
}

// saveAndUpdate creates a key, updates it with compare-and-set, shows that
// a writer holding the old version loses, and returns what is stored.
func saveAndUpdate(ctx context.Context, store driver.Store) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_ = store.Delete(ctx, "example")
	v1, err := store.Save(ctx, "example", []byte("first"), driver.NoVersion, time.Hour)
	if err != nil {
		return "", err
	}
	if _, err := store.Save(ctx, "example", []byte("second"), v1, time.Hour); err != nil {
		return "", err
	}
	if _, err := store.Save(ctx, "example", []byte("stale"), v1, time.Hour); !errors.Is(err, driver.ErrConflict) {
		return "", fmt.Errorf("stale write: got %v, want ErrConflict", err)
	}
	b, _, err := store.Load(ctx, "example")
	return string(b), err
}
