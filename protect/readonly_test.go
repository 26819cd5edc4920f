package protect_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/msalcache/msalcache/driver"
	"github.com/msalcache/msalcache/internal/ringadmin"
	"github.com/msalcache/msalcache/memstore"
	"github.com/msalcache/msalcache/protect"
)

// snapshot is every key of a memstore with its version: two equal
// snapshots mean nothing was written in between.
func snapshot(t *testing.T, s *memstore.Store) map[string]driver.Version {
	t.Helper()
	out := map[string]driver.Version{}
	err := s.List(context.Background(), "", func(k string) error {
		_, v, err := s.Load(context.Background(), k)
		out[k] = v
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func wantUnchanged(t *testing.T, s *memstore.Store, before map[string]driver.Version) {
	t.Helper()
	if after := snapshot(t, s); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("the store changed: before %v, after %v", before, after)
	}
}

func openRO(t *testing.T, s driver.Store, kek protect.KeyWrapper, opts ...protect.Option) (*protect.KeyRing, error) {
	t.Helper()
	r, err := protect.OpenReadOnly(context.Background(), s, kek, append([]protect.Option{protect.WithLogger(quiet)}, opts...)...)
	if err == nil {
		t.Cleanup(func() { r.Close() })
	}
	return r, err
}

func TestOpenReadOnlyEmptyStoreMintsNothing(t *testing.T) {
	s := newMem(t)
	_, err := openRO(t, s, testKEK(t, "kek-1", 7))
	if !errors.Is(err, protect.ErrNoRing) || !strings.Contains(err.Error(), protect.DefaultRingKey) {
		t.Fatalf("OpenReadOnly on an empty store: %v; want ErrNoRing naming the ring key", err)
	}
	wantUnchanged(t, s, map[string]driver.Version{})
}

func TestOpenReadOnlyReadsAndNeverWrites(t *testing.T) {
	s := newMem(t)
	clock := newFakeClock()
	w := newRing(t, s, clock.Now)
	blob := mustProtect(t, w, "secret", "tc/default/x")
	before := snapshot(t, s)

	r, err := openRO(t, s, testKEK(t, "kek-1", 7), protect.WithClock(clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	mustOpen(t, r, blob, "tc/default/x", "secret")
	if r.HashKey("alice") != w.HashKey("alice") {
		t.Fatal("a read-only ring hashes partition keys unlike the ring it read")
	}
	// It seals under the current default, which the writable ring opens.
	mustOpen(t, w, mustProtect(t, r, "again", "k"), "k", "again")
	keys, err := r.Keys(context.Background())
	if err != nil || len(keys) != len(keyIDs(t, w)) {
		t.Fatalf("Keys = %v, %v", keys, err)
	}
	if id, err := protect.PayloadKeyID(blob); err != nil || id != keyOf(blob) {
		t.Fatalf("PayloadKeyID = %q, %v; want %q", id, err, keyOf(blob))
	}
	if _, err := protect.PayloadKeyID([]byte("{}")); !errors.Is(err, protect.ErrNotProtected) {
		t.Fatalf("PayloadKeyID of plain JSON: %v; want ErrNotProtected", err)
	}
	if err := r.Rotate(context.Background()); !errors.Is(err, protect.ErrReadOnly) {
		t.Fatalf("Rotate on a read-only ring: %v; want ErrReadOnly", err)
	}
	if err := r.Revoke(context.Background(), keys[0].ID); !errors.Is(err, protect.ErrReadOnly) {
		t.Fatalf("Revoke on a read-only ring: %v; want ErrReadOnly", err)
	}
	// Due for its scheduled successor: NewKeyRing would write one.
	clock.Add(protect.DefaultKeyLifetime - time.Hour)
	r2, err := openRO(t, s, testKEK(t, "kek-1", 7), protect.WithClock(clock.Now))
	if err != nil {
		t.Fatalf("OpenReadOnly of a ring due for rotation: %v", err)
	}
	if err := r2.Refresh(context.Background()); !errors.Is(err, protect.ErrReadOnly) {
		t.Fatalf("Refresh that would mint: %v; want ErrReadOnly", err)
	}
	wantUnchanged(t, s, before)
}

func TestOpenReadOnlyRefusals(t *testing.T) {
	s := newMem(t)
	newRing(t, s, nil)
	before := snapshot(t, s)
	if _, err := openRO(t, s, testKEK(t, "kek-1", 8)); !errors.Is(err, protect.ErrRingDamaged) {
		t.Fatalf("wrong KEK under the right id: %v; want ErrRingDamaged", err)
	}
	if _, err := openRO(t, s, testKEK(t, "kek-other", 7)); !errors.Is(err, protect.ErrInvalidRing) {
		t.Fatalf("a KEK id the ring does not use: %v; want ErrInvalidRing", err)
	}
	if _, err := openRO(t, volatileStore{s}, testKEK(t, "kek-1", 7)); !errors.Is(err, protect.ErrVolatileStore) {
		t.Fatalf("volatile store: %v; want ErrVolatileStore", err)
	}
	wantUnchanged(t, s, before)
	if err := s.Delete(context.Background(), protect.DefaultRingKey); err != nil {
		t.Fatal(err)
	}
	before = snapshot(t, s)
	if _, err := openRO(t, s, testKEK(t, "kek-1", 7)); !errors.Is(err, protect.ErrRingMissing) || errors.Is(err, protect.ErrNoRing) {
		t.Fatalf("marker without record: %v; want ErrRingMissing", err)
	}
	if _, ok := before[protect.MarkerKey(protect.DefaultRingKey)]; !ok {
		t.Fatalf("MarkerKey names %q, which the store lacks: %v", protect.MarkerKey(protect.DefaultRingKey), before)
	}
	wantUnchanged(t, s, before)
}

// An operator tool opens the farm's ring without ever writing to the
// store: here, to find which key sealed a blob and to open it.
func ExampleOpenReadOnly() {
	ctx := context.Background()
	store := memstore.New()
	kek, _ := protect.NewAESKeyWrapper("kek-2030-01", make([]byte, protect.KEKSize))
	farm, _ := protect.NewKeyRing(ctx, store, kek)
	defer farm.Close()
	blob, _ := farm.Protect(ctx, []byte("tokens"), []byte("tc/default/k"))

	ring, err := protect.OpenReadOnly(ctx, store, kek)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer ring.Close()
	id, _ := protect.PayloadKeyID(blob)
	keys, _ := ringadmin.Keys(ctx, ring)
	plain, _ := ring.Unprotect(ctx, blob, []byte("tc/default/k"))
	fmt.Println(id == keys[0].ID, string(plain))
	fmt.Println(errors.Is(ring.Rotate(ctx), protect.ErrReadOnly))
	// Output:
	// true tokens
	// true
}
