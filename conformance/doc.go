// Package conformance holds the test suites that every piece of msalcache
// must pass, exported so that a backend written outside this module is held
// to the same contract as the ones inside it. It is modelled on
// gocloud.dev's drivertest and on testing/slogtest: one entry point per
// contract, a fresh fixture for every named subtest, and declared
// capabilities instead of special cases.
//
// There are four suites:
//
//   - RunStoreTests checks an driver.Store: compare-and-set that never
//     loses an update (under the race detector, with goroutines racing on one
//     key), expiry, binary-safe values and keys of the documented alphabet,
//     copies in and out, cancellation, ErrClosed after Close, and the
//     optional Lister, Pinger, Volatile, Watcher and Versioner interfaces
//     (a write through another handle, Capabilities.OpenHandle, reaches a
//     watch within a bound, and a push channel cut by
//     Capabilities.BreakWatch is reported and recovers). Capabilities declares
//     a store's value limit, TTL granularity and whether it evicts, and,
//     through PutRaw and CorruptRecords, how to plant raw bytes past the
//     store's record format: the suite then checks that a record the store
//     cannot decode is reported as driver.ErrCorrupt and repaired by a
//     Save with driver.NoVersion instead of wedging its key.
//   - RunProtectorTests checks an driver.Protector: round trips, binding
//     to the associated data, and rejection of tampered or foreign input.
//   - RunKeyWrapperTests checks a protect.KeyWrapper (a KEK: a local key,
//     a certificate, a vault key): round trips, binding to the associated
//     data, wrong keys and tampered wrappings refused, a KEK rotation that
//     keeps old blobs readable, and, with real MSAL-Go clients, a farm of
//     two rings under the KEK and a move to it from an AES KEK.
//   - RunMSALTests puts the Adapter over a backend (MSALSetup: a store, an
//     optional Protector, Adapter options) behind real MSAL-Go clients that
//     talk to an entratest token endpoint, and counts token requests, so
//     that a cache hit, a cross-user leak or a lost token shows up as a
//     number. Its L1 subtests run two instances with msalcache.WithL1: a
//     token renewed or a user signed out on one is what the other serves
//     once the change reached it, nothing older than MaxStale is served
//     with the push cut, and the hot path makes no store call.
//
// RunStoreBenchmarks measures any store the way the Adapter uses it, so
// that every backend's figures compare.
//
// A store's own test calls the suite with a constructor that returns an
// empty store each time:
//
//	func TestConformance(t *testing.T) {
//		conformance.RunStoreTests(t, func(t *testing.T) driver.Store {
//			s, err := boltstore.Open(filepath.Join(t.TempDir(), "cache.db"))
//			if err != nil {
//				t.Fatal(err)
//			}
//			return s
//		}, conformance.Capabilities{MaxValueSize: boltstore.MaxValueSize})
//	}
//
// RunStoreTests closes each store when its subtest ends (RunMSALTests
// leaves that to a t.Cleanup of the caller's). Run the suites with -race:
// several subtests exist to catch data races and lost updates, which only
// the race detector and real concurrency reveal.
//
// This package imports no concrete store; stores import it from their
// tests.
package conformance
