package msalcache

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/cache"

	"github.com/msalcache/msalcache/internal/wait"
)

// downStore fails every call while down, and counts the calls that reach
// it.
type downStore struct {
	*mapStore
	down  atomic.Bool
	calls atomic.Int64
}

var errInjected = errors.New("store down (injected)")

func (s *downStore) Load(ctx context.Context, key string) ([]byte, driver.Version, error) {
	if !strings.HasSuffix(key, "breaker-probe") { // the probe's own calls are not counted
		s.calls.Add(1)
	}
	if s.down.Load() {
		return nil, driver.NoVersion, errInjected
	}
	return s.mapStore.Load(ctx, key)
}

func (s *downStore) Save(ctx context.Context, key string, v []byte, ifv driver.Version, ttl time.Duration) (driver.Version, error) {
	s.calls.Add(1)
	if s.down.Load() {
		return driver.NoVersion, errInjected
	}
	return s.mapStore.Save(ctx, key, v, ifv, ttl)
}

func (s *downStore) Delete(ctx context.Context, key string) error {
	s.calls.Add(1)
	if s.down.Load() {
		return errInjected
	}
	return s.mapStore.Delete(ctx, key)
}

func waitBreakerClosed(t *testing.T, a *Adapter) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	// The breaker closes, then flushes what it kept.
	for st := a.Stats(); st.BreakerOpen || st.PendingWrites != 0; st = a.Stats() {
		if time.Now().After(deadline) {
			t.Fatalf("the breaker is still open, or its writes pending, 10 s after the store came back: %+v", st)
		}
		time.Sleep(time.Millisecond)
	}
}

