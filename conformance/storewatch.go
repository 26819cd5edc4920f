package conformance

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/msalcache/msalcache"
)

// The Watch and Versioner subtests check the two capabilities an Adapter
// with WithL1 builds on. A watcher that misses another instance's write
// makes every L1 of the farm serve a token that was replaced (the
// Microsoft.Identity.Web complaint issue 10 exists to fix), and a version
// probe that answers with an old version makes MaxStale no bound at all,
// so both are held to the letter of their documentation.

// suiteWatch is one Watch call of the suite: what fn was told, and the
// calls that broke the rules of stop.
type suiteWatch struct {
	log  *watchLog
	stop func()

	stopped atomic.Bool  // stop returned: fn must not be called again
	inCall  atomic.Int32 // calls of fn in progress
	mu      sync.Mutex
	late    []driver.Change // told after stop returned
}

func (w *suiteWatch) fn(c driver.Change) {
	w.inCall.Add(1)
	defer w.inCall.Add(-1)
	if w.stopped.Load() {
		w.mu.Lock()
		w.late = append(w.late, c)
		w.mu.Unlock()
		return
	}
	w.log.record(c)
}

// startWatch calls Watch on w and stops the watch when the test ends, in
// case the test does not get that far.
func startWatch(t *testing.T, w driver.Watcher) *suiteWatch {
	t.Helper()
	sw := &suiteWatch{log: newWatchLog()}
	var stop func()
	err := callPromptly(t, "Watch", func() error {
		var err error
		stop, err = w.Watch(context.Background(), sw.fn)
		return err
	})
	if err != nil {
		t.Fatalf("Watch failed: %v", err)
	}
	if stop == nil {
		t.Fatal("Watch returned no error and a nil stop function; the Adapter calls stop when it is closed")
	}
	var once sync.Once
	sw.stop = func() {
		once.Do(func() {
			if err := callPromptly(t, "stop", func() error { stop(); return nil }); err == nil {
				sw.stopped.Store(true)
			}
		})
	}
	t.Cleanup(sw.stop)
	return sw
}

// waitUp waits for the watch to say ChangeWatchUp, which must be the first
// thing it says.
func (w *suiteWatch) waitUp(t *testing.T, what string) {
	t.Helper()
	_, ev, ok := w.log.wait(0, time.Now().Add(watchBound), func(driver.Change) bool { return true })
	switch {
	case !ok:
		t.Fatalf("%s reported nothing within %v: the first call of fn must say ChangeWatchUp once the store sees every change; until then an L1 trusts nothing and serves nothing from memory", what, watchBound)
	case ev.c.Kind != driver.ChangeWatchUp:
		t.Fatalf("the first call of %s's fn reported %s, want ChangeWatchUp: an L1 that has not been told the watch is up cannot know whether it missed changes before it", what, describeChange(ev.c))
	}
}

// openHandle returns another handle on s's data: Capabilities.OpenHandle's,
// closed when the test ends, or s itself.
func (h *storeHarness) openHandle(t *testing.T, s driver.Store) driver.Store {
	t.Helper()
	if h.caps.OpenHandle == nil {
		return s
	}
	o := h.caps.OpenHandle(t, s)
	if o == nil {
		t.Fatal("Capabilities.OpenHandle returned a nil Store")
	}
	t.Cleanup(func() {
		if err := o.Close(); err != nil && !errors.Is(err, driver.ErrClosed) {
			t.Errorf("Close of the handle Capabilities.OpenHandle opened failed: %v", err)
		}
	})
	return o
}

// wantChange waits for the ChangeKey of key that a write made after mark
// must cause, and checks the version it reports: want for a Save, which
// NoVersion may stand for when the store cannot tell, and NoVersion for a
// Delete. A wrong version is worse than none: an L1 holding that version
// would take the change for its own write and keep serving what it holds.
func wantChange(t *testing.T, w *suiteWatch, mark int, wrote time.Time, what, key string, want driver.Version) {
	t.Helper()
	_, ev, ok := w.log.wait(mark, wrote.Add(watchBound), ofKey(key))
	if !ok {
		t.Fatalf("%s of %q did not reach the watcher within %v (it was told %s meanwhile): an L1 would go on serving the old value on every instance",
			what, key, watchBound, describeEvents(w.log.since(mark)))
	}
	switch {
	case ev.c.Version == want:
	case ev.c.Version == driver.NoVersion:
		t.Logf("%s of %q was reported with NoVersion: the store cannot tell versions, so every L1 loads its own writes again", what, key)
	case want == driver.NoVersion:
		t.Fatalf("%s of %q was reported with version %d, want NoVersion: the key no longer exists", what, key, ev.c.Version)
	default:
		t.Fatalf("%s of %q was reported with version %d, but the write returned %d: an L1 holding version %d would keep serving it",
			what, key, ev.c.Version, want, ev.c.Version)
	}
	t.Logf("%s of %q reached the watcher after %v", what, key, ev.at.Sub(wrote).Round(time.Microsecond))
}

