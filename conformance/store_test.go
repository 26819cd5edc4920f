package conformance_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/conformance"
	"github.com/msalcache/msalcache/memstore"
)

// TestMemstore runs the store suite against the reference implementation,
// so that a change to the suite that the reference cannot pass is caught
// here rather than in every backend.
func TestMemstore(t *testing.T) {
	conformance.RunStoreTests(t, func(t *testing.T) driver.Store {
		return memstore.New()
	}, conformance.Capabilities{})
}

// ExampleRunStoreTests shows the test a backend's package adds. The
// function inside is what goes in the backend's _test.go file; an Example
// cannot be handed a *testing.T, so this one only compiles it.
func ExampleRunStoreTests() {
	testConformance := func(t *testing.T) {
		conformance.RunStoreTests(t, func(t *testing.T) driver.Store {
			return memstore.New()
		}, conformance.Capabilities{})
	}
	_ = testConformance
}

// ExampleCapabilities declares what a memcached-backed store can do: values
// just under memcached's 1 MiB item limit, whole-second expiry, and
// eviction before the TTL.
func ExampleCapabilities() {
	caps := conformance.Capabilities{
		MaxValueSize:  1<<20 - 1024,
		TTLResolution: time.Second,
		Volatile:      true,
	}
	fmt.Printf("values up to %d bytes, expiry in steps of %v, evicts: %v\n", caps.MaxValueSize, caps.TTLResolution, caps.Volatile)
	// Output: values up to 1047552 bytes, expiry in steps of 1s, evicts: true
}

// faultEnv names the fault that TestFaultyStore injects; it is set only
// when TestSuiteCatchesFaults re-executes the test binary.
const faultEnv = "CONFORMANCE_TEST_FAULT"

// TestSuiteCatchesFaults proves that the suite fails stores that break the
// contract, each in the subtest meant to catch it, with a message that
// says what went wrong. Each faulty store runs in a child process, since a
// failing suite fails the *testing.T it is given.
func TestSuiteCatchesFaults(t *testing.T) {
	cases := []struct{ fault, subtest, message string }{
		{"lost-update", "ConcurrentCAS", "updates were lost"},
		{"create-overwrites", "CreateOnlyIfAbsent", "want an error wrapping ErrConflict"},
		{"version-per-key", "VersionsChangeOnEveryWrite", "already returned by write"},
		{"no-expiry", "TTLExpiry", "does not expire keys"},
		{"sticky-ttl", "NoTTLMeansNoExpiry", "must clear the expiry"},
		{"delete-absent-error", "Delete", "deleting an absent key is not an error"},
		{"truncate", "LargeValue", "differ from what was saved"},
		{"case-fold", "KeyAlphabet", "as the same key"},
		{"alias-save", "Isolation", "must copy"},
		{"alias-load", "Isolation", "must hand out a copy"},
		{"ignore-ctx", "ContextCanceled", "want an error wrapping context canceled"},
		{"ignore-ctx", "ContextDeadline", "want an error wrapping context deadline exceeded"},
		{"no-closed", "UseAfterClose", "want an error wrapping ErrClosed"},
		{"list-expired", "Lister", "List("},
		{"volatile", "Volatile", "IsVolatile reports true"},
		{"corrupt-garbage", "CorruptRecord", "must not hand out a record it cannot decode"},
		{"corrupt-notfound", "CorruptRecord", "reporting it absent hides the damage"},
		{"corrupt-zero-version", "CorruptRecord", "(version 0), want an error wrapping ErrCorrupt"},
		{"corrupt-no-repair", "CorruptRecord", "Save with NoVersion must replace a record"},
		{"corrupt-overwrite", "CorruptRecord", "only NoVersion may replace"},
		{"corrupt-leak", "CorruptRecord", "quotes the record's bytes"},
		{"corrupt-unlisted", "CorruptRecord", "is still a key"},
		{"corrupt-panic", "CorruptRecord", "panicked on a record"},
		{"never-up", "Watch", "must say ChangeWatchUp"},
		{"drops-foreign", "Watch", "did not reach the watcher"},
		{"wrong-version", "Watch", "but the write returned"},
		{"calls-after-stop", "Watch", "stop must end the calls"},
		{"no-recovery", "Watch", "the watch does not recover"},
		{"break-unnoticed", "Watch", "was not told ChangeWatchDown"},
		{"stale-version", "Versioner", "after another Save returned"},
	}
	for _, tc := range cases {
		t.Run(tc.fault+"/"+tc.subtest, func(t *testing.T) {
			t.Parallel()
			runner := "TestFaultyStore"
			if hubFaults[tc.fault] {
				runner = "TestFaultyWatcher"
			}
			cmd := exec.Command(os.Args[0], "-test.run=^"+runner+"$/^"+tc.subtest+"$", "-test.v")
			cmd.Env = append(os.Environ(), faultEnv+"="+tc.fault)
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("the suite passed a store with fault %q:\n%s", tc.fault, out)
			}
			if !strings.Contains(string(out), "--- FAIL: "+runner+"/"+tc.subtest) {
				t.Fatalf("fault %q did not fail subtest %s:\n%s", tc.fault, tc.subtest, out)
			}
			if !strings.Contains(string(out), tc.message) || strings.Contains(string(out), "panic:") || strings.Contains(string(out), "goroutine ") {
				t.Fatalf("fault %q failed %s without saying %q:\n%s", tc.fault, tc.subtest, tc.message, out)
			}
			for _, line := range strings.Split(string(out), "\n") {
				if strings.Contains(line, "store.go:") || strings.Contains(line, "storewatch.go:") {
					t.Log(strings.TrimSpace(line))
				}
			}
		})
	}
}

