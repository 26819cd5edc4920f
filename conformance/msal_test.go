package conformance

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/cache"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/internal/testring"
	"github.com/msalcache/msalcache/memstore"
)

// brokenEnv names the broken adapter TestBrokenAdapter runs the suite on;
// it is set only when TestMSALSuiteCatchesBrokenAdapters re-executes the
// test binary.
const brokenEnv = "CONFORMANCE_BROKEN_ADAPTER"

// brokenCases are the broken adapters, each with a subtest that must fail
// it and what its failure must say.
var brokenCases = []struct{ broken, subtest, message string }{
	{"no-reset-on-miss", "RemoveAccount", "a miss left MSAL's in-memory cache as it was"},
	{"last-writer-wins", "ConcurrentWritersLoseNothing", "written by concurrent instances were lost"},
	{"stores-obo", "OnBehalfOf", "under the key MSAL-Go exported"},
	{"ignores-remove", "RemoveAccount", "partition survived sign-out"},
	{"ignores-remove", "RemovedUserNeverServed", "served signed-out bob"},
	{"one-partition", "NoPartitionHoldsAnotherUsersTokens", "partition holds"},
	{"unfiltered", "NoPartitionHoldsAnotherUsersTokens", "partition holds"},
	{"unfiltered", "ForeignBytesNeverStored", "partition holds"},
	{"fails-on-store-error", "FailingStoreNeverFailsTokenCalls", "with the store down"},
	{"stores-in-clear", "NothingInClear", "in clear"},
	{"never-stores", "AppTokenSharedByInstances", "another token than the one instance 1 stored"},
	{"never-stores", "UserServedOnAnotherInstance", "account not in the cache"},
	{"l1-deaf", "L1RefreshOnAServedOnB", "its L1 ignores other instances' writes"},
	{"l1-deaf", "L1RemoveOnAReachesB", "once the sign-out had reached B"},
	{"l1-ignores-maxstale", "L1NeverOlderThanMaxStale", "does not bound staleness by MaxStale"},
	{"l1-reads-through", "L1HotPathNoStoreCalls", "does not serve the hot path from memory"},
}

// l1Subtests are the subtests that run "none-nopush", the unbroken adapter
// over a store that cannot push, so that the L1 scenarios' MaxStale path
// is proven to pass a correct adapter too.
var l1Subtests = []string{"L1RefreshOnAServedOnB", "L1RemoveOnAReachesB", "L1NeverOlderThanMaxStale", "L1HotPathNoStoreCalls"}

// TestMSALSuiteCatchesBrokenAdapters proves that RunMSALTests fails
// adapters that break what it exists to check, each in the subtest meant
// to catch it and with a message that says what went wrong, and that the
// same adapter unbroken passes those subtests, so that each failure comes
// from the break. Each run is a child process, since a failing suite fails
// the *testing.T it is given, and runs only the subtests it needs: the
// suite's costliest ones prove nothing more here.
func TestMSALSuiteCatchesBrokenAdapters(t *testing.T) {
	var subtests []string
	for _, tc := range brokenCases {
		if !slices.Contains(subtests, tc.subtest) {
			subtests = append(subtests, tc.subtest)
		}
	}
	for _, none := range []struct {
		name     string
		subtests []string
	}{{"none", subtests}, {"none-nopush", l1Subtests}} {
		t.Run(none.name, func(t *testing.T) {
			t.Parallel()
			out, err := runBroken(none.name, "("+strings.Join(none.subtests, "|")+")")
			if err != nil {
				t.Fatalf("the unbroken adapter failed the subtests that catch the broken ones (%v):\n%s", err, out)
			}
			for _, name := range none.subtests {
				if !strings.Contains(out, "--- PASS: TestBrokenAdapter/"+name+" ") {
					t.Fatalf("subtest %s did not run:\n%s", name, out)
				}
			}
		})
	}
	for _, tc := range brokenCases {
		t.Run(tc.broken+"/"+tc.subtest, func(t *testing.T) {
			t.Parallel()
			out, err := runBroken(tc.broken, tc.subtest)
			if err == nil {
				t.Fatalf("the suite passed the %q adapter:\n%s", tc.broken, out)
			}
			if !strings.Contains(out, "--- FAIL: TestBrokenAdapter/"+tc.subtest+" ") {
				t.Fatalf("the %q adapter did not fail subtest %s:\n%s", tc.broken, tc.subtest, out)
			}
			if !strings.Contains(out, tc.message) || strings.Contains(out, "panic:") {
				t.Fatalf("the %q adapter failed %s without saying %q:\n%s", tc.broken, tc.subtest, tc.message, out)
			}
			for _, line := range strings.Split(out, "\n") {
				if strings.Contains(line, ".go:") && !strings.Contains(line, "level=") {
					t.Log(strings.TrimSpace(line))
				}
			}
		})
	}
}

// runBroken runs the subtests matching pattern of TestBrokenAdapter, on the
// adapter named broken, in a child process.
func runBroken(broken, pattern string) (string, error) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestBrokenAdapter$/^"+pattern+"$", "-test.v")
	cmd.Env = append(os.Environ(), brokenEnv+"="+broken)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestBrokenAdapter runs the MSAL suite, encrypted, on memstore behind the
