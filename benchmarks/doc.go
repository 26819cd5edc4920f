// Package benchmarks measures, side by side in one run, what a silent
// token call of MSAL-Go costs with no external cache, with the naive
// cache accessor applications write today, and with msalcache's Adapter,
// on every store of this module, next to each store's raw round trip. It
// holds only benchmarks and the tests that keep them honest; it is the
// proof behind the project's speed targets.
//
// # Run
//
//	go test -run '^$' -bench . -benchmem ./benchmarks
//
// The run takes about a minute. It starts its own redis-server and
// memcached (internal/testserver), once per store and benchmark function,
// on free loopback ports, and stops them when the store's benchmarks end;
// without the binaries those stores are skipped (apt-get install
// redis-server memcached). The bbolt files live in a temporary directory.
// Plain go test ./... runs the unit tests only, starts no server, and
// prints nothing more.
//
// # What is measured
//
// BenchmarkSilent/<store>/<case> times AcquireTokenSilent of a real
// confidential client (MSAL-Go v1.10) for a user signed in through an
// authorization code at an entratest server, so that every call is served
// from the cache: each run asserts that the token endpoint saw exactly one
// request, the sign-in, and reports it as token-requests. On such a call
// MSAL-Go calls Replace once and does not Export. The cases are:
//
//   - floor: the client with no external cache; MSAL-Go's own cost.
//   - raw: the store's own client reading a 4 KiB value, no MSAL at all
//     (go-redis GET, gomemcache Get, a bbolt read transaction, memstore
//     Load): the physical floor of one round trip on loopback.
//   - naive: a hand-written cache.ExportReplace straight over go-redis,
//     gomemcache or bbolt (over memstore's Load and Save for memstore),
//     under the partition key as is: Replace loads the blob and hands it to
//     MSAL (an empty cache on a miss); Export marshals and stores it. No
//     compare-and-set, no encryption, no expiry.
//   - adapter-plain: msalcache.New(store, msalcache.WithPlaintext()).
//   - adapter-encrypted: msalcache.New(store, msalcache.WithProtector(ring))
//     with a protect.KeyRing kept in the same store; for memcached, which
//     may evict it, the ring lives in a memstore.
//
// BenchmarkExport/<store>/<case> times the write path alone: Export of a
// user cache of about 4 KiB that changed since the last write (two caches
// in turn), through the naive accessor and the two Adapters, and checks
// afterwards that the store holds the last one. An Export follows a token
// request to Entra ID, which costs milliseconds, so these figures matter
// much less than the silent ones.
//
// # Reading the output
//
// go test prints its usual lines, with three metrics besides ns/op, B/op
// and allocs/op: p50-ns and p99-ns, the median and 99th percentile of the
// calls of the final run, each timed on its own (one monotonic clock read
// per call, in a histogram with buckets 0.8% wide); and token-requests.
// After them one markdown table sums up the run:
//
//	| path | store | case | time/op | p50 | p99 | B/op | allocs/op | token requests | vs naive | vs floor |
//
// time/op is the mean of the final run (ns/op), so it includes garbage
// collection and anything else the machine did; p50 is the typical call
// and p99 its tail. "vs naive" divides time/op by that of the naive
// accessor on the same store and path: below 1 the Adapter is faster than
// the code it replaces. "vs floor" divides it by MSAL-Go's silent call
// without an external cache. "—" marks what does not apply (no MSAL
// client in raw and export rows, no naive or floor to divide by).
//
// On the silent path the Adapter usually beats the naive accessor: the
// naive one hands MSAL the blob on every call and MSAL parses it (hundreds
// of allocations), while the Adapter sees that MSAL already holds the
// stored version and skips decrypting and parsing, which is also why
// encryption costs next to nothing there. docs/benchmarks.md holds a run
// and its reading.
//
// With -count or -cpu the table keeps the last run of each benchmark.
package benchmarks
