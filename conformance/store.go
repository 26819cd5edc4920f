package conformance

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/msalcache/msalcache"
)

// Capabilities declares what a store under test can do, so that
// RunStoreTests checks each store against its own documented limits instead
// of against the strictest backend.
type Capabilities struct {
	// MaxValueSize is the largest value the store holds. The suite saves a
	// value of exactly that size and expects ErrTooLarge at MaxValueSize+1.
	// Zero means the store has no limit worth testing: the suite saves
	// 1 MiB and skips the ErrTooLarge check.
	MaxValueSize int

	// TTLResolution is the granularity of the store's expiry (memcached
	// counts in whole seconds). Zero means 10ms. The suite waits the TTL
	// plus the resolution, plus some slack, before it expects a key to be
	// gone, and never expects a key to live longer than that.
	TTLResolution time.Duration

	// Volatile declares that the store may evict a key before its TTL
	// (memcached does under memory pressure). The suite then expects the
	// store to report driver.IsVolatile, so that the protect key ring
	// refuses to live in it.
	Volatile bool

	// PutRaw writes raw as the backend's whole value for key in store s,
	// bypassing s's record format: what a damaged disk, a truncated write
	// or another program would leave there. s is the store the subtest's
	// newStore returned, so PutRaw can find its prefix, bucket or file
	// (keep a map from the stores newStore made to their prefixes). With
	// it the CorruptRecord subtest plants records the store cannot decode
	// and checks that they are reported and repaired as the Store contract
	// says; when nil, that subtest is skipped. A store that keeps no bytes
	// (memstore holds Go values) cannot hold a corrupt record and leaves it
	// nil.
	PutRaw func(ctx context.Context, s driver.Store, key string, raw []byte) error

	// CorruptRecords are raw records, by name, that the store's own layout
	// cannot decode and must report as driver.ErrCorrupt: at least a
	// header holding version 0 (driver.NoVersion, which a store never
	// hands out) and a value of the right length whose header is wrong in
	// another way (an unknown format byte, a flag). The suite adds the
	// records no layout decodes (empty, 1 to 3 bytes) and random bytes,
	// which it only requires the store to survive. It is required when
	// PutRaw is set.
	CorruptRecords map[string][]byte

	// OpenHandle returns another handle on the same data as s, as a second
	// instance of the application would open: another client,
	// connection or Store value over the same server, file or map. The
	// Watch subtest writes through it and expects the watcher on s to hear
	// of it, since an L1 must learn of writes made by other instances, not
	// only of its own. The suite closes the handle when the subtest ends;
	// close what else OpenHandle opened (a client) with t.Cleanup. nil
	// means the suite uses s itself, which is right only for a store whose
	// handles all share one Store value.
	OpenHandle func(t *testing.T, s driver.Store) driver.Store

	// BreakWatch cuts the channel through which s learns of changes, as a
	// dropped connection or a failover would (for Redis: CLIENT KILL TYPE
	// pubsub). The Watch subtest then expects s's watcher to be told
	// ChangeWatchDown and then ChangeWatchUp again, and to hear changes
	// after that. nil skips that part, for a store whose push cannot
	// break (memstore tells its watchers in process).
	BreakWatch func(t *testing.T, s driver.Store)
}

const (
	// defaultTTLResolution stands in for a zero Capabilities.TTLResolution.
	defaultTTLResolution = 10 * time.Millisecond
	// defaultLargeValue is the size saved by LargeValue when the store
	// declares no MaxValueSize.
	defaultLargeValue = 1 << 20
	// hangTimeout bounds calls that must return promptly, so that a store
	// that blocks fails with a message instead of stalling the test binary
	// until its global timeout.
	hangTimeout = 10 * time.Second
)

// keyAlphabet is every byte the Store contract allows in a key.
const keyAlphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:/"

// RunStoreTests checks that a driver.Store keeps the contract that the
// Adapter and the protect key ring rely on: compare-and-set that cannot lose
// an update, expiry, binary-safe values and keys, isolation of the slices
// it is handed and hands out, cancellation, and behaviour after Close, plus
// the optional Lister, Pinger and Volatile interfaces when the store
// implements them. With Capabilities.PutRaw it also plants records the
// store cannot decode and checks that Load reports them as
// driver.ErrCorrupt and that a Save with driver.NoVersion repairs
// them.
//
// A store that implements driver.Watcher is checked in the Watch
// subtest: the watch says ChangeWatchUp first; a Save and a Delete through
// another handle (Capabilities.OpenHandle) reach it as ChangeKey within a
// few seconds, with the version the Save returned; with
// Capabilities.BreakWatch, a cut push channel is reported as
// ChangeWatchDown and recovers with ChangeWatchUp; and stop ends the
// calls. A driver.Versioner is checked in the Versioner subtest: the
// version Load would return, and ErrNotFound for a deleted, expired or
// absent key.
//
// Every subtest calls newStore for a store of its own and closes it when the
// subtest ends (stores must therefore accept a second Close without
// panicking). newStore must return a store that holds no keys: a new file, a
// flushed database, or a prefix no other call has used. It may call t.Skip
// or t.Fatal when the backend is unavailable.
//
// The suite takes a few seconds when TTLResolution is a second; a store
// with the default resolution finishes in well under one.
func RunStoreTests(t *testing.T, newStore func(t *testing.T) driver.Store, caps Capabilities) {
	t.Helper()
	h := &storeHarness{newStore: newStore, caps: caps}
	tests := []struct {
		name string
		fn   func(t *testing.T, s driver.Store)
	}{
		{"RoundTrip", h.testRoundTrip},
		{"NotFound", h.testNotFound},
		{"CreateOnlyIfAbsent", h.testCreateOnlyIfAbsent},
		{"UpdateWithVersion", h.testUpdateWithVersion},
		{"UpdateAbsentKey", h.testUpdateAbsentKey},
		{"ConflictOnStaleVersion", h.testConflictOnStaleVersion},
		{"VersionsChangeOnEveryWrite", h.testVersionsChange},
		{"TTLExpiry", h.testTTLExpiry},
		{"NoTTLMeansNoExpiry", h.testNoTTL},
		{"Delete", h.testDelete},
		{"BinaryValues", h.testBinaryValues},
		{"LargeValue", h.testLargeValue},
		{"KeyAlphabet", h.testKeyAlphabet},
		{"Isolation", h.testIsolation},
		{"ConcurrentCAS", h.testConcurrentCAS},
		{"ContextCanceled", h.testContextCanceled},
		{"ContextDeadline", h.testContextDeadline},
		{"UseAfterClose", h.testUseAfterClose},
		{"CorruptRecord", h.testCorruptRecord},
		{"Lister", h.testLister},
		{"Pinger", h.testPinger},
		{"Volatile", h.testVolatile},
		{"Watch", h.testWatch},
		{"Versioner", h.testVersioner},
		{"Lifetimer", h.testLifetime},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := h.open(t)
			tc.fn(t, s)
		})
	}
}

