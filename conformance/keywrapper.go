package conformance

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/driver"
	"github.com/msalcache/msalcache/internal/ringadmin"
	"github.com/msalcache/msalcache/protect"
)

// RunKeyWrapperTests checks that a protect.KeyWrapper (a KEK: a local key,
// a certificate, a vault) is fit to protect a key ring: what it wraps
// unwraps to the same bytes, only with the same associated data and only
// under the same key; no altered or truncated wrapping unwraps, and none
// makes it panic; two wraps of one key differ; it is safe for concurrent
// use; and a ring moved from one wrapper to another (the KEK rotation of
// the protect package's documentation) keeps every blob sealed before it
// readable, then drops the old wrapper. Two subtests run real MSAL-Go
// clients against an entratest token endpoint: two servers, each with its
// own ring under the wrapper, share tokens through one store with no KEK
// call after their start; and a farm moved from a local AES KEK (an
// environment variable's) to the wrapper keeps serving the tokens stored
// before the move. They log each ring's KEK calls (KEKStats).
//
// newWrapper is called once per subtest, and twice where a second KEK is
// needed: each call must return a wrapper with a key and an id of its
// own, as a renewed certificate or a new vault key would have.
//
//	conformance.RunKeyWrapperTests(t, func(t *testing.T) protect.KeyWrapper {
//		w, err := protect.LoadCertificateKeyWrapper(certFile, keyFile)
//		...
//	})
func RunKeyWrapperTests(t *testing.T, newWrapper func(t *testing.T) protect.KeyWrapper) {
	t.Helper()
	runCases(t, &wrapperHarness{newWrapper: newWrapper}, wrapperCases)
}

// wrapperCases are RunKeyWrapperTests' cases, in the order they run. The
// suite keeps a plain constructor rather than a Harness: a KeyWrapper has
// no store to make and no optional capability to declare (the farm
// scenarios bring their own store).
var wrapperCases = []suiteCase[func(h *wrapperHarness, t *testing.T)]{
	{"RoundTrip", "a data key wrapped unwraps to the same bytes", (*wrapperHarness).testRoundTrip},
	{"WrongAADRefused", "a wrapping is bound to its associated data: another ring's record does not unwrap with it", (*wrapperHarness).testWrongAAD},
	{"WrongKeyRefused", "another KEK does not unwrap what this one wrapped", (*wrapperHarness).testWrongKey},
	{"TamperedRefused", "an altered wrapping is refused, not unwrapped to other bytes", (*wrapperHarness).testTampered},
	{"WrapsDiffer", "two wrappings of one key differ", (*wrapperHarness).testWrapsDiffer},
	{"ConcurrentUse", "one wrapper serves every ring of a process at once (run with -race)", (*wrapperHarness).testConcurrent},
	{"RotationKeepsOldDataReadable", "after a move to a new KEK, blobs sealed before stay readable", (*wrapperHarness).testRotation},
	{"FarmOfTwoServesTokens", "two servers, each with a ring under the KEK, share tokens through one store without a KEK call after their start", (*wrapperHarness).testFarm},
	{"MigrationFromAESKeepsTokens", "a farm moved from an AES KEK to this one keeps serving the tokens stored before", (*wrapperHarness).testMigration},
}

type wrapperHarness struct {
	newWrapper func(t *testing.T) protect.KeyWrapper
}

