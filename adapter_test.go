package msalcache

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/cache"
)

// target stands in for MSAL's in-memory cache (its storage.Manager): it
// keeps what Unmarshal was given and gives it back from Marshal.
type target struct {
	mu     sync.Mutex
	data   []byte
	loads  int
	reject bool // behave as MSAL's on-behalf-of manager: refuse everything
}

func (c *target) Unmarshal(b []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.reject {
		return errors.New("unmarshal rejected")
	}
	c.data = bytes.Clone(b)
	c.loads++
	return nil
}

func (c *target) Marshal() ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Clone(c.data), nil
}

// mapStore is a minimal Store for the adapter's unit tests; it records the
// TTL of each write. The real stores run the conformance suites.
type mapStore struct {
	mu   sync.Mutex
	data map[string][]byte
	vers map[string]driver.Version
	ttl  map[string]time.Duration
	n    driver.Version
}

func newMapStore() *mapStore {
	return &mapStore{data: map[string][]byte{}, vers: map[string]driver.Version{}, ttl: map[string]time.Duration{}}
}

func (s *mapStore) Load(_ context.Context, key string) ([]byte, driver.Version, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.data[key]
	if !ok {
		return nil, driver.NoVersion, driver.ErrNotFound
	}
	return bytes.Clone(v), s.vers[key], nil
}

func (s *mapStore) Save(_ context.Context, key string, value []byte, ifv driver.Version, ttl time.Duration) (driver.Version, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.vers[key] != ifv {
		return driver.NoVersion, driver.ErrConflict
	}
	s.n++
	s.data[key], s.vers[key], s.ttl[key] = bytes.Clone(value), s.n, ttl
	return s.n, nil
}

func (s *mapStore) Delete(_ context.Context, key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.data, key)
	delete(s.vers, key)
	return nil
}

func (s *mapStore) Close() error { return nil }

func quiet() Option { return WithLogger(slog.New(slog.DiscardHandler)) }