type storeHarness struct {
	newStore func(t *testing.T) driver.Store
	caps     Capabilities
}

// open creates the subtest's store and closes it when the subtest ends.
// A Close that fails after the subtest already closed the store is fine:
// the contract lets Close report ErrClosed then.
func (h *storeHarness) open(t *testing.T) driver.Store {
	t.Helper()
	s := h.newStore(t)
	if s == nil {
		t.Fatal("newStore returned a nil Store")
	}
	t.Cleanup(func() {
		var err error
		func() {
			defer func() {
				if p := recover(); p != nil {
					err = fmt.Errorf("panic: %v", p)
				}
			}()
			err = s.Close()
		}()
		if err != nil && !errors.Is(err, driver.ErrClosed) {
			t.Errorf("Close at the end of the subtest failed: %v", err)
		}
	})
	return s
}

func (h *storeHarness) resolution() time.Duration {
	if h.caps.TTLResolution > 0 {
		return h.caps.TTLResolution
	}
	return defaultTTLResolution
}

// shortTTL is long enough that a key saved with it is still there when
// read back at once, and short enough to keep the suite quick.
func (h *storeHarness) shortTTL() time.Duration {
	return max(2*h.resolution(), 100*time.Millisecond)
}

// expiryDeadline is how long after a Save with ttl the key may still be
// visible: the TTL, one step of the store's clock, and slack for a loaded
// machine.
func (h *storeHarness) expiryDeadline(ttl time.Duration) time.Duration {
	return ttl + h.resolution() + max(h.resolution()/2, 200*time.Millisecond)
}

// Helpers that fail the test with a message naming the operation, so that a
// failure reads as "what the store did wrong", not as a bare error.

func mustSave(t *testing.T, s driver.Store, key string, value []byte, ifVersion driver.Version, ttl time.Duration) driver.Version {
	t.Helper()
	v, err := s.Save(context.Background(), key, value, ifVersion, ttl)
	if err != nil {
		t.Fatalf("Save(%q, %d bytes, ifVersion %d, ttl %v) failed: %v", key, len(value), ifVersion, ttl, err)
	}
	if v == driver.NoVersion {
		t.Fatalf("Save(%q) succeeded but returned NoVersion; a store must hand out a real version on every write", key)
	}
	return v
}

func mustLoad(t *testing.T, s driver.Store, key string) ([]byte, driver.Version) {
	t.Helper()
	b, v, err := s.Load(context.Background(), key)
	if err != nil {
		t.Fatalf("Load(%q) failed: %v", key, err)
	}
	if v == driver.NoVersion {
		t.Fatalf("Load(%q) found the key but returned NoVersion; a stored key always has a version", key)
	}
	return b, v
}

func wantValue(t *testing.T, s driver.Store, key string, want []byte, wantVersion driver.Version) {
	t.Helper()
	got, v := mustLoad(t, s, key)
	if !bytes.Equal(got, want) {
		t.Fatalf("Load(%q) returned %s, want %s", key, describe(got), describe(want))
	}
	if wantVersion != driver.NoVersion && v != wantVersion {
		t.Fatalf("Load(%q) returned version %d, but the Save that wrote it returned %d", key, v, wantVersion)
	}
}

func wantNotFound(t *testing.T, s driver.Store, key, why string) {
	t.Helper()
	b, v, err := s.Load(context.Background(), key)
	if !errors.Is(err, driver.ErrNotFound) {
		if err == nil {
			t.Fatalf("Load(%q) %s: returned %s (version %d), want an error wrapping ErrNotFound", key, why, describe(b), v)
		}
		t.Fatalf("Load(%q) %s: returned error %v, want one wrapping ErrNotFound", key, why, err)
	}
}

func wantConflict(t *testing.T, s driver.Store, key string, value []byte, ifVersion driver.Version, why string) {
	t.Helper()
	v, err := s.Save(context.Background(), key, value, ifVersion, 0)
	if !errors.Is(err, driver.ErrConflict) {
		if err == nil {
			t.Fatalf("Save(%q, ifVersion %d) %s: succeeded with version %d, want an error wrapping ErrConflict", key, ifVersion, why, v)
		}
		t.Fatalf("Save(%q, ifVersion %d) %s: returned %v, want an error wrapping ErrConflict", key, ifVersion, why, err)
	}
}

// describe prints a value short enough for a failure message.
func describe(b []byte) string {
	if b == nil {
		return "nil"
	}
	if len(b) <= 64 {
		return fmt.Sprintf("%d bytes %q", len(b), b)
	}
	return fmt.Sprintf("%d bytes starting %q", len(b), b[:32])
}

