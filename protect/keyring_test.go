package protect_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/msalcache/msalcache/driver"
	"github.com/msalcache/msalcache/internal/ringadmin"
	"github.com/msalcache/msalcache/protect"
)

var ctx = context.Background()

func TestPayloadLayout(t *testing.T) {
	r := newRing(t, newMem(t), nil)
	for _, n := range []int{0, 1, 4096} {
		plain := bytes.Repeat([]byte{'x'}, n)
		blob, err := r.Protect(ctx, plain, []byte("k"))
		if err != nil {
			t.Fatal(err)
		}
		if len(blob) != n+protect.Overhead || protect.Overhead != 65 {
			t.Fatalf("len = %d for %d bytes, overhead %d; want +65", len(blob), n, protect.Overhead)
		}
		if !bytes.Equal(blob[:5], []byte{0xFF, 0x50, 0x52, 0x01, 0x01}) {
			t.Fatalf("header % x", blob[:5])
		}
		if keyOf(blob) != defaultKey(t, r).ID {
			t.Fatalf("payload names key %s, default is %s", keyOf(blob), defaultKey(t, r).ID)
		}
		got, err := r.Unprotect(ctx, blob, []byte("k"))
		if err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("round trip of %d bytes: %v", n, err)
		}
	}
}

func TestAssociatedDataBinds(t *testing.T) {
	store := newMem(t)
	r := newRing(t, store, nil)
	blob := mustProtect(t, r, "tokens", "msalcache:ns1:user-a")
	for _, aad := range []string{"msalcache:ns2:user-a", "msalcache:ns1:user-b", "", "msalcache:ns1:user-a\x00"} {
		if _, err := r.Unprotect(ctx, blob, []byte(aad)); !errors.Is(err, protect.ErrDecrypt) {
			t.Errorf("aad %q: err = %v, want ErrDecrypt", aad, err)
		}
	}
	// Same store, same keys, another purpose: another application.
	other := newRing(t, store, nil, protect.WithPurpose("another app"))
	if keyIDs(t, other)[0] != keyIDs(t, r)[0] {
		t.Fatal("rings on one store should share keys")
	}
	if _, err := other.Unprotect(ctx, blob, []byte("msalcache:ns1:user-a")); !errors.Is(err, protect.ErrDecrypt) {
		t.Errorf("other purpose: err = %v, want ErrDecrypt", err)
	}
	mustOpen(t, r, blob, "msalcache:ns1:user-a", "tokens")
}

func TestUnprotectErrors(t *testing.T) {
	clock := newFakeClock()
	store := newMem(t)
	r := newRing(t, store, clock.Now)
	blob := mustProtect(t, r, "tokens", "k")

	notOurs := [][]byte{nil, {}, []byte(`{"AccessToken":{}}`), blob[:protect.Overhead-1]}
	wrongMagic := bytes.Clone(blob)
	wrongMagic[0] = '{'
	wrongSuite := bytes.Clone(blob)
	wrongSuite[4] = 2
	notOurs = append(notOurs, wrongMagic, wrongSuite)
	for _, b := range notOurs {
		if _, err := r.Unprotect(ctx, b, []byte("k")); !errors.Is(err, protect.ErrNotProtected) {
			t.Errorf("% x...: err = %v, want ErrNotProtected", b[:min(len(b), 8)], err)
		}
	}

	unknown := bytes.Clone(blob)
	unknown[5] ^= 1
	if _, err := r.Unprotect(ctx, unknown, []byte("k")); !errors.Is(err, protect.ErrKeyNotFound) {
		t.Errorf("unknown key: err = %v, want ErrKeyNotFound", err)
	}
	for _, i := range []int{21, 37, 49, len(blob) - 1} { // salt, nonce, ciphertext, tag
		bad := bytes.Clone(blob)
		bad[i] ^= 0x80
		_, err := r.Unprotect(ctx, bad, []byte("k"))
		if !errors.Is(err, protect.ErrDecrypt) || err.Error() != protect.ErrDecrypt.Error() {
			t.Errorf("flip at %d: err = %v, want the bare ErrDecrypt", i, err)
		}
	}
	if err := r.Revoke(ctx, keyOf(blob)); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Unprotect(ctx, blob, []byte("k")); !errors.Is(err, protect.ErrKeyRevoked) {
		t.Errorf("revoked: err = %v, want ErrKeyRevoked", err)
	}
}

