// Package testcert makes certificates and keys for tests of the
// certificate key-encryption keys: self-signed RSA and elliptic-curve
// certificates, PEM files, and a Decrypter that hides its key's type as an HSM's does.
package testcert

import (
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/msalcache/msalcache/protect"
)

// Pair is a certificate and its private key.
type Pair struct {
	Cert *x509.Certificate
	// Key is an *rsa.PrivateKey, *ecdsa.PrivateKey or *ecdh.PrivateKey.
	Key crypto.PrivateKey
}

// RSA returns a self-signed RSA certificate of the given size.
func RSA(t testing.TB, bits int) Pair {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	return Pair{Cert: create(t, &key.PublicKey, key), Key: key}
}

// EC returns a self-signed ECDSA certificate on curve.
func EC(t testing.TB, curve elliptic.Curve) Pair {
	t.Helper()
	key, err := ecdsa.GenerateKey(curve, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return Pair{Cert: create(t, &key.PublicKey, key), Key: key}
}

func create(t testing.TB, pub any, signer crypto.Signer) *x509.Certificate {
	t.Helper()
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "msalcache test KEK"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageKeyEncipherment | x509.KeyUsageKeyAgreement,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, signer)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// Decrypter returns p's key as NewCertificateKeyWrapper takes it, hidden
// behind Opaque so that the wrapper sees only the crypto.Decrypter
// interface, as with an HSM, a TPM or a PKCS#11 token.
func (p Pair) Decrypter(t testing.TB) crypto.Decrypter {
	t.Helper()
	switch k := p.Key.(type) {
	case *rsa.PrivateKey:
		return Opaque{D: k}
	case *ecdsa.PrivateKey:
		ek, err := k.ECDH()
		if err != nil {
			t.Fatal(err)
		}
		return ecdhDecrypter(t, OpaqueECDH{K: ek})
	case *ecdh.PrivateKey:
		return ecdhDecrypter(t, OpaqueECDH{K: k})
	}
	t.Fatalf("key of type %T", p.Key)
	return nil
}

func ecdhDecrypter(t testing.TB, k ecdh.KeyExchanger) crypto.Decrypter {
	t.Helper()
	d, err := protect.NewECDHDecrypter(k)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// Wrapper returns NewCertificateKeyWrapper's wrapper for p, through
// Decrypter.
func (p Pair) Wrapper(t testing.TB) protect.KeyWrapper {
	t.Helper()
	w, err := protect.NewCertificateKeyWrapper(p.Cert, p.Decrypter(t))
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// Files writes p as PEM files in a temporary folder: the certificate, and
// the key (PKCS#8) with mode 0600.
func (p Pair) Files(t testing.TB) (certFile, keyFile string) {
	t.Helper()
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "kek.crt"), filepath.Join(dir, "kek.key")
	der, err := x509.MarshalPKCS8PrivateKey(p.Key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.Cert.Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// Opaque hides a Decrypter's concrete type. Fail, when set, makes Decrypt
// fail as a token that was unplugged does.
type Opaque struct {
	D    crypto.Decrypter
	Fail error
}

// Public returns the hidden key's public key.
func (o Opaque) Public() crypto.PublicKey { return o.D.Public() }

// Decrypt decrypts with the hidden key, or fails with Fail.
func (o Opaque) Decrypt(r io.Reader, msg []byte, opts crypto.DecrypterOpts) ([]byte, error) {
	if o.Fail != nil {
		return nil, o.Fail
	}
	return o.D.Decrypt(r, msg, opts)
}

// OpaqueECDH hides an ECDH key's concrete type, as a hardware key's.
type OpaqueECDH struct{ K *ecdh.PrivateKey }

// PublicKey returns the hidden key's public key.
func (o OpaqueECDH) PublicKey() *ecdh.PublicKey { return o.K.PublicKey() }

// Curve returns the hidden key's curve.
func (o OpaqueECDH) Curve() ecdh.Curve { return o.K.Curve() }

// ECDH performs the exchange with the hidden key.
func (o OpaqueECDH) ECDH(pub *ecdh.PublicKey) ([]byte, error) { return o.K.ECDH(pub) }
