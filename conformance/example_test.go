package conformance_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/msalcache/msalcache/conformance"
	"github.com/msalcache/msalcache/driver"
	"github.com/msalcache/msalcache/memstore"
)

// harness is what a store's author writes in the store's _test.go file.
// memstore stands in for the author's store here; a store over a server
// would keep the server's client in the harness and give every store a
// fresh prefix, table or file.
type harness struct{}

// newHarness is the conformance.HarnessMaker the suites call once per
// subtest.
func newHarness(context.Context, *testing.T) (conformance.Harness, error) {
	return harness{}, nil
}

// MakeStore returns an empty store; the suites close it.
func (harness) MakeStore(context.Context, *testing.T) (driver.Store, error) {
	return memstore.New(), nil
}

// Close releases what the harness opened: nothing here.
func (harness) Close() {}

// Limits makes the harness a conformance.Limiter, which declares the
// store's documented limits. A store that keeps bytes would also
// implement conformance.RawPutter (PutRaw and CorruptRecords), and one
// that pushes changes over a connection conformance.HandleOpener and
// conformance.WatchBreaker.
func (harness) Limits() conformance.Limits {
	return conformance.Limits{MaxValueSize: 1 << 20}
}

// storeTests are the store's tests: in its _test.go file they are
// TestConformance and TestMSAL, the functions go test runs.
var storeTests = map[string]func(t *testing.T){
	"TestConformance": func(t *testing.T) { conformance.RunStoreTests(t, newHarness) },
	"TestMSAL":        func(t *testing.T) { conformance.RunMSALTests(t, newHarness, conformance.MSALSetup{}) },
}

// Example shows what a store's author writes to hold the store to the
// contract: a Harness that makes empty stores, the optional capabilities
// it implements, and the two tests that run the suites with it. It prints
// what the suites find on the Harness and checks the first rule the store
// suite holds a store to.
func Example() {
	ctx := context.Background()
	h, err := newHarness(ctx, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer h.Close()
	_, limiter := h.(conformance.Limiter)
	_, raw := h.(conformance.RawPutter)
	_, handles := h.(conformance.HandleOpener)
	_, breaks := h.(conformance.WatchBreaker)
	fmt.Printf("Limiter %v, RawPutter %v, HandleOpener %v, WatchBreaker %v\n", limiter, raw, handles, breaks)

	s, err := h.MakeStore(ctx, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Close()
	if _, err := s.Save(ctx, "k", []byte("v"), driver.NoVersion, 0); err != nil {
		fmt.Println(err)
		return
	}
	_, err = s.Save(ctx, "k", []byte("w"), driver.NoVersion, 0)
	fmt.Println("a second create conflicts:", err != nil)
	fmt.Println(len(storeTests), "tests")
	// Output:
	// Limiter true, RawPutter false, HandleOpener false, WatchBreaker false
	// a second create conflicts: true
	// 2 tests
}