// TestFaultyStore runs the suite on a store with the fault named by
// faultEnv; TestSuiteCatchesFaults expects it to fail.
func TestFaultyStore(t *testing.T) {
	fault := os.Getenv(faultEnv)
	if fault == "" {
		t.Skip("run by TestSuiteCatchesFaults")
	}
	conformance.RunStoreTests(t, func(t *testing.T) driver.Store {
		return &faultyStore{fault: fault, items: map[string]faultyItem{}, perKey: map[string]driver.Version{}}
	}, conformance.Capabilities{
		MaxValueSize:   1 << 20,
		PutRaw:         putRawFaulty,
		CorruptRecords: faultyCorruptRecords,
	})
}

// TestFaultFreeStore runs the suite on faultyStore without a fault, raw
// layer included: it must pass, so each failure TestSuiteCatchesFaults
// sees comes from the fault it injected.
func TestFaultFreeStore(t *testing.T) {
	conformance.RunStoreTests(t, func(t *testing.T) driver.Store {
		return &faultyStore{items: map[string]faultyItem{}, perKey: map[string]driver.Version{}}
	}, conformance.Capabilities{
		// No MaxValueSize: faultyStore has no limit (fault truncate
		// breaks LargeValue in another way).
		PutRaw:         putRawFaulty,
		CorruptRecords: faultyCorruptRecords,
	})
}

// TestCorruptRecordNeedsDeclaredRecords: a store that offers PutRaw but
// declares no damaged records of its own layout would only be checked on
// records shorter than any header, so the suite refuses it. It runs in a
// child process for the same reason as TestSuiteCatchesFaults.
func TestCorruptRecordNeedsDeclaredRecords(t *testing.T) {
	if os.Getenv(faultEnv) == "undeclared" {
		conformance.RunStoreTests(t, func(t *testing.T) driver.Store {
			return &faultyStore{items: map[string]faultyItem{}, perKey: map[string]driver.Version{}}
		}, conformance.Capabilities{PutRaw: putRawFaulty})
		return
	}
	t.Parallel()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCorruptRecordNeedsDeclaredRecords$/^CorruptRecord$", "-test.v")
	cmd.Env = append(os.Environ(), faultEnv+"=undeclared")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "CorruptRecords is empty") {
		t.Fatalf("the suite accepted PutRaw without CorruptRecords (%v):\n%s", err, out)
	}
}