func TestVolatileStoreRefused(t *testing.T) {
	_, err := protect.NewKeyRing(ctx, volatileStore{newMem(t)}, testKEK(t, "k", 1))
	if !errors.Is(err, protect.ErrVolatileStore) || !strings.Contains(err.Error(), "durable") {
		t.Fatalf("err = %v, want ErrVolatileStore naming a durable store", err)
	}
}

type volatileStore struct{ driver.Store }

func (volatileStore) Volatile() bool { return true }

func TestOptionsValidated(t *testing.T) {
	for name, opt := range map[string]protect.Option{
		"lifetime":  protect.WithKeyLifetime(time.Hour),
		"refresh":   protect.WithRefreshInterval(0),
		"skew":      protect.WithClockSkew(-time.Second),
		"ringkey":   protect.WithRingKey("has space"),
		"purpose":   protect.WithPurpose(""),
		"nil clock": protect.WithClock(nil),
		"nil kek":   protect.WithKEKs(nil),
		"dup kek":   protect.WithKEKs(testKEK(t, "kek-1", 9)),
	} {
		if _, err := tryRing(t, newMem(t), nil, opt); err == nil {
			t.Errorf("%s: NewKeyRing accepted a bad option", name)
		}
	}
}

// Several servers starting at once on an empty store agree on one key and
// read each other's blobs without a refresh.
func TestConcurrentBootstrapMintsOneKey(t *testing.T) {
	const n = 8
	mem := newMem(t)
	store := newGateStore(mem, n)
	rings := make([]*protect.KeyRing, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make([]error, n)
	for i := range rings {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			rings[i], errs[i] = tryRing(t, store, nil)
		}()
	}
	close(start)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	blobs := make([][]byte, n)
	for i, r := range rings {
		blobs[i] = mustProtect(t, r, "from server", "k")
	}
	for _, r := range rings {
		for _, b := range blobs {
			mustOpen(t, r, b, "k", "from server")
		}
	}
	ids := keyIDs(t, rings[0])
	if len(ids) != 1 {
		t.Fatalf("%d keys after a concurrent start, want 1", len(ids))
	}
	if got := keyIDs(t, newRing(t, mem, nil)); len(got) != 1 || got[0] != ids[0] {
		t.Fatalf("the store holds keys %v, want only %s", got, ids[0])
	}
	for i, b := range blobs {
		if keyOf(b) != ids[0] {
			t.Fatalf("server %d sealed under %s, not the one key %s", i, keyOf(b), ids[0])
		}
	}
}

// A server that finds no ring while another completes its bootstrap (ring,
// then marker) in between its two reads sees the marker, looks again, and
// adopts the other's ring instead of failing or minting.
func TestBootstrapRaceAcrossMarker(t *testing.T) {
	mem := newMem(t)
	var first *protect.KeyRing
	hs := &hookStore{Store: mem, hook: func() { first = newRing(t, mem, nil) }}
	second, err := tryRing(t, hs, nil)
	if err != nil {
		t.Fatalf("the second server failed: %v", err)
	}
	if a, b := keyIDs(t, first), keyIDs(t, second); len(b) != 1 || a[0] != b[0] {
		t.Fatalf("keys %v and %v, want one shared key", a, b)
	}
}

// A store read error at start-up must not make a server mint a key: that
// key would replace the farm's ring, or fork it.
func TestStartupReadErrorMintsNothing(t *testing.T) {
	mem := newMem(t)
	fs := &faultyStore{Store: mem}
	for _, fail := range []*atomic.Bool{&fs.failLoad, &fs.failRingLoad} {
		fail.Store(true)
		if _, err := tryRing(t, fs, nil); !errors.Is(err, errInjected) {
			t.Fatalf("NewKeyRing with failing reads: err = %v, want the store error", err)
		}
		fail.Store(false)
		for _, key := range []string{protect.DefaultRingKey, protect.DefaultRingKey + ".created"} {
			if _, _, err := mem.Load(ctx, key); !errors.Is(err, driver.ErrNotFound) {
				t.Fatalf("%s was written after a failed read (err %v)", key, err)
			}
		}
	}
	fs.failLoad.Store(true)
	// An existing ring: the same failure must not fork it either.
	first := newRing(t, mem, nil)
	if _, err := tryRing(t, fs, nil); err == nil {
		t.Fatal("NewKeyRing succeeded on a failing store")
	}
	fs.failLoad.Store(false)
	if got, want := keyIDs(t, newRing(t, fs, nil)), keyIDs(t, first); len(got) != 1 || got[0] != want[0] {
		t.Fatalf("keys %v, want the original %v", got, want)
	}
}

