package msalcache_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/memstore"
)

// refusingStore stands in for a Redis whose ACL user may not SUBSCRIBE:
// its Watch reports ChangeWatchDenied, as redisstore does.
type refusingStore struct{ *memstore.Store }

func (refusingStore) Watch(_ context.Context, fn func(driver.Change)) (func(), error) {
	fn(driver.Change{Kind: driver.ChangeWatchDenied,
		Err: fmt.Errorf("%w: NOPERM (grant +subscribe)", driver.ErrWatchDenied)})
	return func() {}, nil
}

// ExampleErrWatchDenied shows an L1 whose watch the store refuses: New
// succeeds, the Adapter logs one warning and works from the store, and
// Stats says the L1 is off, so a dashboard need not guess from a hit
// count of zero.
func ExampleErrWatchDenied() {
	denied := make(chan error, 1)
	obs := observe.Func(func(_ context.Context, e observe.Event) {
		if e.Reason == observe.ReasonWatchDenied {
			denied <- driver.ErrWatchDenied
		}
	})
	a, err := msalcache.New(refusingStore{memstore.New()}, msalcache.WithPlaintext(),
		msalcache.WithL1(msalcache.L1Options{}), msalcache.WithObserver(obs),
		msalcache.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer a.Close()
	fmt.Println("L1 off:", a.Stats().L1WatchDenied)
	fmt.Println("event:", errors.Is(<-denied, driver.ErrWatchDenied))
	// Output:
	// L1 off: true
	// event: true
}
