package azkeyvault_test

import (
	"bytes"
	"os"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/msalcache/msalcache/conformance"
	"github.com/msalcache/msalcache/memstore"
	"github.com/msalcache/msalcache/protect"
	"github.com/msalcache/msalcache/protect/azkeyvault"
)

// TestRealVault checks the wrapper against a real vault key, when
// AZKEYVAULT_TEST_URL and AZKEYVAULT_TEST_KEY name one (see the package
// documentation for the command): a round trip, a tampered wrapping
// refused, and a key ring started, reopened and checked. With a second
// key in AZKEYVAULT_TEST_KEY2 it runs the whole KEK suite, which needs two.
func TestRealVault(t *testing.T) {
	url, key := os.Getenv("AZKEYVAULT_TEST_URL"), os.Getenv("AZKEYVAULT_TEST_KEY")
	if url == "" || key == "" {
		t.Skip("set AZKEYVAULT_TEST_URL and AZKEYVAULT_TEST_KEY to run against a real vault")
	}
	cred, err := azidentity.NewDefaultAzureCredential(nil)
	if err != nil {
		t.Fatal(err)
	}
	w, err := azkeyvault.New(url, key, cred, nil)
	if err != nil {
		t.Fatal(err)
	}
	plain := bytes.Repeat([]byte{7}, 32)
	wrapped, err := w.Wrap(ctx, plain, []byte("aad"))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := w.Unwrap(ctx, wrapped, []byte("aad")); err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("round trip: %x, %v", got, err)
	}
	wrapped[len(wrapped)-1] ^= 1
	if _, err := w.Unwrap(ctx, wrapped, []byte("aad")); err == nil {
		t.Fatal("a tampered wrapping unwrapped")
	}
	store := memstore.New()
	t.Cleanup(func() { store.Close() })
	mustRing(t, store, w)
	ring := mustRing(t, store, w)
	if checks, err := ring.CheckKEKs(ctx); err != nil || checks[0].Err != nil {
		t.Fatalf("CheckKEKs: %+v, %v", checks, err)
	}
	t.Logf("vault calls: %+v", w.Stats())

	key2 := os.Getenv("AZKEYVAULT_TEST_KEY2")
	if key2 == "" {
		t.Log("set AZKEYVAULT_TEST_KEY2 to a second key to run the whole KEK suite")
		return
	}
	n := 0
	conformance.RunKeyWrapperTests(t, func(t *testing.T) protect.KeyWrapper {
		n++
		name := key
		if n%2 == 0 {
			name = key2
		}
		w, err := azkeyvault.New(url, name, cred, nil)
		if err != nil {
			t.Fatal(err)
		}
		return w
	})
}