// faultyHeader is the length of the version in front of a value in
// faultyStore's raw layout, the one redisstore uses: 8 bytes big-endian.
const faultyHeader = 8

// faultyCorruptRecords are the damaged records of faultyStore's raw layout.
// Its only header is the version, so a header of the right length is wrong
// only when it holds version 0.
var faultyCorruptRecords = map[string][]byte{
	"zero-version":            make([]byte, faultyHeader),
	"zero-version-with-value": append(make([]byte, faultyHeader), `{"AccessToken":{"secret":1}}`...),
}

// putRawFaulty is faultyStore's Capabilities.PutRaw: raw is decoded as a
// version and a value, and what does not decode is kept as a corrupt
// record.
func putRawFaulty(ctx context.Context, s driver.Store, key string, raw []byte) error {
	f := s.(*faultyStore)
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(raw) < faultyHeader || binary.BigEndian.Uint64(raw) == 0 && f.fault != "corrupt-zero-version" {
		f.items[key] = faultyItem{raw: bytes.Clone(raw), corrupt: true}
		return nil
	}
	// With fault corrupt-zero-version, a decoder that forgot to check
	// hands out version 0.
	v := driver.Version(binary.BigEndian.Uint64(raw))
	f.items[key] = faultyItem{value: bytes.Clone(raw[faultyHeader:]), version: v}
	return nil
}

// faultyStore is memstore with one deliberate bug, chosen by fault.
type faultyStore struct {
	fault   string
	mu      sync.Mutex
	items   map[string]faultyItem
	counter driver.Version
	perKey  map[string]driver.Version
	closed  bool
}

type faultyItem struct {
	value   []byte
	version driver.Version
	expires time.Time
	corrupt bool   // planted by putRawFaulty; raw holds its bytes
	raw     []byte // what putRawFaulty planted
}

func (s *faultyStore) live(it faultyItem, ok bool) bool {
	return ok && (s.fault == "no-expiry" || it.expires.IsZero() || time.Now().Before(it.expires))
}

func (s *faultyStore) enter(ctx context.Context, key string) (string, error) {
	if s.fault != "ignore-ctx" {
		if err := ctx.Err(); err != nil {
			return "", err
		}
	}
	if s.closed && s.fault != "no-closed" {
		return "", driver.ErrClosed
	}
	if s.fault == "case-fold" {
		key = strings.ToLower(key)
	}
	return key, nil
}

func (s *faultyStore) Load(ctx context.Context, key string) ([]byte, driver.Version, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	key, err := s.enter(ctx, key)
	if err != nil {
		return nil, 0, err
	}
	it, ok := s.items[key]
	if !s.live(it, ok) {
		return nil, 0, driver.ErrNotFound
	}
	if it.corrupt {
		switch s.fault {
		case "corrupt-garbage":
			return bytes.Clone(it.raw), 1, nil
		case "corrupt-notfound":
			return nil, 0, driver.ErrNotFound
		case "corrupt-leak":
			return nil, 0, fmt.Errorf("%w: record %q", driver.ErrCorrupt, it.raw)
		case "corrupt-panic":
			_ = it.raw[7] // the decoder trusts the length
		}
		return nil, 0, fmt.Errorf("faulty: %d bytes: %w", len(it.raw), driver.ErrCorrupt)
	}
	if s.fault == "alias-load" {
		return it.value, it.version, nil
	}
	return bytes.Clone(it.value), it.version, nil
}

