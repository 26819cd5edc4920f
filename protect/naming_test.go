package protect_test

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"sync"
	"testing"

	"github.com/msalcache/msalcache/driver"
	"github.com/msalcache/msalcache/internal/ringadmin"
	"github.com/msalcache/msalcache/protect"
)

var _ driver.KeyHasher = (*protect.KeyRing)(nil)

const partition = "00000000-0000-0000-0000-000000000001.00000000-0000-0000-0000-0000000000aa"

// Every ring on one store names a partition alike, differently from a
// plain SHA-256 (which anyone can compute) and from a ring on another
// store (another secret).
func TestHashKeySharedByRingsOfAStore(t *testing.T) {
	store := newMem(t)
	a := newRing(t, store, nil)
	b := newRing(t, store, nil)
	h := a.HashKey(partition)
	if b.HashKey(partition) != h {
		t.Fatal("two rings on one store hash a partition differently")
	}
	if h == sha256.Sum256([]byte(partition)) {
		t.Fatal("HashKey is an unkeyed SHA-256")
	}
	if a.HashKey(partition+"x") == h || a.HashKey("") == h {
		t.Fatal("different partition keys share a name")
	}
	if newRing(t, newMem(t), nil).HashKey(partition) == h {
		t.Fatal("rings on different stores share a naming secret")
	}
}

// Data keys come and go; partition names do not, or every rotation would
// make every partition a miss.
func TestHashKeyStableAcrossRotateAndRevoke(t *testing.T) {
	clock := newFakeClock()
	store := newMem(t)
	a := newRing(t, store, clock.Now)
	b := newRing(t, store, clock.Now)
	h := a.HashKey(partition)
	first := defaultKey(t, a).ID
	if err := a.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.Revoke(ctx, first); err != nil {
		t.Fatal(err)
	}
	if err := a.Revoke(ctx, defaultKey(t, a).ID); err != nil { // revoking the default mints another
		t.Fatal(err)
	}
	if err := b.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if a.HashKey(partition) != h || b.HashKey(partition) != h {
		t.Fatal("Rotate or Revoke changed HashKey")
	}
	if c := newRing(t, store, clock.Now); c.HashKey(partition) != h {
		t.Fatal("a newcomer after rotation hashes differently")
	}
}

