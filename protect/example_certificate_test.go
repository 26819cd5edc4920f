package protect_test

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"log"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/msalcache/msalcache/internal/ringadmin"
	"github.com/msalcache/msalcache/memstore"
	"github.com/msalcache/msalcache/protect"
)

// A certificate and its key in PEM files (the key file mode 0600) protect
// the ring: the wrapper's id is the certificate's SHA-256 thumbprint.
// Here GenerateCertificateFiles makes a self-signed one; a certificate
// from the operators' PKI, or a .pfx converted with openssl pkcs12, works
// the same.
func ExampleLoadCertificateKeyWrapper() {
	dir, _ := os.MkdirTemp("", "kek")
	defer os.RemoveAll(dir)
	certFile, keyFile := filepath.Join(dir, "kek.crt"), filepath.Join(dir, "kek.key")
	if err := protect.GenerateCertificateFiles(certFile, keyFile, "my app's token cache"); err != nil {
		log.Fatal(err)
	}
	kek, err := protect.LoadCertificateKeyWrapper(certFile, keyFile)
	if err != nil {
		log.Fatal(err)
	}
	store := memstore.New()
	defer store.Close()
	ring, err := protect.NewKeyRing(context.Background(), store, kek)
	if err != nil {
		log.Fatal(err)
	}
	defer ring.Close()
	keys, _ := ring.Keys(context.Background())
	fmt.Println(strings.HasPrefix(kek.ID(), "cert-sha256:"), len(kek.ID()), keys[0].KEKKind)
	// Output: true 76 certificate
}

// GenerateCertificateFiles writes a self-signed P-256 certificate and its
// key (0600), and refuses to overwrite them.
func ExampleGenerateCertificateFiles() {
	dir, _ := os.MkdirTemp("", "kek")
	defer os.RemoveAll(dir)
	certFile, keyFile := filepath.Join(dir, "kek.crt"), filepath.Join(dir, "kek.key")
	fmt.Println(protect.GenerateCertificateFiles(certFile, keyFile, "") == nil)
	fmt.Println(protect.GenerateCertificateFiles(certFile, keyFile, "") != nil)
	// Output:
	// true
	// true
}

// A certificate whose key is an elliptic-curve key, here in memory; an
// HSM's ECDH key (an ecdh.KeyExchanger) is passed the same way, through
// NewECDHDecrypter.
func ExampleNewCertificateKeyWrapper() {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kek"},
		NotBefore: time.Now(), NotAfter: time.Now().AddDate(1, 0, 0)}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	cert, _ := x509.ParseCertificate(der)

	ek, _ := key.ECDH()
	dec, err := protect.NewECDHDecrypter(ek)
	if err != nil {
		log.Fatal(err)
	}
	kek, err := protect.NewCertificateKeyWrapper(cert, dec)
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	wrapped, _ := kek.Wrap(ctx, bytes.Repeat([]byte{1}, 32), []byte("bound to this"))
	_, err = kek.Unwrap(ctx, wrapped, []byte("bound to that"))
	fmt.Println("other associated data:", err != nil)
	// Output: other associated data: true
}

// NewECDHDecrypter adapts an ECDH key to crypto.Decrypter: it opens HPKE
// messages with the info of HPKEOptions.
func ExampleNewECDHDecrypter() {
	k, _ := ecdh.X25519().GenerateKey(rand.Reader)
	dec, err := protect.NewECDHDecrypter(k)
	if err != nil {
		log.Fatal(err)
	}
	_, err = dec.Decrypt(nil, []byte("not an HPKE message"), &protect.HPKEOptions{Info: []byte("info")})
	fmt.Println(err != nil)
	// Output: true
}