func (s *faultyStore) Save(ctx context.Context, key string, value []byte, ifVersion driver.Version, ttl time.Duration) (driver.Version, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	key, err := s.enter(ctx, key)
	if err != nil {
		return 0, err
	}
	it, ok := s.items[key]
	cur := driver.NoVersion
	if s.live(it, ok) {
		cur = it.version
	}
	switch {
	case it.corrupt && s.fault == "corrupt-no-repair":
		return 0, driver.ErrConflict // the damaged record wedges the key
	case it.corrupt && s.fault == "corrupt-overwrite":
		cur = ifVersion // any version replaces it
	}
	if cur != ifVersion && !(s.fault == "create-overwrites" && ifVersion == driver.NoVersion) {
		return 0, driver.ErrConflict
	}
	if s.fault == "lost-update" {
		s.mu.Unlock() // the compare and the write are no longer one step
		runtime.Gosched()
		s.mu.Lock()
	}
	var v driver.Version
	if s.fault == "version-per-key" {
		s.perKey[key]++
		v = s.perKey[key]
	} else {
		s.counter++
		v = s.counter
	}
	next := faultyItem{value: bytes.Clone(value), version: v}
	switch s.fault {
	case "alias-save":
		next.value = value
	case "truncate":
		next.value = next.value[:min(len(next.value), 64<<10)]
	}
	if ttl > 0 {
		next.expires = time.Now().Add(ttl)
	} else if s.fault == "sticky-ttl" && ok {
		next.expires = it.expires
	}
	s.items[key] = next
	return v, nil
}

func (s *faultyStore) Delete(ctx context.Context, key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	key, err := s.enter(ctx, key)
	if err != nil {
		return err
	}
	if _, ok := s.items[key]; !ok && s.fault == "delete-absent-error" {
		return driver.ErrNotFound
	}
	delete(s.items, key)
	if s.fault == "version-per-key" {
		delete(s.perKey, key)
	}
	return nil
}

func (s *faultyStore) List(ctx context.Context, prefix string, fn func(string) error) error {
	s.mu.Lock()
	if _, err := s.enter(ctx, ""); err != nil {
		s.mu.Unlock()
		return err
	}
	var keys []string
	for k, it := range s.items {
		if it.corrupt && s.fault == "corrupt-unlisted" {
			continue
		}
		if strings.HasPrefix(k, prefix) && (s.fault == "list-expired" || s.live(it, true)) {
			keys = append(keys, k)
		}
	}
	s.mu.Unlock()
	for _, k := range keys {
		if err := fn(k); err != nil {
			return err
		}
	}
	return nil
}

func (s *faultyStore) Volatile() bool { return s.fault == "volatile" }

func (s *faultyStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return nil
}

// hubStore is a handle on a watchHub, as a redisstore.Store is a handle on
// a Redis server: every handle of one hub shares its data, and a watch on
// any handle hears the writes of every handle, delivered later on the
// hub's goroutine, as a subscription hears them. With a fault it breaks
// one rule of driver.Watcher or driver.Versioner:
//
//   - never-up: a watch is never told ChangeWatchUp.
//   - drops-foreign: a watch hears only its own handle's writes.
//   - wrong-version: a Save is reported with a version it did not write.
//   - calls-after-stop: stop returns without ending the calls.
//   - no-recovery: a broken watch says ChangeWatchDown, never Up again.
//   - break-unnoticed: a broken watch goes deaf without saying so.
//   - stale-version: Version answers with the first version it read of a
//     key, as a cache in front of the probe would.
type hubStore struct {
	hub    *watchHub
	fault  string
	closed atomic.Bool
	mu     sync.Mutex
	seen   map[string]driver.Version // for stale-version
}

// watchHub is the shared side of hubStores: their data (a memstore, whose
// own Watch goes unused) and their watches.
type watchHub struct {
	data *memstore.Store

	// deliverMu is held while fn is called, so that stop, by taking it,
	// waits for a call in progress.
	deliverMu sync.Mutex

	mu      sync.Mutex
	cond    *sync.Cond
	queue   []hubItem
	seq     uint64
	watches map[*hubWatch]bool
	done    bool
	exited  chan struct{}
}