func newTestAdapter(t *testing.T, s driver.Store, opts ...Option) *Adapter {
	t.Helper()
	a, err := New(s, append([]Option{WithPlaintext(), quiet()}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

var ctx = context.Background()

const (
	// appKey is the partition MSAL-Go files app tokens of client "c" in
	// tenant "t" under.
	appKey     = "c_t_AppTokenCache"
	aliceCache = `{"RefreshToken":{"alice-rt":{"home_account_id":"alice","secret":"RT-A"}},"Account":{"alice":{"home_account_id":"alice"}}}`
	bobCache   = `{"RefreshToken":{"bob-rt":{"home_account_id":"bob","secret":"RT-B"}},"Account":{"bob":{"home_account_id":"bob"}}}`
)

func TestNewRequiresAnEncryptionChoice(t *testing.T) {
	s := newMapStore()
	if _, err := New(s); err == nil || !strings.Contains(err.Error(), "WithPlaintext") {
		t.Fatalf("New without WithProtector or WithPlaintext: err = %v, want one that names both", err)
	}
	if _, err := New(s, WithPlaintext(), WithProtector(nopProtector{})); err == nil {
		t.Fatal("New accepted both WithPlaintext and WithProtector")
	}
	if _, err := New(nil, WithPlaintext()); err == nil {
		t.Fatal("New accepted a nil store")
	}
	for _, bad := range []string{"", "has space", "x/y", strings.Repeat("n", 65)} {
		if _, err := New(s, WithPlaintext(), WithNamespace(bad)); err == nil {
			t.Errorf("WithNamespace(%q) accepted", bad)
		}
	}
	if _, err := New(s, WithPlaintext(), WithTimeout(0)); err == nil {
		t.Error("WithTimeout(0) accepted")
	}
}

type nopProtector struct{}

func (nopProtector) Protect(_ context.Context, p, _ []byte) ([]byte, error)   { return p, nil }
func (nopProtector) Unprotect(_ context.Context, c, _ []byte) ([]byte, error) { return c, nil }

func TestStoreKeyHidesThePartitionKey(t *testing.T) {
	a := newTestAdapter(t, newMapStore(), WithNamespace("app-1"))
	for _, pk := range []string{"", "uid.utid", "client_tenant_AppTokenCache", "a+b/c=d==", strings.Repeat("x", 4096)} {
		k := a.StoreKey(pk)
		if pk != "" && strings.Contains(k, pk) {
			t.Errorf("StoreKey(%q) = %q contains the partition key", pk, k)
		}
		if !strings.HasPrefix(k, "tc/app-1/") || len(k) > 200 {
			t.Errorf("StoreKey(%q) = %q: want namespace prefix and at most 200 bytes", pk, k)
		}
		for i := 0; i < len(k); i++ {
			if c := k[i]; c <= ' ' || c >= 0x7f {
				t.Fatalf("StoreKey has byte %q", c)
			}
		}
	}
	if a.StoreKey("alice") == a.StoreKey("bob") {
		t.Fatal("two partitions share a store key")
	}
	b := newTestAdapter(t, newMapStore(), WithNamespace("app-2"))
	if a.StoreKey("alice") == b.StoreKey("alice") {
		t.Fatal("two namespaces share a store key")
	}
	single := newTestAdapter(t, newMapStore(), WithSinglePartition())
	if single.StoreKey("alice") != single.StoreKey("") {
		t.Fatal("WithSinglePartition still partitions")
	}
}

// A miss must still reset MSAL's cache, or the next Export
// copies the previous user's tokens into this user's partition.
func TestReplaceResetsOnMiss(t *testing.T) {
	s := newMapStore()
	a := newTestAdapter(t, s)
	if _, err := s.Save(ctx, a.StoreKey("alice"), []byte(aliceCache), driver.NoVersion, 0); err != nil {
		t.Fatal(err)
	}
	c := &target{}
	if err := a.Replace(ctx, c, cache.ReplaceHints{PartitionKey: "alice"}); err != nil {
		t.Fatal(err)
	}
	if string(c.data) != aliceCache {
		t.Fatalf("hit: MSAL got %s", c.data)
	}
	time.Sleep(2 * a.cfg.lendWindow) // alice is no longer in flight
	if err := a.Replace(ctx, c, cache.ReplaceHints{PartitionKey: "nobody"}); err != nil {
		t.Fatal(err)
	}
	if string(c.data) != "{}" {
		t.Fatalf("miss: MSAL's cache still holds %s; want it reset", c.data)
	}
}

// A corrupt blob is a miss, never a failed token call.
func TestReplaceCorruptBlobIsAMiss(t *testing.T) {
	s := newMapStore()
	a := newTestAdapter(t, s)
	key := a.StoreKey("alice")
	if _, err := s.Save(ctx, key, []byte("\x00not json"), driver.NoVersion, 0); err != nil {
		t.Fatal(err)
	}
	c := &strictTarget{}
	if err := a.Replace(ctx, c, cache.ReplaceHints{PartitionKey: "alice"}); err != nil {
		t.Fatalf("Replace of a corrupt blob: %v", err)
	}
	if string(c.data) != "{}" || a.Stats().CorruptBlobs != 1 {
		t.Fatalf("cache = %q, stats %+v: want reset and one corrupt blob counted", c.data, a.Stats())
	}
	// The next Export replaces the corrupt blob.
	c.data = []byte(aliceCache)
	if err := a.Export(ctx, c, cache.ExportHints{PartitionKey: "alice"}); err != nil {
		t.Fatal(err)
	}
	if got, _, _ := s.Load(ctx, key); string(got) != aliceCache {
		t.Fatalf("stored %q after Export", got)
	}
}

// strictTarget refuses what is not JSON, as MSAL does.
type strictTarget struct{ target }

func (c *strictTarget) Unmarshal(b []byte) error {
	if !bytes.HasPrefix(b, []byte("{")) {
		return errors.New("not json")
	}
	return c.target.Unmarshal(b)
}

// MSAL's on-behalf-of manager refuses every input; Replace
// must not fail, and the Export that follows carries another manager's
// data, which must not be stored.
func TestOnBehalfOfManagerIsLeftAloneAndNotExported(t *testing.T) {
	s := newMapStore()
	a := newTestAdapter(t, s)
	obo := &target{reject: true}
	users := &target{data: []byte(aliceCache)}
	hint := "assertion-hash="
	if err := a.Replace(ctx, obo, cache.ReplaceHints{PartitionKey: hint}); err != nil {
		t.Fatalf("Replace on the OBO manager: %v", err)
	}
	if err := a.Export(ctx, users, cache.ExportHints{PartitionKey: hint}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Load(ctx, a.StoreKey(hint)); !errors.Is(err, driver.ErrNotFound) {
		t.Fatalf("the user manager's data was stored under the OBO key (err %v)", err)
	}
	if a.Stats().OBOSkips != 1 {
		t.Fatalf("Stats.OBOSkips = %d", a.Stats().OBOSkips)
	}
	// Later calls on the OBO manager do not even reach the store.
	if err := a.Replace(ctx, obo, cache.ReplaceHints{PartitionKey: hint}); err != nil {
		t.Fatal(err)
	}
}

// Unchanged caches are not written; empty ones are
// deleted; TTLs follow the content.
func TestExportSkipsDeletesAndSetsTTL(t *testing.T) {
	s := newMapStore()
	now := time.Unix(1_700_000_000, 0)
	a := newTestAdapter(t, s, WithUserTTL(48*time.Hour))
	a.cfg.now = func() time.Time { return now }
	c := &target{data: []byte(bobCache)}
	key := a.StoreKey("bob")

	if err := a.Replace(ctx, c, cache.ReplaceHints{PartitionKey: "bob"}); err != nil {
		t.Fatal(err)
	}
	c.data = []byte(bobCache)
	if err := a.Export(ctx, c, cache.ExportHints{PartitionKey: "bob"}); err != nil {
		t.Fatal(err)
	}
	if s.ttl[key] != 48*time.Hour {
		t.Fatalf("user cache TTL = %v, want the user TTL", s.ttl[key])
	}
	if err := a.Replace(ctx, c, cache.ReplaceHints{PartitionKey: "bob"}); err != nil {
		t.Fatal(err)
	}
	writes := a.Stats().Writes
	if err := a.Export(ctx, c, cache.ExportHints{PartitionKey: "bob"}); err != nil {
		t.Fatal(err)
	}
	if st := a.Stats(); st.Writes != writes || st.SkippedWrites != 1 {
		t.Fatalf("unchanged export: %+v; want it skipped", st)
	}

	app := `{"AccessToken":{"t1":{"client_id":"c","realm":"t","expires_on":"1700003600"},"t2":{"client_id":"c","realm":"t","expires_on":"1700001800"}},"AppMetadata":{"m":{}}}`
	c.data = []byte(app)
	if err := a.Export(ctx, c, cache.ExportHints{PartitionKey: appKey}); err != nil {
		t.Fatal(err)
	}
	if got := s.ttl[a.StoreKey(appKey)]; got != time.Hour {
		t.Fatalf("app cache TTL = %v, want the latest expiry (1h)", got)
	}

	c.data = []byte(`{"AppMetadata":{"m":{}}}`)
	if err := a.Export(ctx, c, cache.ExportHints{PartitionKey: "bob"}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Load(ctx, key); !errors.Is(err, driver.ErrNotFound) {
		t.Fatalf("an empty export left the partition in the store (err %v)", err)
	}
}

// Two instances export the same partition from the same starting point:
// the second merges instead of overwriting.
func TestExportMergesOnConflict(t *testing.T) {
	s := newMapStore()
	a1, a2 := newTestAdapter(t, s), newTestAdapter(t, s)
	base := `{"AccessToken":{"old":{"client_id":"c","realm":"t","expires_on":"1"}}}`
	if _, err := s.Save(ctx, a1.StoreKey(appKey), []byte(base), driver.NoVersion, 0); err != nil {
		t.Fatal(err)
	}
	c1, c2 := &target{}, &target{}
	for _, p := range []struct {
		a *Adapter
		c *target
	}{{a1, c1}, {a2, c2}} {
		if err := p.a.Replace(ctx, p.c, cache.ReplaceHints{PartitionKey: appKey}); err != nil {
			t.Fatal(err)
		}
	}
	c1.data = []byte(`{"AccessToken":{"old":{"client_id":"c","realm":"t","expires_on":"1"},"one":{"client_id":"c","realm":"t","expires_on":"1"}}}`)
	c2.data = []byte(`{"AccessToken":{"old":{"client_id":"c","realm":"t","expires_on":"1"},"two":{"client_id":"c","realm":"t","expires_on":"1"}}}`)
	if err := a1.Export(ctx, c1, cache.ExportHints{PartitionKey: appKey}); err != nil {
		t.Fatal(err)
	}
	if err := a2.Export(ctx, c2, cache.ExportHints{PartitionKey: appKey}); err != nil {
		t.Fatal(err)
	}
	got, _, _ := s.Load(ctx, a1.StoreKey(appKey))
	for _, k := range []string{`"old"`, `"one"`, `"two"`} {
		if !bytes.Contains(got, []byte(k)) {
			t.Fatalf("merged partition lacks %s: %s", k, got)
		}
	}
	if a2.Stats().Conflicts != 1 {
		t.Fatalf("conflicts = %d, want 1", a2.Stats().Conflicts)
	}
	// MSAL in instance 1 lacks "two": its next Replace must load it.
	if err := a1.Replace(ctx, c1, cache.ReplaceHints{PartitionKey: appKey}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(c1.data, []byte(`"two"`)) {
		t.Fatal("instance 1 was not handed the merged partition")
	}
}

// A caller's cancelled context is reported; the adapter's own timeout is
// a miss.
func TestReplaceContext(t *testing.T) {
	a := newTestAdapter(t, newMapStore())
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := a.Replace(cctx, &target{}, cache.ReplaceHints{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Replace with a cancelled context = %v", err)
	}
	if err := a.Export(cctx, &target{}, cache.ExportHints{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Export with a cancelled context = %v", err)
	}
}

// xorProtector marks its blobs with the generation of its key; blobs of an
// older generation open but need reprotecting.
type xorProtector struct{ gen byte }

func (p *xorProtector) Protect(_ context.Context, b, _ []byte) ([]byte, error) {
	return append([]byte{p.gen}, b...), nil
}

func (p *xorProtector) Unprotect(_ context.Context, b, _ []byte) ([]byte, error) {
	if len(b) == 0 || b[0] > p.gen {
		return nil, errors.New("unknown key")
	}
	return b[1:], nil
}

func (p *xorProtector) NeedsReprotect(b []byte) bool { return len(b) > 0 && b[0] != p.gen }

// After a key rotation, an unchanged partition is rewritten under the
// current key on its next Export, so old keys drain out of the store.
func TestExportReprotectsBlobsUnderOldKeys(t *testing.T) {
	s := newMapStore()
	p := &xorProtector{gen: 1}
	a, err := New(s, WithProtector(p), quiet())
	if err != nil {
		t.Fatal(err)
	}
	key := a.StoreKey("bob")
	c := &target{data: []byte(bobCache)}
	if err := a.Export(ctx, c, cache.ExportHints{PartitionKey: "bob"}); err != nil {
		t.Fatal(err)
	}
	p.gen = 2 // rotation
	fresh := &target{}
	if err := a.Replace(ctx, fresh, cache.ReplaceHints{PartitionKey: "bob"}); err != nil {
		t.Fatal(err)
	}
	if err := a.Export(ctx, fresh, cache.ExportHints{PartitionKey: "bob"}); err != nil {
		t.Fatal(err)
	}
	if got, _, _ := s.Load(ctx, key); got[0] != 2 {
		t.Fatalf("blob still under key generation %d after an Export", got[0])
	}
	// Now current: the next unchanged Export is skipped.
	if err := a.Replace(ctx, fresh, cache.ReplaceHints{PartitionKey: "bob"}); err != nil {
		t.Fatal(err)
	}
	writes := a.Stats().Writes
	if err := a.Export(ctx, fresh, cache.ExportHints{PartitionKey: "bob"}); err != nil {
		t.Fatal(err)
	}
	if a.Stats().Writes != writes {
		t.Fatal("an unchanged partition under the current key was rewritten")
	}
	// A blob the protector cannot open is a miss, counted.
	p.gen = 0
	if err := a.Replace(ctx, &target{}, cache.ReplaceHints{PartitionKey: "bob"}); err != nil {
		t.Fatal(err)
	}
	if a.Stats().DecryptErrors != 1 {
		t.Fatalf("DecryptErrors = %d", a.Stats().DecryptErrors)
	}
}

// hmacProtector names partitions with a keyed hash, as protect.KeyRing does.
type hmacProtector struct {
	nopProtector
	secret byte
}

func (p hmacProtector) HashKey(pk string) [32]byte {
	return sha256.Sum256(append([]byte{p.secret}, pk...))
}

func TestStoreKeyIsKeyedWhenTheProtectorHoldsASecret(t *testing.T) {
	plain := newTestAdapter(t, newMapStore())
	keyed := func(secret byte) *Adapter {
		a, err := New(newMapStore(), WithProtector(hmacProtector{secret: secret}), quiet())
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	a, b, other := keyed(1), keyed(1), keyed(2)
	if a.StoreKey("uid.utid") == plain.StoreKey("uid.utid") {
		t.Fatal("with a KeyHasher, the store key is still the plain SHA-256 anyone can compute")
	}
	if a.StoreKey("uid.utid") != b.StoreKey("uid.utid") {
		t.Fatal("two instances with the same secret name a partition differently")
	}
	if a.StoreKey("uid.utid") == other.StoreKey("uid.utid") {
		t.Fatal("another secret gives the same name")
	}
}

// Idle clients are forgotten without waiting for the next call: the
// adapter's map holds MSAL's managers, which must not outlive a burst of
// clients per request.
func TestIdleClientsFreedWithoutTraffic(t *testing.T) {
	a := newTestAdapter(t, newMapStore())
	a.cfg.clientIdle = 20 * time.Millisecond
	for range 1000 {
		if err := a.Replace(ctx, &target{}, cache.ReplaceHints{PartitionKey: "bob"}); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		a.mu.Lock()
		n, armed := len(a.clients), a.sweeper != nil
		a.mu.Unlock()
		if n == 0 && !armed {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d idle client states still held (sweeper armed: %v) with no call since", n, armed)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A partition over WithMaxPartitionSize is a miss before anything is
// decrypted or parsed, and an export over it is not stored.
func TestOversizedPartitionIsAMiss(t *testing.T) {
	s := newMapStore()
	a := newTestAdapter(t, s, WithMaxPartitionSize(64<<10))
	var big strings.Builder
	big.WriteString(`{"AccessToken":{`)
	for i := range 2000 {
		if i > 0 {
			big.WriteByte(',')
		}
		fmt.Fprintf(&big, `"at-%d":{"client_id":"c","realm":"t","secret":"x","expires_on":"1900000000"}`, i)
	}
	big.WriteString(`}}`)
	if _, err := s.Save(ctx, a.StoreKey(appKey), []byte(big.String()), driver.NoVersion, 0); err != nil {
		t.Fatal(err)
	}
	c := &target{}
	if err := a.Replace(ctx, c, cache.ReplaceHints{PartitionKey: appKey}); err != nil {
		t.Fatal(err)
	}
	if string(c.data) != "{}" || a.Stats().Oversized != 1 {
		t.Fatalf("oversized partition handed to MSAL (%d bytes), Stats %+v", len(c.data), a.Stats())
	}
	c.data = []byte(big.String())
	writes := a.Stats().Writes
	if err := a.Export(ctx, c, cache.ExportHints{PartitionKey: appKey}); err != nil {
		t.Fatal(err)
	}
	if st := a.Stats(); st.Writes != writes || st.Oversized != 2 {
		t.Fatalf("oversized export stored: %+v", st)
	}
	if _, err := New(s, WithPlaintext(), WithMaxPartitionSize(10)); err == nil {
		t.Fatal("WithMaxPartitionSize(10) accepted")
	}
}

// Exports of one partition within one Adapter take turns, each starting
// from what the one before it stored: racing them through the store would
// only make all but one lose the compare-and-set and load it again.
func TestExportsOfOnePartitionTakeTurns(t *testing.T) {
	s := newMapStore()
	a := newTestAdapter(t, s)
	const writers = 16
	clients := make([]*target, writers)
	for i := range clients {
		clients[i] = &target{}
		if err := a.Replace(ctx, clients[i], cache.ReplaceHints{PartitionKey: appKey}); err != nil {
			t.Fatal(err)
		}
		clients[i].data = fmt.Appendf(nil, `{"AccessToken":{"at-%d":{"client_id":"c","realm":"t","expires_on":"1900000000"}}}`, i)
	}
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := a.Export(ctx, c, cache.ExportHints{PartitionKey: appKey}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	blob, _, err := s.Load(ctx, a.StoreKey(appKey))
	if err != nil {
		t.Fatal(err)
	}
	doc, err := parseDocument(blob)
	if err != nil {
		t.Fatal(err)
	}
	st := a.Stats()
	if n := len(doc.sections[secAccessToken]); n != writers || st.Conflicts != 0 || st.Writes != writers {
		t.Fatalf("%d of %d tokens stored, %d writes, %d compare-and-set conflicts; want all, %d writes and no conflict", n, writers, st.Writes, st.Conflicts, writers)
	}
}

// failStore fails every call while down is set.
type failStore struct {
	*mapStore
	down atomic.Bool
}

func (s *failStore) Load(ctx context.Context, key string) ([]byte, driver.Version, error) {
	if s.down.Load() {
		return nil, driver.NoVersion, errors.New("store down (injected)")
	}
	return s.mapStore.Load(ctx, key)
}

// A client the adapter forgot while idle keeps what MSAL holds when the
// store then fails: an outage must not sign its users out of the instance.
// A client whose partition was removed is still reset.
func TestStoreErrorLeavesAForgottenClientAlone(t *testing.T) {
	s := &failStore{mapStore: newMapStore()}
	a := newTestAdapter(t, s)
	if _, err := s.Save(ctx, a.StoreKey("alice"), []byte(aliceCache), driver.NoVersion, 0); err != nil {
		t.Fatal(err)
	}
	c := &target{}
	if err := a.Replace(ctx, c, cache.ReplaceHints{PartitionKey: "alice"}); err != nil {
		t.Fatal(err)
	}
	a.mu.Lock()
	delete(a.clients, c) // what the idle sweep does
	a.mu.Unlock()
	s.down.Store(true)
	if err := a.Replace(ctx, c, cache.ReplaceHints{PartitionKey: "alice"}); err != nil {
		t.Fatal(err)
	}
	if string(c.data) != aliceCache {
		t.Fatalf("a store error reset a forgotten client's cache to %q", c.data)
	}
	s.down.Store(false)
	if err := a.Replace(ctx, c, cache.ReplaceHints{PartitionKey: "alice"}); err != nil {
		t.Fatal(err)
	}
	// The breaker may still be open from the failure: the removal is then
	// pending, and MSAL's copy must go all the same.
	if err := a.Remove(ctx, "alice"); err != nil && !errors.Is(err, ErrRemovalPending) {
		t.Fatal(err)
	}
	s.down.Store(true)
	if err := a.Replace(ctx, c, cache.ReplaceHints{PartitionKey: "alice"}); err != nil {
		t.Fatal(err)
	}
	if string(c.data) != "{}" {
		t.Fatalf("after Remove, a store error left the removed partition in MSAL's cache: %q", c.data)
	}
}
