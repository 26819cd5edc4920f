package protect_test

import (
	"crypto"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/msalcache/msalcache/driver"
	"github.com/msalcache/msalcache/internal/ringadmin"
	"github.com/msalcache/msalcache/internal/testcert"
	"github.com/msalcache/msalcache/protect"
)

func TestLoadCertificateKeyWrapper(t *testing.T) {
	for name, pair := range map[string]testcert.Pair{
		"RSA":  testcert.RSA(t, 2048),
		"P256": testcert.EC(t, elliptic.P256()),
		"P384": testcert.EC(t, elliptic.P384()),
	} {
		t.Run(name, func(t *testing.T) {
			certFile, keyFile := pair.Files(t)
			w, err := protect.LoadCertificateKeyWrapper(certFile, keyFile)
			if err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(pair.Cert.Raw)
			if want := "cert-sha256:" + hex.EncodeToString(sum[:]); w.ID() != want {
				t.Fatalf("ID = %q, want %q", w.ID(), want)
			}
			if k, ok := w.(protect.KindedKeyWrapper); !ok || k.Kind() != ringadmin.KindCertificate {
				t.Fatalf("kind of %T", w)
			}
			// What the file-loaded key wraps, the same certificate with
			// its key behind an opaque Decrypter (an HSM) unwraps.
			hsm := pair.Wrapper(t)
			wrapped, err := w.Wrap(ctx, []byte("0123456789abcdef0123456789abcdef"), []byte("aad"))
			if err != nil {
				t.Fatal(err)
			}
			if got, err := hsm.Unwrap(ctx, wrapped, []byte("aad")); err != nil || string(got) != "0123456789abcdef0123456789abcdef" {
				t.Fatalf("the opaque key's Unwrap = %q, %v", got, err)
			}
			// A key file others can read is refused, naming the fix.
			if err := os.Chmod(keyFile, 0o640); err != nil {
				t.Fatal(err)
			}
			if _, err := protect.LoadCertificateKeyWrapper(certFile, keyFile); err == nil || !strings.Contains(err.Error(), "chmod 600") {
				t.Fatalf("a key file of mode 0640: %v", err)
			}
		})
	}
}

func TestLoadCertificateKeyWrapperRefusals(t *testing.T) {
	a, b := testcert.RSA(t, 2048), testcert.EC(t, elliptic.P256())
	certA, keyA := a.Files(t)
	certB, keyB := b.Files(t)
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	encrypted := write("enc.key", pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte{1, 2, 3}}))
	pfx := write("cert.pfx", []byte{0x30, 0x82, 0x01, 0x00, 0x02, 0x01, 0x03})
	small := testcert.RSA(t, 1024)
	smallCert, smallKey := small.Files(t)
	for _, c := range []struct {
		name, cert, key, want string
	}{
		{"key of another certificate", certA, keyB, "does not belong"},
		{"RSA key for an EC certificate", certB, keyA, "NewECDHDecrypter"},
		{"encrypted key", certA, encrypted, "openssl pkey"},
		{"a .pfx file", pfx, keyA, "openssl"},
		{"missing certificate", filepath.Join(dir, "none.crt"), keyA, "no such file"},
		{"missing key", certA, filepath.Join(dir, "none.key"), "no such file"},
		{"a 1024-bit RSA key", smallCert, smallKey, "2048 bits"},
	} {
		_, err := protect.LoadCertificateKeyWrapper(c.cert, c.key)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error saying %q", c.name, err, c.want)
		}
	}
}

// An HSM or token that fails (unplugged, locked) is no verdict on the
// record: NewKeyRing fails at once with ErrKEKUnavailable after one call,
// not with ErrRingDamaged, and a running ring keeps serving.
func TestCertificateKeyUnavailable(t *testing.T) {
	pair := testcert.RSA(t, 2048)
	store := newMem(t)
	r := newRingWith(t, store, pair.Wrapper(t))
	for range 3 {
		if err := r.Rotate(ctx); err != nil {
			t.Fatal(err)
		}
	}
	blob := mustProtect(t, r, "sealed", "k")
	unplugged, err := protect.NewCertificateKeyWrapper(pair.Cert, testcert.Opaque{D: pair.Key.(crypto.Decrypter), Fail: errors.New("token removed")})
	if err != nil {
		t.Fatal(err)
	}
	_, err = protect.NewKeyRing(ctx, store, unplugged, protect.WithAutoRefresh(false), protect.WithLogger(quiet))
	if !errors.Is(err, protect.ErrKEKUnavailable) || errors.Is(err, protect.ErrRingDamaged) || !strings.Contains(err.Error(), "token removed") {
		t.Fatalf("NewKeyRing with a failing token: %v", err)
	}
	mustOpen(t, r, blob, "k", "sealed")
}

// A ring wrapped by one certificate does not open with another: the
// error names the certificate it needs.
func TestWrongCertificateFailsFast(t *testing.T) {
	a, b := testcert.EC(t, elliptic.P256()), testcert.EC(t, elliptic.P256())
	store := newMem(t)
	wa := a.Wrapper(t)
	newRingWith(t, store, wa)
	_, err := protect.NewKeyRing(ctx, store, b.Wrapper(t), protect.WithAutoRefresh(false), protect.WithLogger(quiet))
	if !errors.Is(err, protect.ErrInvalidRing) || !strings.Contains(err.Error(), wa.ID()) || !strings.Contains(err.Error(), "WithKEKs") {
		t.Fatalf("NewKeyRing with another certificate: %v", err)
	}
}

