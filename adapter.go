package msalcache

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/cache"

	"github.com/msalcache/msalcache/internal/ctxrun"
)

// errMSALRejected stands in, in logs, for the error of MSAL's Unmarshal.
var errMSALRejected = errors.New("MSAL-Go could not decode it")

// emptyCache resets MSAL's in-memory cache.
var emptyCache = []byte("{}")

// Adapter persists MSAL-Go's token cache in a Store. It implements
// cache.ExportReplace: pass it to confidential.WithCache or public.WithCache.
// One Adapter serves any number of MSAL clients and goroutines.
type Adapter struct {
	store       Store
	cfg         config
	reprotector Reprotector
	hasher      KeyHasher // names partitions when the Protector holds a secret
	keyPrefix   string
	stats       counters

	loads atomic.Uint64 // orders loads, so a slow one never replaces a newer one

	// mu guards the maps below. Lock order: a clientState's mu may be held
	// while taking mu, never the reverse.
	mu        sync.Mutex
	clients   map[any]*clientState // by MSAL cache target (its manager)
	obo       map[string]time.Time // store keys seen on MSAL's on-behalf-of path
	lastSweep time.Time
	// sweeper forgets idle clients while no call arrives: the map holds
	// MSAL's managers, so without it a burst of clients per request would
	// stay in memory until the next call. It runs only while the maps
	// hold something, so an unused Adapter can be collected.
	sweeper *time.Timer
}

// clientState is the adapter's model of one MSAL client's in-memory cache:
// which partitions it holds and at which version. It lets Replace skip
// decrypting and re-parsing what MSAL already holds, and lets Export tell
// the entries of the partition being written from those the adapter lent
// from other partitions (see Replace).
type clientState struct {
	mu sync.Mutex
	// partitioned marks MSAL's on-behalf-of manager, which accepts no
	// external data at all (see the package documentation).
	partitioned bool
	// valid reports that parts describes MSAL's in-memory cache exactly.
	valid    bool
	parts    map[string]*partition // by store key
	lastUsed time.Time
}

// partition is one stored partition as the adapter last saw it.
type partition struct {
	version Version
	known   bool   // false after a store error: the version is unknown
	seq     uint64 // when it was loaded or written, in Adapter.loads order
	raw     []byte // plaintext JSON; nil when absent or unreadable
	stale   bool   // rewrite on the next Export even if nothing changed
	behind  bool   // MSAL's cache lacks entries of this version (merged in)
	used    time.Time

	doc    *document // parsed raw, built on first use
	docErr error
}

// unreadable returns p's stand-in when its data cannot be used: empty
// (a miss for MSAL), at the same version, so the next Export overwrites it
// with compare-and-set, and stale, so it does even if nothing else changed.
func (p *partition) unreadable() *partition {
	return &partition{version: p.version, known: p.known, seq: p.seq, used: p.used, stale: true}
}

func (p *partition) document() (*document, error) {
	if p.doc == nil && p.docErr == nil {
		if p.raw == nil {
			p.doc = &document{}
		} else {
			p.doc, p.docErr = parseDocument(p.raw)
		}
	}
	return p.doc, p.docErr
}

// New returns an Adapter that keeps MSAL's token cache in store. It fails
// unless the options choose between WithProtector and WithPlaintext, so
// that tokens are never stored in clear by accident.
func New(store Store, opts ...Option) (*Adapter, error) {
	if store == nil {
		return nil, errors.New("msalcache: New(nil): pass a Store, e.g. boltstore.Open or memstore.New()")
	}
	cfg := defaultConfig()
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	switch {
	case cfg.protector == nil && !cfg.plaintext:
		return nil, errors.New("msalcache: choose WithProtector(p) to encrypt tokens at rest, or WithPlaintext() to store them in clear")
	case cfg.protector != nil && cfg.plaintext:
		return nil, errors.New("msalcache: WithProtector and WithPlaintext both given: choose one")
	}
	a := &Adapter{
		store:     store,
		cfg:       cfg,
		keyPrefix: "tc/" + cfg.namespace + "/",
		clients:   make(map[any]*clientState),
		obo:       make(map[string]time.Time),
	}
	a.reprotector, _ = cfg.protector.(Reprotector)
	a.hasher, _ = cfg.protector.(KeyHasher)
	return a, nil
}

