package memstore_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/internal/storetest"
	"github.com/msalcache/msalcache/memstore"
)

// recorder is a watcher that keeps what it was told.
type recorder struct {
	mu      sync.Mutex
	changes []driver.Change
}

func (r *recorder) fn(c driver.Change) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.changes = append(r.changes, c)
}

func (r *recorder) all() []driver.Change {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]driver.Change(nil), r.changes...)
}

// has reports whether r was told c.
func (r *recorder) has(c driver.Change) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, got := range r.changes {
		if got == c {
			return true
		}
	}
	return false
}

func watch(t *testing.T, s driver.Watcher) (*recorder, func()) {
	t.Helper()
	r := &recorder{}
	stop, err := s.Watch(context.Background(), r.fn)
	if err != nil {
		t.Fatal(err)
	}
	if got := r.all(); len(got) != 1 || got[0].Kind != driver.ChangeWatchUp {
		t.Fatalf("Watch returned after telling %+v; want ChangeWatchUp first", got)
	}
	return r, stop
}

func keyChange(key string, v driver.Version) driver.Change {
	return driver.Change{Kind: driver.ChangeKey, Key: key, Version: v}
}

// Every watcher is told of a Save (with its version) and of a Delete
// (NoVersion) before the call returns, from many writers at once, and
// each in commit order: the versions of a key reach every watcher in the
// order they were written.
func TestWatchTellsEveryWatcherBeforeWriteReturns(t *testing.T) {
	ctx := context.Background()
	s := memstore.New()
	defer s.Close()
	r1, stop1 := watch(t, s)
	defer stop1()
	r2, stop2 := watch(t, s)
	defer stop2()

	v, err := s.Save(ctx, "k", []byte("one"), driver.NoVersion, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range []*recorder{r1, r2} {
		if !r.has(keyChange("k", v)) {
			t.Fatalf("watcher %d was not told of the Save before it returned: %+v", i+1, r.all())
		}
	}
	if _, err := s.Save(ctx, "k", []byte("lost"), driver.NoVersion, 0); !errors.Is(err, driver.ErrConflict) {
		t.Fatalf("create of an existing key = %v", err)
	}
	if err := s.Delete(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	want := []driver.Change{{Kind: driver.ChangeWatchUp}, keyChange("k", v), keyChange("k", driver.NoVersion)}
	for i, r := range []*recorder{r1, r2} {
		if got := r.all(); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("watcher %d was told %+v; want %+v (a conflicting Save changes nothing)", i+1, got, want)
		}
	}

	// Many writers on few keys.
	const writers, rounds = 8, 200
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := fmt.Sprint("key", w%3)
			for range rounds {
				cur, _ := s.Version(ctx, key)
				v, err := s.Save(ctx, key, []byte("v"), cur, 0)
				if errors.Is(err, driver.ErrConflict) {
					continue
				}
				if err != nil {
					errs <- err
					return
				}
				if !r1.has(keyChange(key, v)) || !r2.has(keyChange(key, v)) {
					errs <- fmt.Errorf("Save of %s returned version %d before every watcher was told", key, v)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for i, r := range []*recorder{r1, r2} {
		last := map[string]driver.Version{}
		for _, c := range r.all()[3:] {
			if c.Version <= last[c.Key] {
				t.Fatalf("watcher %d was told version %d of %s after %d: out of commit order", i+1, c.Version, c.Key, last[c.Key])
			}
			last[c.Key] = c.Version
		}
	}
}

// After stop returns, fn is not running and is never called again; stop
// waits for a call in progress.
func TestWatchStop(t *testing.T) {
	ctx := context.Background()
	s := memstore.New()
	defer s.Close()
	var inFn, calls atomic.Int32
	entered, release := make(chan struct{}), make(chan struct{})
	stop, err := s.Watch(ctx, func(c driver.Change) {
		calls.Add(1)
		if c.Kind != driver.ChangeKey {
			return
		}
		inFn.Add(1)
		defer inFn.Add(-1)
		close(entered)
		<-release
	})
	if err != nil {
		t.Fatal(err)
	}
	saved := make(chan error, 1)
	go func() {
		_, err := s.Save(ctx, "k", []byte("v"), driver.NoVersion, 0)
		saved <- err
	}()
	select {
	case <-entered:
	case err := <-saved:
		t.Fatalf("Save returned (%v) without telling the watcher", err)
	case <-time.After(10 * time.Second):
		t.Fatal("Save has not told the watcher within 10s")
	}
	stopped := make(chan int32, 1)
	go func() {
		stop()
		stopped <- inFn.Load()
	}()
	select {
	case n := <-stopped:
		t.Fatalf("stop returned while fn was still running (%d calls in it)", n)
	case err := <-saved:
		t.Fatalf("Save returned (%v) while a watcher was still being told", err)
	default:
	}
	close(release)
	if n := <-stopped; n != 0 {
		t.Fatalf("stop returned with %d calls of fn in progress", n)
	}
	if err := <-saved; err != nil {
		t.Fatal(err)
	}
	n := calls.Load()
	if _, err := s.Save(ctx, "k2", []byte("v"), driver.NoVersion, 0); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	stop() // a second stop does nothing
	if got := calls.Load(); got != n {
		t.Fatalf("fn was called %d times after stop", got-n)
	}
}

// Close tells every watcher ChangeWatchDown as its last call; Watch after
// Close fails with ErrClosed.
func TestWatchAfterClose(t *testing.T) {
	ctx := context.Background()
	s := memstore.New()
	r, stop := watch(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	got := r.all()
	if last := got[len(got)-1]; last.Kind != driver.ChangeWatchDown {
		t.Fatalf("a watcher's last call before Close returned was %+v; want ChangeWatchDown", last)
	}
	if _, err := s.Watch(ctx, func(driver.Change) { t.Error("fn called by a Watch that failed") }); !errors.Is(err, driver.ErrClosed) {
		t.Fatalf("Watch after Close = %v; want ErrClosed", err)
	}
	_, _ = s.Save(ctx, "k", []byte("v"), driver.NoVersion, 0)
	_ = s.Delete(ctx, "k")
	stop()
	if n := len(r.all()); n != len(got) {
		t.Fatalf("a watcher was called %d times after Close", n-len(got))
	}
	if _, err := s.Version(ctx, "k"); !errors.Is(err, driver.ErrClosed) {
		t.Fatalf("Version after Close = %v; want ErrClosed", err)
	}
}

// fn may read the store: it is called without the lock Load takes.
func TestWatchFnMayLoad(t *testing.T) {
	ctx := context.Background()
	s := memstore.New()
	defer s.Close()
	var seen []string
	stop, err := s.Watch(ctx, func(c driver.Change) {
		if c.Kind == driver.ChangeKey {
			b, _, err := s.Load(ctx, c.Key)
			seen = append(seen, fmt.Sprintf("%s=%s %v", c.Key, b, err))
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	if _, err := s.Save(ctx, "k", []byte("v"), driver.NoVersion, 0); err != nil {
		t.Fatal(err)
	}
	if want := "k=v <nil>"; len(seen) != 1 || seen[0] != want {
		t.Fatalf("fn read %q; want [%s]", seen, want)
	}
}

// The periodic sweep reports the expired items it drops.
func TestWatchSweepReportsExpiredItems(t *testing.T) {
	ctx := context.Background()
	now := time.Unix(1_700_000_000, 0)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	s := memstore.New(memstore.WithClock(clock))
	defer s.Close()
	r, stop := watch(t, s)
	defer stop()
	if _, err := s.Save(ctx, "expiring", []byte("v"), driver.NoVersion, time.Second); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	now = now.Add(time.Minute)
	mu.Unlock()
	for i := 0; !r.has(keyChange("expiring", driver.NoVersion)); i++ {
		if i == 1024 {
			t.Fatal("1024 writes and no sweep reported the expired item")
		}
		if _, err := s.Save(ctx, fmt.Sprint("filler", i), []byte("v"), driver.NoVersion, 0); err != nil {
			t.Fatal(err)
		}
	}
}

func TestVersion(t *testing.T) {
	ctx := context.Background()
	s := memstore.New()
	defer s.Close()
	if _, err := s.Version(ctx, "k"); !errors.Is(err, driver.ErrNotFound) {
		t.Fatalf("Version of an absent key = %v; want ErrNotFound", err)
	}
	v1, err := s.Save(ctx, "k", []byte("one"), driver.NoVersion, 0)
	if err != nil {
		t.Fatal(err)
	}
	checkVersion := func(want driver.Version) {
		t.Helper()
		got, err := s.Version(ctx, "k")
		_, loaded, lerr := s.Load(ctx, "k")
		if err != nil || lerr != nil || got != want || loaded != want {
			t.Fatalf("Version = %d, %v; Load = %d, %v; want %d", got, err, loaded, lerr, want)
		}
	}
	checkVersion(v1)
	v2, err := s.Save(ctx, "k", []byte("two"), v1, 0)
	if err != nil {
		t.Fatal(err)
	}
	if v2 == v1 {
		t.Fatal("a Save kept the version")
	}
	checkVersion(v2)
	if err := s.Delete(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Version(ctx, "k"); !errors.Is(err, driver.ErrNotFound) {
		t.Fatalf("Version after Delete = %v; want ErrNotFound", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.Version(cctx, "k"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Version with a cancelled ctx = %v", err)
	}
}

// A Store built with an invalid option refuses Watch and Version as it
// refuses every other call.
func TestInvalidOptionRefusesWatchAndVersion(t *testing.T) {
	s := memstore.New(memstore.WithClock(nil))
	defer s.Close()
	want := "WithClock(nil): pass a func"
	if _, err := s.Version(context.Background(), "k"); err == nil || !strings.HasPrefix(err.Error(), "memstore: version: ") || !strings.Contains(err.Error(), want) {
		t.Errorf("Version = %v", err)
	}
	if _, err := s.Watch(context.Background(), func(driver.Change) { t.Error("fn called") }); err == nil || !strings.HasPrefix(err.Error(), "memstore: watch: ") || !strings.Contains(err.Error(), want) {
		t.Errorf("Watch = %v", err)
	}
	if _, err := memstore.New().Watch(context.Background(), nil); err == nil {
		t.Error("Watch(ctx, nil) succeeded")
	}
}

// Two Adapters with an L1 over one Store: B serves from memory, and a
// write or a Remove through A reaches B's very next call, with MaxStale
// an hour away.
func TestTwoAdaptersWithL1(t *testing.T) {
	s := memstore.New()
	defer s.Close()
	storetest.ExactL1(t, s)
}
