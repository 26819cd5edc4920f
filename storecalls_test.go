package msalcache

import (
	"context"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/cache"
	"github.com/msalcache/msalcache/driver"
)

// stackStore records, for each call, whether it ran on the goroutine of the
// Adapter method that made it (its frames are on the stack) or on one that
// ctxrun started; it declares ContextBounder when bounded.
type stackStore struct {
	*mapStore
	bounded bool
	direct  []bool
}

func (s *stackStore) BoundsContext() bool { return s.bounded }

func (s *stackStore) onCallerGoroutine() {
	pc := make([]uintptr, 64)
	frames := runtime.CallersFrames(pc[:runtime.Callers(2, pc)])
	for {
		f, more := frames.Next()
		// A closure of an Adapter method (load.func1) runs on either.
		if strings.Contains(f.Function, "msalcache.(*Adapter).") && !strings.Contains(f.Function, ".func") {
			s.direct = append(s.direct, true)
			return
		}
		if !more {
			s.direct = append(s.direct, false)
			return
		}
	}
}

func (s *stackStore) Load(ctx context.Context, key string) ([]byte, driver.Version, error) {
	s.onCallerGoroutine()
	return s.mapStore.Load(ctx, key)
}

func (s *stackStore) Save(ctx context.Context, key string, v []byte, ifv driver.Version, ttl time.Duration) (driver.Version, error) {
	s.onCallerGoroutine()
	return s.mapStore.Save(ctx, key, v, ifv, ttl)
}

func (s *stackStore) Delete(ctx context.Context, key string) error {
	s.onCallerGoroutine()
	return s.mapStore.Delete(ctx, key)
}

// A store that declares it bounds its calls by ctx is called on the
// caller's goroutine (no hop, no wake-up); any other store is called on a
// goroutine the Adapter can abandon when ctx ends.
func TestContextBounderCalledDirectly(t *testing.T) {
	for _, bounded := range []bool{true, false} {
		s := &stackStore{mapStore: newMapStore(), bounded: bounded}
		a := newTestAdapter(t, s)
		m := &target{}
		if err := a.Replace(ctx, m, cache.ReplaceHints{PartitionKey: "alice"}); err != nil {
			t.Fatal(err)
		}
		m.data = []byte(aliceCache)
		if err := a.Export(ctx, m, cache.ExportHints{PartitionKey: "alice"}); err != nil {
			t.Fatal(err)
		}
		if err := a.Remove(ctx, "alice"); err != nil {
			t.Fatal(err)
		}
		if len(s.direct) < 3 {
			t.Fatalf("bounded=%v: %d store calls for a Replace, an Export and a Remove", bounded, len(s.direct))
		}
		for i, d := range s.direct {
			if d != bounded {
				t.Errorf("bounded=%v: store call %d ran on the caller's goroutine=%v", bounded, i, d)
			}
		}
	}
}

// fixedStore answers every call with the same values and allocates nothing,
// so that an allocation counted around it is the Adapter's.
type fixedStore struct{ blob []byte }

func (s fixedStore) Load(context.Context, string) ([]byte, driver.Version, error) {
	return s.blob, driver.Version(1), nil
}

func (fixedStore) Save(context.Context, string, []byte, driver.Version, time.Duration) (driver.Version, error) {
	return driver.Version(2), nil
}

func (fixedStore) Delete(context.Context, string) error { return nil }
func (fixedStore) Close() error                         { return nil }
func (fixedStore) BoundsContext() bool                  { return true }

// The direct store call is on the path of every token call: the helper
// that chooses between it and the goroutine must not allocate for it (a
// capturing closure would, escaping through the goroutine path).
func TestDirectStoreCallsAllocateNothing(t *testing.T) {
	a, err := New(fixedStore{blob: []byte("value")}, WithPlaintext())
	if err != nil {
		t.Fatal(err)
	}
	if !a.direct {
		t.Fatal("fixedStore declares ContextBounder, yet the Adapter calls it on a goroutine")
	}
	ctx := context.Background()
	value := []byte("value")
	for name, call := range map[string]func(){
		"load":      func() { _, _, _ = a.load(ctx, "k") },
		"save":      func() { _, _ = a.save(ctx, "k", value, driver.Version(1), time.Minute) },
		"deleteKey": func() { _ = a.deleteKey(ctx, "k") },
	} {
		if n := testing.AllocsPerRun(100, call); n != 0 {
			t.Errorf("%s on a direct store: %v allocations per call, want 0", name, n)
		}
	}
}