// StoreKey returns the key under which the Adapter stores partitionKey: the
// namespace and a hash of the partition key, which names a user and so
// never reaches the store in clear. When the Protector implements KeyHasher
// (protect.KeyRing does) the hash is keyed with the ring's secret, so that
// reading the store does not tell whether a given user has tokens cached;
// otherwise it is a SHA-256. Moving between the two (enabling encryption,
// or upgrading from a version without keyed names) renames every
// partition: each is a miss once, then re-acquired and shared again.
// Operators use StoreKey to find or delete one partition.
func (a *Adapter) StoreKey(partitionKey string) string {
	if a.cfg.singlePart {
		return a.keyPrefix + "all"
	}
	var sum [32]byte
	if a.hasher != nil {
		sum = a.hasher.HashKey(partitionKey)
	} else {
		sum = sha256.Sum256([]byte(partitionKey))
	}
	return a.keyPrefix + base64.RawURLEncoding.EncodeToString(sum[:])
}

// withDeadline applies the default timeout to a context that has none.
func (a *Adapter) withDeadline(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, a.cfg.timeout)
}

// Replace loads a partition into MSAL's in-memory cache. It implements
// cache.ExportReplace.
//
// Replace never fails a token call because of the store: an absent,
// unreadable, undecryptable or corrupt partition, or a store that is down,
// is a miss. It returns an error only when ctx itself is done.
//
// A miss still resets MSAL's in-memory cache, so that the next Export
// cannot copy one user's tokens into another user's partition. When MSAL
// already holds the stored version of the partition, Replace leaves its
// cache alone: nothing is decrypted or parsed.
//
// When one MSAL client serves many users at once, MSAL loads a partition
// under a read lock and reads it after releasing the lock, so concurrent
// calls would otherwise wipe each other's partitions in between. Replace therefore keeps in MSAL's cache the partitions loaded into
// the same client in the last moments; MSAL filters what it reads by
// account, so the extra entries never yield a wrong token, and Export
// drops them again before writing.
func (a *Adapter) Replace(ctx context.Context, u cache.Unmarshaler, hints cache.ReplaceHints) error {
	if u == nil {
		return errors.New("msalcache: Replace with a nil cache")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	key := a.StoreKey(hints.PartitionKey)
	cs := a.clientFor(u)
	if cs.isPartitioned() {
		a.markOBO(key)
		return nil
	}
	dctx, cancel := a.withDeadline(ctx)
	defer cancel()
	seq := a.nextSeq()

	blob, v, err := a.load(dctx, key)
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	var p *partition
	switch {
	case err == nil && len(blob) > a.cfg.maxPartition:
		a.stats.oversized.Add(1)
		a.cfg.logger.LogAttrs(context.Background(), slog.LevelWarn,
			"replace: stored partition is larger than WithMaxPartitionSize allows; treating it as a miss",
			slog.String("op", "replace"), slog.String("key", fingerprint(key)),
			slog.Int("size", len(blob)), slog.Int("max", a.cfg.maxPartition))
		p = (&partition{version: v, known: true, seq: seq}).unreadable()
	case err == nil:
		a.stats.hits.Add(1)
		if cs.holds(key, v, true, a.cfg.now()) {
			a.stats.reused.Add(1)
			return nil
		}
		p = &partition{version: v, known: true, seq: seq}
		plain, oerr := a.open(dctx, blob, key)
		if oerr != nil {
			a.stats.decryptErrors.Add(1)
			a.warn("replace: cannot decrypt stored partition; treating it as a miss", "replace", key, oerr)
			p = p.unreadable()
		} else {
			p = a.fill(p, hints.PartitionKey, key, plain, a.needsReprotect(blob))
		}
	case errors.Is(err, ErrNotFound):
		a.stats.misses.Add(1)
		if cs.holds(key, NoVersion, true, a.cfg.now()) {
			return nil
		}
		p = &partition{known: true, seq: seq}
	case errors.Is(err, ErrCorrupt):
		// The store holds a record it cannot decode: a miss, and the next
		// Export replaces the record (Save with NoVersion does).
		a.stats.corruptBlobs.Add(1)
		a.warn("replace: the store holds a corrupt record for this partition; treating it as a miss", "replace", key, err)
		p = (&partition{known: true, seq: seq}).unreadable()
	default:
		a.stats.storeErrors.Add(1)
		a.warn("replace: store failed; treating it as a miss", "replace", key, err)
		// MSAL still holds what it last loaded of this partition: keep
		// serving it while the store is away.
		if cs.holds(key, 0, false, a.cfg.now()) {
			return nil
		}
		p = &partition{seq: seq}
	}
	if cs.handOver(a, u, key, p) {
		a.markOBO(key)
	}
	return nil
}

// holds reports whether MSAL's cache already holds partition key at
// version v (any version when exact is false), and marks it used.
func (cs *clientState) holds(key string, v Version, exact bool, now time.Time) bool {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	cur := cs.parts[key]
	if !cs.valid || cur == nil || cur.behind || exact && (!cur.known || cur.version != v) {
		return false
	}
	cur.used = now
	cs.lastUsed = now
	return true
}

func (cs *clientState) isPartitioned() bool {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return cs.partitioned
}

// handOver unmarshals partition p into MSAL's cache u, together with the
// partitions of the same client loaded within the lending window. It
// reports whether u turned out to be MSAL's on-behalf-of manager.
func (cs *clientState) handOver(a *Adapter, u cache.Unmarshaler, key string, p *partition) (partitioned bool) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	now := a.cfg.now()
	cs.lastUsed = now
	if cur := cs.parts[key]; cs.valid && cur != nil && cur.seq > p.seq {
		p = cur // a newer load or write landed while we were loading
	}
	p.used = now

	var lent []keyed
	if cs.valid && !a.cfg.singlePart {
		lent = recentPartitions(cs.parts, key, now.Add(-a.cfg.lendWindow), a.cfg.maxLent)
	}
	payload := p.raw
	if len(lent) > 0 {
		own, err := p.document()
		if err != nil {
			a.stats.corruptBlobs.Add(1)
			a.warn("replace: stored partition is not an MSAL cache; treating it as a miss", "replace", key, err)
			p = p.unreadable()
			own, _ = p.document()
		}
		docs := make([]*document, 0, len(lent))
		for _, q := range lent {
			if d, err := q.p.document(); err == nil {
				docs = append(docs, d)
			}
		}
		payload = union(own, docs).encode()
	}
	if payload == nil {
		payload = emptyCache
	}
	if err := u.Unmarshal(payload); err != nil {
		if err := u.Unmarshal(emptyCache); err != nil {
			// Only MSAL's on-behalf-of manager rejects an empty cache.
			// Leave it alone: it partitions its data itself.
			cs.partitioned, cs.valid, cs.parts = true, false, nil
			return true
		}
		a.stats.corruptBlobs.Add(1)
		// MSAL's decoder quotes what it read, and what it read is stored
		// data (a token, a user name): log the kind of failure only.
		a.warn("replace: MSAL rejected the stored partition; treating it as a miss", "replace", key, errMSALRejected)
		p = p.unreadable()
		lent = nil
	}
	parts := make(map[string]*partition, len(lent)+1)
	for _, q := range lent {
		parts[q.key] = q.p
	}
	parts[key] = p
	cs.parts, cs.valid = parts, true
	return false
}