func (h *storeHarness) testRoundTrip(t *testing.T, s driver.Store) {
	v := mustSave(t, s, "roundtrip", []byte("hello"), driver.NoVersion, 0)
	wantValue(t, s, "roundtrip", []byte("hello"), v)
	// A second key must not disturb the first.
	v2 := mustSave(t, s, "roundtrip2", []byte("world"), driver.NoVersion, time.Hour)
	wantValue(t, s, "roundtrip", []byte("hello"), v)
	wantValue(t, s, "roundtrip2", []byte("world"), v2)
}

func (h *storeHarness) testNotFound(t *testing.T, s driver.Store) {
	wantNotFound(t, s, "never-saved", "of a key never saved")
	mustSave(t, s, "saved", []byte("x"), driver.NoVersion, 0)
	wantNotFound(t, s, "save", "of a prefix of a saved key")
	wantNotFound(t, s, "saved2", "of a key that extends a saved key")
}

func (h *storeHarness) testCreateOnlyIfAbsent(t *testing.T, s driver.Store) {
	v := mustSave(t, s, "create", []byte("first"), driver.NoVersion, 0)
	wantConflict(t, s, "create", []byte("second"), driver.NoVersion, "with NoVersion on a key that exists")
	wantValue(t, s, "create", []byte("first"), v)
}

func (h *storeHarness) testUpdateWithVersion(t *testing.T, s driver.Store) {
	v1 := mustSave(t, s, "update", []byte("one"), driver.NoVersion, 0)
	v2 := mustSave(t, s, "update", []byte("two"), v1, 0)
	if v2 == v1 {
		t.Fatalf("Save over version %d returned the same version; every write must get a new one", v1)
	}
	wantValue(t, s, "update", []byte("two"), v2)
	v3 := mustSave(t, s, "update", []byte("three"), v2, 0)
	wantValue(t, s, "update", []byte("three"), v3)
}

func (h *storeHarness) testUpdateAbsentKey(t *testing.T, s driver.Store) {
	// A version taken from another key must not let a writer create this one.
	v := mustSave(t, s, "other", []byte("x"), driver.NoVersion, 0)
	wantConflict(t, s, "absent", []byte("y"), v, "with a real version on a key that does not exist")
	wantNotFound(t, s, "absent", "after a conflicting Save")
}

func (h *storeHarness) testConflictOnStaleVersion(t *testing.T, s driver.Store) {
	v1 := mustSave(t, s, "stale", []byte("base"), driver.NoVersion, 0)
	// Two writers read v1; the first one wins.
	v2 := mustSave(t, s, "stale", []byte("winner"), v1, 0)
	wantConflict(t, s, "stale", []byte("loser"), v1, "with the version the winner replaced")
	wantValue(t, s, "stale", []byte("winner"), v2)
	// A made-up version must not match either.
	wantConflict(t, s, "stale", []byte("guess"), v2+12345, "with a version the store never handed out")
	wantValue(t, s, "stale", []byte("winner"), v2)
}

func (h *storeHarness) testVersionsChange(t *testing.T, s driver.Store) {
	seen := map[driver.Version]int{}
	note := func(i int, v driver.Version) {
		t.Helper()
		if j, dup := seen[v]; dup {
			t.Fatalf("write %d returned version %d, already returned by write %d; a repeated version lets a stale writer win", i, v, j)
		}
		seen[v] = i
	}
	value := []byte("same bytes every time")
	v := mustSave(t, s, "versions", value, driver.NoVersion, 0)
	note(0, v)
	for i := 1; i < 20; i++ {
		v = mustSave(t, s, "versions", value, v, 0)
		note(i, v)
	}
	// Delete and re-create: the key's old version must not come back,
	// or a writer that read before the delete would overwrite the new
	// value (the ABA problem).
	old := v
	if err := s.Delete(context.Background(), "versions"); err != nil {
		t.Fatalf("Delete failed: %v", err)
	}
	v = mustSave(t, s, "versions", value, driver.NoVersion, 0)
	note(20, v)
	wantConflict(t, s, "versions", []byte("stale"), old, "with the version of the key before it was deleted and re-created")
}

