package protect_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/msalcache/msalcache/driver"
	"github.com/msalcache/msalcache/internal/ringadmin"
	"github.com/msalcache/msalcache/memstore"
	"github.com/msalcache/msalcache/protect"
)

// fakeClock is a clock tests step by hand. Each server of a simulated farm
// reads it through its own offset.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// offset returns a clock that runs d ahead of c (behind when negative).
func (c *fakeClock) offset(d time.Duration) func() time.Time {
	return func() time.Time { return c.Now().Add(d) }
}

func testKEK(t testing.TB, id string, seed byte) protect.KeyWrapper {
	t.Helper()
	w, err := protect.NewAESKeyWrapper(id, bytes.Repeat([]byte{seed}, protect.KEKSize))
	if err != nil {
		t.Fatal(err)
	}
	return w
}

var quiet = slog.New(slog.DiscardHandler)

// newRing builds a ring with manual refresh on store, reading clock.
func newRing(t testing.TB, store driver.Store, now func() time.Time, opts ...protect.Option) *protect.KeyRing {
	t.Helper()
	r, err := tryRing(t, store, now, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func tryRing(t testing.TB, store driver.Store, now func() time.Time, opts ...protect.Option) (*protect.KeyRing, error) {
	t.Helper()
	base := []protect.Option{protect.WithAutoRefresh(false), protect.WithLogger(quiet)}
	if now != nil {
		base = append(base, protect.WithClock(now))
	}
	r, err := protect.NewKeyRing(context.Background(), store, testKEK(t, "kek-1", 7), append(base, opts...)...)
	if err == nil {
		t.Cleanup(func() { r.Close() })
	}
	return r, err
}

// keyOf names the key a payload was sealed under (bytes 5 to 21 of the
// format).
func keyOf(blob []byte) string { return hex.EncodeToString(blob[5:21]) }

func mustProtect(t testing.TB, r *protect.KeyRing, plain, aad string) []byte {
	t.Helper()
	b, err := r.Protect(context.Background(), []byte(plain), []byte(aad))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustOpen(t testing.TB, r *protect.KeyRing, blob []byte, aad, want string) {
	t.Helper()
	got, err := r.Unprotect(context.Background(), blob, []byte(aad))
	if err != nil {
		t.Fatalf("Unprotect (key %s): %v", keyOf(blob), err)
	}
	if string(got) != want {
		t.Fatalf("Unprotect = %q, want %q", got, want)
	}
}

func keyIDs(t testing.TB, r *protect.KeyRing) []string {
	t.Helper()
	ks, err := r.Keys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, k := range ks {
		ids = append(ids, k.ID)
	}
	return ids
}

func defaultKey(t testing.TB, r *protect.KeyRing) ringadmin.KeyInfo {
	t.Helper()
	ks, err := r.Keys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var def []ringadmin.KeyInfo
	for _, k := range ks {
		if k.Default {
			def = append(def, k)
		}
	}
	if len(def) != 1 {
		t.Fatalf("%d default keys in %+v", len(def), ks)
	}
	return def[0]
}

// faultyStore wraps a real store and fails the calls a test asks it to;
// it counts loads of the ring record.
type faultyStore struct {
	driver.Store
	failLoad     atomic.Bool // every Load fails
	failRingLoad atomic.Bool // Loads of the ring record fail
	failSave     atomic.Bool
	ringLoads    atomic.Int64
}

var errInjected = errors.New("injected store failure")

func (s *faultyStore) Load(ctx context.Context, key string) ([]byte, driver.Version, error) {
	if key == protect.DefaultRingKey {
		s.ringLoads.Add(1)
	}
	if s.failLoad.Load() || s.failRingLoad.Load() && key == protect.DefaultRingKey {
		return nil, driver.NoVersion, errInjected
	}
	return s.Store.Load(ctx, key)
}

// gateStore holds the first n loads of the ring record until all n have
// arrived, so that n servers starting together all see an empty store
// before any of them writes: the race the bootstrap must survive.
type gateStore struct {
	driver.Store
	n       int
	mu      sync.Mutex
	arrived int
	open    chan struct{}
}

func newGateStore(s driver.Store, n int) *gateStore {
	return &gateStore{Store: s, n: n, open: make(chan struct{})}
}

func (s *gateStore) Load(ctx context.Context, key string) ([]byte, driver.Version, error) {
	if key == protect.DefaultRingKey {
		s.mu.Lock()
		s.arrived++
		if s.arrived == s.n {
			close(s.open)
		}
		wait := s.arrived <= s.n
		s.mu.Unlock()
		if wait {
			select {
			case <-s.open:
			case <-ctx.Done():
				return nil, driver.NoVersion, ctx.Err()
			}
		}
	}
	return s.Store.Load(ctx, key)
}

func (s *faultyStore) Save(ctx context.Context, key string, value []byte, v driver.Version, ttl time.Duration) (driver.Version, error) {
	if s.failSave.Load() {
		return driver.NoVersion, errInjected
	}
	return s.Store.Save(ctx, key, value, v, ttl)
}

func newMem(t testing.TB) *memstore.Store {
	s := memstore.New()
	t.Cleanup(func() { s.Close() })
	return s
}

// ringDoc mirrors the ring record's JSON so tests can tamper with it.
type ringDoc struct {
	V       int        `json:"v"`
	Keys    []keyDoc   `json:"keys"`
	Revoked []revDoc   `json:"revoked,omitempty"`
	Naming  *namingDoc `json:"naming,omitempty"`
	Extra   string     `json:"extra,omitempty"`
}

type namingDoc struct {
	KEK     string `json:"kek"`
	Wrapped []byte `json:"wrapped"`
}

type keyDoc struct {
	ID         string `json:"id"`
	Suite      int    `json:"suite"`
	Created    int64  `json:"created"`
	Activation int64  `json:"activation"`
	Expiration int64  `json:"expiration"`
	KEK        string `json:"kek"`
	Kind       string `json:"kind,omitempty"`
	Wrapped    []byte `json:"wrapped"`
}

type revDoc struct {
	ID  string `json:"id"`
	At  int64  `json:"at"`
	KEK string `json:"kek"`
	Tag []byte `json:"tag"`
}

func parseDoc(t testing.TB, b []byte) ringDoc {
	t.Helper()
	var d ringDoc
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	return d
}

func (d ringDoc) encode(t testing.TB) []byte {
	t.Helper()
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// hookStore runs hook once, right after the first load of the ring record
// that finds nothing and before that answer is returned: another server
// acting in the gap between two of this one's reads.
type hookStore struct {
	driver.Store
	once sync.Once
	hook func()
}

func (s *hookStore) Load(ctx context.Context, key string) ([]byte, driver.Version, error) {
	b, v, err := s.Store.Load(ctx, key)
	if key == protect.DefaultRingKey && errors.Is(err, driver.ErrNotFound) {
		s.once.Do(s.hook)
	}
	return b, v, err
}

// ringRecord returns the ring's record as stored now.
func ringRecord(t testing.TB, store driver.Store) []byte {
	t.Helper()
	rec, _, err := store.Load(ctx, protect.DefaultRingKey)
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

// replayRing puts an older copy of the ring's record back, as an attacker
// with write access to the store, or a restored backup, would.
func replayRing(t testing.TB, store driver.Store, old []byte) {
	t.Helper()
	_, v, err := store.Load(ctx, protect.DefaultRingKey)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Save(ctx, protect.DefaultRingKey, old, v, 0); err != nil {
		t.Fatal(err)
	}
}

// asFormat1 rewrites a ring record as the first release wrote it: format
// 1, no naming secret. The keys' wraps do not cover either, so the result
// is a valid record of today's ring minus its secret.
func asFormat1(t testing.TB, rec []byte) []byte {
	t.Helper()
	d := parseDoc(t, rec)
	d.V, d.Naming = 1, nil
	for i := range d.Keys {
		d.Keys[i].Kind = ""
	}
	return d.encode(t)
}