// fill sets p's data to plain, the stored partition partitionKey decrypted,
// keeping only the entries that belong to that partition (see
// ownership.go): whatever the store holds, MSAL is never handed another
// account's or app's entries under this key. stale marks p for rewriting on
// the next Export, as it is when entries had to be dropped.
func (a *Adapter) fill(p *partition, partitionKey, key string, plain []byte, stale bool) *partition {
	if a.cfg.singlePart {
		p.raw, p.stale = plain, stale
		return p
	}
	doc, err := parseDocument(plain)
	if err != nil {
		a.stats.corruptBlobs.Add(1)
		a.warn("replace: stored partition is not an MSAL cache; treating it as a miss", "replace", key, err)
		return p.unreadable()
	}
	owned, dropped := doc.ownedBy(partitionKey)
	if dropped > 0 {
		a.stats.foreignEntries.Add(uint64(dropped))
		a.cfg.logger.LogAttrs(context.Background(), slog.LevelWarn,
			"replace: stored partition holds entries of other partitions (written by another tool or an older version); they are not loaded and the next Export rewrites it",
			slog.String("op", "replace"), slog.String("key", fingerprint(key)), slog.Int("entries", dropped))
		plain, stale = owned.encode(), true
	}
	p.raw, p.doc, p.stale = plain, owned, stale
	return p
}