func (h *wrapperHarness) open(t *testing.T) protect.KeyWrapper {
	t.Helper()
	w := h.newWrapper(t)
	if w == nil {
		t.Fatal("newWrapper returned nil")
	}
	id := w.ID()
	if len(id) == 0 || len(id) > 128 {
		t.Fatalf("ID %q: must be 1 to 128 characters", id)
	}
	return w
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// wrapperAAD looks like the ring's: a label, fixed fields, a KEK id.
func wrapperAAD(extra string) []byte {
	return []byte("msalcache/protect key v1\x00" + extra)
}

func mustWrap(t *testing.T, w protect.KeyWrapper, plain, aad []byte) []byte {
	t.Helper()
	var out []byte
	var err error
	if perr := protCatchPanic(func() { out, err = w.Wrap(context.Background(), plain, aad) }); perr != nil {
		t.Fatalf("Wrap panicked: %v", perr)
	}
	if err != nil {
		t.Fatalf("Wrap: %v", err)
	}
	return out
}

// tryUnwrap calls Unwrap and fails the test on a panic.
func tryUnwrap(t *testing.T, w protect.KeyWrapper, wrapped, aad []byte) ([]byte, error) {
	t.Helper()
	var out []byte
	var err error
	if perr := protCatchPanic(func() { out, err = w.Unwrap(context.Background(), wrapped, aad) }); perr != nil {
		t.Fatalf("Unwrap panicked: %v", perr)
	}
	return out, err
}

func (h *wrapperHarness) testRoundTrip(t *testing.T) {
	w := h.open(t)
	// The sizes the ring wraps: a data key or naming secret (32 bytes)
	// and a revocation tag (a 16-byte key id).
	for _, n := range []int{32, 16} {
		plain := randomBytes(n)
		aad := wrapperAAD(fmt.Sprint(n))
		wrapped := mustWrap(t, w, plain, aad)
		if bytes.Contains(wrapped, plain) {
			t.Fatalf("the wrapping of %d bytes holds them in clear", n)
		}
		got, err := tryUnwrap(t, w, wrapped, aad)
		if err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("Unwrap of %d bytes = %x, %v; want %x", n, got, err, plain)
		}
	}
	if _, err := w.Wrap(canceled(), randomBytes(32), wrapperAAD("")); err == nil {
		t.Error("Wrap succeeded with a canceled context")
	}
}

func canceled() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

func (h *wrapperHarness) testWrongAAD(t *testing.T) {
	w := h.open(t)
	plain, aad := randomBytes(32), wrapperAAD("a")
	wrapped := mustWrap(t, w, plain, aad)
	for _, other := range [][]byte{wrapperAAD("b"), nil, aad[:len(aad)-1], append(bytes.Clone(aad), 0)} {
		if got, err := tryUnwrap(t, w, wrapped, other); err == nil {
			t.Fatalf("unwrapped under other associated data %q (got %d bytes)", other, len(got))
		}
	}
}

func (h *wrapperHarness) testWrongKey(t *testing.T) {
	a, b := h.open(t), h.open(t)
	if a.ID() == b.ID() {
		t.Fatalf("two calls of newWrapper gave the same id %q; each must have a key and id of its own", a.ID())
	}
	aad := wrapperAAD("k")
	wrapped := mustWrap(t, a, randomBytes(32), aad)
	if _, err := tryUnwrap(t, b, wrapped, aad); err == nil {
		t.Fatal("another KEK unwrapped this KEK's wrapping")
	}
}

func (h *wrapperHarness) testTampered(t *testing.T) {
	w := h.open(t)
	plain, aad := randomBytes(32), wrapperAAD("t")
	wrapped := mustWrap(t, w, plain, aad)
	// Every byte of a short wrapping; of a long one (an RSA-4096
	// ciphertext, a vault's), the first and last 64 and a sample between.
	positions := []int{}
	for i := range wrapped {
		if len(wrapped) <= 256 || i < 64 || i >= len(wrapped)-64 || i%17 == 0 {
			positions = append(positions, i)
		}
	}
	for _, i := range positions {
		bad := bytes.Clone(wrapped)
		bad[i] ^= 0x01
		if got, err := tryUnwrap(t, w, bad, aad); err == nil && bytes.Equal(got, plain) {
			t.Fatalf("a wrapping with byte %d flipped still unwraps", i)
		} else if err == nil {
			t.Fatalf("a wrapping with byte %d flipped unwraps to other bytes without an error", i)
		}
	}
	for _, n := range []int{0, 1, len(wrapped) / 2, len(wrapped) - 1} {
		if _, err := tryUnwrap(t, w, wrapped[:n], aad); err == nil {
			t.Fatalf("a wrapping truncated to %d bytes unwraps", n)
		}
	}
	if _, err := tryUnwrap(t, w, append(bytes.Clone(wrapped), 0), aad); err == nil {
		t.Fatal("a wrapping with a byte appended unwraps")
	}
}

func (h *wrapperHarness) testWrapsDiffer(t *testing.T) {
	w := h.open(t)
	plain, aad := randomBytes(32), wrapperAAD("d")
	if bytes.Equal(mustWrap(t, w, plain, aad), mustWrap(t, w, plain, aad)) {
		t.Fatal("two wraps of one key are equal: the wrapping is deterministic, so the record shows which keys are equal")
	}
}

