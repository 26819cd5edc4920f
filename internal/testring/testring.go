// Package testring gives tests a protect.KeyRing under a fresh random KEK,
// so every store's tests can run the MSAL suite encrypted without
// repeating the setup.
package testring

import (
	"context"
	"crypto/rand"
	"testing"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/protect"
)

// New returns a KeyRing whose record lives in store, closed when t ends.
// Its signature fits conformance.MSALSetup.NewProtector.
func New(t *testing.T, store driver.Store) driver.Protector {
	t.Helper()
	kek := make([]byte, protect.KEKSize)
	if _, err := rand.Read(kek); err != nil {
		t.Fatal(err)
	}
	w, err := protect.NewAESKeyWrapper("test-kek", kek)
	if err != nil {
		t.Fatal(err)
	}
	ring, err := protect.NewKeyRing(context.Background(), store, w)
	if err != nil {
		t.Fatalf("protect.NewKeyRing: %v", err)
	}
	t.Cleanup(func() { ring.Close() })
	return ring
}
