package msalcache

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/cache"
)

// watchStore is a mapStore that reports its changes to every watcher in
// the process, as memstore and boltstore do, counts the calls that reach
// it, and can answer version-only reads.
type watchStore struct {
	*mapStore
	loads, probes atomic.Int64

	mu       sync.Mutex
	watchers map[int]func(driver.Change)
	next     int
	onLoad   func() // run inside Load, after the value is read
}

func newWatchStore() *watchStore {
	return &watchStore{mapStore: newMapStore(), watchers: map[int]func(driver.Change){}}
}

func (s *watchStore) Load(ctx context.Context, key string) ([]byte, driver.Version, error) {
	s.loads.Add(1)
	b, v, err := s.mapStore.Load(ctx, key)
	if f := s.onLoad; f != nil {
		f()
	}
	return b, v, err
}

func (s *watchStore) Save(ctx context.Context, key string, value []byte, ifv driver.Version, ttl time.Duration) (driver.Version, error) {
	v, err := s.mapStore.Save(ctx, key, value, ifv, ttl)
	if err == nil {
		s.push(driver.Change{Kind: driver.ChangeKey, Key: key, Version: v})
	}
	return v, err
}

func (s *watchStore) Delete(ctx context.Context, key string) error {
	err := s.mapStore.Delete(ctx, key)
	s.push(driver.Change{Kind: driver.ChangeKey, Key: key})
	return err
}

func (s *watchStore) push(c driver.Change) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, fn := range s.watchers {
		fn(c)
	}
}

func (s *watchStore) Watch(_ context.Context, fn func(driver.Change)) (func(), error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := s.next
	s.next++
	s.watchers[id] = fn
	fn(driver.Change{Kind: driver.ChangeWatchUp})
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(s.watchers, id)
	}, nil
}

// probeStore is a store that cannot push but can read versions.
type probeStore struct{ *watchStore }

func (s probeStore) Watch() {} // hides watchStore.Watch: not a Watcher

func (s probeStore) Version(ctx context.Context, key string) (driver.Version, error) {
	s.probes.Add(1)
	s.mapStore.mu.Lock()
	defer s.mapStore.mu.Unlock()
	v, ok := s.vers[key]
	if !ok {
		return driver.NoVersion, driver.ErrNotFound
	}
	return v, nil
}

const l1Token = `{"AccessToken":{"at":{"client_id":"c","realm":"t","expires_on":"1900000000","secret":"%s"}}}`

func newL1Adapter(t *testing.T, s driver.Store, o L1Options) *Adapter {
	t.Helper()
	a := newTestAdapter(t, s, WithL1(o))
	t.Cleanup(func() { a.Close() })
	return a
}

// writeApp stores an app token with secret through a, as MSAL's Export
// after a token request does.
func writeApp(t *testing.T, a *Adapter, secret string) {
	t.Helper()
	c := &target{}
	if err := a.Replace(ctx, c, cache.ReplaceHints{PartitionKey: appKey}); err != nil {
		t.Fatal(err)
	}
	c.data = []byte(fmt.Sprintf(l1Token, secret))
	if err := a.Export(ctx, c, cache.ExportHints{PartitionKey: appKey}); err != nil {
		t.Fatal(err)
	}
}

// readApp returns what a fresh client of a is handed for the app partition.
func readApp(t *testing.T, a *Adapter, c *target) string {
	t.Helper()
	if c == nil {
		c = &target{}
	}
	if err := a.Replace(ctx, c, cache.ReplaceHints{PartitionKey: appKey}); err != nil {
		t.Fatal(err)
	}
	return string(c.data)
}