func (h *storeHarness) testWatch(t *testing.T, s driver.Store) {
	w, ok := s.(driver.Watcher)
	if !ok {
		t.Skip("store does not implement driver.Watcher")
	}
	ctx := context.Background()
	other := h.openHandle(t, s)
	sw := startWatch(t, w)
	sw.waitUp(t, "Watch")

	mark, wrote := sw.log.len(), time.Now()
	v := mustSave(t, other, "watched", []byte("one"), driver.NoVersion, 0)
	wantChange(t, sw, mark, wrote, "a Save through another handle", "watched", v)

	mark, wrote = sw.log.len(), time.Now()
	v = mustSave(t, s, "watched", []byte("two"), v, 0)
	wantChange(t, sw, mark, wrote, "a Save through the watching handle", "watched", v)

	mark, wrote = sw.log.len(), time.Now()
	if err := other.Delete(ctx, "watched"); err != nil {
		t.Fatalf("Delete through another handle failed: %v", err)
	}
	wantChange(t, sw, mark, wrote, "a Delete through another handle", "watched", driver.NoVersion)

	if h.caps.BreakWatch != nil {
		h.testBrokenWatch(t, s, other, sw)
	}

	// stop ends the calls: the Adapter's Close relies on it, and fn
	// belongs to an L1 that is gone.
	sw.stop()
	if !sw.stopped.Load() {
		return // callPromptly failed the test
	}
	if n := sw.inCall.Load(); n != 0 {
		t.Fatalf("stop returned while %d calls of fn were still running; stop must wait for fn's last call to return", n)
	}
	mustSave(t, other, "after-stop", []byte("x"), driver.NoVersion, 0)
	mustSave(t, s, "after-stop-2", []byte("x"), driver.NoVersion, 0)
	// A second watch, started after those writes, hearing a later one
	// shows that the store delivered what it had to deliver: the stopped
	// watch would have been told by now.
	sentinel := startWatch(t, w)
	sentinel.waitUp(t, "a second Watch")
	mark, wrote = sentinel.log.len(), time.Now()
	v = mustSave(t, other, "marker", []byte("x"), driver.NoVersion, 0)
	wantChange(t, sentinel, mark, wrote, "a Save through another handle", "marker", v)
	sw.mu.Lock()
	late := sw.late
	sw.mu.Unlock()
	if len(late) > 0 {
		t.Fatalf("after stop returned, fn was still called %d times (first: %s); stop must end the calls", len(late), describeChange(late[0]))
	}
}

// testBrokenWatch cuts the push channel with Capabilities.BreakWatch and
// checks that the watcher is told (ChangeWatchDown: an L1 then flushes
// and bypasses itself, correct before fast), recovers (ChangeWatchUp) and
// hears changes again.
func (h *storeHarness) testBrokenWatch(t *testing.T, s, other driver.Store, sw *suiteWatch) {
	t.Helper()
	mark, broke := sw.log.len(), time.Now()
	h.caps.BreakWatch(t, s)
	i, down, ok := sw.log.wait(mark, broke.Add(watchBound), isKind(driver.ChangeWatchDown))
	if !ok {
		t.Fatalf("after Capabilities.BreakWatch cut the push channel, the watcher was not told ChangeWatchDown within %v (it was told %s): an L1 would go on trusting what it holds while changes are lost",
			watchBound, describeEvents(sw.log.since(mark)))
	}
	_, up, ok := sw.log.wait(i+1, down.at.Add(watchBound), isKind(driver.ChangeWatchUp))
	if !ok {
		t.Fatalf("after Capabilities.BreakWatch the watcher was told ChangeWatchDown but not ChangeWatchUp within %v of it (then %s): the watch does not recover, and every L1 stays bypassed",
			watchBound, describeEvents(sw.log.since(i+1)))
	}
	t.Logf("broken watch: ChangeWatchDown after %v, ChangeWatchUp %v later",
		down.at.Sub(broke).Round(time.Microsecond), up.at.Sub(down.at).Round(time.Microsecond))
	mark, wrote := sw.log.len(), time.Now()
	v := mustSave(t, other, "after-break", []byte("x"), driver.NoVersion, 0)
	wantChange(t, sw, mark, wrote, "a Save through another handle, after the watch recovered,", "after-break", v)
}

func (h *storeHarness) testVersioner(t *testing.T, s driver.Store) {
	vr, ok := s.(driver.Versioner)
	if !ok {
		t.Skip("store does not implement driver.Versioner")
	}
	version := func(key string) (driver.Version, error) {
		t.Helper()
		var v driver.Version
		err := callPromptly(t, "Version", func() error {
			var err error
			v, err = vr.Version(context.Background(), key)
			return err
		})
		return v, err
	}
	want := func(key string, wantV driver.Version, why string) {
		t.Helper()
		v, err := version(key)
		if err != nil {
			t.Fatalf("Version(%q) %s failed: %v", key, why, err)
		}
		if v != wantV {
			t.Fatalf("Version(%q) %s returned %d, want %d: an L1 revalidating with it would keep a partition that was replaced", key, why, v, wantV)
		}
	}
	wantMissing := func(key, why string) {
		t.Helper()
		v, err := version(key)
		if !errors.Is(err, driver.ErrNotFound) {
			t.Fatalf("Version(%q) %s returned version %d, error %v; want an error wrapping ErrNotFound", key, why, v, err)
		}
	}
	v1 := mustSave(t, s, "versioned", []byte("one"), driver.NoVersion, 0)
	_, lv := mustLoad(t, s, "versioned")
	if lv != v1 {
		t.Fatalf("Load returned version %d, Save returned %d", lv, v1)
	}
	want("versioned", v1, "after a Save")
	v2 := mustSave(t, s, "versioned", []byte("two"), v1, 0)
	want("versioned", v2, "after another Save")
	if err := s.Delete(context.Background(), "versioned"); err != nil {
		t.Fatalf("Delete failed: %v", err)
	}
	wantMissing("versioned", "after Delete")
	wantMissing("never-saved", "of a key never saved")

	ttl := h.shortTTL()
	saved := time.Now()
	mustSave(t, s, "versioned-ttl", []byte("x"), driver.NoVersion, ttl)
	h.waitExpired(t, s, "versioned-ttl", saved, ttl)
	wantMissing("versioned-ttl", "of a key that expired")
}
