package msalcache_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/cache"
	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/memstore"
)

// The breaker is on by default; WithBreaker tunes it. Stats tell an
// operator whether the store is being skipped and what waits for it.
func ExampleWithBreaker() {
	store := memstore.New()
	defer store.Close()
	adapter, err := msalcache.New(store, msalcache.WithPlaintext(),
		msalcache.WithTimeout(500*time.Millisecond),
		msalcache.WithBreaker(msalcache.BreakerOptions{
			Failures:   3,           // three failures in a row open it
			ProbeMax:   time.Second, // the store is probed at least every second
			MaxPending: 50000,       // partitions whose writes wait for the store
		}))
	if err != nil {
		log.Fatal(err)
	}
	defer adapter.Close()
	st := adapter.Stats()
	fmt.Printf("open=%v trips=%d pending=%d\n", st.BreakerOpen, st.BreakerTrips, st.PendingWrites)
	// Output: open=false trips=0 pending=0
}

// WithStoreErrorHandler surfaces every store failure the Adapter absorbs,
// for an app's own alerting; the token call still succeeds.
func ExampleWithStoreErrorHandler() {
	store := memstore.New()
	store.Close() // a store that fails every call
	adapter, err := msalcache.New(store, msalcache.WithPlaintext(),
		msalcache.WithLogger(slog.New(slog.DiscardHandler)),
		msalcache.WithStoreErrorHandler(func(ctx context.Context, e msalcache.StoreError) {
			fmt.Printf("store failure during %s: closed=%v\n", e.Op, errors.Is(e.Err, driver.ErrClosed))
		}))
	if err != nil {
		log.Fatal(err)
	}
	defer adapter.Close()
	var c fakeCache
	if err := adapter.Replace(context.Background(), &c, cache.ReplaceHints{PartitionKey: "uid.utid"}); err != nil {
		log.Fatal(err) // not reached: a store failure is a miss
	}
	// Output: store failure during replace: closed=true
}

// fakeCache stands in for MSAL's in-memory cache.
type fakeCache struct{ data []byte }

func (c *fakeCache) Unmarshal(b []byte) error { c.data = b; return nil }
