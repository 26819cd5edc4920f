package msalcache

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/cache"
)

// The handler hears every absorbed store failure, once, with its
// operation, the partition's fingerprint and the store's error; the token
// call itself does not fail.
func TestStoreErrorHandler(t *testing.T) {
	var mu sync.Mutex
	var got []StoreError
	s := &downStore{mapStore: newMapStore()}
	a := newTestAdapter(t, s, WithBreaker(BreakerOptions{Disabled: true}),
		WithStoreErrorHandler(func(_ context.Context, e StoreError) {
			mu.Lock()
			defer mu.Unlock()
			got = append(got, e)
		}))
	signInWhileDown(t, a, s)
	st := a.Stats()
	mu.Lock()
	defer mu.Unlock()
	if uint64(len(got)) != st.StoreErrors || len(got) < 2 {
		t.Fatalf("%d reports for %d store errors", len(got), st.StoreErrors)
	}
	if got[0].Op != "replace" || got[len(got)-1].Op != "export" {
		t.Fatalf("operations %q ... %q, want replace first and export last", got[0].Op, got[len(got)-1].Op)
	}
	for _, e := range got {
		if !errors.Is(e.Err, errInjected) {
			t.Errorf("reported error %v is not the store's", e.Err)
		}
		if e.Key != fingerprint(a.StoreKey("alice")) || strings.Contains(e.Key, "alice") {
			t.Errorf("reported key %q, want the partition's fingerprint", e.Key)
		}
	}
}

// signInWhileDown takes s down and runs alice's Replace and Export through
// a, as a sign-in during an outage does; neither may fail.
func signInWhileDown(t *testing.T, a *Adapter, s *downStore) {
	t.Helper()
	s.down.Store(true)
	c := &target{}
	if err := a.Replace(ctx, c, cache.ReplaceHints{PartitionKey: "alice"}); err != nil {
		t.Fatal(err)
	}
	c.data = []byte(aliceCache)
	if err := a.Export(ctx, c, cache.ExportHints{PartitionKey: "alice"}); err != nil {
		t.Fatal(err)
	}
}

// With the breaker on, the failure that opens it is reported, and the
// calls it then keeps from the store are not failures.
func TestStoreErrorHandlerWithBreaker(t *testing.T) {
	var n int
	s := &downStore{mapStore: newMapStore()}
	a := newTestAdapter(t, s, WithStoreErrorHandler(func(context.Context, StoreError) { n++ }))
	s.down.Store(true)
	for range 5 {
		if err := a.Replace(ctx, &target{}, cache.ReplaceHints{PartitionKey: "alice"}); err != nil {
			t.Fatal(err)
		}
	}
	if n != 1 {
		t.Fatalf("%d reports, want 1: the failure that opened the breaker", n)
	}
	if _, err := New(newMapStore(), WithPlaintext(), WithStoreErrorHandler(nil)); err == nil {
		t.Fatal("WithStoreErrorHandler(nil) accepted")
	}
}