// A new client per request is served from memory; a write on another
// instance reaches this one before its next call, through the store's push.
func TestL1ServesFromMemoryAndIsToldOfOtherWriters(t *testing.T) {
	s := newWatchStore()
	a, b := newL1Adapter(t, s, L1Options{}), newL1Adapter(t, s, L1Options{})
	writeApp(t, a, "one")
	if got := readApp(t, b, nil); got != fmt.Sprintf(l1Token, "one") {
		t.Fatalf("b read %q", got)
	}
	loads := s.loads.Load()
	for range 10 {
		if got := readApp(t, b, nil); got != fmt.Sprintf(l1Token, "one") {
			t.Fatalf("b read %q from its L1", got)
		}
	}
	if n := s.loads.Load() - loads; n != 0 {
		t.Fatalf("10 fresh clients caused %d loads; the L1 should serve them", n)
	}
	if st := b.Stats(); st.L1Hits < 10 || st.L1Entries != 1 || st.L1Bytes <= 0 {
		t.Fatalf("stats %+v", st)
	}
	writeApp(t, a, "two") // a's write is pushed to b
	if got := readApp(t, b, nil); got != fmt.Sprintf(l1Token, "two") {
		t.Fatalf("after another instance wrote, b served %q", got)
	}
	// A sign-out (Remove) on a reaches b too.
	if err := a.Remove(ctx, appKey); err != nil {
		t.Fatal(err)
	}
	if got := readApp(t, b, nil); got != "{}" {
		t.Fatalf("after Remove on another instance, b served %q", got)
	}
}

// A client that already holds the confirmed version is served with no I/O
// at all, even with VersionsOnly.
func TestL1HeldVersionNeedsNoIO(t *testing.T) {
	s := newWatchStore()
	a := newL1Adapter(t, s, L1Options{VersionsOnly: true})
	writeApp(t, a, "one")
	c := &target{}
	readApp(t, a, c) // loads: VersionsOnly keeps no data
	loads := s.loads.Load()
	for range 5 {
		readApp(t, a, c)
	}
	if n := s.loads.Load() - loads; n != 0 {
		t.Fatalf("a client holding the confirmed version caused %d loads", n)
	}
	if got := readApp(t, a, nil); got != fmt.Sprintf(l1Token, "one") {
		t.Fatalf("a new client read %q", got)
	}
	if n := s.loads.Load() - loads; n != 1 {
		t.Fatalf("with VersionsOnly a new client caused %d loads, want 1", n)
	}
	if st := a.Stats(); st.L1Bytes != int64(st.L1Entries)*int64(l1Overhead+len(a.StoreKey(appKey))) {
		t.Fatalf("VersionsOnly keeps %d bytes for %d entries", st.L1Bytes, st.L1Entries)
	}
}

// A change that arrives while a load is in flight wins over what the load
// returned: the L1 never keeps a version it was told is gone.
func TestL1ChangeDuringLoadIsNotOverwritten(t *testing.T) {
	s := newWatchStore()
	a, b := newL1Adapter(t, s, L1Options{}), newL1Adapter(t, s, L1Options{})
	writeApp(t, a, "one")
	s.onLoad = func() {
		s.onLoad = nil
		writeApp(t, a, "two") // lands after b's load read "one"
	}
	if got := readApp(t, b, nil); got != fmt.Sprintf(l1Token, "one") {
		t.Fatalf("b's load read %q", got)
	}
	if got := readApp(t, b, nil); got != fmt.Sprintf(l1Token, "two") {
		t.Fatalf("b kept the version a wrote over during its load: %q", got)
	}
}

// While the store cannot report changes, the L1 is bypassed; when it can
// again, the L1 starts afresh.
func TestL1BypassedWhileTheWatchIsDown(t *testing.T) {
	s := newWatchStore()
	a := newL1Adapter(t, s, L1Options{})
	writeApp(t, a, "one")
	readApp(t, a, nil)
	s.push(driver.Change{Kind: driver.ChangeWatchDown})
	loads := s.loads.Load()
	readApp(t, a, nil)
	readApp(t, a, nil)
	if n := s.loads.Load() - loads; n != 2 {
		t.Fatalf("with the watch down, 2 fresh clients caused %d loads, want 2", n)
	}
	s.push(driver.Change{Kind: driver.ChangeWatchUp})
	readApp(t, a, nil)
	loads = s.loads.Load()
	readApp(t, a, nil)
	if n := s.loads.Load() - loads; n != 0 {
		t.Fatalf("with the watch up again, a fresh client caused %d loads", n)
	}
}