// Moving a ring from an AES KEK (an environment variable's) to a
// certificate: the certificate becomes the primary with the AES KEK kept,
// Rotate makes the ring rewrap its keys at once (any write does; the
// next scheduled key would too), and then the AES KEK can go. KEKStats
// shows the calls: a start unwraps each key once, and serving calls no
// KEK.
func ExampleWithKEKs() {
	ctx := context.Background()
	store := memstore.New()
	defer store.Close()
	env, _ := protect.NewAESKeyWrapper("env-kek", bytes.Repeat([]byte{7}, protect.KEKSize))
	old, _ := protect.NewKeyRing(ctx, store, env)
	blob, _ := old.Protect(ctx, []byte("a token cache"), []byte("k"))
	old.Close()

	dir, _ := os.MkdirTemp("", "kek")
	defer os.RemoveAll(dir)
	certFile, keyFile := filepath.Join(dir, "kek.crt"), filepath.Join(dir, "kek.key")
	_ = protect.GenerateCertificateFiles(certFile, keyFile, "")
	cert, _ := protect.LoadCertificateKeyWrapper(certFile, keyFile)

	moving, err := protect.NewKeyRing(ctx, store, cert, protect.WithKEKs(env))
	if err != nil {
		log.Fatal(err)
	}
	_ = moving.Rotate(ctx)
	moving.Close()

	ring, err := protect.NewKeyRing(ctx, store, cert) // the AES KEK removed
	if err != nil {
		log.Fatal(err)
	}
	defer ring.Close()
	plain, _ := ring.Unprotect(ctx, blob, []byte("k"))
	fmt.Println(string(plain))
	for _, s := range ring.KEKStats() {
		fmt.Printf("%s: %d unwraps at start\n", s.Kind, s.Unwraps)
	}
	// Output:
	// a token cache
	// certificate: 3 unwraps at start
}

// CheckKEKs has every KEK prove that it still unwraps, for a health check.
func ExampleKeyRing_CheckKEKs() {
	ctx := context.Background()
	store := memstore.New()
	defer store.Close()
	kek, _ := protect.NewAESKeyWrapper("kek-2030-01", bytes.Repeat([]byte{7}, protect.KEKSize))
	ring, _ := protect.NewKeyRing(ctx, store, kek)
	defer ring.Close()
	checks, err := ring.CheckKEKs(ctx)
	if err != nil {
		log.Fatal(err)
	}
	for _, c := range checks {
		fmt.Println(c.ID, c.Kind, c.Primary, c.Keys, c.Err)
	}
	// Output: kek-2030-01 aes true 1 <nil>
}

// KEKStats counts a ring's KEK calls since it started.
func ExampleKeyRing_KEKStats() {
	ctx := context.Background()
	store := memstore.New()
	defer store.Close()
	kek, _ := protect.NewAESKeyWrapper("kek-2030-01", bytes.Repeat([]byte{7}, protect.KEKSize))
	ring, _ := protect.NewKeyRing(ctx, store, kek) // a new ring: wraps a key and the naming secret
	defer ring.Close()
	for range 100 {
		blob, _ := ring.Protect(ctx, []byte("x"), []byte("k"))
		_, _ = ring.Unprotect(ctx, blob, []byte("k"))
	}
	fmt.Printf("%+v\n", ring.KEKStats()[0])
	// Output: {ID:kek-2030-01 Kind:aes Primary:true Wraps:2 Unwraps:0 Failures:0}
}

// kmsWrapper stands for a KEK in a KMS of your own: it names its kind,
// which the ring records beside each key, and reports an outage with
// ErrKEKUnavailable, so that a ring fails the call instead of taking its
// record for damaged.
type kmsWrapper struct {
	protect.KeyWrapper // here a local key plays the KMS
	down               bool
}

func (w *kmsWrapper) Kind() string { return "my-kms" }

func (w *kmsWrapper) Unwrap(ctx context.Context, wrapped, aad []byte) ([]byte, error) {
	if w.down {
		return nil, fmt.Errorf("my-kms: connection refused: %w", protect.ErrKEKUnavailable)
	}
	return w.KeyWrapper.Unwrap(ctx, wrapped, aad)
}

func ExampleKindedKeyWrapper() {
	ctx := context.Background()
	store := memstore.New()
	defer store.Close()
	local, _ := protect.NewAESKeyWrapper("kms-key-1", bytes.Repeat([]byte{9}, protect.KEKSize))
	kms := &kmsWrapper{KeyWrapper: local}
	ring, _ := protect.NewKeyRing(ctx, store, kms)
	keys, _ := ringadmin.Keys(ctx, ring)
	fmt.Println(keys[0].KEKID, keys[0].KEKKind)
	ring.Close()

	kms.down = true
	_, err := protect.NewKeyRing(ctx, store, kms)
	fmt.Println(errors.Is(err, protect.ErrKEKUnavailable), errors.Is(err, protect.ErrRingDamaged))
	// Output:
	// kms-key-1 my-kms
	// true false
}
