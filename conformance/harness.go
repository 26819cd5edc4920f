package conformance

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/msalcache/msalcache/driver"
)

// Harness is what a store's test hands the suites that run on a store
// (RunStoreTests and RunMSALTests): a way to make fresh, empty stores over
// the backend under test. It is gocloud.dev drivertest's shape: one
// required method, and every optional capability an interface of its own
// (Limiter, RawPutter, HandleOpener, WatchBreaker) that the suites find on
// the Harness by type assertion, so that a store declares what it can do
// by implementing a method rather than by filling in a struct of
// functions, and a capability the suite learns tomorrow costs existing
// harnesses nothing.
type Harness interface {
	// MakeStore returns a store that holds no keys: a new file, a flushed
	// database, or a prefix no other call has used. The suites close it
	// when the subtest ends (a store must therefore accept a second Close
	// without panicking); close what else MakeStore opened (a client) in
	// the Harness's Close or with t.Cleanup. An error, or t.Skip when the
	// backend is unavailable, ends the subtest.
	MakeStore(ctx context.Context, t *testing.T) (driver.Store, error)

	// Close releases what the Harness holds. The suites call it when the
	// subtest that made the Harness ends, after the stores it made are
	// closed.
	Close()
}

// HarnessMaker returns a Harness for one subtest: every subtest of the
// suites calls it once, so a Harness may keep per-subtest state (the
// stores it made, their prefixes).
type HarnessMaker func(ctx context.Context, t *testing.T) (Harness, error)

// Limits are a store's documented limits, so that the suites hold each
// store to its own limits instead of to the strictest backend's.
type Limits struct {
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
}

// Limiter is the optional Harness capability that declares the store's
// Limits. A Harness without it declares the zero Limits: no value limit,
// 10ms expiry, no eviction.
type Limiter interface {
	Limits() Limits
}

// RawPutter is the optional Harness capability to plant raw bytes past the
// store's record format: what a damaged disk, a truncated write or another
// program would leave there. It is the one declaration of that capability:
// RunStoreTests' CorruptRecord subtest checks with it that a record the
// store cannot decode is reported as driver.ErrCorrupt and repaired by a
// Save with driver.NoVersion, and RunMSALTests' DamagedPartitionHealed
// subtest plants CorruptRecords under a partition's key and checks that the
// first instance to miss it repairs it. Without it both are skipped. A
// store that keeps no bytes (memstore holds Go values) cannot hold a
// corrupt record and leaves it out.
type RawPutter interface {
	// PutRaw writes raw as the backend's whole value for key in s,
	// bypassing s's record format. s is a store this Harness's MakeStore
	// returned, so PutRaw can find its prefix, bucket or file.
	PutRaw(ctx context.Context, s driver.Store, key string, raw []byte) error

	// CorruptRecords are raw records, by name, that the store's own
	// layout cannot decode and must report as driver.ErrCorrupt: at
	// least a header holding version 0 (driver.NoVersion, which a store
	// never hands out) and a value of the right length whose header is
	// wrong in another way (an unknown format byte, a flag). The suite
	// adds the records no layout decodes (empty, 1 to 3 bytes) and random
	// bytes, which it only requires the store to survive. It must not be
	// empty.
	CorruptRecords() map[string][]byte
}

// HandleOpener is the optional Harness capability to open another handle
// on a store's data, as a second instance of the application would:
// another client, connection or Store value over the same server, file or
// map. The Watch subtest writes through it and expects the watcher on s to
// hear of it, since an L1 must learn of writes made by other instances,
// not only of its own. The suite closes the handle when the subtest ends;
// close what else OpenHandle opened (a client) with t.Cleanup. Without it
// the suite uses s itself, which is right only for a store whose handles
// all share one Store value.
type HandleOpener interface {
	OpenHandle(t *testing.T, s driver.Store) (driver.Store, error)
}

// WatchBreaker is the optional Harness capability to cut the channel
// through which s learns of changes, as a dropped connection or a failover
// would (for Redis: CLIENT KILL TYPE pubsub). The Watch subtest then
// expects s's watcher to be told ChangeWatchDown and then ChangeWatchUp
// again, and to hear changes after that. Without it that part is skipped,
// for a store whose push cannot break (memstore tells its watchers in
// process).
type WatchBreaker interface {
	BreakWatch(t *testing.T, s driver.Store)
}

// suiteCase is one named case of a suite, in the manner of
// testing/slogtest: the explanation says in one line what a store or
// adapter that fails the case breaks, and is printed with the failure, so
// that the reader of a CI log learns why the check exists without opening
// the suite.
type suiteCase[F any] struct {
	name        string
	explanation string
	run         F
}

// explainFailure prints a case's explanation if t failed, as
// "name: explanation"; deferred by the runner of every case, so that it
// runs after a t.Fatal too.
func explainFailure(t *testing.T, name, explanation string) {
	if t.Failed() {
		t.Logf("%s: %s", name, explanation)
	}
}

// openHarness calls newHarness for the subtest t and closes the Harness
// when t ends. The harness's Close is registered first, so that it runs
// after the stores' Closes, which are registered later.
func openHarness(ctx context.Context, t *testing.T, newHarness HarnessMaker) Harness {
	t.Helper()
	h, err := newHarness(ctx, t)
	if err != nil {
		t.Fatalf("conformance: the HarnessMaker failed: %v", err)
	}
	if h == nil {
		t.Fatal("conformance: the HarnessMaker returned a nil Harness")
	}
	t.Cleanup(h.Close)
	return h
}

// makeStore calls h.MakeStore and closes the store when t ends. A Close
// that fails after the subtest already closed the store is fine: the
// contract lets Close report ErrClosed then.
func makeStore(ctx context.Context, t *testing.T, h Harness) driver.Store {
	t.Helper()
	s, err := h.MakeStore(ctx, t)
	return closeAtEnd(t, "Harness.MakeStore", s, err)
}

// closeAtEnd fails t if the call what did not return a store s, and
// closes s when t ends, failing t if the Close fails with anything but
// ErrClosed or panics.
func closeAtEnd(t *testing.T, what string, s driver.Store, err error) driver.Store {
	t.Helper()
	if err != nil {
		t.Fatalf("%s failed: %v", what, err)
	}
	if s == nil {
		t.Fatalf("%s returned a nil Store", what)
	}
	t.Cleanup(func() {
		var err error
		func() {
			defer func() {
				if p := recover(); p != nil {
					err = fmt.Errorf("it panicked: %v", p)
				}
			}()
			err = s.Close()
		}()
		if err != nil && !errors.Is(err, driver.ErrClosed) {
			t.Errorf("Close of the store from %s failed at the end of the subtest: %v", what, err)
		}
	})
	return s
}

// runCases runs cases on h, one subtest each, printing a failed case's
// explanation: the runner of the suites that take a plain constructor.
func runCases[H any](t *testing.T, h H, cases []suiteCase[func(H, *testing.T)]) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			defer explainFailure(t, tc.name, tc.explanation)
			tc.run(h, t)
		})
	}
}

// limitsOf returns h's declared Limits, or the zero Limits.
func limitsOf(h Harness) Limits {
	if l, ok := h.(Limiter); ok {
		return l.Limits()
	}
	return Limits{}
}

// storeMaker is a Harness over a function that makes stores, for the
// suite's own fixtures that need nothing more.
type storeMaker func() driver.Store

// MakeStore implements Harness.
func (m storeMaker) MakeStore(context.Context, *testing.T) (driver.Store, error) {
	return m(), nil
}

// Close implements Harness.
func (storeMaker) Close() {}
