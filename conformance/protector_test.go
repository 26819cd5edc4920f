package conformance_test

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/conformance"
	"github.com/msalcache/msalcache/memstore"
	"github.com/msalcache/msalcache/protect"
)

// newKeyRing returns a ring over store, with a KEK of its own unless kek is
// given.
func newKeyRing(t *testing.T, store driver.Store, kek []byte) *protect.KeyRing {
	t.Helper()
	if kek == nil {
		kek = make([]byte, protect.KEKSize)
		rand.Read(kek)
	}
	w, err := protect.NewAESKeyWrapper("conformance", kek)
	if err != nil {
		t.Fatal(err)
	}
	ring, err := protect.NewKeyRing(context.Background(), store, w,
		protect.WithAutoRefresh(false), protect.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ring.Close() })
	return ring
}

// TestKeyRingProtector runs the protector suite against protect.KeyRing.
func TestKeyRingProtector(t *testing.T) {
	conformance.RunProtectorTests(t, func(t *testing.T) driver.Protector {
		store := memstore.New()
		t.Cleanup(func() { store.Close() })
		return newKeyRing(t, store, nil)
	})
}

// protectorFaultEnv names the fault TestFaultyProtector injects; it is set
// only when TestProtectorSuiteCatchesFaults re-executes the test binary.
const protectorFaultEnv = "CONFORMANCE_PROTECTOR_FAULT"

// TestProtectorSuiteCatchesFaults proves that the protector suite fails
// protectors with the flaws it exists to catch, each in its own subtest and
// with a message that says what is wrong. Each runs in a child process,
// since a failing suite fails the *testing.T it is given.
func TestProtectorSuiteCatchesFaults(t *testing.T) {
	cases := []struct{ fault, subtest, message string }{
		{"plaintext", "RoundTrip", "contains its plaintext"},
		{"ignore-aad", "CrossAADFails", "succeeded, want an error"},
		{"shared-key", "CrossKeyFails", "opened by protector B"},
		{"deterministic", "EncryptionsDiffer", "are equal"},
		{"unauthenticated", "EveryByteFlipFails", "flipped"},
		{"panic-on-short", "MalformedInput", "panicked"},
		{"data-with-error", "MalformedInput", "along with its error"},
		{"aliased-output", "RoundTrip", "must not share memory"},
	}
	for _, tc := range cases {
		t.Run(tc.fault, func(t *testing.T) {
			t.Parallel()
			cmd := exec.Command(os.Args[0], "-test.run=^TestFaultyProtector$/^"+tc.subtest+"$", "-test.v")
			cmd.Env = append(os.Environ(), protectorFaultEnv+"="+tc.fault)
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("the suite passed a protector with fault %q:\n%s", tc.fault, out)
			}
			if !strings.Contains(string(out), "--- FAIL: TestFaultyProtector/"+tc.subtest) {
				t.Fatalf("fault %q did not fail subtest %s:\n%s", tc.fault, tc.subtest, out)
			}
			if !strings.Contains(string(out), tc.message) {
				t.Fatalf("fault %q failed %s without saying %q:\n%s", tc.fault, tc.subtest, tc.message, out)
			}
		})
	}
}

// TestFaultyProtector runs the suite on a protector with the fault named by
// protectorFaultEnv; TestProtectorSuiteCatchesFaults expects it to fail.
func TestFaultyProtector(t *testing.T) {
	fault := os.Getenv(protectorFaultEnv)
	if fault == "" {
		t.Skip("run by TestProtectorSuiteCatchesFaults")
	}
	shared := memstore.New()
	conformance.RunProtectorTests(t, func(t *testing.T) driver.Protector {
		store := memstore.New()
		t.Cleanup(func() { store.Close() })
		switch fault {
		case "plaintext":
			return plainProtector{}
		case "deterministic", "unauthenticated":
			key := make([]byte, 32)
			rand.Read(key)
			block, _ := aes.NewCipher(key)
			return &toyProtector{block: block, fault: fault}
		case "shared-key":
			return newKeyRing(t, shared, bytes.Repeat([]byte{1}, protect.KEKSize))
		}
		return &faultyProtector{ring: newKeyRing(t, store, nil), fault: fault}
	})
}

// plainProtector stores in clear.
type plainProtector struct{}

func (plainProtector) Protect(_ context.Context, p, _ []byte) ([]byte, error) {
	return bytes.Clone(p), nil
}

func (plainProtector) Unprotect(_ context.Context, c, _ []byte) ([]byte, error) {
	return bytes.Clone(c), nil
}

// toyProtector is AES-GCM with a fixed nonce ("deterministic") or AES-CTR
// with no tag ("unauthenticated").
type toyProtector struct {
	block cipher.Block
	fault string
}

func (p *toyProtector) Protect(_ context.Context, plain, aad []byte) ([]byte, error) {
	if p.fault == "deterministic" {
		gcm, _ := cipher.NewGCM(p.block)
		return gcm.Seal(nil, make([]byte, 12), plain, aad), nil
	}
	iv := make([]byte, 16)
	rand.Read(iv)
	out := append(iv, make([]byte, len(plain))...)
	cipher.NewCTR(p.block, iv).XORKeyStream(out[16:], plain)
	return out, nil
}

func (p *toyProtector) Unprotect(_ context.Context, c, aad []byte) ([]byte, error) {
	if p.fault == "deterministic" {
		gcm, _ := cipher.NewGCM(p.block)
		return gcm.Open(nil, make([]byte, 12), c, aad)
	}
	if len(c) < 16 {
		return nil, errors.New("short")
	}
	out := make([]byte, len(c)-16)
	cipher.NewCTR(p.block, c[:16]).XORKeyStream(out, c[16:])
	return out, nil
}

// faultyProtector is a KeyRing with one deliberate flaw.
type faultyProtector struct {
	ring  *protect.KeyRing
	fault string
	last  []byte
}

func (p *faultyProtector) Protect(ctx context.Context, plain, aad []byte) ([]byte, error) {
	if p.fault == "ignore-aad" {
		aad = nil
	}
	return p.ring.Protect(ctx, plain, aad)
}

func (p *faultyProtector) Unprotect(ctx context.Context, c, aad []byte) ([]byte, error) {
	switch p.fault {
	case "ignore-aad":
		aad = nil
	case "panic-on-short":
		_ = c[20] // indexes before checking the length
	}
	out, err := p.ring.Unprotect(ctx, c, aad)
	switch {
	case p.fault == "data-with-error" && err != nil:
		return c, err
	case p.fault == "aliased-output" && err == nil:
		// Hands out the same buffer every time.
		if cap(p.last) < len(out) {
			p.last = make([]byte, len(out))
		}
		p.last = p.last[:len(out)]
		copy(p.last, out)
		return p.last, nil
	}
	return out, err
}