// MaxStale bounds how long an entry is trusted on every store: a store that
// cannot push is asked for the version only, and a store that cannot do
// that either is loaded from.
func TestL1MaxStaleRevalidates(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	clock := func() time.Time { return now }
	for _, tc := range []struct {
		name   string
		store  func(*watchStore) driver.Store
		probes int64
		loads  int64
	}{
		{"probe", func(s *watchStore) driver.Store { return probeStore{s} }, 1, 0},
		{"load", func(s *watchStore) driver.Store { return s.mapStore }, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ws := newWatchStore()
			s := tc.store(ws)
			a := newL1Adapter(t, s, L1Options{MaxStale: time.Second})
			a.cfg.now, a.l1.now = clock, clock
			writeApp(t, a, "one")
			readApp(t, a, nil)
			before := a.Stats()
			now = now.Add(500 * time.Millisecond)
			readApp(t, a, nil)
			if st := a.Stats(); st.L1Hits != before.L1Hits+1 || st.Hits != before.Hits {
				t.Fatalf("within MaxStale: %+v then %+v", before, st)
			}
			// Another writer, unseen (the store cannot push).
			if _, err := ws.mapStore.Save(ctx, a.StoreKey(appKey), []byte(fmt.Sprintf(l1Token, "two")), 1, 0); err != nil {
				t.Fatal(err)
			}
			now = now.Add(time.Second)
			if got := readApp(t, a, nil); got != fmt.Sprintf(l1Token, "two") {
				t.Fatalf("past MaxStale the L1 served %q", got)
			}
			now = now.Add(2 * time.Second)
			probes := ws.probes.Load()
			readApp(t, a, nil)
			if got := ws.probes.Load() - probes; got != tc.probes {
				t.Fatalf("%d version probes past MaxStale, want %d", got, tc.probes)
			}
		})
	}
}

// MaxBytes bounds the data kept; the least recently used partition goes.
func TestL1MaxBytesEvictsLeastRecentlyUsed(t *testing.T) {
	s := newWatchStore()
	a := newL1Adapter(t, s, L1Options{MaxBytes: 3 * (l1Overhead + 100)})
	for i := range 6 {
		c := &target{}
		pk := fmt.Sprintf("user%d", i)
		if err := a.Replace(ctx, c, cache.ReplaceHints{PartitionKey: pk}); err != nil {
			t.Fatal(err)
		}
		c.data = []byte(fmt.Sprintf(`{"RefreshToken":{"rt":{"home_account_id":%q,"secret":"s"}}}`, pk))
		if err := a.Export(ctx, c, cache.ExportHints{PartitionKey: pk}); err != nil {
			t.Fatal(err)
		}
	}
	if st := a.Stats(); st.L1Entries > 3 || st.L1Bytes > 3*(l1Overhead+100) {
		t.Fatalf("the L1 holds %d entries, %d bytes, past MaxBytes", st.L1Entries, st.L1Bytes)
	}
}

func TestWithL1RefusesBadOptions(t *testing.T) {
	for _, o := range []L1Options{{MaxBytes: -1}, {MaxStale: -time.Second}} {
		if _, err := New(newMapStore(), WithPlaintext(), WithL1(o)); err == nil {
			t.Errorf("WithL1(%+v) accepted", o)
		}
	}
}

// A long-lived client that loaded its partition while the watch was down
// fills the L1 once the watch is up, though every later call finds MSAL
// holding the stored version (found by TestWireFaultInvalidationCut, whose
// watch came up after the first load on a loaded machine: the L1 stayed
// empty and every call went to the store).
func TestL1LearnsWhatAClientAlreadyHolds(t *testing.T) {
	s := newWatchStore()
	a := newL1Adapter(t, s, L1Options{})
	writeApp(t, a, "one")
	s.push(driver.Change{Kind: driver.ChangeWatchDown})
	c := &target{}
	readApp(t, a, c) // loaded while the L1 is bypassed
	s.push(driver.Change{Kind: driver.ChangeWatchUp})
	readApp(t, a, c) // MSAL holds the stored version: reused
	loads := s.loads.Load()
	for range 3 {
		if got := readApp(t, a, c); got != fmt.Sprintf(l1Token, "one") {
			t.Fatalf("the long-lived client read %q", got)
		}
		if got := readApp(t, a, nil); got != fmt.Sprintf(l1Token, "one") {
			t.Fatalf("a new client read %q", got)
		}
	}
	if n := s.loads.Load() - loads; n != 0 {
		t.Fatalf("%d loads after the L1 saw the version a client held: it did not learn it", n)
	}
}
