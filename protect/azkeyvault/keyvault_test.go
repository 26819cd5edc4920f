package azkeyvault_test

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	azfake "github.com/Azure/azure-sdk-for-go/sdk/azcore/fake"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys/fake"
	"github.com/msalcache/msalcache/conformance"
	"github.com/msalcache/msalcache/internal/ringadmin"
	"github.com/msalcache/msalcache/memstore"
	"github.com/msalcache/msalcache/protect"
	"github.com/msalcache/msalcache/protect/azkeyvault"
)

const vaultURL = "https://msalcache-test.vault.azure.net"

// vault plays Azure Key Vault's wrapKey and unwrapKey through azkeys/fake:
// each key has versions, the last one current, and an RSA key wraps with
// real RSA-OAEP-256, as the service does. A symmetric (Managed HSM) key
// stands in AES-GCM for A256KW, which the standard library lacks: the
// contract the wrapper relies on (what wraps, unwraps; nothing else does)
// is the same.
type vault struct {
	mu   sync.Mutex
	keys map[string][]*keyVersion // name -> versions, current last
	// status, when not 0, is the HTTP status every call fails with.
	status int

	wraps, unwraps atomic.Int64
	lastWrapped    atomic.Pointer[string] // version of the last wrapKey
}

type keyVersion struct {
	version string
	rsa     *rsa.PrivateKey
	aead    cipher.AEAD
	enabled bool
}

func newVault() *vault { return &vault{keys: map[string][]*keyVersion{}} }

// addVersion creates key name, or rotates it: a new current version.
func (v *vault) addVersion(t testing.TB, name string, symmetric bool) string {
	t.Helper()
	version, err := v.newVersion(name, symmetric)
	if err != nil {
		t.Fatal(err)
	}
	return version
}

func (v *vault) newVersion(name string, symmetric bool) (string, error) {
	kv := &keyVersion{version: randomHex(16), enabled: true}
	if symmetric {
		key := make([]byte, 32)
		rand.Read(key)
		block, _ := aes.NewCipher(key)
		kv.aead, _ = cipher.NewGCM(block)
	} else {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return "", err
		}
		kv.rsa = k
	}
	v.mu.Lock()
	v.keys[name] = append(v.keys[name], kv)
	v.mu.Unlock()
	return kv.version, nil
}

func (v *vault) disable(name, version string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, kv := range v.keys[name] {
		if kv.version == version {
			kv.enabled = false
		}
	}
}

func (v *vault) setStatus(status int) {
	v.mu.Lock()
	v.status = status
	v.mu.Unlock()
}