// adapter named by brokenEnv; TestMSALSuiteCatchesBrokenAdapters expects it
// to fail, or to pass for "none" and "none-nopush" (memstore without its
// Watcher and Versioner: a store that cannot push).
func TestBrokenAdapter(t *testing.T) {
	broken := os.Getenv(brokenEnv)
	if broken == "" {
		t.Skip("run by TestMSALSuiteCatchesBrokenAdapters")
	}
	RunMSALTests(t, MSALSetup{
		NewStore: func(t *testing.T) driver.Store {
			s := memstore.New()
			t.Cleanup(func() { s.Close() })
			if broken == "none-nopush" {
				return struct{ driver.Store }{s}
			}
			return s
		},
		NewProtector: testring.New,
		newAdapter: func(store driver.Store, protector driver.Protector, opts []msalcache.Option) (suiteAdapter, error) {
			return newBrokenAdapter(broken, store, protector, opts)
		},
	})
}

// brokenAdapter is a real msalcache.Adapter with one behaviour broken,
// chosen by fault; with fault "none" it is the Adapter unchanged. Each
// break is one a regression or a hand-written adapter could make:
//
//   - no-reset-on-miss: Replace of an absent partition leaves MSAL's
//     in-memory cache as it was. The Adapter's Export keeps only a
//     partition's own entries, so the break cannot copy one user's tokens
//     into another's partition here; what it still does is serve a user
//     who signed out on another instance.
//   - last-writer-wins: no compare-and-set; concurrent writes are lost.
//   - stores-obo: stores what MSAL exports on the on-behalf-of path (the
//     other manager: other users' tokens).
//   - ignores-remove: sign-out leaves the partition in the store.
//   - one-partition: every user's tokens in one partition.
//   - unfiltered: stores all that MSAL holds, lent partitions included.
//   - fails-on-store-error: a store failure fails the token call.
//   - stores-in-clear: ignores the Protector.
//   - never-stores: shares nothing between instances.
//   - l1-deaf: its L1 never hears the store's pushes (the store below it
//     swallows every ChangeKey and keeps the watch up), so it serves what
//     it holds until MaxStale whatever another instance wrote.
//   - l1-ignores-maxstale: its L1 trusts an entry for an hour, whatever
//     MaxStale was asked for.
//   - l1-reads-through: Replace reads the store before consulting the L1.
type brokenAdapter struct {
	*msalcache.Adapter
	fault     string
	store     driver.Store
	protector driver.Protector
}

func newBrokenAdapter(fault string, store driver.Store, protector driver.Protector, opts []msalcache.Option) (*brokenAdapter, error) {
	// Every one, "none" included, talks to the store over a round trip, as
	// to a shared store: on memstore, without the race detector,
	// instances' writes would otherwise overlap too rarely for
	// ConcurrentWritersLoseNothing to see one lost every time.
	if fault == "l1-deaf" {
		_, store = newProbe(store, true)
	}
	w, _ := store.(driver.Watcher)
	v, _ := store.(driver.Versioner)
	store = withCaps(&remoteStore{Store: store, blind: fault == "last-writer-wins"}, w, v)
	b := &brokenAdapter{fault: fault, store: store, protector: protector}
	switch fault {
	case "one-partition":
		opts = append(opts, msalcache.WithSinglePartition())
	case "stores-in-clear":
		protector = nil
	case "l1-ignores-maxstale":
		opts = append(opts, msalcache.WithL1(msalcache.L1Options{MaxStale: time.Hour}))
	}
	a, err := newAdapter(store, protector, opts)
	if err != nil {
		return nil, err
	}
	b.Adapter = a.(*msalcache.Adapter)
	return b, nil
}

// Replace implements cache.ExportReplace.
func (b *brokenAdapter) Replace(ctx context.Context, u cache.Unmarshaler, h cache.ReplaceHints) error {
	switch b.fault {
	case "no-reset-on-miss":
		// A miss (an absent partition, or a removal record) leaves
		// MSAL's in-memory cache as the last call left it.
		key := b.StoreKey(h.PartitionKey)
		blob, _, err := b.store.Load(ctx, key)
		if errors.Is(err, driver.ErrNotFound) {
			return nil
		}
		if err == nil && b.protector != nil {
			blob, err = b.protector.Unprotect(ctx, blob, []byte(key))
		}
		if err == nil && msalcache.IsRemovalRecord(blob) {
			return nil
		}
	case "fails-on-store-error":
		before := b.Stats()
		if err := b.Adapter.Replace(ctx, u, h); err != nil {
			return err
		}
		// A call the breaker kept from the store failed as well.
		if after := b.Stats(); after.StoreErrors > before.StoreErrors || after.BreakerSkips > before.BreakerSkips {
			return errors.New("broken adapter: the store failed")
		}
		return nil
	case "l1-reads-through":
		if _, _, err := b.store.Load(ctx, b.StoreKey(h.PartitionKey)); err != nil && !errors.Is(err, driver.ErrNotFound) {
			return err
		}
	}
	return b.Adapter.Replace(ctx, u, h)
}