// waitExpired polls until key is gone, failing if it outlives deadline
// (measured from saved).
func (h *storeHarness) waitExpired(t *testing.T, s driver.Store, key string, saved time.Time, ttl time.Duration) {
	t.Helper()
	deadline := saved.Add(h.expiryDeadline(ttl))
	time.Sleep(time.Until(saved.Add(ttl)))
	poll := max(h.resolution()/4, 5*time.Millisecond)
	for {
		_, _, err := s.Load(context.Background(), key)
		if errors.Is(err, driver.ErrNotFound) {
			return
		}
		if err != nil {
			t.Fatalf("Load(%q) while waiting for it to expire failed: %v", key, err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("Load(%q) still returned the value %v after it was saved with ttl %v (resolution %v); the store does not expire keys",
				key, time.Since(saved).Round(time.Millisecond), ttl, h.resolution())
		}
		time.Sleep(poll)
	}
}

// wantLive checks that key, saved with ttl no earlier than saved, still
// holds want. On a machine so loaded that the TTL (less one step of the
// store's clock) has passed by the time Load runs, the key may rightly be
// gone: a miss then proves nothing and is logged, not failed, so the check
// never leans on the scheduler being quick.
func (h *storeHarness) wantLive(t *testing.T, s driver.Store, key string, want []byte, v driver.Version, saved time.Time, ttl time.Duration) {
	t.Helper()
	_, _, err := s.Load(context.Background(), key)
	if errors.Is(err, driver.ErrNotFound) && time.Since(saved) >= ttl-h.resolution() {
		t.Logf("Load(%q) missed %v after a Save with ttl %v: too late to tell whether the key expired early", key, time.Since(saved).Round(time.Millisecond), ttl)
		return
	}
	wantValue(t, s, key, want, v)
}

func (h *storeHarness) testTTLExpiry(t *testing.T, s driver.Store) {
	ttl := h.shortTTL()
	saved := time.Now()
	v := mustSave(t, s, "ttl", []byte("short-lived"), driver.NoVersion, ttl)
	mustSave(t, s, "ttl-long", []byte("long-lived"), driver.NoVersion, time.Hour)
	h.wantLive(t, s, "ttl", []byte("short-lived"), v, saved, ttl)
	h.waitExpired(t, s, "ttl", saved, ttl)
	// An expired key counts as absent for compare-and-set: the version it
	// had must not match, and NoVersion must create it again.
	wantConflict(t, s, "ttl", []byte("stale"), v, "with the version of an expired key")
	v2 := mustSave(t, s, "ttl", []byte("again"), driver.NoVersion, 0)
	if v2 == v {
		t.Fatalf("a key re-created after it expired got version %d again; a writer holding the expired key's version would overwrite the new value", v)
	}
	wantValue(t, s, "ttl", []byte("again"), v2)
	if _, _, err := s.Load(context.Background(), "ttl-long"); err != nil {
		t.Fatalf("Load of a key saved with ttl 1h failed after %v: %v", time.Since(saved), err)
	}
}

func (h *storeHarness) testNoTTL(t *testing.T, s driver.Store) {
	ttl := h.shortTTL()
	saved := time.Now()
	v := mustSave(t, s, "forever", []byte("kept"), driver.NoVersion, 0)
	// A key saved with a TTL and then rewritten with none must lose its
	// expiry: each Save sets the key's lifetime afresh.
	r := mustSave(t, s, "renewed", []byte("short"), driver.NoVersion, ttl)
	mustSave(t, s, "renewed", []byte("kept"), r, 0)
	time.Sleep(time.Until(saved.Add(h.expiryDeadline(ttl))))
	wantValue(t, s, "forever", []byte("kept"), v)
	b, _, err := s.Load(context.Background(), "renewed")
	if errors.Is(err, driver.ErrNotFound) {
		t.Fatalf("a key saved with ttl %v and then saved again with ttl 0 expired; the second Save must clear the expiry", ttl)
	}
	if err != nil || !bytes.Equal(b, []byte("kept")) {
		t.Fatalf("Load(%q) = %s, %v; want the value of the second Save", "renewed", describe(b), err)
	}
}

func (h *storeHarness) testDelete(t *testing.T, s driver.Store) {
	ctx := context.Background()
	mustSave(t, s, "del", []byte("x"), driver.NoVersion, 0)
	mustSave(t, s, "keep", []byte("y"), driver.NoVersion, 0)
	if err := s.Delete(ctx, "del"); err != nil {
		t.Fatalf("Delete of an existing key failed: %v", err)
	}
	wantNotFound(t, s, "del", "after Delete")
	wantValue(t, s, "keep", []byte("y"), driver.NoVersion)
	if err := s.Delete(ctx, "del"); err != nil {
		t.Fatalf("Delete of a key already deleted returned %v; deleting an absent key is not an error", err)
	}
	if err := s.Delete(ctx, "never-saved"); err != nil {
		t.Fatalf("Delete of a key never saved returned %v; deleting an absent key is not an error", err)
	}
	v := mustSave(t, s, "del", []byte("back"), driver.NoVersion, 0)
	wantValue(t, s, "del", []byte("back"), v)
}

func (h *storeHarness) testBinaryValues(t *testing.T, s driver.Store) {
	all := make([]byte, 512)
	for i := range all {
		all[i] = byte(i) // every byte value, twice, including NUL, CR, LF and 0xFF
	}
	v := mustSave(t, s, "binary", all, driver.NoVersion, 0)
	wantValue(t, s, "binary", all, v)

	for _, tc := range []struct {
		key   string
		value []byte
	}{{"empty", []byte{}}, {"nil", nil}} {
		v := mustSave(t, s, tc.key, tc.value, driver.NoVersion, 0)
		got, gv := mustLoad(t, s, tc.key)
		if len(got) != 0 {
			t.Fatalf("Load of a key saved with a %s value returned %s, want an empty value", tc.key, describe(got))
		}
		if gv != v {
			t.Fatalf("Load of a key saved with a %s value returned version %d, Save returned %d", tc.key, gv, v)
		}
	}
}

// pattern returns n deterministic bytes that do not repeat with a short
// period, so a store that truncates or reorders chunks is caught.
func pattern(n int) []byte {
	return patternSeed(n, 0x9E3779B97F4A7C15)
}

// patternSeed is pattern from another non-zero seed.
func patternSeed(n int, x uint64) []byte {
	b := make([]byte, n+8)
	for i := 0; i < n; i += 8 {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		binary.LittleEndian.PutUint64(b[i:], x)
	}
	return b[:n:n]
}

func (h *storeHarness) testLargeValue(t *testing.T, s driver.Store) {
	size := h.caps.MaxValueSize
	if size <= 0 {
		size = defaultLargeValue
	}
	big := pattern(size)
	v := mustSave(t, s, "large", big, driver.NoVersion, 0)
	got, gv := mustLoad(t, s, "large")
	if !bytes.Equal(got, big) {
		t.Fatalf("Load of a %d-byte value returned %d bytes that differ from what was saved", size, len(got))
	}
	if gv != v {
		t.Fatalf("Load of the large value returned version %d, Save returned %d", gv, v)
	}
	if h.caps.MaxValueSize <= 0 {
		return
	}
	tooBig := append(big, 0x5a)
	if _, err := s.Save(context.Background(), "too-large", tooBig, driver.NoVersion, 0); !errors.Is(err, driver.ErrTooLarge) {
		t.Fatalf("Save of %d bytes (MaxValueSize+1) returned %v, want an error wrapping ErrTooLarge", size+1, err)
	}
	wantNotFound(t, s, "too-large", "after Save failed with ErrTooLarge")
	if _, err := s.Save(context.Background(), "large", tooBig, v, 0); !errors.Is(err, driver.ErrTooLarge) {
		t.Fatalf("Save of %d bytes over an existing key returned %v, want an error wrapping ErrTooLarge", size+1, err)
	}
	got, gv = mustLoad(t, s, "large")
	if gv != v || !bytes.Equal(got, big) {
		t.Fatalf("a Save that failed with ErrTooLarge changed the stored value (version %d -> %d)", v, gv)
	}
}

func (h *storeHarness) testKeyAlphabet(t *testing.T, s driver.Store) {
	// Every one-byte key, each with its own value: catches stores that
	// fold case or treat '.', ':' or '/' specially.
	versions := map[string]driver.Version{}
	for _, c := range keyAlphabet {
		k := string(c)
		v, err := s.Save(context.Background(), k, []byte("value of "+k), driver.NoVersion, 0)
		if errors.Is(err, driver.ErrConflict) {
			t.Fatalf("Save(%q) with NoVersion conflicted although only keys %q were saved before: the store treats distinct keys as the same key (case folding?)",
				k, keyAlphabet[:strings.IndexRune(keyAlphabet, c)])
		}
		if err != nil {
			t.Fatalf("Save(%q) failed: %v", k, err)
		}
		versions[k] = v
	}
	for _, c := range keyAlphabet {
		k := string(c)
		wantValue(t, s, k, []byte("value of "+k), versions[k])
	}
	// The longest key the contract allows, using every allowed byte.
	long := strings.Repeat(keyAlphabet, 200/len(keyAlphabet)+1)[:200]
	long2 := long[:199] + "Z"
	v := mustSave(t, s, long, []byte("long"), driver.NoVersion, 0)
	v2 := mustSave(t, s, long2, []byte("long2"), driver.NoVersion, 0)
	wantValue(t, s, long, []byte("long"), v)
	wantValue(t, s, long2, []byte("long2"), v2)
	if err := s.Delete(context.Background(), long); err != nil {
		t.Fatalf("Delete of a 200-byte key failed: %v", err)
	}
	wantNotFound(t, s, long, "of a 200-byte key after Delete")
	wantValue(t, s, long2, []byte("long2"), v2)
}

func (h *storeHarness) testIsolation(t *testing.T, s driver.Store) {
	in := []byte("original")
	v := mustSave(t, s, "iso", in, driver.NoVersion, 0)
	copy(in, "MUTATED!")
	got, _ := mustLoad(t, s, "iso")
	if string(got) != "original" {
		t.Fatalf("after the caller changed the slice it passed to Save, Load returned %q; the store must copy (or have written) the value before Save returns", got)
	}
	copy(got, "CHANGED!")
	again, gv := mustLoad(t, s, "iso")
	if string(again) != "original" {
		t.Fatalf("after the caller changed a slice Load returned, the next Load returned %q; Load must hand out a copy", again)
	}
	if gv != v {
		t.Fatalf("Load returned version %d, Save returned %d", gv, v)
	}
	// Two loads must not share memory either.
	a, _ := mustLoad(t, s, "iso")
	b, _ := mustLoad(t, s, "iso")
	a[0] = 'X'
	if b[0] == 'X' {
		t.Fatal("two Loads returned slices sharing memory")
	}
}

func (h *storeHarness) testConcurrentCAS(t *testing.T, s driver.Store) {
	const (
		workers    = 8
		increments = 25
		maxTries   = 100000 // per goroutine; stops a store whose CAS never succeeds
	)
	ctx := context.Background()
	var wg sync.WaitGroup
	var mu sync.Mutex
	conflicts := 0
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			done, tries := 0, 0
			for done < increments {
				tries++
				if tries > maxTries {
					t.Errorf("worker gave up after %d tries with %d of %d increments done; compare-and-set keeps failing", maxTries, done, increments)
					return
				}
				n := 0
				b, v, err := s.Load(ctx, "counter")
				switch {
				case errors.Is(err, driver.ErrNotFound):
					v = driver.NoVersion
				case err != nil:
					t.Errorf("Load during concurrent increments failed: %v", err)
					return
				default:
					n, err = strconv.Atoi(string(b))
					if err != nil {
						t.Errorf("the counter holds %s, which no writer saved: %v", describe(b), err)
						return
					}
				}
				// Let another worker run between the read and the write,
				// so that even an in-process store sees stale versions.
				runtime.Gosched()
				_, err = s.Save(ctx, "counter", []byte(strconv.Itoa(n+1)), v, 0)
				switch {
				case errors.Is(err, driver.ErrConflict):
					mu.Lock()
					conflicts++
					mu.Unlock()
				case err != nil:
					t.Errorf("Save during concurrent increments failed: %v", err)
					return
				default:
					done++
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	b, _ := mustLoad(t, s, "counter")
	got, err := strconv.Atoi(string(b))
	if err != nil {
		t.Fatalf("the counter holds %s: %v", describe(b), err)
	}
	if want := workers * increments; got != want {
		t.Fatalf("%d goroutines made %d successful compare-and-set increments but the counter is %d: %d updates were lost, so Save does not compare and write atomically",
			workers, want, got, want-got)
	}
	t.Logf("%d increments, %d conflicts retried", workers*increments, conflicts)
}

// callPromptly runs fn and fails the test if it does not return within
// hangTimeout.
func callPromptly(t *testing.T, what string, fn func() error) error {
	t.Helper()
	ch := make(chan error, 1)
	go func() { ch <- fn() }()
	select {
	case err := <-ch:
		return err
	case <-time.After(hangTimeout):
		t.Fatalf("%s did not return within %v", what, hangTimeout)
		return nil
	}
}

// checkCtxErr calls Load, Save, Delete (and List, Ping, Version and Watch
// when implemented) with ctx and expects every one to fail with an error
// wrapping want.
func (h *storeHarness) checkCtxErr(t *testing.T, s driver.Store, ctx context.Context, want error) {
	t.Helper()
	mustSave(t, s, "present", []byte("x"), driver.NoVersion, 0)
	check := func(op string, err error) {
		t.Helper()
		if !errors.Is(err, want) {
			t.Errorf("%s with a context that is already done (%v) returned %v, want an error wrapping %v", op, want, err, want)
		}
	}
	check("Load", callPromptly(t, "Load", func() error {
		_, _, err := s.Load(ctx, "present")
		return err
	}))
	check("Save", callPromptly(t, "Save", func() error {
		_, err := s.Save(ctx, "new", []byte("y"), driver.NoVersion, 0)
		return err
	}))
	check("Delete", callPromptly(t, "Delete", func() error { return s.Delete(ctx, "present") }))
	if l, ok := s.(driver.Lister); ok {
		check("List", callPromptly(t, "List", func() error {
			return l.List(ctx, "", func(string) error { return nil })
		}))
	}
	if p, ok := s.(driver.Pinger); ok {
		check("Ping", callPromptly(t, "Ping", func() error { return p.Ping(ctx) }))
	}
	if vr, ok := s.(driver.Versioner); ok {
		check("Version", callPromptly(t, "Version", func() error {
			_, err := vr.Version(ctx, "present")
			return err
		}))
	}
	if w, ok := s.(driver.Watcher); ok {
		check("Watch", callPromptly(t, "Watch", func() error { return watchOnce(ctx, w) }))
	}
	// A call that was refused must not have happened.
	wantNotFound(t, s, "new", "after Save was called with a done context")
	if _, _, err := s.Load(context.Background(), "present"); err != nil {
		t.Errorf("Delete with a done context removed the key (Load now returns %v)", err)
	}
}

func (h *storeHarness) testContextCanceled(t *testing.T, s driver.Store) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	h.checkCtxErr(t, s, ctx, context.Canceled)
}

func (h *storeHarness) testContextDeadline(t *testing.T, s driver.Store) {
	ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	h.checkCtxErr(t, s, ctx, context.DeadlineExceeded)
}

func (h *storeHarness) testUseAfterClose(t *testing.T, s driver.Store) {
	ctx := context.Background()
	mustSave(t, s, "k", []byte("v"), driver.NoVersion, 0)
	if err := s.Close(); err != nil {
		t.Fatalf("Close failed: %v", err)
	}
	check := func(op string, err error) {
		t.Helper()
		if !errors.Is(err, driver.ErrClosed) {
			t.Errorf("%s after Close returned %v, want an error wrapping ErrClosed", op, err)
		}
	}
	_, _, err := s.Load(ctx, "k")
	check("Load", err)
	_, err = s.Save(ctx, "k2", []byte("v"), driver.NoVersion, 0)
	check("Save", err)
	check("Delete", s.Delete(ctx, "k"))
	if l, ok := s.(driver.Lister); ok {
		check("List", l.List(ctx, "", func(string) error { return nil }))
	}
	if p, ok := s.(driver.Pinger); ok {
		if err := p.Ping(ctx); err == nil {
			t.Error("Ping after Close returned nil; a closed store does not answer")
		}
	}
	if vr, ok := s.(driver.Versioner); ok {
		_, err := vr.Version(ctx, "k")
		check("Version", err)
	}
	if w, ok := s.(driver.Watcher); ok {
		check("Watch", watchOnce(ctx, w))
	}
	func() {
		defer func() {
			if p := recover(); p != nil {
				t.Errorf("a second Close panicked: %v", p)
			}
		}()
		if err := s.Close(); err != nil && !errors.Is(err, driver.ErrClosed) {
			t.Errorf("a second Close returned %v, want nil or an error wrapping ErrClosed", err)
		}
	}()
}

// listAll collects what List reports for prefix.
func listAll(t *testing.T, l driver.Lister, prefix string) []string {
	t.Helper()
	var keys []string
	err := callPromptly(t, "List", func() error {
		return l.List(context.Background(), prefix, func(k string) error {
			keys = append(keys, k)
			return nil
		})
	})
	if err != nil {
		t.Fatalf("List(%q) failed: %v", prefix, err)
	}
	slices.Sort(keys)
	return keys
}

func (h *storeHarness) testLister(t *testing.T, s driver.Store) {
	l, ok := s.(driver.Lister)
	if !ok {
		t.Skip("store does not implement driver.Lister")
	}
	if keys := listAll(t, l, ""); len(keys) != 0 {
		t.Fatalf("List on a fresh store reported %q; newStore must return an empty store", keys)
	}
	ttl := h.shortTTL()
	for _, k := range []string{"app:a:1", "app:a:2", "app:b:1", "app:ab", "other"} {
		mustSave(t, s, k, []byte(k), driver.NoVersion, 0)
	}
	saved := time.Now()
	mustSave(t, s, "app:a:expiring", []byte("x"), driver.NoVersion, ttl)
	mustSave(t, s, "app:a:deleted", []byte("x"), driver.NoVersion, 0)
	if err := s.Delete(context.Background(), "app:a:deleted"); err != nil {
		t.Fatalf("Delete failed: %v", err)
	}

	want := func(prefix string, wantKeys ...string) {
		t.Helper()
		got := listAll(t, l, prefix)
		if without := slices.DeleteFunc(slices.Clone(wantKeys), func(k string) bool { return k == "app:a:expiring" }); slices.Equal(got, without) && time.Since(saved) >= ttl-h.resolution() {
			return // too late to expect the expiring key: see wantLive
		}
		if !slices.Equal(got, wantKeys) {
			t.Fatalf("List(%q) reported %q, want %q", prefix, got, wantKeys)
		}
	}
	want("app:a:", "app:a:1", "app:a:2", "app:a:expiring")
	want("app:b:", "app:b:1")
	want("app:", "app:a:1", "app:a:2", "app:a:expiring", "app:ab", "app:b:1")
	want("nothing-here")
	want("other", "other")

	h.waitExpired(t, s, "app:a:expiring", saved, ttl)
	want("app:a:", "app:a:1", "app:a:2")
	want("", "app:a:1", "app:a:2", "app:ab", "app:b:1", "other")

	// An error from fn stops the listing and comes back to the caller.
	stop := errors.New("stop here")
	calls := 0
	err := l.List(context.Background(), "app:", func(string) error {
		calls++
		return stop
	})
	if !errors.Is(err, stop) {
		t.Fatalf("List returned %v when fn failed, want the error fn returned", err)
	}
	if calls != 1 {
		t.Fatalf("List called fn %d times after it returned an error, want 1", calls)
	}

	// fn may use the store: the CLI loads and rewrites keys while listing.
	err = callPromptly(t, "List with an fn that calls the store", func() error {
		return l.List(context.Background(), "app:a:", func(k string) error {
			b, v, err := s.Load(context.Background(), k)
			if err != nil {
				return fmt.Errorf("Load(%q) inside List: %w", k, err)
			}
			if _, err := s.Save(context.Background(), k, append(b, '!'), v, 0); err != nil {
				return fmt.Errorf("Save(%q) inside List: %w", k, err)
			}
			if err := s.Delete(context.Background(), "app:b:1"); err != nil {
				return fmt.Errorf("Delete inside List: %w", err)
			}
			return nil
		})
	})
	if err != nil {
		t.Fatalf("List with an fn that calls the store failed: %v", err)
	}
	wantValue(t, s, "app:a:1", []byte("app:a:1!"), driver.NoVersion)
	wantValue(t, s, "app:a:2", []byte("app:a:2!"), driver.NoVersion)
	want("app:b:")
}

func (h *storeHarness) testPinger(t *testing.T, s driver.Store) {
	p, ok := s.(driver.Pinger)
	if !ok {
		t.Skip("store does not implement driver.Pinger")
	}
	if err := callPromptly(t, "Ping", func() error { return p.Ping(context.Background()) }); err != nil {
		t.Fatalf("Ping of a working store failed: %v", err)
	}
}

func (h *storeHarness) testVolatile(t *testing.T, s driver.Store) {
	if got := driver.IsVolatile(s); got != h.caps.Volatile {
		if h.caps.Volatile {
			t.Fatal("Capabilities say the store may evict keys early, but driver.IsVolatile reports false: the key ring could be put in it and lost")
		}
		t.Fatal("driver.IsVolatile reports true but Capabilities.Volatile is false: declare the capability, or stop reporting Volatile")
	}
}

// shortRecords are records too short for the header of any layout: every
// store must report them as corrupt.
func shortRecords() map[string][]byte {
	return map[string][]byte{
		"empty":   {},
		"1-byte":  {0x01},
		"2-bytes": {0x00, 0x01},
		"3-bytes": []byte("abc"),
	}
}

// keyName turns a record's name into a key of the contract's alphabet.
func keyName(name string) string {
	b := []byte(name)
	for i, c := range b {
		if !strings.ContainsRune(keyAlphabet, rune(c)) {
			b[i] = '-'
		}
	}
	return string(b)
}

// loadNoPanic is Load, failing the test with a message if it panics: a
// store that panics on a damaged record takes the whole process down.
func loadNoPanic(t *testing.T, s driver.Store, key string) (b []byte, v driver.Version, err error) {
	t.Helper()
	defer func() {
		if p := recover(); p != nil {
			t.Fatalf("Load(%q) panicked on a record the store cannot decode: %v", key, p)
		}
	}()
	return s.Load(context.Background(), key)
}

// quoted reports what of key and raw err's text repeats, if anything.
// Records shorter than 4 bytes are not looked for: they could appear in
// any message by chance.
func quoted(msg, key string, raw []byte) string {
	if strings.Contains(msg, key) {
		return "key"
	}
	if len(raw) < 4 {
		return ""
	}
	for _, form := range []string{string(raw), fmt.Sprintf("%x", raw), strings.Trim(fmt.Sprintf("%q", raw), `"`)} {
		if strings.Contains(msg, form) {
			return "record's bytes"
		}
	}
	return ""
}

// wantCorrupt checks that Load reports key's record raw as corrupt.
func wantCorrupt(t *testing.T, s driver.Store, key string, raw []byte, why string) {
	t.Helper()
	b, v, err := loadNoPanic(t, s, key)
	switch {
	case err == nil:
		t.Fatalf("Load(%q) %s returned %s (version %d), want an error wrapping ErrCorrupt: a store must not hand out a record it cannot decode",
			key, why, describe(b), v)
	case errors.Is(err, driver.ErrNotFound):
		t.Fatalf("Load(%q) %s returned %v, want an error wrapping ErrCorrupt: the key holds a record, and reporting it absent hides the damage",
			key, why, err)
	case !errors.Is(err, driver.ErrCorrupt):
		t.Fatalf("Load(%q) %s returned %v, want an error wrapping ErrCorrupt", key, why, err)
	}
	if what := quoted(err.Error(), key, raw); what != "" {
		t.Fatalf("Load(%q) %s returned %q, which quotes the %s: a record may hold tokens and a key names a user, so errors carry neither",
			key, why, err, what)
	}
	if b != nil || v != driver.NoVersion {
		t.Fatalf("Load(%q) %s reported ErrCorrupt but also returned %s and version %d; it returns no value instead", key, why, describe(b), v)
	}
}

// testCorruptRecord plants records the store cannot decode through
// Capabilities.PutRaw and checks the contract for them: Load reports
// ErrCorrupt (no value, no panic, no quoted bytes), a Save with a version
// conflicts and leaves the record alone, a Save with NoVersion replaces
// it, Delete removes it and List still lists it. Without that, one damaged
// value wedges its key: every reader misses, every writer conflicts, and
// the key stays broken until an operator deletes it.
func (h *storeHarness) testCorruptRecord(t *testing.T, s driver.Store) {
	if h.caps.PutRaw == nil {
		t.Skip("Capabilities.PutRaw is nil: the store offers no way to plant raw bytes, so the suite cannot check how it handles a record it cannot decode")
	}
	if len(h.caps.CorruptRecords) == 0 {
		t.Fatal("Capabilities.PutRaw is set but CorruptRecords is empty: declare the damaged records of the store's own layout (at least a header holding version 0, and one of the right length with a bad header)")
	}
	ctx := context.Background()
	records := shortRecords()
	for name, raw := range h.caps.CorruptRecords {
		if _, dup := records[name]; dup {
			name = "declared-" + name
		}
		records[name] = raw
	}
	names := slices.Sorted(maps.Keys(records))
	put := func(key string, raw []byte) {
		t.Helper()
		if err := h.caps.PutRaw(ctx, s, key, slices.Clone(raw)); err != nil {
			t.Fatalf("Capabilities.PutRaw(%q, %d bytes) failed: %v", key, len(raw), err)
		}
	}

	// A version the store really handed out, for another key: it must
	// not match a corrupt record either.
	intact := mustSave(t, s, "intact", []byte("intact"), driver.NoVersion, 0)
	var keys []string
	for _, name := range names {
		key := "damaged/" + keyName(name)
		put(key, records[name])
		keys = append(keys, key)
	}
	if l, ok := s.(driver.Lister); ok {
		if got := listAll(t, l, "damaged/"); !slices.Equal(got, keys) {
			t.Fatalf("List(%q) reported %q after corrupt records were planted under %q: a record the store cannot decode is still a key, and an operator lists keys to find and delete such records",
				"damaged/", got, keys)
		}
	}
	for i, name := range names {
		key, raw := keys[i], records[name]
		wantCorrupt(t, s, key, raw, "of a planted "+name+" record")
		for _, v := range []driver.Version{intact, intact + 1, ^driver.NoVersion} {
			got, err := s.Save(ctx, key, []byte("overwrite"), v, 0)
			if !errors.Is(err, driver.ErrConflict) {
				t.Fatalf("Save(%q, ifVersion %d) over a corrupt %s record returned version %d, %v; want an error wrapping ErrConflict: only NoVersion may replace a record the store cannot decode",
					key, v, name, got, err)
			}
		}
		wantCorrupt(t, s, key, raw, "after Saves with a version conflicted")
		repaired := []byte("repaired " + name)
		v, err := s.Save(ctx, key, repaired, driver.NoVersion, time.Hour)
		if err != nil {
			t.Fatalf("Save(%q, NoVersion) over a corrupt %s record returned %v; Save with NoVersion must replace a record that Load reports as corrupt, or the key stays wedged until someone deletes it",
				key, name, err)
		}
		if v == driver.NoVersion {
			t.Fatalf("Save(%q, NoVersion) over a corrupt %s record succeeded but returned NoVersion", key, name)
		}
		wantValue(t, s, key, repaired, v)
		wantConflict(t, s, key, []byte("second create"), driver.NoVersion, "once the corrupt "+name+" record was replaced")
		mustSave(t, s, key, []byte("updated"), v, 0)

		del := "deleted/" + keyName(name)
		put(del, raw)
		if err := s.Delete(ctx, del); err != nil {
			t.Fatalf("Delete(%q) of a corrupt %s record failed: %v", del, name, err)
		}
		wantNotFound(t, s, del, "after Delete of a corrupt "+name+" record")
	}
	wantValue(t, s, "intact", []byte("intact"), intact)

	// Random bytes may decode as a record in some layouts; whatever Load
	// makes of them, it must not panic, and the key must stay writable
	// with the version Load implies.
	for i, n := range []int{8, 9, 17, 64, 1000} {
		key := fmt.Sprintf("random/%d", n)
		raw := patternSeed(n, uint64(i+1)*0x2545F4914F6CDD1D)
		put(key, raw)
		b, v, err := loadNoPanic(t, s, key)
		ifVersion := driver.NoVersion
		switch {
		case errors.Is(err, driver.ErrCorrupt), errors.Is(err, driver.ErrNotFound): // undecodable, or an expired record
			if err != nil && quoted(err.Error(), key, raw) != "" {
				t.Fatalf("Load(%q) of %d random bytes returned %q, which quotes the key or the record", key, n, err)
			}
		case err != nil:
			t.Fatalf("Load(%q) of %d random bytes returned %v, want a value, ErrCorrupt or ErrNotFound", key, n, err)
		case v == driver.NoVersion:
			t.Fatalf("Load(%q) of %d random bytes returned %s with version NoVersion; a store never hands out NoVersion (a Save with it means create)", key, n, describe(b))
		default:
			ifVersion = v
		}
		if _, err := s.Save(ctx, key, []byte("after random"), ifVersion, 0); err != nil {
			t.Fatalf("Save(%q, ifVersion %d) after Load of %d random bytes returned %v: the key must stay writable with the version Load implies",
				key, ifVersion, n, err)
		}
		wantValue(t, s, key, []byte("after random"), driver.NoVersion)
	}
}

// watchOnce calls Watch and, should it succeed, stops the watch at once:
// for the checks that expect Watch to fail.
func watchOnce(ctx context.Context, w driver.Watcher) error {
	stop, err := w.Watch(ctx, func(driver.Change) {})
	if err == nil && stop != nil {
		stop()
	}
	return err
}