func (h *wrapperHarness) testConcurrent(t *testing.T) {
	w := h.open(t)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 4 {
				plain, aad := randomBytes(32), wrapperAAD(fmt.Sprint(g, i))
				wrapped, err := w.Wrap(context.Background(), plain, aad)
				if err != nil {
					errs <- err
					return
				}
				got, err := w.Unwrap(context.Background(), wrapped, aad)
				if err != nil || !bytes.Equal(got, plain) {
					errs <- fmt.Errorf("concurrent round trip: %x, %v", got, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// testRotation moves a ring from one KEK to another as an operator does:
// the new one primary with the old one in WithKEKs, a Rotate to rewrap,
// then the old one removed, with a blob sealed before readable throughout.
func (h *wrapperHarness) testRotation(t *testing.T) {
	ctx := context.Background()
	oldKEK, newKEK := h.open(t), h.open(t)
	store := newCASMap()
	quiet := []protect.Option{protect.WithAutoRefresh(false), protect.WithLogger(slog.New(slog.DiscardHandler))}
	ring := func(kek protect.KeyWrapper, opts ...protect.Option) *protect.KeyRing {
		t.Helper()
		r, err := protect.NewKeyRing(ctx, store, kek, append(opts, quiet...)...)
		if err != nil {
			t.Fatalf("NewKeyRing with KEK %q: %v", kek.ID(), err)
		}
		t.Cleanup(func() { r.Close() })
		return r
	}
	aad := []byte("msalcache:default:user")
	first := ring(oldKEK)
	blob, err := first.Protect(ctx, []byte("sealed under the old KEK"), aad)
	if err != nil {
		t.Fatal(err)
	}
	if err := first.Rotate(ctx); err != nil { // a key rotation under one KEK
		t.Fatal(err)
	}
	moved := ring(newKEK, protect.WithKEKs(oldKEK))
	if err := moved.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	keys, err := ringadmin.Keys(ctx, moved)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if k.KEKID != newKEK.ID() {
			t.Fatalf("after Rotate, key %s is still wrapped by %q, not the new primary %q", k.ID, k.KEKID, newKEK.ID())
		}
	}
	only := ring(newKEK)
	for _, r := range []*protect.KeyRing{moved, only} {
		got, err := r.Unprotect(ctx, blob, aad)
		if err != nil || string(got) != "sealed under the old KEK" {
			t.Fatalf("a blob sealed before the KEK rotation: %q, %v", got, err)
		}
	}
	if _, err := protect.NewKeyRing(ctx, store, oldKEK, quiet...); err == nil {
		t.Fatal("a ring with only the old KEK opened a record rewrapped under the new one")
	}
}

// farmRing opens a ring as a server of a farm does at start.
func farmRing(t *testing.T, store driver.Store, kek protect.KeyWrapper, opts ...protect.Option) *protect.KeyRing {
	t.Helper()
	base := []protect.Option{protect.WithAutoRefresh(false), protect.WithLogger(slog.New(slog.DiscardHandler))}
	r, err := protect.NewKeyRing(context.Background(), store, kek, append(base, opts...)...)
	if err != nil {
		t.Fatalf("NewKeyRing with KEK %q: %v", kek.ID(), err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// kekCalls sums a ring's calls to its KEKs.
func kekCalls(r *protect.KeyRing) (calls int64) {
	for _, s := range r.KEKStats() {
		calls += s.Wraps + s.Unwraps
	}
	return calls
}

func (h *wrapperHarness) testFarm(t *testing.T) {
	kek := h.open(t)
	f := newFixture(t, casMapHarness, MSALSetup{})
	ring1 := farmRing(t, f.store, kek)
	ring2 := farmRing(t, f.store, kek)
	started1, started2 := kekCalls(ring1), kekCalls(ring2)
	web1 := f.confidential(f.adapterWith(ring1), suiteTenant)
	web2 := f.confidential(f.adapterWith(ring2), suiteTenant)
	users := f.users[:3]
	for _, u := range users {
		f.signIn(web1, u)
	}
	for _, u := range users {
		tok, err := f.silent(web2, u, userScope)
		if err != nil {
			t.Fatalf("server 2, silent call for %s: %v", u.Username, err)
		}
		f.mustBeFor(tok, u)
	}
	f.requests(len(users))
	if n1, n2 := kekCalls(ring1)-started1, kekCalls(ring2)-started2; n1 != 0 || n2 != 0 {
		t.Fatalf("the rings called their KEK %d and %d times while serving tokens; data keys must be unwrapped once, at start", n1, n2)
	}
	t.Logf("KEK %q: calls at start: server 1 (created the ring) %d, server 2 %d; while serving: 0", kek.ID(), started1, started2)
}

// casMapHarness makes the casMap stores of the KEK farm scenarios.
func casMapHarness(context.Context, *testing.T) (Harness, error) {
	return storeMaker(func() driver.Store { return newCASMap() }), nil
}

// adapterWith builds an instance's Adapter over the fixture's store,
// encrypting with p.
func (f *fixture) adapterWith(p driver.Protector) suiteAdapter {
	f.t.Helper()
	a, err := msalcache.New(f.store, msalcache.WithLogger(testLogger(f.t)), msalcache.WithProtector(p))
	if err != nil {
		f.t.Fatalf("msalcache.New: %v", err)
	}
	f.t.Cleanup(func() { a.Close() })
	return a
}

// testMigration moves a farm from an AES KEK to the wrapper, restarting
// its server at each step, and checks that the users who signed in
// before are served from the cache throughout.
func (h *wrapperHarness) testMigration(t *testing.T) {
	f := newFixture(t, casMapHarness, MSALSetup{})
	envKEK, err := protect.NewAESKeyWrapper("env-kek", randomBytes(protect.KEKSize))
	if err != nil {
		t.Fatal(err)
	}
	newKEK := h.open(t)
	users := f.users[:2]
	before := farmRing(t, f.store, envKEK)
	web := f.confidential(f.adapterWith(before), suiteTenant)
	for _, u := range users {
		f.signIn(web, u)
	}
	before.Close()
	served := func(step string, r *protect.KeyRing) {
		t.Helper()
		web := f.confidential(f.adapterWith(r), suiteTenant)
		for _, u := range users {
			tok, err := f.silent(web, u, userScope)
			if err != nil {
				t.Fatalf("%s: silent call for %s: %v", step, u.Username, err)
			}
			f.mustBeFor(tok, u)
		}
		f.requests(len(users))
	}
	// Step 1: the new KEK primary, the old one kept; the ring rewraps its
	// keys at its next write, which Rotate forces.
	both := farmRing(t, f.store, newKEK, protect.WithKEKs(envKEK))
	served("new KEK primary, old kept", both)
	if err := both.Rotate(context.Background()); err != nil {
		t.Fatal(err)
	}
	keys, err := ringadmin.Keys(context.Background(), both)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if k.KEKID != newKEK.ID() || k.KEKKind == "" {
			t.Fatalf("after Rotate, key %s is under KEK %q of kind %q, want %q", k.ID, k.KEKID, k.KEKKind, newKEK.ID())
		}
	}
	both.Close()
	// Step 2: the old KEK removed.
	served("old KEK removed", farmRing(t, f.store, newKEK))
}

// casMap is the smallest durable-looking Store the KEK suite needs for its
// rings and Adapters (this package imports no concrete store): a map with
// compare-and-set, TTLs ignored.
type casMap struct {
	mu   sync.Mutex
	next driver.Version
	m    map[string]casEntry
}

type casEntry struct {
	v   []byte
	ver driver.Version
}

func newCASMap() *casMap {
	return &casMap{m: map[string]casEntry{}}
}

func (s *casMap) Load(ctx context.Context, key string) ([]byte, driver.Version, error) {
	if err := ctx.Err(); err != nil {
		return nil, driver.NoVersion, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.m[key]
	if !ok {
		return nil, driver.NoVersion, driver.ErrNotFound
	}
	return bytes.Clone(e.v), e.ver, nil
}

func (s *casMap) Save(ctx context.Context, key string, value []byte, ifVersion driver.Version, _ time.Duration) (driver.Version, error) {
	if err := ctx.Err(); err != nil {
		return driver.NoVersion, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m[key].ver != ifVersion {
		return driver.NoVersion, driver.ErrConflict
	}
	s.next++
	s.m[key] = casEntry{v: bytes.Clone(value), ver: s.next}
	return s.next, nil
}

func (s *casMap) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	delete(s.m, key)
	s.mu.Unlock()
	return nil
}

func (s *casMap) Close() error { return nil }