type hubItem struct {
	seq    uint64
	c      driver.Change
	origin *hubStore // the handle that wrote, for drops-foreign
	to     *hubWatch // nil: every watch that began before seq
}

type hubWatch struct {
	owner *hubStore
	fn    func(driver.Change)
	since uint64 // the seq of its ChangeWatchUp: it hears nothing older
	deaf  bool   // break-unnoticed: cut, and nobody says so
}

func newWatchHub(t *testing.T) *watchHub {
	h := &watchHub{data: memstore.New(), watches: map[*hubWatch]bool{}, exited: make(chan struct{})}
	h.cond = sync.NewCond(&h.mu)
	go h.deliver()
	t.Cleanup(func() {
		h.mu.Lock()
		h.done = true
		h.cond.Broadcast()
		h.mu.Unlock()
		<-h.exited
	})
	return h
}

// enqueueLocked queues c; h.mu is held.
func (h *watchHub) enqueueLocked(c driver.Change, origin *hubStore, to *hubWatch) uint64 {
	h.seq++
	h.queue = append(h.queue, hubItem{seq: h.seq, c: c, origin: origin, to: to})
	h.cond.Broadcast()
	return h.seq
}

func (h *watchHub) enqueue(c driver.Change, origin *hubStore) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.enqueueLocked(c, origin, nil)
}

// deliver is the hub's goroutine: it calls the watches' fns, in order.
func (h *watchHub) deliver() {
	defer close(h.exited)
	for {
		h.mu.Lock()
		for len(h.queue) == 0 && !h.done {
			h.cond.Wait()
		}
		if h.done {
			h.mu.Unlock()
			return
		}
		it := h.queue[0]
		h.queue = h.queue[1:]
		h.mu.Unlock()

		h.deliverMu.Lock()
		h.mu.Lock()
		var fns []func(driver.Change)
		for w := range h.watches {
			switch {
			case it.to != nil && it.to != w, it.to == nil && it.seq < w.since:
			case it.to == nil && w.deaf:
			case it.to == nil && w.owner.fault == "drops-foreign" && it.origin != w.owner:
			default:
				fns = append(fns, w.fn)
			}
		}
		h.mu.Unlock()
		for _, fn := range fns {
			fn(it.c)
		}
		h.deliverMu.Unlock()
	}
}

func newHubStore(t *testing.T, fault string) driver.Store {
	return &hubStore{hub: newWatchHub(t), fault: fault}
}

// openHubHandle is hubStore's Capabilities.OpenHandle.
func openHubHandle(t *testing.T, s driver.Store) driver.Store {
	h := s.(*hubStore)
	return &hubStore{hub: h.hub, fault: h.fault}
}

// breakHubWatch is hubStore's Capabilities.BreakWatch: s's watches are
// cut, told so, and re-established, as a client reconnects.
func breakHubWatch(t *testing.T, s driver.Store) {
	h := s.(*hubStore)
	hub := h.hub
	hub.mu.Lock()
	defer hub.mu.Unlock()
	for w := range hub.watches {
		if w.owner != h {
			continue
		}
		if h.fault == "break-unnoticed" {
			w.deaf = true
			continue
		}
		hub.enqueueLocked(driver.Change{Kind: driver.ChangeWatchDown}, h, w)
		if h.fault != "no-recovery" {
			hub.enqueueLocked(driver.Change{Kind: driver.ChangeWatchUp}, h, w)
		}
	}
}

func (s *hubStore) enter(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.closed.Load() {
		return driver.ErrClosed
	}
	return nil
}

func (s *hubStore) Load(ctx context.Context, key string) ([]byte, driver.Version, error) {
	if err := s.enter(ctx); err != nil {
		return nil, 0, err
	}
	return s.hub.data.Load(ctx, key)
}

