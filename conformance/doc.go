// Package conformance holds the test suites that every piece of msalcache
// must pass, exported so that a backend written outside this module is held
// to the same contract as the ones inside it. It is modelled on
// gocloud.dev's drivertest and on testing/slogtest: a store's test hands
// the suites a HarnessMaker, every named subtest gets a fresh Harness and
// store of its own, optional capabilities are interfaces the Harness
// implements instead of special cases, and each subtest that fails prints
// one line on what the store or adapter that fails it breaks.
//
// Two suites run on a store, through its Harness:
//
//   - RunStoreTests checks an driver.Store: compare-and-set that never
//     loses an update (under the race detector, with goroutines racing on one
//     key), expiry, binary-safe values and keys of the documented alphabet,
//     copies in and out, cancellation, ErrClosed after Close, and the
//     optional Lister, Pinger, Volatile, Lifetimer, Watcher and Versioner
//     interfaces (a write through another handle, opened by a HandleOpener
//     Harness, reaches a watch within a bound, and a push channel cut by a
//     WatchBreaker Harness is reported and recovers). A Limiter Harness
//     declares the store's value limit, TTL granularity and whether it
//     evicts; a RawPutter Harness plants raw bytes past the store's record
//     format, and the suite then checks that a record the store cannot
//     decode is reported as driver.ErrCorrupt and repaired by a Save
//     with driver.NoVersion instead of wedging its key.
//   - RunMSALTests puts the Adapter over the Harness's stores (with an
//     optional Protector and Adapter options, MSALSetup) behind real MSAL-Go
//     clients that talk to an entratest token endpoint, and counts token
//     requests, so that a cache hit, a cross-user leak or a lost token
//     shows up as a number. Its sign-out subtests race a sign-out with a
//     refresh in flight; its L1 subtests run two instances with
//     msalcache.WithL1: a token renewed or a user signed out on one is what
//     the other serves once the change reached it, nothing older than
//     MaxStale is served with the push cut, and the hot path makes no store
//     call; with a RawPutter Harness, a damaged partition is healed by the
//     first instance that meets it.
//
// Two suites run on the protect package's extension points, and take a
// plain constructor, since they have no store and no capability to
// declare:
//
//   - RunProtectorTests checks an driver.Protector: round trips, binding
//     to the associated data, and rejection of tampered or foreign input.
//   - RunKeyWrapperTests checks a protect.KeyWrapper (a KEK: a local key,
//     a certificate, a vault key): round trips, binding to the associated
//     data, wrong keys and tampered wrappings refused, a KEK rotation that
//     keeps old blobs readable, and, with real MSAL-Go clients, a farm of
//     two rings under the KEK and a move to it from an AES KEK.
//
// RunStoreBenchmarks measures any store the way the Adapter uses it, so
// that every backend's figures compare.
//
// A store's own test defines a Harness (see the package example) and calls
// the suites with its HarnessMaker:
//
//	func TestConformance(t *testing.T) {
//		conformance.RunStoreTests(t, newHarness)
//	}
//
// The suites close each store and Harness when the subtest that made them
// ends. Run them with -race: several subtests exist to catch data races
// and lost updates, which only the race detector and real concurrency
// reveal.
//
// This package imports no concrete store; stores import it from their
// tests.
package conformance
