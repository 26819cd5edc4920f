package protect_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log"

	"github.com/msalcache/msalcache/internal/ringadmin"
	"github.com/msalcache/msalcache/memstore"
	"github.com/msalcache/msalcache/observe"
	"github.com/msalcache/msalcache/protect"
)

// A key ring in a store, sealing and opening a blob bound to its store key.
// In production the KEK comes from protect.LoadKeyFile or
// protect.KeyFromEnv, and the store is shared by every server (bbolt,
// Redis); the ring is then passed to msalcache.WithProtector.
func Example() {
	ctx := context.Background()
	kek, err := protect.NewAESKeyWrapper("kek-2030-01", bytes.Repeat([]byte{0x42}, protect.KEKSize))
	if err != nil {
		log.Fatal(err)
	}
	store := memstore.New()
	defer store.Close()
	ring, err := protect.NewKeyRing(ctx, store, kek)
	if err != nil {
		log.Fatal(err)
	}
	defer ring.Close()

	storeKey := []byte("msalcache:default:user-1")
	blob, err := ring.Protect(ctx, []byte(`{"AccessToken":{}}`), storeKey)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("overhead:", len(blob)-len(`{"AccessToken":{}}`))

	plain, err := ring.Unprotect(ctx, blob, storeKey)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("opened:", string(plain))

	_, err = ring.Unprotect(ctx, blob, []byte("msalcache:default:user-2"))
	fmt.Println("under another user's key:", err)
	// Output:
	// overhead: 65
	// opened: {"AccessToken":{}}
	// under another user's key: protect: decryption failed
}

// Emergency rotation: after Rotate the ring seals under a new key, old
// blobs still open and report that they should be sealed again (the
// Adapter does so on its next write), and Revoke retires the old key.
func ExampleKeyRing_Rotate() {
	ctx := context.Background()
	kek, err := protect.NewAESKeyWrapper("kek-2030-01", bytes.Repeat([]byte{0x42}, protect.KEKSize))
	if err != nil {
		log.Fatal(err)
	}
	store := memstore.New()
	defer store.Close()
	ring, err := protect.NewKeyRing(ctx, store, kek, protect.WithAutoRefresh(false))
	if err != nil {
		log.Fatal(err)
	}
	defer ring.Close()
	aad := []byte("msalcache:default:user-1")
	old, _ := ring.Protect(ctx, []byte("tokens"), aad)
	keys, _ := ringadmin.Keys(ctx, ring)
	oldID := keys[0].ID

	if err := ring.Rotate(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Println("old blob needs reprotecting:", ring.NeedsReprotect(old))
	if _, err := ring.Unprotect(ctx, old, aad); err == nil {
		fmt.Println("old blob still opens")
	}
	if err := ring.Revoke(ctx, oldID); err != nil {
		log.Fatal(err)
	}
	_, err = ring.Unprotect(ctx, old, aad)
	fmt.Println("after Revoke:", err == nil, errors.Is(err, protect.ErrKeyRevoked))
	keys, _ = ringadmin.Keys(ctx, ring)
	for _, k := range keys {
		fmt.Println(k.Status, k.Default)
	}
	// Output:
	// old blob needs reprotecting: true
	// old blob still opens
	// after Revoke: false true
	// revoked false
	// active true
}

// The ring tells an Observer when it starts sealing under a new key and
// when it reloads for a key it did not know; give it the Adapter's
// Observer (msalcacheotel's counts them as msalcache.keyring.rotations and
// msalcache.keyring.reloads).
func ExampleWithObserver() {
	ctx := context.Background()
	kek, err := protect.NewAESKeyWrapper("kek-2030-01", bytes.Repeat([]byte{0x42}, protect.KEKSize))
	if err != nil {
		log.Fatal(err)
	}
	store := memstore.New()
	defer store.Close()
	printer := observe.Func(func(_ context.Context, e observe.Event) {
		fmt.Println(e.Op, e.Outcome, e.Store)
	})
	ring, err := protect.NewKeyRing(ctx, store, kek, protect.WithObserver(printer))
	if err != nil {
		log.Fatal(err)
	}
	defer ring.Close()
	seal := func() {
		if _, err := ring.Protect(ctx, []byte("tokens"), []byte("tc/default/key")); err != nil {
			log.Fatal(err)
		}
	}
	seal() // the first key: no rotation
	if err := ring.Rotate(ctx); err != nil {
		log.Fatal(err)
	}
	seal()
	// Output: rotation ok memory
}