// After the first failure the store is not called again until a probe
// finds it back: Replace keeps what MSAL holds, Export and Remove are kept
// and written, with compare-and-set, once the store answers.
func TestBreakerKeepsCallsFromAFailedStore(t *testing.T) {
	s := &downStore{mapStore: newMapStore()}
	a := newTestAdapter(t, s)
	alice := &target{}
	if err := a.Replace(ctx, alice, cache.ReplaceHints{PartitionKey: "alice"}); err != nil {
		t.Fatal(err)
	}
	alice.data = []byte(aliceCache)
	if err := a.Export(ctx, alice, cache.ExportHints{PartitionKey: "alice"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Save(ctx, a.StoreKey("carol"), []byte(`{"Account":{"carol":{"home_account_id":"carol"}}}`), driver.NoVersion, 0); err != nil {
		t.Fatal(err)
	}

	s.down.Store(true)
	if err := a.Replace(ctx, alice, cache.ReplaceHints{PartitionKey: "bob"}); err != nil { // fails, trips
		t.Fatal(err)
	}
	if st := a.Stats(); !st.BreakerOpen || st.BreakerTrips != 1 {
		t.Fatalf("after a store failure: %+v, want the breaker open", st)
	}
	calls := s.calls.Load()
	for range 10 {
		if err := a.Replace(ctx, alice, cache.ReplaceHints{PartitionKey: "alice"}); err != nil {
			t.Fatal(err)
		}
	}
	if string(alice.data) != aliceCache {
		t.Fatalf("during the outage MSAL's cache became %q; what it held must stay", alice.data)
	}
	bob := &target{data: []byte(bobCache)}
	if err := a.Export(ctx, bob, cache.ExportHints{PartitionKey: "bob"}); err != nil {
		t.Fatal(err)
	}
	if err := a.Remove(ctx, "carol"); !errors.Is(err, ErrRemovalPending) {
		t.Fatalf("Remove during the outage: %v, want ErrRemovalPending", err)
	}
	if n := s.calls.Load() - calls; n != 0 {
		t.Fatalf("%d store calls with the breaker open", n)
	}
	if st := a.Stats(); st.PendingWrites != 1 || st.PendingRemovals != 1 || st.BreakerSkips < 10 {
		t.Fatalf("during the outage: %+v, want bob's write and carol's removal pending", st)
	}

	s.down.Store(false)
	waitBreakerClosed(t, a)
	wait.For(t, "carol's removal stored after the outage", func() bool { return a.Stats().PendingRemovals == 0 })
	if st := a.Stats(); st.PendingWrites != 0 || st.PendingFlushed != 1 {
		t.Fatalf("after the outage: %+v, want bob's pending write flushed", st)
	}
	if got, _, err := s.mapStore.Load(ctx, a.StoreKey("bob")); err != nil || string(got) != bobCache {
		t.Fatalf("bob's partition after the outage: %q, %v", got, err)
	}
	if got, _, err := s.mapStore.Load(ctx, a.StoreKey("carol")); err != nil || !IsRemovalRecord(got) {
		t.Fatalf("carol's partition after the outage: %q, %v, want a removal record", got, err)
	}
}

// A write kept during the outage and a later one of the same partition,
// after the store came back but before the flush reached it, are merged:
// nothing of either is lost.
func TestBreakerPendingWriteTakenInByTheNextExport(t *testing.T) {
	s := &downStore{mapStore: newMapStore()}
	a := newTestAdapter(t, s, WithBreaker(BreakerOptions{ProbeMax: time.Hour}))
	s.down.Store(true)
	c := &target{}
	if err := a.Replace(ctx, c, cache.ReplaceHints{PartitionKey: "alice"}); err != nil {
		t.Fatal(err)
	}
	c.data = []byte(`{"RefreshToken":{"rt1":{"home_account_id":"alice","secret":"one"}}}`)
	if err := a.Export(ctx, c, cache.ExportHints{PartitionKey: "alice"}); err != nil {
		t.Fatal(err)
	}
	other := &target{data: []byte(`{"RefreshToken":{"rt2":{"home_account_id":"alice","secret":"two"}}}`)}
	s.down.Store(false)
	// Close the breaker by hand, as the probe does, without flushing.
	b := a.brk
	sh := b.shardOf(a.StoreKey("alice"))
	b.mu.Lock()
	sh.open.Store(false)
	b.opened.Add(-1)
	sh.epoch.Store(newEpoch())
	b.mu.Unlock()
	if err := a.Export(ctx, other, cache.ExportHints{PartitionKey: "alice"}); err != nil {
		t.Fatal(err)
	}
	got, _, err := s.mapStore.Load(ctx, a.StoreKey("alice"))
	if err != nil || !strings.Contains(string(got), `"one"`) || !strings.Contains(string(got), `"two"`) {
		t.Fatalf("alice's partition = %s, %v: want both refresh tokens", got, err)
	}
	if st := a.Stats(); st.PendingWrites != 0 || st.PendingFlushed != 1 {
		t.Fatalf("%+v: the kept write must be taken in once", st)
	}
}

// The pending writes are bounded; one beyond the bound is dropped and
// counted, and the token stays served from memory.
func TestBreakerBoundsPendingWrites(t *testing.T) {
	s := &downStore{mapStore: newMapStore()}
	a := newTestAdapter(t, s, WithBreaker(BreakerOptions{MaxPending: 1}))
	s.down.Store(true)
	for _, user := range []string{"alice", "bob"} {
		c := &target{data: []byte(`{"RefreshToken":{"rt":{"home_account_id":"` + user + `","secret":"s"}}}`)}
		if err := a.Export(ctx, c, cache.ExportHints{PartitionKey: user}); err != nil {
			t.Fatal(err)
		}
	}
	if st := a.Stats(); st.PendingWrites != 1 || st.PendingDropped != 1 {
		t.Fatalf("%+v: want one write pending and one dropped", st)
	}
}

// With the breaker disabled every call waits on the store, as before.
func TestBreakerDisabled(t *testing.T) {
	s := &downStore{mapStore: newMapStore()}
	a := newTestAdapter(t, s, WithBreaker(BreakerOptions{Disabled: true}))
	s.down.Store(true)
	c := &target{}
	for range 3 {
		if err := a.Replace(ctx, c, cache.ReplaceHints{PartitionKey: "alice"}); err != nil {
			t.Fatal(err)
		}
	}
	if n := s.calls.Load(); n != 3 {
		t.Fatalf("%d store calls for 3 Replace calls with the breaker disabled", n)
	}
	if st := a.Stats(); st.BreakerOpen || st.BreakerTrips != 0 {
		t.Fatalf("%+v", st)
	}
}

func TestWithBreakerRejectsNegatives(t *testing.T) {
	for _, o := range []BreakerOptions{{Failures: -1}, {ProbeMax: -time.Second}, {MaxPending: -1}, {MaxPendingBytes: -1}} {
		if _, err := New(newMapStore(), WithPlaintext(), WithBreaker(o)); err == nil {
			t.Errorf("WithBreaker(%+v) accepted", o)
		}
	}
}

// conflictStore loses every compare-and-set while conflicting is set, as
// a partition that other writers keep rewriting would.
type conflictStore struct {
	downStore
	conflicting atomic.Bool
}

func (s *conflictStore) Save(ctx context.Context, key string, v []byte, ifv driver.Version, ttl time.Duration) (driver.Version, error) {
	if s.conflicting.Load() && !s.down.Load() {
		return driver.NoVersion, driver.ErrConflict
	}
	return s.downStore.Save(ctx, key, v, ifv, ttl)
}

// A write kept during an outage whose flush keeps losing compare-and-set
// until its deadline is kept again and stored once it can be: never
// dropped as if the store had refused it for good.
func TestBreakerKeptWriteThatKeepsConflicting(t *testing.T) {
	s := &conflictStore{downStore: downStore{mapStore: newMapStore()}}
	a := newTestAdapter(t, s, WithTimeout(100*time.Millisecond), WithBreaker(BreakerOptions{ProbeMax: 20 * time.Millisecond}))
	s.down.Store(true)
	c := &target{}
	if err := a.Replace(ctx, c, cache.ReplaceHints{PartitionKey: "alice"}); err != nil {
		t.Fatal(err)
	}
	c.data = []byte(aliceCache)
	if err := a.Export(ctx, c, cache.ExportHints{PartitionKey: "alice"}); err != nil {
		t.Fatal(err)
	}
	if st := a.Stats(); st.PendingWrites != 1 {
		t.Fatalf("during the outage: %+v, want alice's write kept", st)
	}
	s.conflicting.Store(true)
	s.down.Store(false)
	// The probe finds the store back and the flush loses every
	// compare-and-set until its deadline, at least once.
	wait.For(t, "a flush that lost compare-and-set until its deadline", func() bool { return a.Stats().Conflicts > 3 })
	if st := a.Stats(); st.PendingDropped != 0 {
		t.Fatalf("a write that lost compare-and-set was dropped: %+v", st)
	}
	s.conflicting.Store(false)
	// Stored, and the flush that stored it ended (it counts after it
	// writes).
	wait.For(t, "the kept write stored", func() bool {
		got, _, err := s.mapStore.Load(ctx, a.StoreKey("alice"))
		return err == nil && string(got) == aliceCache && a.Stats().PendingWrites == 0
	})
	if st := a.Stats(); st.PendingDropped != 0 || st.PendingWrites != 0 {
		t.Fatalf("after the flush: %+v, want nothing dropped or pending", st)
	}
}