// A save error at start-up leaves nothing adopted and reports it.
func TestStartupSaveErrorFails(t *testing.T) {
	fs := &faultyStore{Store: newMem(t)}
	fs.failSave.Store(true)
	if _, err := tryRing(t, fs, nil); !errors.Is(err, errInjected) {
		t.Fatalf("err = %v, want the store error", err)
	}
}

// The ring record deleted while servers run: they keep their keys, mint
// nothing; a newcomer fails closed until a running server restores the
// record at its next refresh.
func TestRingDeletedWhileRunning(t *testing.T) {
	store := newMem(t)
	a := newRing(t, store, nil)
	b := newRing(t, store, nil)
	before := keyIDs(t, a)
	if err := store.Delete(ctx, protect.DefaultRingKey); err != nil {
		t.Fatal(err)
	}
	blobA := mustProtect(t, a, "a", "k")
	blobB := mustProtect(t, b, "b", "k")
	mustOpen(t, a, blobB, "k", "b")
	mustOpen(t, b, blobA, "k", "a")
	if keyOf(blobA) != before[0] || keyOf(blobB) != before[0] {
		t.Fatal("a running server changed keys when the record vanished")
	}

	_, err := tryRing(t, store, nil)
	if !errors.Is(err, protect.ErrRingMissing) || !strings.Contains(err.Error(), ".created") {
		t.Fatalf("newcomer: err = %v, want ErrRingMissing naming the marker", err)
	}
	if _, _, err := store.Load(ctx, protect.DefaultRingKey); !errors.Is(err, driver.ErrNotFound) {
		t.Fatal("the newcomer wrote a ring")
	}

	// An Unprotect reload does not write either.
	unknown := bytes.Clone(blobA)
	unknown[6] ^= 1
	if _, err := a.Unprotect(ctx, unknown, []byte("k")); !errors.Is(err, protect.ErrKeyNotFound) {
		t.Fatalf("err = %v", err)
	}
	if _, _, err := store.Load(ctx, protect.DefaultRingKey); !errors.Is(err, driver.ErrNotFound) {
		t.Fatal("a read-only reload wrote the ring")
	}

	if err := a.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if after := keyIDs(t, a); len(after) != 1 || after[0] != before[0] {
		t.Fatalf("restored ring holds %v, want exactly %v", after, before)
	}
	c := newRing(t, store, nil)
	mustOpen(t, c, blobA, "k", "a")
	mustOpen(t, c, blobB, "k", "b")
}

// With the marker gone too (a flushed store), nothing tells a newcomer that
// a ring existed: it starts one. Running servers then merge their keys into
// it, so every server reads every blob again.
func TestFlushedStoreNewcomerAndRunningServersConverge(t *testing.T) {
	clock := newFakeClock()
	store := newMem(t)
	a := newRing(t, store, clock.Now)
	old := mustProtect(t, a, "old", "k")
	store.Delete(ctx, protect.DefaultRingKey)
	store.Delete(ctx, protect.DefaultRingKey+".created")

	clock.Add(time.Minute)
	c := newRing(t, store, clock.Now)
	fresh := mustProtect(t, c, "fresh", "k")
	if keyOf(fresh) == keyOf(old) {
		t.Fatal("newcomer should have minted its own key")
	}
	if _, err := c.Unprotect(ctx, old, []byte("k")); !errors.Is(err, protect.ErrKeyNotFound) {
		t.Fatalf("newcomer opened a blob of the lost ring: %v", err)
	}
	mustOpen(t, a, fresh, "k", "fresh") // reload on unknown key
	clock.Add(time.Minute)
	if err := a.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	clock.Add(time.Minute)
	if err := c.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	mustOpen(t, c, old, "k", "old")
	if got := len(keyIDs(t, c)); got != 2 {
		t.Fatalf("%d keys after the merge, want 2", got)
	}
	if defaultKey(t, a).ID != defaultKey(t, c).ID {
		t.Fatal("servers disagree on the default key after the merge")
	}
}