// find returns the version asked for ("" = current), or an HTTP status.
func (v *vault) find(name, version string) (*keyVersion, int) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.status != 0 {
		return nil, v.status
	}
	vs := v.keys[name]
	if len(vs) == 0 {
		return nil, http.StatusNotFound
	}
	if version == "" {
		return vs[len(vs)-1], 0
	}
	for _, kv := range vs {
		if kv.version == version {
			if !kv.enabled {
				return nil, http.StatusForbidden
			}
			return kv, 0
		}
	}
	return nil, http.StatusNotFound
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func (v *vault) server() *fake.Server {
	result := func(name string, kv *keyVersion, out []byte) azkeys.KeyOperationResult {
		kid := azkeys.ID(vaultURL + "/keys/" + name + "/" + kv.version)
		return azkeys.KeyOperationResult{KID: &kid, Result: out}
	}
	return &fake.Server{
		WrapKey: func(_ context.Context, name, version string, p azkeys.KeyOperationParameters, _ *azkeys.WrapKeyOptions) (resp azfake.Responder[azkeys.WrapKeyResponse], errResp azfake.ErrorResponder) {
			v.wraps.Add(1)
			kv, status := v.find(name, version)
			if status != 0 {
				errResp.SetResponseError(status, http.StatusText(status))
				return
			}
			var out []byte
			var err error
			switch {
			case kv.rsa != nil && *p.Algorithm == azkeys.EncryptionAlgorithmRSAOAEP256:
				out, err = rsa.EncryptOAEP(sha256.New(), rand.Reader, &kv.rsa.PublicKey, p.Value, nil)
			case kv.aead != nil && *p.Algorithm == azkeys.EncryptionAlgorithmA256KW:
				nonce := make([]byte, kv.aead.NonceSize())
				rand.Read(nonce)
				out = kv.aead.Seal(nonce, nonce, p.Value, nil)
			default:
				err = errors.New("algorithm does not fit the key")
			}
			if err != nil {
				errResp.SetResponseError(http.StatusBadRequest, "BadParameter")
				return
			}
			v.lastWrapped.Store(&kv.version)
			resp.SetResponse(http.StatusOK, azkeys.WrapKeyResponse{KeyOperationResult: result(name, kv, out)}, nil)
			return
		},
		UnwrapKey: func(_ context.Context, name, version string, p azkeys.KeyOperationParameters, _ *azkeys.UnwrapKeyOptions) (resp azfake.Responder[azkeys.UnwrapKeyResponse], errResp azfake.ErrorResponder) {
			v.unwraps.Add(1)
			kv, status := v.find(name, version)
			if status != 0 {
				errResp.SetResponseError(status, http.StatusText(status))
				return
			}
			var out []byte
			var err error
			switch {
			case kv.rsa != nil && *p.Algorithm == azkeys.EncryptionAlgorithmRSAOAEP256:
				out, err = rsa.DecryptOAEP(sha256.New(), nil, kv.rsa, p.Value, nil)
			case kv.aead != nil && *p.Algorithm == azkeys.EncryptionAlgorithmA256KW && len(p.Value) > kv.aead.NonceSize():
				ns := kv.aead.NonceSize()
				out, err = kv.aead.Open(nil, p.Value[:ns], p.Value[ns:], nil)
			default:
				err = errors.New("algorithm does not fit the key")
			}
			if err != nil {
				errResp.SetResponseError(http.StatusBadRequest, "BadParameter")
				return
			}
			resp.SetResponse(http.StatusOK, azkeys.UnwrapKeyResponse{KeyOperationResult: result(name, kv, out)}, nil)
			return
		},
	}
}