// A record written by the first release (format 1, no secret) gets exactly
// one secret, even when several servers open it at once: each reads the
// record without a secret before any writes, all mint one, one
// compare-and-set wins, and the losers reload and adopt the winner's.
func TestFormat1RecordGetsOneSecretUnderConcurrency(t *testing.T) {
	const n = 8
	seed := newMem(t)
	old := newRing(t, seed, nil)
	blob := mustProtect(t, old, "sealed before the upgrade", "k")
	v1 := asFormat1(t, ringRecord(t, seed))
	old.Close()

	mem := newMem(t)
	if _, err := mem.Save(ctx, protect.DefaultRingKey, v1, driver.NoVersion, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := mem.Save(ctx, protect.DefaultRingKey+".created", []byte("marker"), driver.NoVersion, 0); err != nil {
		t.Fatal(err)
	}
	store := newGateStore(mem, n)
	rings := make([]*protect.KeyRing, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range rings {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rings[i], errs[i] = tryRing(t, store, nil)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	doc := parseDoc(t, ringRecord(t, mem))
	if doc.V != 3 || doc.Naming == nil {
		t.Fatalf("record after the upgrade: format %d, naming %v", doc.V, doc.Naming)
	}
	h := newRing(t, mem, nil).HashKey(partition)
	for i, r := range rings {
		if r.HashKey(partition) != h {
			t.Fatalf("ring %d hashes differently from the record's secret", i)
		}
		mustOpen(t, r, blob, "k", "sealed before the upgrade")
	}
	if got, want := keyIDs(t, rings[0]), parseDoc(t, v1).Keys; len(got) != len(want) || got[0] != want[0].ID {
		t.Fatalf("keys %v after the upgrade, want the format 1 record's", got)
	}
}

// A record rolled back to one without a secret (a replayed format 1 copy)
// does not lose the secret on a running server: it keeps hashing alike
// through read-only reloads, and writes the secret back at its refresh,
// so a newcomer hashes alike too.
func TestRolledBackRecordGetsItsSecretBack(t *testing.T) {
	clock := newFakeClock()
	store := newMem(t)
	a := newRing(t, store, clock.Now)
	h := a.HashKey(partition)
	replayRing(t, store, asFormat1(t, ringRecord(t, store)))
	if _, err := ringadmin.Keys(ctx, a); err != nil { // read-only reload
		t.Fatal(err)
	}
	if a.HashKey(partition) != h {
		t.Fatal("a read-only reload of a record without a secret changed HashKey")
	}
	if err := a.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if d := parseDoc(t, ringRecord(t, store)); d.Naming == nil || d.V != 3 {
		t.Fatal("the refresh did not write the secret back")
	}
	if newRing(t, store, clock.Now).HashKey(partition) != h {
		t.Fatal("a newcomer after the heal hashes differently")
	}
}

// The naming secret's wrap is bound to its purpose: moved into a key's
// place, or a key's wrap moved into its place, neither authenticates.
func TestNamingSecretNotSwappableWithDataKey(t *testing.T) {
	store := newMem(t)
	a := newRing(t, store, nil)
	a.Close()
	good := ringRecord(t, store)
	for name, edit := range map[string]func(*ringDoc){
		"key wrap as naming secret": func(d *ringDoc) { d.Naming.Wrapped = d.Keys[0].Wrapped },
		"naming secret as key wrap": func(d *ringDoc) { d.Keys[0].Wrapped = d.Naming.Wrapped },
		"swapped":                   func(d *ringDoc) { d.Keys[0].Wrapped, d.Naming.Wrapped = d.Naming.Wrapped, d.Keys[0].Wrapped },
	} {
		d := parseDoc(t, good)
		edit(&d)
		plantRing(t, store, d.encode(t))
		if _, err := tryRing(t, store, nil); !errors.Is(err, protect.ErrRingDamaged) {
			t.Errorf("%s: err = %v, want ErrRingDamaged", name, err)
		}
	}
	plantRing(t, store, good)
	newRing(t, store, nil)
}

// The secret follows a KEK rotation: rewrapped, same names.
func TestHashKeySurvivesKEKRotation(t *testing.T) {
	store := newMem(t)
	a := newRing(t, store, nil)
	h := a.HashKey(partition)
	nw := testKEK(t, "kek-2", 9)
	b, err := protect.NewKeyRing(ctx, store, nw, protect.WithKEKs(testKEK(t, "kek-1", 7)), protect.WithAutoRefresh(false), protect.WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	if d := parseDoc(t, ringRecord(t, store)); d.Naming.KEK != "kek-2" {
		t.Fatalf("naming secret still wrapped by %s after Rotate", d.Naming.KEK)
	}
	c, err := protect.NewKeyRing(ctx, store, nw, protect.WithAutoRefresh(false), protect.WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if b.HashKey(partition) != h || c.HashKey(partition) != h {
		t.Fatal("a KEK rotation changed HashKey")
	}
}

// After a flush a newcomer starts a ring with a secret of its own; running
// servers adopt the store's secret, so the farm converges on one naming.
func TestHashKeyConvergesAfterFlush(t *testing.T) {
	clock := newFakeClock()
	store := newMem(t)
	a := newRing(t, store, clock.Now)
	store.Delete(ctx, protect.DefaultRingKey)
	store.Delete(ctx, protect.DefaultRingKey+".created")
	c := newRing(t, store, clock.Now)
	if err := a.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if a.HashKey(partition) != c.HashKey(partition) {
		t.Fatal("servers name partitions differently after a flush")
	}
	if d := newRing(t, store, clock.Now); d.HashKey(partition) != c.HashKey(partition) {
		t.Fatal("a newcomer names partitions differently")
	}
}

func TestHashKeyAfterClose(t *testing.T) {
	r := newRing(t, newMem(t), nil)
	h := r.HashKey(partition)
	r.Close()
	if r.HashKey(partition) != h {
		t.Fatal("HashKey changed after Close")
	}
}

func TestHashKeyAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop items at random")
	}
	r := newRing(t, newMem(t), nil)
	long := string(bytes.Repeat([]byte{'p'}, 4000))
	r.HashKey(long)
	for _, key := range []string{partition, "", long} {
		if n := testing.AllocsPerRun(100, func() { r.HashKey(key) }); n != 0 {
			t.Errorf("HashKey of %d bytes: %v allocations", len(key), n)
		}
	}
}

// Concurrent HashKey during refreshes, rotations and an upgrade-style
// re-adding of the secret: for the race detector, and one name throughout.
func TestHashKeyConcurrentWithRefresh(t *testing.T) {
	store := newMem(t)
	a := newRing(t, store, nil)
	h := a.HashKey(partition)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if a.HashKey(partition) != h {
					t.Error("HashKey changed during refreshes")
					return
				}
			}
		}()
	}
	for range 20 {
		if err := a.Rotate(ctx); err != nil {
			t.Error(err)
		}
		replayRing(t, store, asFormat1(t, ringRecord(t, store)))
		if err := a.Refresh(ctx); err != nil {
			t.Error(err)
		}
	}
	close(stop)
	wg.Wait()
}
