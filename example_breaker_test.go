package msalcache_test

import (
	"fmt"
	"log"
	"time"

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
