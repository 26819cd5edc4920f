// Package benchmarks measures, side by side in one run, what a silent
// token call of MSAL-Go costs with no external cache, with the naive
// cache accessor applications write today, and with msalcache's Adapter,
// on every store of this module, next to each store's raw round trip; and
// the pieces beneath it: Replace and Export alone, silent calls from many
// goroutines at once, and redisstore's own calls on each of its paths. It
// holds only benchmarks and the tests that keep them honest; it is the
// proof behind the project's speed targets, and the project's one home
// for benchmarks, with one naive accessor per store.
//
// # Run
//
//	go test -run '^$' -bench . -benchmem ./benchmarks
//
// The run takes a few minutes. It starts its own redis-server,
// memcached and PostgreSQL (internal/testserver), once per store and benchmark function,
// on free loopback ports, and stops them when the store's benchmarks end;
// without the binaries those stores are skipped (apt-get install
// redis-server memcached). The bbolt files live in a temporary directory.
// -bench with a pattern runs a part, e.g. -bench 'Load|Save' for the
// Redis call paths. Plain go test ./... runs the unit tests only, starts
// no server, and prints nothing more.
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
//     Load, pgx's SELECT from a table of its own): the physical floor of
//     one round trip on loopback.
//   - naive: a hand-written cache.ExportReplace straight over go-redis,
//     gomemcache or bbolt (over memstore's Load and Save for memstore),
//     under the partition key as is (on PostgreSQL a SELECT and an
//     INSERT … ON CONFLICT DO UPDATE upsert, as IDistributedCache
//     implementations run): Replace loads the blob and hands it to
//     MSAL (an empty cache on a miss); Export marshals and stores it. No
//     compare-and-set, no encryption, no expiry.
//   - adapter-plain: msalcache.New(store, msalcache.WithPlaintext()).
//   - adapter-encrypted: msalcache.New(store, msalcache.WithProtector(ring))
//     with a protect.KeyRing kept in the same store; for memcached, which
//     may evict it, the ring lives in a memstore.
//
// BenchmarkReplace/<store>/<case> times the read path alone, without
// MSAL: Replace of a stored user cache of about 4 KiB into a stand-in for
// MSAL's cache that keeps the bytes as they come, so MSAL's parse, most of
// a naive silent call, is left out and the accessor's own cost shows.
// naive loads and hands over. The Adapter's cases, plain and encrypted:
// unchanged, where MSAL's cache already holds the stored version (every
// call after the first of a long-lived client), and handed-over, a new
// MSAL cache each call (a client per request), so every call decrypts,
// parses and hands over. Each run checks the Adapter's counters: every
// call read the store, and each was reused, or none was, as the case says.
//
// BenchmarkExport/<store>/<case> times the write path alone: Export of a
// user cache of about 4 KiB that changed since the last write (two caches
// in turn), through the naive accessor and the two Adapters, and checks
// afterwards that the store holds the last one. The cases take turns in
// one loop (the go test line is BenchmarkExport/<store>/turns, with
// plain/raw and encrypted/raw-sealed), so that they all meet the same load.
// An Export follows a token request to Entra ID, which costs
// milliseconds, so these figures matter much less than the silent ones.
//
// BenchmarkSharedClient/<store>/<case> times silent calls for 8 signed-in
// users, in turn, from 8 goroutines per CPU through one confidential
// client shared by all of them, as a web app that builds its client once
// does: floor (no external cache), naive, adapter-plain and
// adapter-encrypted. MSAL-Go loads a partition under a read lock and reads
// it after releasing the lock, so with the naive accessor concurrent
// users replace each other's partitions in between and calls fail with
// "no token found": the failed calls column counts them (the Adapter keeps
// the partitions of calls in flight loaded). BenchmarkClientPerCall is the
// same with a new client per call, as apps do that build one per request;
// it has no floor, since a new client without an external cache holds no
// token. token requests counts the 8 sign-ins and any redemption a failed
// lookup caused. A call that returns another user's token fails the run.
//
// BenchmarkLoad/redis/<case> and BenchmarkSave/redis/<case> time
// redisstore itself: Load of a 4 KiB value, and compare-and-set Save of
// one with a TTL, each based on the version of the one before, next to the
// same call through a default go-redis client (raw: GET, and SET PX). The
// cases are the ways the store gets called, since go-redis ignores ctx for
// network I/O unless the client has ContextTimeoutEnabled:
// ctx=background (called directly), ctx=deadline on a default client (as
// the Adapter always calls it: the store runs the command on a goroutine
// of its own, which it can abandon at the deadline) and
// ctx=deadline,ContextTimeoutEnabled (called directly; go-redis puts the
// deadline on the socket). The cases of one benchmark take turns in one
// loop, so that a machine whose load drifts during the run moves them all
// alike: their differences are a few microseconds, and separate
// benchmarks seconds apart would drift by more. BenchmarkLoadParallel and
// BenchmarkSaveParallel run raw and ctx=deadline from 8 goroutines per
// CPU (Save on a key per goroutine), where the store's extra goroutine
// competes with the callers for the CPUs.
//
// BenchmarkSilent also runs, per store, the floor again beside that
// store's rows, and the adapter-l1-plain and adapter-l1-encrypted cases:
// msalcache.WithL1 over the store. BenchmarkL1Paired/<store> holds the
// L1 to its target without drift: each op is one silent call of a client
// with no external cache and one of a client on an encrypted Adapter with
// the L1, in turn, each timed on its own, so the two rows of a store (floor
// and l1-encrypted) share whatever the machine did; l1/floor is their
// ratio.
//
// BenchmarkExport/<store>/raw is Export's floor: the store's own
// compare-and-set Save of exactly the bytes adapter-plain stored (on Redis
// one EVALSHA of the script the Adapter runs), no parse, merge or
// encryption; raw-sealed the same of exactly the sealed bytes
// adapter-encrypted stored, its floor.
//
// BenchmarkObserver/<store>/<case> prices watching: the silent call with
// the L1, encrypted, beside the floor, with no Observer (observer-none),
// with a msalcache.StatsCounter given to WithObserver (observer-stats: the
// call and the clock reads any Observer costs), with msalcacheotel's
// metrics on an SDK MeterProvider (observer-otel-metrics), and with its
// metrics and spans on an SDK TracerProvider that samples every span
// (observer-otel-metrics-traces). The cases take turns in one loop;
// compare their p50s, since a garbage collection lands on whichever call
// runs.
//
// BenchmarkUsers/<n> signs n users in (1, 100, 1,000, 10,000, each
// population on top of the one before, before the timer) and times b.N
// silent calls per case in uniform rotation from 16 goroutines, the cases
// taking turns in five blocks: msal-alone (one client, no external cache),
// shared (one client on an Adapter on Redis with the L1 and encryption),
// per-request (a new client per call, WithInstanceDiscovery(false)),
// per-request-defaults (the same with MSAL's defaults), pool, pool-size4
// and pool-size16 (a msalcache.ClientPool of the default size, 4 and 16),
// and pool-4-in-a-row (four calls in a row per user). It prints a table of
// its own after go test's lines: CPU per call (getrusage), wall per call,
// p50 and p99, every HTTP request per call, failed calls, wrong tokens,
// the live heap a block left and the heap a pool's warm-up took, with
// ratios to per-request, to msal-alone and to the pool's 1-user row. Run
// it with -benchtime Nx.
//
// BenchmarkInvalidation/<deployment>/push times the L1's push channel on
// Redis (single node, Sentinel, Cluster of three masters) and on
// PostgreSQL (NOTIFY from the write's transaction, LISTEN on the other
// handle's own connection): a Save through one handle until another
// handle's watch hears that key and version, one message at a time;
// max-ns is the slowest.
//
// BenchmarkL1Memory/memstore/<case> loads b.N partitions of about 4 KiB
// through an Adapter, with and without the L1, into caches the Adapter
// cannot track, and reports the live heap they add per entry
// (heap-B/entry, after a GC), the L1's own count against MaxBytes
// (l1-B/entry) and the plaintext (plain-B/entry).
//
// # Reading the output
//
// go test prints its usual lines, with metrics besides ns/op, B/op and
// allocs/op: p50-ns and p99-ns, the median and 99th percentile of the
// calls of the final run, each timed on its own (one monotonic clock read
// per call, in a histogram with buckets 0.8% wide); token-requests; and
// failed/op on the concurrent benchmarks. The lines of BenchmarkLoad and
// BenchmarkSave show the sum of their cases as ns/op and each case's mean
// as <case>-ns. After them one markdown table sums up the run, a row per
// case:
//
//	| path | store | case | time/op | p50 | p99 | B/op | allocs/op | token requests | failed calls | vs naive | vs floor |
//
// time/op is the mean of the final run (ns/op), so it includes garbage
// collection and anything else the machine did; p50 is the typical call
// and p99 its tail. On the concurrent paths (sharedclient, clientpercall,
// loadparallel, saveparallel) time/op is the wall time divided by the
// calls, the inverse of the throughput, while p50 and p99 stay the
// latencies of single calls, which are longer by about the number of
// goroutines per CPU. On load and save, whose cases take turns, B/op and
// allocs/op come from each case run alone after the timed loop. "vs
// naive" divides time/op by that of the naive accessor on the same store
// and path: below 1 the Adapter is faster than the code it replaces. "vs
// floor" divides it by the floor of the same store and path when one ran
// beside it (silent, l1paired), else by the path's floor, MSAL-Go without
// an external cache (sharedclient), or on a path without one by the raw
// call of the same store and path (export, load, save and their parallel
// paths); on the users path by the 1-user row of the same pattern.
// failed calls is the share of calls that failed, where they are counted.
// "—" marks what does not apply.
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