// Export implements cache.ExportReplace.
func (b *brokenAdapter) Export(ctx context.Context, m cache.Marshaler, h cache.ExportHints) error {
	switch b.fault {
	case "never-stores":
		return nil
	case "fails-on-store-error":
		before := b.Stats()
		if err := b.Adapter.Export(ctx, m, h); err != nil {
			return err
		}
		if after := b.Stats(); after.StoreErrors > before.StoreErrors || after.ExportFailures > before.ExportFailures ||
			after.PendingWrites > before.PendingWrites || after.BreakerSkips > before.BreakerSkips {
			return errors.New("broken adapter: the store failed")
		}
		return nil
	case "stores-obo":
		// Stores what the Adapter refused to: MSAL's export on the
		// on-behalf-of path.
		before := b.Stats().OBOSkips
		if err := b.Adapter.Export(ctx, m, h); err != nil {
			return err
		}
		if b.Stats().OBOSkips > before {
			return b.storeAsIs(ctx, m, h.PartitionKey)
		}
		return nil
	case "unfiltered":
		// Stores all that MSAL holds, not only the partition's own
		// entries.
		if err := b.Adapter.Export(ctx, m, h); err != nil {
			return err
		}
		return b.storeAsIs(ctx, m, h.PartitionKey)
	}
	return b.Adapter.Export(ctx, m, h)
}

// storeAsIs stores what m marshals under partitionKey's key, sealed as the
// Adapter seals, last writer wins.
func (b *brokenAdapter) storeAsIs(ctx context.Context, m cache.Marshaler, partitionKey string) error {
	blob, err := m.Marshal()
	if err != nil {
		return err
	}
	key := b.StoreKey(partitionKey)
	if b.protector != nil {
		if blob, err = b.protector.Protect(ctx, blob, []byte(key)); err != nil {
			return err
		}
	}
	_, v, err := b.store.Load(ctx, key)
	if err != nil && !errors.Is(err, driver.ErrNotFound) {
		return err
	}
	_, err = b.store.Save(ctx, key, blob, v, 0)
	return err
}

// Remove deletes a partition, unless the fault is "ignores-remove".
func (b *brokenAdapter) Remove(ctx context.Context, partitionKey string) error {
	if b.fault == "ignores-remove" {
		return nil
	}
	return b.Adapter.Remove(ctx, partitionKey)
}

// remoteStore is a store a round trip away (newBrokenAdapter passes on the
// Watcher and Versioner of the store beneath). When blind, it turns the
// Adapter's compare-and-set into an overwrite: every Save replaces what
// the store holds, whatever version the Adapter loaded.
type remoteStore struct {
	driver.Store
	blind bool
}

// roundTrip is about a loopback round trip to Redis under load.
const roundTrip = time.Millisecond

func (s *remoteStore) Load(ctx context.Context, key string) ([]byte, driver.Version, error) {
	time.Sleep(roundTrip)
	return s.Store.Load(ctx, key)
}

func (s *remoteStore) Save(ctx context.Context, key string, v []byte, ifv driver.Version, ttl time.Duration) (driver.Version, error) {
	time.Sleep(roundTrip)
	if !s.blind {
		return s.Store.Save(ctx, key, v, ifv, ttl)
	}
	for {
		_, cur, err := s.Store.Load(ctx, key)
		if err != nil && !errors.Is(err, driver.ErrNotFound) {
			return 0, err
		}
		nv, err := s.Store.Save(ctx, key, v, cur, ttl)
		if !errors.Is(err, driver.ErrConflict) {
			return nv, err
		}
	}
}

func (s *remoteStore) Delete(ctx context.Context, key string) error {
	time.Sleep(roundTrip)
	return s.Store.Delete(ctx, key)
}

// TestSkipLoadTests: MSALSetup.SkipLoadTests skips the two load subtests
// and nothing else. It runs the suite on plaintext, where both exist, in a
// child process limited to them and one other subtest.
func TestSkipLoadTests(t *testing.T) {
	if os.Getenv(brokenEnv) == "skip-load" {
		RunMSALTests(t, MSALSetup{
			NewStore: func(t *testing.T) driver.Store {
				s := memstore.New()
				t.Cleanup(func() { s.Close() })
				return s
			},
			SkipLoadTests: true,
		})
		return
	}
	t.Parallel()
	cmd := exec.Command(os.Args[0], "-test.run=^TestSkipLoadTests$/^(ManyWritersLoseNothing|SharedClientManyUsers|AppTokenSharedByInstances)$", "-test.v")
	cmd.Env = append(os.Environ(), brokenEnv+"=skip-load")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the suite failed with SkipLoadTests (%v):\n%s", err, out)
	}
	for _, want := range []string{
		"--- SKIP: TestSkipLoadTests/ManyWritersLoseNothing ",
		"--- SKIP: TestSkipLoadTests/SharedClientManyUsers ",
		"--- PASS: TestSkipLoadTests/AppTokenSharedByInstances ",
	} {
		if !strings.Contains(string(out), want) {
			t.Fatalf("with SkipLoadTests the output lacks %q:\n%s", want, out)
		}
	}
}