// wrapper returns a KeyWrapper over key name of v, through the fake
// server, with retries off so that a failing vault fails at once.
func (v *vault) wrapper(t testing.TB, name string, opts *azkeyvault.Options) *azkeyvault.KeyWrapper {
	t.Helper()
	if opts == nil {
		opts = &azkeyvault.Options{}
	}
	opts.ClientOptions = &azkeys.ClientOptions{ClientOptions: azcore.ClientOptions{
		Transport: fake.NewServerTransport(v.server()),
		Retry:     policy.RetryOptions{MaxRetries: -1},
	}}
	w, err := azkeyvault.New(vaultURL, name, &azfake.TokenCredential{}, opts)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

var keySerial atomic.Int64

func TestConformanceRSA(t *testing.T) {
	v := newVault()
	conformance.RunKeyWrapperTests(t, func(t *testing.T) protect.KeyWrapper {
		name := fmt.Sprintf("kek-%d", keySerial.Add(1))
		v.addVersion(t, name, false)
		return v.wrapper(t, name, nil)
	})
}

func TestConformanceManagedHSMA256KW(t *testing.T) {
	v := newVault()
	conformance.RunKeyWrapperTests(t, func(t *testing.T) protect.KeyWrapper {
		name := fmt.Sprintf("hsm-kek-%d", keySerial.Add(1))
		v.addVersion(t, name, true)
		return v.wrapper(t, name, &azkeyvault.Options{Algorithm: azkeys.EncryptionAlgorithmA256KW})
	})
}

var ctx = context.Background()

func newRing(t *testing.T, store *memstore.Store, kek protect.KeyWrapper, opts ...protect.Option) (*protect.KeyRing, error) {
	t.Helper()
	base := []protect.Option{protect.WithAutoRefresh(false), protect.WithLogger(slog.New(slog.DiscardHandler))}
	r, err := protect.NewKeyRing(ctx, store, kek, append(base, opts...)...)
	if err == nil {
		t.Cleanup(func() { r.Close() })
	}
	return r, err
}

func mustRing(t *testing.T, store *memstore.Store, kek protect.KeyWrapper, opts ...protect.Option) *protect.KeyRing {
	t.Helper()
	r, err := newRing(t, store, kek, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// A key rotated in the vault (a new version) keeps unwrapping the data
// keys the old version wrapped, and wraps new ones with the new version.
func TestKeyRotatedInVault(t *testing.T) {
	v := newVault()
	v1 := v.addVersion(t, "kek", false)
	store := memstore.New()
	t.Cleanup(func() { store.Close() })
	first := mustRing(t, store, v.wrapper(t, "kek", nil))
	blob, err := first.Protect(ctx, []byte("before the vault rotation"), []byte("k"))
	if err != nil {
		t.Fatal(err)
	}
	v2 := v.addVersion(t, "kek", false)
	second := mustRing(t, store, v.wrapper(t, "kek", nil))
	if got, err := second.Unprotect(ctx, blob, []byte("k")); err != nil || string(got) != "before the vault rotation" {
		t.Fatalf("after the vault rotation: %q, %v", got, err)
	}
	if err := second.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	if got := *v.lastWrapped.Load(); got != v2 {
		t.Fatalf("the new data key was wrapped with version %s, want the current %s", got, v2)
	}
	third := mustRing(t, store, v.wrapper(t, "kek", nil))
	if got, err := third.Unprotect(ctx, blob, []byte("k")); err != nil || string(got) != "before the vault rotation" {
		t.Fatalf("a newcomer after the rotation: %q, %v", got, err)
	}
	// Disabling the old version makes its data keys unreadable: the
	// newcomer fails at once and says why.
	v.disable("kek", v1)
	_, err = newRing(t, store, v.wrapper(t, "kek", nil))
	if !errors.Is(err, protect.ErrKEKUnavailable) || errors.Is(err, protect.ErrRingDamaged) || !strings.Contains(err.Error(), "HTTP 403") {
		t.Fatalf("NewKeyRing with the old key version disabled: %v", err)
	}
}

// The vault calls of a process are those of its start and of rotations:
// none while it serves, so a vault that goes down after start-up costs
// nothing until the next rotation; a newcomer that cannot reach the vault
// fails after one call, clearly, without calling it per key.
func TestVaultCallsPerProcess(t *testing.T) {
	v := newVault()
	v.addVersion(t, "kek", false)
	store := memstore.New()
	t.Cleanup(func() { store.Close() })
	first := mustRing(t, store, v.wrapper(t, "kek", nil))
	t.Logf("server 1 start (creates the ring: one key, the naming secret): WrapKey %d, UnwrapKey %d", v.wraps.Load(), v.unwraps.Load())
	for range 3 { // three monthly rotations, as one server of a farm makes them
		if err := first.Rotate(ctx); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("after 3 rotations by server 1: WrapKey %d since its start (2 at creation, 1 per rotation)", v.wraps.Load())

	v.wraps.Store(0)
	v.unwraps.Store(0)
	kek := v.wrapper(t, "kek", nil)
	second := mustRing(t, store, kek)
	startWraps, startUnwraps := v.wraps.Load(), v.unwraps.Load()
	t.Logf("server 2 start over a ring of 4 keys: WrapKey %d, UnwrapKey %d (wrapper's own count %+v; ring's KEKStats %+v)",
		startWraps, startUnwraps, kek.Stats(), second.KEKStats())
	if startWraps != 0 || startUnwraps != 5 {
		t.Fatalf("a start over 4 keys called wrapKey %d and unwrapKey %d times, want 0 and 5 (4 keys and the naming secret)", startWraps, startUnwraps)
	}
	if s := second.KEKStats(); len(s) != 1 || s[0].Unwraps != 5 || s[0].Kind != azkeyvault.Kind {
		t.Fatalf("KEKStats = %+v", s)
	}

	v.setStatus(http.StatusServiceUnavailable) // the vault goes down
	for i := range 1000 {
		aad := []byte(fmt.Sprint("user-", i%10))
		blob, err := second.Protect(ctx, []byte("token"), aad)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := first.Unprotect(ctx, blob, aad); err != nil {
			t.Fatal(err)
		}
	}
	if w, u := v.wraps.Load(), v.unwraps.Load(); w != startWraps || u != startUnwraps {
		t.Fatalf("serving 1000 seals and opens called the vault: wrapKey %d, unwrapKey %d", w-startWraps, u-startUnwraps)
	}
	if _, err := ringadmin.Keys(ctx, second); err != nil { // a reload of an unchanged record
		t.Fatal(err)
	}
	if u := v.unwraps.Load(); u != startUnwraps {
		t.Fatalf("a reload of an unchanged record called unwrapKey %d times", u-startUnwraps)
	}

	_, err := newRing(t, store, v.wrapper(t, "kek", nil))
	if !errors.Is(err, protect.ErrKEKUnavailable) || errors.Is(err, protect.ErrRingDamaged) || !strings.Contains(err.Error(), "HTTP 503") {
		t.Fatalf("NewKeyRing with the vault down: %v", err)
	}
	if u := v.unwraps.Load() - startUnwraps; u != 1 {
		t.Fatalf("NewKeyRing with the vault down called unwrapKey %d times, want 1 (fail fast)", u)
	}
	checks, err := second.CheckKEKs(ctx)
	if err != nil || len(checks) != 1 || !errors.Is(checks[0].Err, protect.ErrKEKUnavailable) {
		t.Fatalf("CheckKEKs with the vault down: %+v, %v", checks, err)
	}
	v.setStatus(0)
	if checks, err := second.CheckKEKs(ctx); err != nil || checks[0].Err != nil {
		t.Fatalf("CheckKEKs with the vault back: %+v, %v", checks, err)
	}
	// Another server's rotation costs this one one unwrapKey: the new key.
	w0, u0 := v.wraps.Load(), v.unwraps.Load()
	if err := first.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	w1 := v.wraps.Load()
	if _, err := ringadmin.Keys(ctx, second); err != nil {
		t.Fatal(err)
	}
	if w, u := w1-w0, v.unwraps.Load()-u0; w != 1 || u != 1 {
		t.Fatalf("a rotation by server 1 and a reload by server 2 called wrapKey %d and unwrapKey %d times, want 1 and 1", w, u)
	}
	t.Logf("a rotation: WrapKey 1 on the server that makes it, UnwrapKey 1 on each other server at its next reload")
}

func TestForbiddenSaysWhatToDo(t *testing.T) {
	v := newVault()
	v.addVersion(t, "kek", false)
	v.setStatus(http.StatusForbidden)
	store := memstore.New()
	t.Cleanup(func() { store.Close() })
	_, err := newRing(t, store, v.wrapper(t, "kek", nil))
	if !errors.Is(err, protect.ErrKEKUnavailable) || !strings.Contains(err.Error(), "Key Vault Crypto User") {
		t.Fatalf("NewKeyRing refused by the vault: %v", err)
	}
}

func TestNewRefusesBadArguments(t *testing.T) {
	cred := &azfake.TokenCredential{}
	for _, c := range []struct{ url, name string }{
		{"http://v.vault.azure.net", "k"},
		{"not a url", "k"},
		{vaultURL, ""},
		{vaultURL, "k/0123"},
	} {
		if _, err := azkeyvault.New(c.url, c.name, cred, nil); err == nil {
			t.Errorf("New(%q, %q) succeeded", c.url, c.name)
		}
	}
	if _, err := azkeyvault.New(vaultURL, "k", nil, nil); err == nil {
		t.Error("New with a nil credential succeeded")
	}
	if _, err := azkeyvault.New(vaultURL, "k", cred, &azkeyvault.Options{Algorithm: azkeys.EncryptionAlgorithmRSA15}); err == nil {
		t.Error("New with RSA1_5 succeeded")
	}
	w, err := azkeyvault.New(vaultURL, "k", cred, nil)
	if err != nil || w.ID() != "azkv:msalcache-test.vault.azure.net/k" {
		t.Fatalf("New: %v, id %q", err, w.ID())
	}
}

// FuzzUnwrap feeds arbitrary wrappings to Unwrap: no panic, and nothing
// unwraps that Wrap did not make.
func FuzzUnwrap(f *testing.F) {
	v := newVault()
	v.addVersion(f, "kek", false)
	w := v.wrapper(f, "kek", nil)
	good, err := w.Wrap(ctx, make([]byte, 32), []byte("aad"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte{1, 1, 1, 'x', 0, 1, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, err := w.Unwrap(ctx, b, []byte("other aad")); err == nil {
			t.Fatal("unwrapped under other associated data")
		}
	})
}