func (s *hubStore) Save(ctx context.Context, key string, value []byte, ifVersion driver.Version, ttl time.Duration) (driver.Version, error) {
	if err := s.enter(ctx); err != nil {
		return 0, err
	}
	v, err := s.hub.data.Save(ctx, key, value, ifVersion, ttl)
	if err == nil {
		told := v
		if s.fault == "wrong-version" {
			told = v + 1
		}
		s.hub.enqueue(driver.Change{Kind: driver.ChangeKey, Key: key, Version: told}, s)
	}
	return v, err
}

func (s *hubStore) Delete(ctx context.Context, key string) error {
	if err := s.enter(ctx); err != nil {
		return err
	}
	err := s.hub.data.Delete(ctx, key)
	if err == nil {
		s.hub.enqueue(driver.Change{Kind: driver.ChangeKey, Key: key}, s)
	}
	return err
}

func (s *hubStore) Version(ctx context.Context, key string) (driver.Version, error) {
	if err := s.enter(ctx); err != nil {
		return 0, err
	}
	v, err := s.hub.data.Version(ctx, key)
	if s.fault == "stale-version" && err == nil {
		s.mu.Lock()
		defer s.mu.Unlock()
		if old, ok := s.seen[key]; ok {
			return old, nil
		}
		if s.seen == nil {
			s.seen = map[string]driver.Version{}
		}
		s.seen[key] = v
	}
	return v, err
}

func (s *hubStore) Watch(ctx context.Context, fn func(driver.Change)) (func(), error) {
	if err := s.enter(ctx); err != nil {
		return nil, err
	}
	hub := s.hub
	w := &hubWatch{owner: s, fn: fn}
	hub.mu.Lock()
	if s.fault == "never-up" {
		w.since = hub.seq + 1
	} else {
		w.since = hub.enqueueLocked(driver.Change{Kind: driver.ChangeWatchUp}, s, w)
	}
	hub.watches[w] = true
	hub.mu.Unlock()
	if s.fault == "calls-after-stop" {
		return func() {}, nil
	}
	return func() { s.unwatch(w) }, nil
}

// unwatch removes w; taking deliverMu waits for a call of fn in progress.
func (s *hubStore) unwatch(w *hubWatch) {
	s.hub.deliverMu.Lock()
	defer s.hub.deliverMu.Unlock()
	s.hub.mu.Lock()
	defer s.hub.mu.Unlock()
	delete(s.hub.watches, w)
}

func (s *hubStore) Close() error {
	s.closed.Store(true)
	s.hub.deliverMu.Lock()
	defer s.hub.deliverMu.Unlock()
	s.hub.mu.Lock()
	defer s.hub.mu.Unlock()
	for w := range s.hub.watches {
		if w.owner == s {
			delete(s.hub.watches, w)
		}
	}
	return nil
}

// hubFaults are the faults of hubStore, run by TestFaultyWatcher.
var hubFaults = map[string]bool{
	"never-up": true, "drops-foreign": true, "wrong-version": true, "calls-after-stop": true,
	"no-recovery": true, "break-unnoticed": true, "stale-version": true,
}

// hubCaps are the capabilities TestFaultyWatcher and TestFaultFreeWatcher
// declare for hubStore.
var hubCaps = conformance.Capabilities{OpenHandle: openHubHandle, BreakWatch: breakHubWatch}

// TestFaultFreeWatcher runs the whole suite on hubStore without a fault:
// it must pass, so each failure TestSuiteCatchesFaults sees from
// TestFaultyWatcher comes from the fault it injected.
func TestFaultFreeWatcher(t *testing.T) {
	conformance.RunStoreTests(t, func(t *testing.T) driver.Store { return newHubStore(t, "") }, hubCaps)
}

// TestFaultyWatcher runs the suite on a hubStore with the fault named by
// faultEnv; TestSuiteCatchesFaults expects it to fail.
func TestFaultyWatcher(t *testing.T) {
	fault := os.Getenv(faultEnv)
	if fault == "" {
		t.Skip("run by TestSuiteCatchesFaults")
	}
	conformance.RunStoreTests(t, func(t *testing.T) driver.Store { return newHubStore(t, fault) }, hubCaps)
}
