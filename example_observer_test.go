package msalcache_test

import (
	"context"
	"fmt"
	"log"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/memstore"
)

// An Observer hears every operation: here one that prints them, and a
// StatsCounter that counts two Adapters together. Package msalcacheotel
// provides one that records OpenTelemetry metrics and spans.
func ExampleWithObserver() {
	ctx := context.Background()
	printer := observe.Func(func(_ context.Context, e observe.Event) {
		fmt.Println(e.Op, e.Outcome, e.Store)
	})
	farm := &msalcache.StatsCounter{}
	store := memstore.New()
	defer store.Close()
	for range 2 {
		adapter, err := msalcache.New(store, msalcache.WithPlaintext(),
			msalcache.WithObserver(printer), msalcache.WithObserver(farm))
		if err != nil {
			log.Fatal(err)
		}
		// After client.RemoveAccount(ctx, account):
		if err := adapter.Remove(ctx, "00000000-0000-0000-0000-000000000001.contoso"); err != nil {
			log.Fatal(err)
		}
	}
	fmt.Println("deletes:", farm.Stats().Deletes)
	// Output:
	// remove deleted memory
	// remove deleted memory
	// deletes: 2
}