// Keys minted elsewhere are used here after one refresh, with no Rotate
// here, and a blob under them decrypts at once.
func TestServerPicksUpNewKeysAtRefresh(t *testing.T) {
	clock := newFakeClock()
	store := newMem(t)
	a := newRing(t, store, clock.Now)
	b := newRing(t, store, clock.Now)
	old := keyOf(mustProtect(t, a, "x", "k"))
	if err := b.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	nb := mustProtect(t, b, "from b", "k")
	if keyOf(nb) == old {
		t.Fatal("Rotate did not change b's default key")
	}
	mustOpen(t, a, nb, "k", "from b")
	clock.Add(time.Minute)
	if err := a.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if got := keyOf(mustProtect(t, a, "x", "k")); got != keyOf(nb) {
		t.Fatalf("after a refresh a seals under %s, want the new key %s", got, keyOf(nb))
	}
}

// The background refresh, not a call of ours, brings the new key.
func TestBackgroundRefreshPicksUpNewKeys(t *testing.T) {
	store := newMem(t)
	a, err := protect.NewKeyRing(ctx, store, testKEK(t, "kek-1", 7),
		protect.WithRefreshInterval(20*time.Millisecond), protect.WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b := newRing(t, store, nil)
	if err := b.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	want := keyOf(mustProtect(t, b, "x", "k"))
	deadline := time.Now().Add(10 * time.Second)
	for keyOf(mustProtect(t, a, "x", "k")) != want {
		if time.Now().After(deadline) {
			t.Fatal("the background refresh never picked up the new key")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Protect(ctx, nil, nil); !errors.Is(err, protect.ErrRingClosed) {
		t.Fatalf("Protect after Close: %v", err)
	}
	if err := a.Refresh(ctx); !errors.Is(err, protect.ErrRingClosed) {
		t.Fatalf("Refresh after Close: %v", err)
	}
}

// After Close every method that can fail says the ring is closed, not the
// store: the store is open and serving others, and "store closed" sent
// operators to look at the wrong component.
func TestClosedRingSaysRingClosed(t *testing.T) {
	store := newMem(t)
	r := newRing(t, store, nil)
	blob := mustProtect(t, r, "x", "k")
	id := keyOf(blob)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	calls := map[string]func() error{
		"Protect":   func() error { _, err := r.Protect(ctx, []byte("x"), []byte("k")); return err },
		"Unprotect": func() error { _, err := r.Unprotect(ctx, blob, []byte("k")); return err },
		"Refresh":   func() error { return r.Refresh(ctx) },
		"Rotate":    func() error { return r.Rotate(ctx) },
		"Revoke":    func() error { return r.Revoke(ctx, id) },
		"Keys":      func() error { _, err := ringadmin.Keys(ctx, r); return err },
	}
	for name, call := range calls {
		err := call()
		if !errors.Is(err, protect.ErrRingClosed) || errors.Is(err, driver.ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrRingClosed and not the store's ErrClosed", name, err)
		}
		if err != nil && err.Error() != "protect: key ring closed" {
			t.Errorf("%s after Close says %q", name, err)
		}
	}
	// The store is still open: another ring on it works.
	mustOpen(t, newRing(t, store, nil), blob, "k", "x")
}

// Scheduled rotation: the successor is written a day ahead of activation,
// takes over when the default expires, and expired keys keep decrypting.
func TestScheduledRotation(t *testing.T) {
	clock := newFakeClock()
	store := newMem(t)
	r := newRing(t, store, clock.Now)
	first := defaultKey(t, r)
	if first.Status != ringadmin.KeyActive || first.Expiration.Sub(first.Created) != protect.DefaultKeyLifetime {
		t.Fatalf("first key %+v", first)
	}
	blob := mustProtect(t, r, "first", "k")

	// Up to the lead time, no new key.
	lead := protect.DefaultActivationDelay + protect.DefaultRefreshInterval
	for clock.Now().Add(protect.DefaultRefreshInterval).Before(first.Expiration.Add(-lead - time.Minute)) {
		clock.Add(protect.DefaultRefreshInterval)
		if err := r.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
	}
	clock.Add(first.Expiration.Add(-lead - time.Minute).Sub(clock.Now()))
	if err := r.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(keyIDs(t, r)); n != 1 {
		t.Fatalf("%d keys a minute before the lead time", n)
	}
	clock.Add(2 * time.Minute)
	if err := r.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	ks, _ := ringadmin.Keys(ctx, r)
	if len(ks) != 2 {
		t.Fatalf("no successor at the lead time: %+v", ks)
	}
	next := ks[1]
	if next.Status != ringadmin.KeyPending || next.Default || !next.Activation.Equal(first.Expiration) {
		t.Fatalf("successor %+v, want pending, activating at %v", next, first.Expiration)
	}
	if d := next.Activation.Sub(next.Created); d < protect.DefaultActivationDelay {
		t.Fatalf("successor activates %v after creation, want at least %v", d, protect.DefaultActivationDelay)
	}
	if r.NeedsReprotect(blob) {
		t.Fatal("blob under the default needs reprotecting")
	}
	clock.Add(next.Activation.Sub(clock.Now()))
	if got := keyOf(mustProtect(t, r, "x", "k")); got != next.ID {
		t.Fatalf("at activation sealing under %s, want %s", got, next.ID)
	}
	if !r.NeedsReprotect(blob) {
		t.Fatal("blob under the old key should be reprotected")
	}
	clock.Add(time.Hour)
	mustOpen(t, r, blob, "k", "first") // expired, not revoked: decrypts
	ks, _ = ringadmin.Keys(ctx, r)
	if ks[0].Status != ringadmin.KeyExpired || ks[1].Status != ringadmin.KeyActive || !ks[1].Default {
		t.Fatalf("statuses after the switch: %+v", ks)
	}
}

// A ring whose default expired with nobody refreshing mints on Protect,
// and fails with ErrNoKey when the store cannot take the new key.
func TestProtectAfterExpiryWithoutRefresh(t *testing.T) {
	clock := newFakeClock()
	fs := &faultyStore{Store: newMem(t)}
	r := newRing(t, fs, clock.Now)
	old := keyOf(mustProtect(t, r, "x", "k"))
	clock.Add(protect.DefaultKeyLifetime + time.Hour)
	fs.failSave.Store(true)
	if _, err := r.Protect(ctx, []byte("x"), nil); !errors.Is(err, protect.ErrNoKey) {
		t.Fatalf("err = %v, want ErrNoKey", err)
	}
	fs.failSave.Store(false)
	if _, err := r.Protect(ctx, []byte("x"), nil); !errors.Is(err, protect.ErrNoKey) {
		t.Fatalf("retry within the reload interval: err = %v, want ErrNoKey at once", err)
	}
	clock.Add(protect.DefaultReloadInterval)
	if got := keyOf(mustProtect(t, r, "x", "k")); got == old {
		t.Fatal("sealed under an expired key")
	}
}

func TestRevoke(t *testing.T) {
	clock := newFakeClock()
	store := newMem(t)
	a := newRing(t, store, clock.Now)
	b := newRing(t, store, clock.Now)
	blob := mustProtect(t, a, "x", "k")
	id := keyOf(blob)

	if err := a.Revoke(ctx, "zz"); err == nil {
		t.Fatal("Revoke accepted a malformed id")
	}
	if err := a.Revoke(ctx, strings.Repeat("0", 32)); !errors.Is(err, protect.ErrKeyNotFound) {
		t.Fatalf("Revoke of an unknown id: %v", err)
	}
	if err := a.Revoke(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := a.Revoke(ctx, id); err != nil {
		t.Fatalf("second Revoke: %v", err)
	}
	if _, err := a.Unprotect(ctx, blob, []byte("k")); !errors.Is(err, protect.ErrKeyRevoked) {
		t.Fatalf("err = %v", err)
	}
	if nd := keyOf(mustProtect(t, a, "x", "k")); nd == id {
		t.Fatal("revoked key still seals")
	}
	ks, _ := ringadmin.Keys(ctx, a)
	if len(ks) != 2 {
		t.Fatalf("keys after revoke: %+v", ks)
	}
	for _, k := range ks {
		revoked := k.ID == id
		if k.Revoked != revoked || (k.Status == ringadmin.KeyRevoked) != revoked || k.RevokedAt.IsZero() == revoked || k.Default == revoked {
			t.Fatalf("keys after revoking %s: %+v", id, ks)
		}
	}
	mustOpen(t, b, blob, "k", "x") // b has not refreshed yet
	clock.Add(time.Minute)
	if err := b.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Unprotect(ctx, blob, []byte("k")); !errors.Is(err, protect.ErrKeyRevoked) {
		t.Fatalf("b after refresh: err = %v", err)
	}
}

// A record replayed from before a revocation does not bring the key back
// on a server that saw the revocation, and that server writes the
// revocation back so newcomers see it too.
func TestRevokedKeyReplayStaysRevoked(t *testing.T) {
	clock := newFakeClock()
	store := newMem(t)
	a := newRing(t, store, clock.Now)
	blob := mustProtect(t, a, "x", "k")
	oldRecord := ringRecord(t, store)
	if err := a.Revoke(ctx, keyOf(blob)); err != nil {
		t.Fatal(err)
	}
	replay := func() { replayRing(t, store, oldRecord) }

	// Read-only reload first (an unknown key id makes one).
	replay()
	unknown := bytes.Clone(blob)
	unknown[7] ^= 1
	a.Unprotect(ctx, unknown, []byte("k"))
	if _, err := a.Unprotect(ctx, blob, []byte("k")); !errors.Is(err, protect.ErrKeyRevoked) {
		t.Fatalf("after replay + reload: err = %v, want ErrKeyRevoked", err)
	}

	// Then a refresh: still revoked, still not the default, and healed.
	clock.Add(time.Minute)
	if err := a.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Unprotect(ctx, blob, []byte("k")); !errors.Is(err, protect.ErrKeyRevoked) {
		t.Fatalf("after replay + refresh: err = %v, want ErrKeyRevoked", err)
	}
	if keyOf(mustProtect(t, a, "y", "k")) == keyOf(blob) {
		t.Fatal("replayed revoked key became the default again")
	}
	c := newRing(t, store, clock.Now)
	if _, err := c.Unprotect(ctx, blob, []byte("k")); !errors.Is(err, protect.ErrKeyRevoked) {
		t.Fatalf("newcomer after the heal: err = %v, want ErrKeyRevoked", err)
	}
}

// The limit of what can be guaranteed: a newcomer that starts between a
// replay and the next refresh of any server that saw the revocation cannot
// tell, and trusts the record it finds. One refresh of a running server
// closes the window, and the newcomer learns of it at its own refresh.
func TestReplayWindowForNewcomersClosesAtRefresh(t *testing.T) {
	clock := newFakeClock()
	store := newMem(t)
	a := newRing(t, store, clock.Now)
	blob := mustProtect(t, a, "x", "k")
	oldRecord := ringRecord(t, store)
	if err := a.Revoke(ctx, keyOf(blob)); err != nil {
		t.Fatal(err)
	}
	replayRing(t, store, oldRecord)

	c := newRing(t, store, clock.Now)
	mustOpen(t, c, blob, "k", "x") // the documented window
	clock.Add(time.Minute)
	if err := a.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	clock.Add(time.Minute)
	if err := c.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Unprotect(ctx, blob, []byte("k")); !errors.Is(err, protect.ErrKeyRevoked) {
		t.Fatalf("newcomer after both refreshes: err = %v, want ErrKeyRevoked", err)
	}
	if keyOf(mustProtect(t, c, "y", "k")) == keyOf(blob) {
		t.Fatal("newcomer still seals under the revoked key")
	}
}

// The unknown-key reload is shared by concurrent callers and happens at
// most once per reload interval.
func TestUnknownKeyReloadIsRateLimited(t *testing.T) {
	clock := newFakeClock()
	fs := &faultyStore{Store: newMem(t)}
	r := newRing(t, fs, clock.Now)
	blob := mustProtect(t, r, "x", "k")
	unknown := bytes.Clone(blob)
	unknown[8] ^= 1

	base := fs.ringLoads.Load()
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := r.Unprotect(ctx, unknown, []byte("k")); !errors.Is(err, protect.ErrKeyNotFound) {
				t.Errorf("err = %v", err)
			}
		}()
	}
	wg.Wait()
	if n := fs.ringLoads.Load() - base; n != 1 {
		t.Fatalf("50 concurrent unknown-key lookups loaded the ring %d times, want 1", n)
	}
	clock.Add(protect.DefaultReloadInterval - time.Second)
	r.Unprotect(ctx, unknown, []byte("k"))
	if n := fs.ringLoads.Load() - base; n != 1 {
		t.Fatalf("reloaded again within the interval (%d loads)", n)
	}
	clock.Add(time.Second)
	r.Unprotect(ctx, unknown, []byte("k"))
	if n := fs.ringLoads.Load() - base; n != 2 {
		t.Fatalf("%d loads after the interval, want 2", n)
	}
}

// Edited dates, swapped key material, forged revocations and another KEK
// all make the record fail authentication: a newcomer refuses it, and a
// running ring keeps its keys and rewrites the record from its copy.
func TestTamperedRecordRejected(t *testing.T) {
	clock := newFakeClock()
	store := newMem(t)
	a := newRing(t, store, clock.Now)
	b := newRing(t, store, clock.Now)
	if err := b.Rotate(ctx); err != nil { // two keys to swap between
		t.Fatal(err)
	}
	if err := b.Revoke(ctx, keyIDs(t, b)[0]); err != nil {
		t.Fatal(err)
	}
	blob := mustProtect(t, b, "x", "k")
	if err := a.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	good, _, _ := store.Load(ctx, protect.DefaultRingKey)

	edits := map[string]func(*ringDoc){
		"expiration": func(d *ringDoc) { d.Keys[1].Expiration += 86400 * 365 },
		"activation": func(d *ringDoc) { d.Keys[1].Activation -= 3600 },
		"created":    func(d *ringDoc) { d.Keys[1].Created-- },
		"swap wraps": func(d *ringDoc) { d.Keys[0].Wrapped, d.Keys[1].Wrapped = d.Keys[1].Wrapped, d.Keys[0].Wrapped },
		"id":         func(d *ringDoc) { d.Keys[1].ID = strings.Repeat("ab", 16) },
		"kek id":     func(d *ringDoc) { d.Keys[1].KEK = "kek-2" },
		"revoked at": func(d *ringDoc) { d.Revoked[0].At++ },
		"forged revocation": func(d *ringDoc) {
			d.Revoked = append(d.Revoked, revDoc{ID: d.Keys[1].ID, At: d.Revoked[0].At, KEK: "kek-1", Tag: d.Revoked[0].Tag})
		},
		"unknown field": func(d *ringDoc) { d.Extra = "x" },
	}
	for name, edit := range edits {
		t.Run(name, func(t *testing.T) {
			doc := parseDoc(t, good)
			edit(&doc)
			_, v, _ := store.Load(ctx, protect.DefaultRingKey)
			if _, err := store.Save(ctx, protect.DefaultRingKey, doc.encode(t), v, 0); err != nil {
				t.Fatal(err)
			}
			defer func() {
				_, v, _ := store.Load(ctx, protect.DefaultRingKey)
				store.Save(ctx, protect.DefaultRingKey, good, v, 0)
			}()
			if _, err := tryRing(t, store, clock.Now); !errors.Is(err, protect.ErrInvalidRing) {
				t.Fatalf("newcomer: err = %v, want ErrInvalidRing", err)
			}
			// The running ring keeps its keys and, since the record is
			// its own ring altered, writes its verified copy back.
			if err := a.Refresh(ctx); err != nil {
				t.Fatalf("running ring: %v, want it to rewrite the record", err)
			}
			mustOpen(t, a, blob, "k", "x")
			if got := ringRecord(t, store); !bytes.Equal(got, good) {
				t.Fatalf("rewritten record differs from the one before the edit:\n%s\n%s", got, good)
			}
		})
	}
	if _, err := tryRing(t, store, clock.Now); err != nil {
		t.Fatalf("the untouched record: %v", err)
	}
}

func TestOtherKEKRejected(t *testing.T) {
	store := newMem(t)
	newRing(t, store, nil)
	for name, kek := range map[string]protect.KeyWrapper{
		"other id":           testKEK(t, "kek-2", 7),
		"same id, other key": testKEK(t, "kek-1", 8),
	} {
		_, err := protect.NewKeyRing(ctx, store, kek, protect.WithAutoRefresh(false), protect.WithLogger(quiet))
		if !errors.Is(err, protect.ErrInvalidRing) {
			t.Errorf("%s: err = %v, want ErrInvalidRing", name, err)
		}
	}
}

// The KEK rotates: new primary with the old one extra, Rotate rewraps,
// then the old KEK can go.
func TestKEKRotation(t *testing.T) {
	store := newMem(t)
	old := testKEK(t, "kek-1", 7)
	nw := testKEK(t, "kek-2", 9)
	a := newRing(t, store, nil)
	blob := mustProtect(t, a, "x", "k")

	open := func(primary protect.KeyWrapper, extra ...protect.KeyWrapper) (*protect.KeyRing, error) {
		r, err := protect.NewKeyRing(ctx, store, primary, protect.WithKEKs(extra...), protect.WithAutoRefresh(false), protect.WithLogger(quiet))
		if err == nil {
			t.Cleanup(func() { r.Close() })
		}
		return r, err
	}
	if _, err := open(nw); !errors.Is(err, protect.ErrInvalidRing) || !strings.Contains(err.Error(), "WithKEKs") {
		t.Fatalf("new KEK alone before the move: %v", err)
	}
	b, err := open(nw, old)
	if err != nil {
		t.Fatal(err)
	}
	mustOpen(t, b, blob, "k", "x")
	if err := b.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	ks, _ := ringadmin.Keys(ctx, b)
	for _, k := range ks {
		if k.KEKID != "kek-2" {
			t.Fatalf("key %s still wrapped by %s after Rotate", k.ID, k.KEKID)
		}
	}
	c, err := open(nw)
	if err != nil {
		t.Fatalf("new KEK alone after the move: %v", err)
	}
	mustOpen(t, c, blob, "k", "x")
	if _, err := open(old); !errors.Is(err, protect.ErrInvalidRing) {
		t.Fatalf("old KEK alone after the move: %v", err)
	}
}

// Salts and nonces never repeat. A repeat would reuse a GCM key and nonce.
func TestNoRepeatedSaltOrNonce(t *testing.T) {
	t.Parallel()
	n := 1_000_000
	if testing.Short() {
		n = 100_000
	}
	r := newRing(t, newMem(t), nil)
	salts := make(map[[16]byte]struct{}, n)
	nonces := make(map[[12]byte]struct{}, n)
	for range n {
		b, err := r.Protect(ctx, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		salts[[16]byte(b[21:37])] = struct{}{}
		nonces[[12]byte(b[37:49])] = struct{}{}
	}
	if len(salts) != n || len(nonces) != n {
		t.Fatalf("%d distinct salts and %d distinct nonces in %d encryptions", len(salts), len(nonces), n)
	}
}

func TestConcurrentUseDuringRotation(t *testing.T) {
	store := newMem(t)
	a := newRing(t, store, nil)
	b := newRing(t, store, nil)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Writers seal under keys they know; a mints every key, so it
			// reads everything, and b reads what b sealed.
			w, rd := [][2]*protect.KeyRing{{a, a}, {b, a}, {b, b}, {a, a}}[i][0], [][2]*protect.KeyRing{{a, a}, {b, a}, {b, b}, {a, a}}[i][1]
			for {
				select {
				case <-stop:
					return
				default:
				}
				blob, err := w.Protect(ctx, []byte("x"), []byte("k"))
				if err != nil {
					t.Error(err)
					return
				}
				if _, err := rd.Unprotect(ctx, blob, []byte("k")); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	for range 20 {
		if err := a.Rotate(ctx); err != nil {
			t.Error(err)
		}
		if err := b.Refresh(ctx); err != nil {
			t.Error(err)
		}
	}
	close(stop)
	wg.Wait()
}