// keyed is a partition with its store key.
type keyed struct {
	key string
	p   *partition
}

// recentPartitions returns the partitions other than key used after since,
// at most limit of them, the most recently used first.
func recentPartitions(parts map[string]*partition, key string, since time.Time, limit int) []keyed {
	var out []keyed
	for k, q := range parts {
		if k != key && q.used.After(since) {
			out = append(out, keyed{k, q})
		}
	}
	if len(out) > limit {
		// More users in flight at once than we lend: keep the newest.
		slices.SortFunc(out, func(x, y keyed) int { return y.p.used.Compare(x.p.used) })
		out = out[:limit]
	}
	return out
}

// Export writes MSAL's cache for one partition to the store. It implements
// cache.ExportReplace.
//
// Export writes with compare-and-set against the version the preceding
// Replace loaded; when another instance wrote in between, it merges the two
// caches entry by entry and tries again, so concurrent writers lose no
// token. It skips the write when nothing changed, deletes the partition
// when MSAL exported it empty, and gives each partition a TTL: a user's
// sign-in lives WithUserTTL after its last write, app tokens until the
// latest of them expires.
//
// A store that keeps failing does not fail the token call: MSAL has the
// token in memory and returns it; Export logs, counts (Stats.ExportFailures)
// and returns nil. It returns an error only when ctx itself is done or MSAL
// cannot marshal its cache.
func (a *Adapter) Export(ctx context.Context, m cache.Marshaler, hints cache.ExportHints) error {
	if m == nil {
		return errors.New("msalcache: Export with a nil cache")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	key := a.StoreKey(hints.PartitionKey)
	if a.isOBO(key) {
		// MSAL hands the wrong manager on this path: what it would have
		// us store is other users' data (see the package documentation).
		a.stats.oboSkips.Add(1)
		return nil
	}
	data, err := m.Marshal()
	if err != nil {
		return fmt.Errorf("msalcache: MSAL could not marshal its cache: %w", err)
	}
	if len(data) > a.cfg.maxPartition {
		a.stats.oversized.Add(1)
		a.stats.exportFailures.Add(1)
		a.cfg.logger.LogAttrs(context.Background(), slog.LevelError,
			"export: MSAL's cache is larger than WithMaxPartitionSize allows; the token is served but not stored",
			slog.String("op", "export"), slog.String("key", fingerprint(key)),
			slog.Int("size", len(data)), slog.Int("max", a.cfg.maxPartition))
		return nil
	}
	dctx, cancel := a.withDeadline(ctx)
	defer cancel()

	cs := a.clientFor(m)
	cs.mu.Lock()
	defer cs.mu.Unlock()
	var own *partition
	if cs.valid {
		own = cs.parts[key]
	}
	// own.raw holds this partition's entries only, so equal bytes mean
	// MSAL holds nothing new and nothing lent.
	if own != nil && own.known && !own.stale && bytes.Equal(data, own.raw) {
		a.stats.skippedWrites.Add(1)
		return nil
	}

	var ownDoc *document
	if own != nil {
		ownDoc, _ = own.document()
	}
	doc, perr := parseDocument(data)
	out := data
	switch {
	case perr == nil && !a.cfg.singlePart:
		// Lent entries, and anything else MSAL holds of other
		// partitions, stay out of this one (see ownership.go).
		var dropped int
		if doc, dropped = doc.ownedBy(hints.PartitionKey); dropped > 0 {
			out = doc.encode()
		}
	case perr != nil && !a.cfg.singlePart:
		// Without MSAL's shape nothing tells whose entries these are, and
		// storing them could hand one account's tokens to another.
		a.stats.exportFailures.Add(1)
		a.error("export: MSAL's cache is not in the shape this version knows; not stored", "export", key, perr)
		return nil
	case perr != nil:
		doc = nil // one partition for everything: store as is, last writer wins
	}
	if doc != nil && own != nil && own.known && !own.stale && ownDoc != nil && doc.equalEntries(ownDoc) {
		a.stats.skippedWrites.Add(1)
		return nil
	}

	w := write{a: a, key: key, partitionKey: hints.PartitionKey, out: out, doc: doc}
	if own != nil {
		w.base, w.ifVersion = ownDoc, own.version
		w.versionKnown = own.known
	}
	v, werr := w.run(dctx)
	next := &partition{version: v, known: werr == nil, seq: a.nextSeq(), raw: w.out, doc: w.doc, used: a.cfg.now(), behind: w.merged}
	if werr != nil {
		// MSAL keeps the token in memory. Remember it as this partition's
		// own data, so no other partition's Export takes it, and write it
		// next time even if nothing else changes.
		next.version, next.known, next.stale = w.ifVersion, false, true
	}
	if cs.valid || len(cs.parts) == 0 {
		if cs.parts == nil {
			cs.parts = make(map[string]*partition)
		}
		cs.parts[key] = next
		cs.valid = true
	}
	if werr != nil {
		if cerr := ctx.Err(); cerr != nil {
			return cerr
		}
		a.stats.exportFailures.Add(1)
		a.error("export: could not store the token cache; the token is served but not shared", "export", key, werr)
	}
	return nil
}

// write is one Export's compare-and-set loop.
type write struct {
	a            *Adapter
	key          string
	partitionKey string
	out          []byte    // what to store (plaintext)
	doc          *document // out parsed; nil when out is not MSAL's shape
	base         *document // what ours started from, for the three-way merge
	ifVersion    Version
	versionKnown bool
	merged       bool // out holds another writer's entries that MSAL lacks
}

// A lost compare-and-set means another instance wrote in between: it is
// retried, after a merge, for as long as the call's deadline allows, never a
// fixed number of rounds (a fixed count loses writes when many instances
// write one partition at once). After the first few immediate retries each
// round waits a random time up to an exponentially growing bound ("full
// jitter"), so that colliding writers spread out instead of colliding again.
const (
	conflictFreeRetries = 2
	conflictBackoffBase = 500 * time.Microsecond
	conflictBackoffCap  = 50 * time.Millisecond
)

// conflictBackoff returns how long to wait before retry n (1-based) of a
// lost compare-and-set.
func conflictBackoff(n int) time.Duration {
	if n <= conflictFreeRetries {
		return 0
	}
	bound := conflictBackoffCap
	if shift := n - conflictFreeRetries; shift < 10 {
		bound = min(conflictBackoffBase<<shift, conflictBackoffCap)
	}
	return rand.N(bound)
}

func (w *write) run(ctx context.Context) (Version, error) {
	a := w.a
	if !w.versionKnown {
		w.ifVersion = NoVersion // try to create; a conflict loads and merges
	}
	failures, conflicts := 0, 0
	for {
		if w.doc != nil && !w.doc.hasTokens() {
			return NoVersion, a.deleteKey(ctx, w.key)
		}
		var err error
		var v Version
		sealed, err := a.seal(ctx, w.out, w.key)
		if err == nil {
			v, err = a.save(ctx, w.key, sealed, w.ifVersion, a.ttlFor(w.doc))
		}
		switch {
		case err == nil:
			a.stats.writes.Add(1)
			return v, nil
		case errors.Is(err, ErrConflict):
			conflicts++
			a.stats.conflicts.Add(1)
			if d := conflictBackoff(conflicts); d > 0 {
				if serr := sleepCtx(ctx, d); serr != nil {
					return NoVersion, errors.Join(err, serr)
				}
			}
			if lerr := w.rebase(ctx); lerr == nil {
				continue
			} else {
				err = lerr
			}
		case errors.Is(err, ErrTooLarge), ctx.Err() != nil:
			return NoVersion, err
		}
		failures++
		a.stats.storeErrors.Add(1)
		if failures >= a.cfg.exportAttempts {
			return NoVersion, err
		}
		if serr := sleepCtx(ctx, time.Duration(failures*failures)*10*time.Millisecond); serr != nil {
			return NoVersion, errors.Join(err, serr)
		}
	}
}

// rebase loads what another writer stored and merges ours into it.
func (w *write) rebase(ctx context.Context) error {
	a := w.a
	blob, v, err := a.load(ctx, w.key)
	switch {
	case errors.Is(err, ErrNotFound), errors.Is(err, ErrCorrupt):
		w.ifVersion = NoVersion
		return nil
	case err != nil:
		return err
	}
	w.ifVersion = v
	if w.doc == nil {
		return nil // not MSAL's shape: last writer wins
	}
	plain, err := a.open(ctx, blob, w.key)
	if err != nil {
		a.stats.decryptErrors.Add(1)
		return nil // theirs is unreadable: ours replaces it
	}
	theirs, err := parseDocument(plain)
	if err != nil {
		return nil
	}
	if !a.cfg.singlePart {
		// Another writer may run another version or another tool: what it
		// stored of other partitions stays out of the merge.
		theirs, _ = theirs.ownedBy(w.partitionKey)
	}
	w.doc = merge3(w.base, w.doc, theirs)
	w.base = theirs
	w.out = w.doc.encode()
	w.merged = true
	return nil
}

func (a *Adapter) deleteKey(ctx context.Context, key string) error {
	err := ctxrun.Do(ctx, func() error { return a.store.Delete(ctx, key) })
	if err == nil {
		a.stats.deletes.Add(1)
	}
	return err
}

// ttlFor returns how long a partition holding doc lives.
func (a *Adapter) ttlFor(doc *document) time.Duration {
	if doc == nil || doc.isUserCache() {
		return a.cfg.userTTL
	}
	exp := doc.latestExpiry()
	if exp.IsZero() {
		return a.cfg.userTTL
	}
	return min(max(exp.Sub(a.cfg.now()), a.cfg.minTTL), a.cfg.userTTL)
}

// Remove deletes a partition from the store, as sign-out should: MSAL's
// RemoveAccount exports under the empty partition key, so the user's own
// partition would otherwise survive it. Pass the key MSAL
// uses for the user's partition, the account's HomeAccountID.
func (a *Adapter) Remove(ctx context.Context, partitionKey string) error {
	ctx, cancel := a.withDeadline(ctx)
	defer cancel()
	key := a.StoreKey(partitionKey)
	if err := a.deleteKey(ctx, key); err != nil {
		return fmt.Errorf("msalcache: remove partition: %w", err)
	}
	// Forget it everywhere, so no client lends it to another partition and
	// the next Replace reloads what MSAL holds.
	a.mu.Lock()
	clients := make([]*clientState, 0, len(a.clients))
	for _, cs := range a.clients {
		clients = append(clients, cs)
	}
	a.mu.Unlock()
	for _, cs := range clients {
		cs.mu.Lock()
		if _, ok := cs.parts[key]; ok {
			cs.valid, cs.parts = false, nil
		}
		cs.mu.Unlock()
	}
	return nil
}

// The store and the Protector are called through the helpers below, which
// return when ctx is done whatever the call does: MSAL holds its client lock
// across every hook call, so one store call that ignores its context (a
// client bug such as go-redis 9.17's pool deadlock, a server that accepts
// and never answers) would otherwise stall every token call of that client.
// A call abandoned this way finishes on its own goroutine; compare-and-set
// keeps whatever it wrote late from overwriting newer data.

func (a *Adapter) load(ctx context.Context, key string) ([]byte, Version, error) {
	var r struct {
		blob []byte
		v    Version
	}
	// r is written only by the call and read only when Do returns nil, so
	// an abandoned call that finishes late writes to nothing anyone reads.
	err := ctxrun.Do(ctx, func() (err error) {
		r.blob, r.v, err = a.store.Load(ctx, key)
		return err
	})
	if err != nil {
		return nil, NoVersion, err
	}
	return r.blob, r.v, nil
}

func (a *Adapter) save(ctx context.Context, key string, value []byte, ifVersion Version, ttl time.Duration) (Version, error) {
	var v Version
	err := ctxrun.Do(ctx, func() (err error) {
		v, err = a.store.Save(ctx, key, value, ifVersion, ttl)
		return err
	})
	if err != nil {
		return NoVersion, err
	}
	return v, nil
}

func (a *Adapter) open(ctx context.Context, blob []byte, key string) ([]byte, error) {
	if a.cfg.protector == nil {
		return blob, nil
	}
	var plain []byte
	err := ctxrun.Do(ctx, func() (err error) {
		plain, err = a.cfg.protector.Unprotect(ctx, blob, []byte(key))
		return err
	})
	if err != nil {
		return nil, err
	}
	return plain, nil
}

func (a *Adapter) seal(ctx context.Context, plain []byte, key string) ([]byte, error) {
	if a.cfg.protector == nil {
		return plain, nil
	}
	var sealed []byte
	err := ctxrun.Do(ctx, func() (err error) {
		sealed, err = a.cfg.protector.Protect(ctx, plain, []byte(key))
		return err
	})
	if err != nil {
		return nil, err
	}
	return sealed, nil
}

func (a *Adapter) needsReprotect(blob []byte) bool {
	return a.reprotector != nil && a.reprotector.NeedsReprotect(blob)
}

func (a *Adapter) nextSeq() uint64 { return a.loads.Add(1) }

// Idle client states and on-behalf-of marks are forgotten after these
// periods: MSAL pairs each Export with the Replace just before it, so the
// adapter only needs its model of a client for as long as the client is
// busy. A client that comes back starts afresh, which is always correct.
const (
	defaultClientIdle = 3 * time.Second
	oboMemory         = 10 * time.Minute
)

// clientFor returns the state of the MSAL client whose cache is target.
func (a *Adapter) clientFor(target any) *clientState {
	if !reflect.TypeOf(target).Comparable() {
		return &clientState{} // cannot be tracked: model nothing, trust nothing
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.cfg.now()
	if now.Sub(a.lastSweep) > time.Second {
		a.sweepLocked(now)
	}
	cs := a.clients[target]
	if cs == nil {
		cs = &clientState{lastUsed: now}
		a.clients[target] = cs
		a.armSweeperLocked()
	}
	return cs
}

func (a *Adapter) armSweeperLocked() {
	if a.sweeper == nil {
		a.sweeper = time.AfterFunc(a.cfg.clientIdle, a.sweepIdle)
	}
}

// sweepIdle runs on the sweeper's timer.
func (a *Adapter) sweepIdle() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.sweepLocked(a.cfg.now())
	a.sweeper = nil
	if len(a.clients) > 0 || len(a.obo) > 0 {
		a.armSweeperLocked()
	}
}

func (a *Adapter) sweepLocked(now time.Time) {
	a.lastSweep = now
	for k, cs := range a.clients {
		if cs.mu.TryLock() {
			idle := now.Sub(cs.lastUsed) > a.cfg.clientIdle
			cs.mu.Unlock()
			if idle {
				delete(a.clients, k)
			}
		}
	}
	for k, t := range a.obo {
		if now.Sub(t) > oboMemory {
			delete(a.obo, k)
		}
	}
}

func (a *Adapter) markOBO(key string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.obo[key] = a.cfg.now()
	a.armSweeperLocked()
}

func (a *Adapter) isOBO(key string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	_, ok := a.obo[key]
	return ok
}

// fingerprint names a store key in logs: a short piece of its hash, enough
// to correlate records, never the partition key.
func fingerprint(key string) string {
	if len(key) > 8 {
		return key[len(key)-8:]
	}
	return key
}

func (a *Adapter) warn(msg, op, key string, err error) {
	a.cfg.logger.LogAttrs(context.Background(), slog.LevelWarn, msg,
		slog.String("op", op), slog.String("key", fingerprint(key)), slog.Any("error", err))
}

func (a *Adapter) error(msg, op, key string, err error) {
	a.cfg.logger.LogAttrs(context.Background(), slog.LevelError, msg,
		slog.String("op", op), slog.String("key", fingerprint(key)), slog.Any("error", err))
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
