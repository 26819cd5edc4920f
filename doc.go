// Package msalcache gives MSAL-Go applications a token cache that every
// instance of an application shares, encrypted at rest.
//
// MSAL-Go keeps tokens in memory and lets an application persist them
// through the cache.ExportReplace hook. An [Adapter] implements that hook
// over a [driver.Store]: Redis (package redisstore), memcached (memcachestore),
// PostgreSQL (pgstore), a bbolt file (boltstore, the default for a single
// instance) or memory (memstore). A token fetched by one server is then served by every other
// server without another round trip to Microsoft Entra ID.
//
//	store, err := boltstore.Open("tokens.db")
//	if err != nil {
//		return err
//	}
//	defer store.Close()
//	ring, err := protect.NewKeyRing(ctx, store, kek) // keys that rotate on their own
//	if err != nil {
//		return err
//	}
//	defer ring.Close()
//	adapter, err := msalcache.New(store, msalcache.WithProtector(ring))
//	if err != nil {
//		return err
//	}
//	defer func() { err = errors.Join(err, adapter.Close()) }() // sign-outs it could not store
//	pool, err := msalcache.NewClientPool(adapter, func(c cache.ExportReplace) (confidential.Client, error) {
//		return confidential.New(authority, clientID, cred, confidential.WithCache(c))
//	})
//	if err != nil {
//		return err
//	}
//	ar, err := pool.AcquireTokenSilent(ctx, homeAccountID, scopes) // from any goroutine
//
// New insists on a choice between WithProtector and WithPlaintext, so
// tokens are never stored in clear by accident.
//
// # What the Adapter handles for you
//
// MSAL-Go's hook has sharp edges; each of these is covered by a test with a
// real MSAL-Go client (conformance.RunMSALTests):
//
//   - Reset on miss. MSAL's Unmarshal replaces its whole in-memory cache.
//     When a partition is absent or unreadable, Replace still resets it, or
//     the next Export would copy one user's refresh token into another
//     user's partition.
//   - Fail open. A store that is down, slow, or holds a blob that does not
//     decrypt is a cache miss, logged and counted in [Adapter.Stats], never
//     a failed token call. Each call is bounded by [WithTimeout] when the
//     context has no deadline.
//   - No lost updates. Export writes with compare-and-set against the
//     version the preceding Replace read; when another instance wrote in
//     between, it merges the two caches entry by entry and retries until
//     the call's deadline. Within one Adapter the writes of a partition
//     take turns, so compare-and-set only arbitrates between instances.
//   - Expiry. A user's partition lives [WithUserTTL] (90 days) after its
//     last write; a partition of app tokens until its latest token
//     expires. An empty partition is deleted; an unchanged one is not
//     rewritten.
//   - Keys. A partition key names a user; the store sees only a hash of it
//     under the namespace ([Adapter.StoreKey]): an HMAC under the key
//     ring's secret when the Protector is a [driver.KeyHasher], else a SHA-256.
//   - Ownership. Replace hands MSAL, and Export stores, only the entries
//     MSAL-Go files under the partition's key, decided by each entry's
//     fields, whatever bytes the store holds.
//
// # One client for many users: ClientPool
//
// A confidential client shared by every request of a web app is MSAL-Go's
// recommended shape, and a trap with any cache hook: MSAL loads a user's
// partition under a read lock and reads it after releasing the lock, so
// concurrent requests for different users replace each other's partitions
// in between (40 to 65% of silent calls fail through a naive accessor,
// BenchmarkSharedClient). The Adapter narrows the window by lending a
// shared client the partitions loaded into it in the last moments, but
// that costs more with every user in flight (150 to 290 times the 1-user
// call from 100 users on) and cannot close it: when more users are in
// flight than it lends, it counts the load in Stats.LendingOverflows
// (an Event with ReasonLendingOverflow) and logs one warning. A client
// per request is exact, but with MSAL-Go's default options each new
// client makes an instance-discovery request (its metadata cache is per
// client; WithInstanceDiscovery(false) avoids it, and the validation it
// does), and the Adapter tracks each new client for a few seconds.
//
// [ClientPool] removes the race instead of narrowing it: it builds MSAL
// clients through a function of the application's, each installed with
// the pool's cache, and hands each call a client no other goroutine is
// using, the one that last served the same user when it is idle. The
// Adapter then hands such a client only the partition asked for, never
// lends, and a client that serves its last user again reloads nothing. Its
// methods (AcquireTokenSilent, AcquireTokenByAuthCode,
// AcquireTokenByCredential, AcquireTokenOnBehalfOf, Account, AuthCodeURL,
// SignOut, and Do for anything else) tell the Adapter which operation each
// hook call belongs to. docs/benchmarks.md compares the three shapes and
// MSAL alone from 1 to 10,000 users.
//
// # Public clients
//
// MSAL-Go's public clients write tokens under the empty partition key but
// read them under the account's key (MSAL-Go issue 424), so a partitioned
// cache never serves their silent calls. Build their Adapter with
// [WithSinglePartition]: one user, one partition.
//
// # On-behalf-of
//
// MSAL-Go loads its on-behalf-of cache from one internal manager and
// exports the other, and the on-behalf-of manager accepts no external
// data at all, so on-behalf-of tokens cannot travel through MSAL-Go's
// hook. The Adapter detects that manager, leaves it alone (a second call
// on the same MSAL client is served from its memory), and refuses the
// Export that follows, which would carry other users' tokens under the
// on-behalf-of key.
//
// [ClientPool.AcquireTokenOnBehalfOf] shares them another way: it keeps
// each access token it gets in the store, sealed like every blob, under a
// keyed hash of the incoming assertion, the client id, the authority and
// the scopes, until MSAL itself would stop serving it (five minutes before
// expiry, or its refresh time). Any instance presented the same assertion
// for the same scopes is served that token with no token request. Not
// shared: the refresh token MSAL may get with it (it stays in one client's
// memory), the ID token, and calls with options (claims, another tenant),
// which go to MSAL alone.
//
// # Sign-out
//
// MSAL's RemoveAccount exports under the empty partition key, so the
// user's own partition survives it. [SignOut] (or [ClientPool.SignOut])
// calls RemoveAccount and [Adapter.Remove] with the account's
// HomeAccountID; the pool's other clients drop the user before their next
// call. Remove replaces the
// partition with a removal record, sealed like any blob, so that a
// sign-out stays final against every write that began before it:
//
//   - a refresh in flight on another instance (MSAL loads the partition
//     again after the token request, and a deleted partition would look
//     like a new sign-in's);
//   - a write the breaker kept during an outage and flushes later;
//   - a compare-and-set merge or retry of a write that loaded the
//     partition before the removal;
//   - a failover that loses the record: on a replicated Redis, Remove
//     waits for a replica ([driver.DurableSaver]), and an Adapter with [WithL1]
//     re-asserts its removals of the last five minutes when its watch sees
//     the store come back after a gap.
//
// A new sign-in after the removal is stored and shared as usual, on any
// instance, also through an MSAL client that held the old session. What
// tells the two apart: the record names (hashed) the sign-in sessions of
// what it replaced, from the ID tokens' sid claim (an optional claim in
// Entra ID: add sid to the app registration's ID token), and tokens of
// another session are a new sign-in. Where the ID tokens carry no sid,
// [ClientPool] knows which calls are sign-ins; for an MSAL client the
// application drives itself, a call that loaded the live partition under
// the same context is taken for the call that was in flight (give every
// request its own context, as r.Context() is).
//
// When the store does not take the removal, Remove and SignOut return an
// error wrapping [ErrRemovalPending]: MSAL's copy on this instance is gone,
// other instances may serve the user until the removal is stored, and the
// Adapter retries it until it is; [Adapter.Close] tries once more and
// reports what it could not deliver.
//
// # Concurrency
//
// An Adapter is safe for concurrent use by any number of MSAL clients and
// goroutines. Its locks, and what each guards:
//
//   - clientState.mu (one per MSAL client): the Adapter's model of that
//     client's in-memory cache, held across an Export of that client
//     (MSAL itself serializes a client's Exports).
//   - Adapter.mu: the table of clients, the on-behalf-of marks and the
//     idle sweep. It may be taken while a clientState.mu is held, never
//     the reverse.
//   - turn (one per partition, a channel, not a mutex): one Export of a
//     partition at a time per Adapter; taken after clientState.mu.
//   - l1.mu: the L1's entries, LRU and byte count; a leaf lock, taken
//     with nothing else of the Adapter's held but clientState.mu.
//   - breaker.mu: the breaker's shards and kept writes; a leaf lock,
//     never held across a store call.
//   - removals.mu, liveLoads.mu: the pending and recent removals, and the
//     calls that loaded a live partition; leaf locks.
//
// Each Replace, Export and Remove runs on one op value (op.go) that owns
// the call's Event and its L1 ticket, both ended exactly once by a defer.
//
// No lock is held across a store call except clientState.mu and the turn
// during an Export, which MSAL already serializes per client. Background
// goroutines: the L1's watch (WithL1), one breaker probe per open shard,
// the removal retries and the idle sweep; Close ends them.
//
// # Watching it run
//
// Every operation is one [observe.Event] (what, how it ended, the store, bytes,
// duration; never a token or a partition key) for the Observers given
// with [WithObserver]. [Adapter.Stats] counts the same Events with a
// built-in [StatsCounter]; package msalcacheotel records them as
// OpenTelemetry metrics and spans; [WithStoreErrorHandler] hands every
// absorbed store failure to the app. An Adapter with no Observer reads no
// clock for one.
package msalcache