// The kind of each key's KEK is recorded, shown by Keys, and moves with
// a migration from an AES KEK to a certificate; a record of format 2
// (no kinds) still loads and shows the kind of the KEK that opens it.
func TestKEKKindRecorded(t *testing.T) {
	store := newMem(t)
	aes := testKEK(t, "env-kek", 3)
	r := newRingWith(t, store, aes)
	ks, err := ringadmin.Keys(ctx, r)
	if err != nil || len(ks) != 1 || ks[0].KEKKind != ringadmin.KindAES || ks[0].KEKID != "env-kek" {
		t.Fatalf("keys %+v, %v", ks, err)
	}
	if doc := parseDoc(t, ringRecord(t, store)); doc.V != 3 || doc.Keys[0].Kind != "aes" {
		t.Fatalf("record format %d, kind %q", doc.V, doc.Keys[0].Kind)
	}
	cert := testcert.EC(t, elliptic.P256()).Wrapper(t)
	moved := newRingWith(t, store, cert, protect.WithKEKs(aes))
	if err := moved.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	ks, _ = ringadmin.Keys(ctx, moved)
	for _, k := range ks {
		if k.KEKKind != ringadmin.KindCertificate || k.KEKID != cert.ID() {
			t.Fatalf("after the migration: %+v", k)
		}
	}
	// An edited kind is damage, not trusted.
	doc := parseDoc(t, ringRecord(t, store))
	doc.Keys[0].Kind = "aes"
	replayRing(t, store, doc.encode(t))
	if _, err := protect.NewKeyRing(ctx, store, cert, protect.WithAutoRefresh(false), protect.WithLogger(quiet)); !errors.Is(err, protect.ErrRingDamaged) {
		t.Fatalf("a record with an edited KEK kind: %v", err)
	}
}

func TestGenerateCertificateFiles(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "kek.crt"), filepath.Join(dir, "kek.key")
	if err := protect.GenerateCertificateFiles(certFile, keyFile, ""); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(keyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, %v", fi.Mode(), err)
	}
	w, err := protect.LoadCertificateKeyWrapper(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(w.ID(), "cert-sha256:") {
		t.Fatalf("id %q", w.ID())
	}
	if err := protect.GenerateCertificateFiles(certFile, keyFile, ""); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("second GenerateCertificateFiles: %v", err)
	}
}

// KEKStats counts the calls of a start and of rotations; serving makes
// none.
func TestKEKStatsStartsAndRotationsOnly(t *testing.T) {
	store := newMem(t)
	kek := testcert.RSA(t, 2048).Wrapper(t)
	first := newRingWith(t, store, kek)
	if err := first.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	second := newRingWith(t, store, kek)
	start := second.KEKStats()
	if len(start) != 1 || !start[0].Primary || start[0].Kind != ringadmin.KindCertificate || start[0].Unwraps != 3 || start[0].Wraps != 0 {
		t.Fatalf("after start over 2 keys: %+v (want 3 unwraps: 2 keys and the naming secret)", start)
	}
	for range 200 {
		mustOpen(t, first, mustProtect(t, second, "x", "k"), "k", "x")
	}
	if got := second.KEKStats(); got[0] != start[0] {
		t.Fatalf("serving called the KEK: %+v -> %+v", start, got)
	}
	checks, err := second.CheckKEKs(ctx)
	if err != nil || len(checks) != 1 || checks[0].Err != nil || checks[0].Keys != 2 || !checks[0].Primary {
		t.Fatalf("CheckKEKs: %+v, %v", checks, err)
	}
}

// newRingWith builds a ring under kek with manual refresh.
func newRingWith(t testing.TB, store driver.Store, kek protect.KeyWrapper, opts ...protect.Option) *protect.KeyRing {
	t.Helper()
	r, err := protect.NewKeyRing(ctx, store, kek, append([]protect.Option{protect.WithAutoRefresh(false), protect.WithLogger(quiet)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// An X25519 certificate (which cannot sign itself; this one, in testdata,
// was issued by a throwaway P-256 CA with openssl x509 -force_pubkey)
// wraps through HPKE like the NIST curves.
func TestX25519Certificate(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "x25519.key")
	key, err := os.ReadFile("testdata/x25519.key")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, key, 0o600); err != nil {
		t.Fatal(err)
	}
	w, err := protect.LoadCertificateKeyWrapper("testdata/x25519.crt", keyFile)
	if err != nil {
		t.Fatal(err)
	}
	r := newRingWith(t, newMem(t), w)
	mustOpen(t, r, mustProtect(t, r, "x25519", "k"), "k", "x25519")
	if ks, _ := ringadmin.Keys(ctx, r); ks[0].KEKID != w.ID() || ks[0].KEKKind != ringadmin.KindCertificate {
		t.Fatalf("keys %+v", ks)
	}
}
