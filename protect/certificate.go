package protect

import (
	"context"
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hpke"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/big"
	"os"
	"runtime"
	"time"

	"github.com/msalcache/msalcache/internal/ringadmin"
)

// KindedKeyWrapper is a KeyWrapper that names its kind, which the ring
// records beside its id so that an operator moving from
// one kind of KEK to another sees which keys have moved. Package
// azkeyvault's wrapper is one. A KeyWrapper without Kind is recorded as
// "custom".
type KindedKeyWrapper interface {
	KeyWrapper
	// Kind is 1 to 32 lowercase letters, digits or '-'.
	Kind() string
}

// ErrKEKUnavailable marks an error of a KeyWrapper that is no verdict on
// the wrapped bytes: the KMS, vault, HSM or token could not be reached or
// refused the caller. A ring that meets it fails the call (NewKeyRing
// fails fast) instead of treating the record as damaged, so an outage of
// the KEK never makes a server rewrite the record. KeyWrapper
// implementations wrap it with fmt.Errorf("...: %w", ErrKEKUnavailable).
var ErrKEKUnavailable = errors.New("protect: KEK unavailable")

// certPrefix starts the id of a certificate KEK; the SHA-256 thumbprint
// (64 lowercase hex digits) follows.
const certPrefix = "cert-sha256:"

// Wrapping formats of the certificate wrapper, the first byte of what it
// wraps.
const (
	certFormatRSA  = 1 // RSA-OAEP-SHA256, the associated data as label
	certFormatHPKE = 2 // HPKE DHKEM(curve) + HKDF-SHA256 + AES-256-GCM
)

type certWrapper struct {
	id     string
	format byte
	// RSA
	pub *rsa.PublicKey
	dec crypto.Decrypter
	// HPKE
	hpub  hpke.PublicKey
	hpriv hpke.PrivateKey
	// local: the private key is in this process's memory.
	local bool
}

// NewCertificateKeyWrapper returns a KeyWrapper that wraps data keys to
// cert's public key and unwraps them with its private key, key, which may
// live in an HSM, a TPM or a PKCS#11 token: only key.Decrypt is called.
// The wrapper's id is "cert-sha256:" and the certificate's SHA-256
// thumbprint in lowercase hex, so a renewed certificate is a new KEK: make
// it the primary and keep the old one in WithKEKs until the ring has
// rewrapped its keys (see the package documentation, KEK rotation).
//
// An RSA certificate wraps with RSA-OAEP-SHA256, the associated data bound
// as OAEP's label. An elliptic-curve certificate (P-256, P-384, P-521 or
// X25519) wraps with HPKE (RFC 9180, crypto/hpke: DHKEM of the curve,
// HKDF-SHA256, AES-256-GCM), the associated data bound as HPKE's info;
// pass its key as NewECDHDecrypter(k). The certificate's dates are not
// checked: an expired certificate still unwraps what it wrapped, which is
// what keeps a farm readable across a renewal.
func NewCertificateKeyWrapper(cert *x509.Certificate, key crypto.Decrypter) (KeyWrapper, error) {
	if cert == nil || key == nil {
		return nil, errors.New("protect: NewCertificateKeyWrapper: nil certificate or key")
	}
	sum := sha256.Sum256(cert.Raw)
	w := &certWrapper{id: certPrefix + hex.EncodeToString(sum[:])}
	pubKey := cert.PublicKey
	if pubKey == nil {
		// crypto/x509 leaves an X25519 certificate's key unparsed, but
		// parses the same key from the SubjectPublicKeyInfo.
		pubKey, _ = x509.ParsePKIXPublicKey(cert.RawSubjectPublicKeyInfo)
	}
	switch pub := pubKey.(type) {
	case *rsa.PublicKey:
		if pub.Size() < 256 {
			return nil, fmt.Errorf("protect: certificate %s: RSA key of %d bits; use 2048 bits or more", w.id, pub.Size()*8)
		}
		if !pub.Equal(key.Public()) {
			return nil, fmt.Errorf("protect: certificate %s: the private key does not belong to this certificate", w.id)
		}
		w.format, w.pub, w.dec = certFormatRSA, pub, key
		_, w.local = key.(*rsa.PrivateKey)
	case *ecdsa.PublicKey, *ecdh.PublicKey:
		epub, err := ecdhPublic(pub)
		if err != nil {
			return nil, fmt.Errorf("protect: certificate %s: %w", w.id, err)
		}
		ed, ok := key.(*ecdhDecrypter)
		if !ok {
			return nil, fmt.Errorf("protect: certificate %s has an elliptic-curve key: pass its private key as protect.NewECDHDecrypter(key) (an *ecdh.PrivateKey, (*ecdsa.PrivateKey).ECDH(), or an HSM's ecdh.KeyExchanger)", w.id)
		}
		if !ed.priv.PublicKey().Equal(epub) {
			return nil, fmt.Errorf("protect: certificate %s: the private key does not belong to this certificate", w.id)
		}
		if w.hpub, err = hpke.NewDHKEMPublicKey(epub); err != nil {
			return nil, fmt.Errorf("protect: certificate %s: %w", w.id, err)
		}
		w.format, w.hpriv = certFormatHPKE, ed.hpriv
		_, w.local = ed.priv.(*ecdh.PrivateKey)
	default:
		return nil, fmt.Errorf("protect: certificate %s has a %T key; only RSA and elliptic-curve (P-256, P-384, P-521, X25519) certificates can wrap keys", w.id, pubKey)
	}
	return w, nil
}

func ecdhPublic(pub any) (*ecdh.PublicKey, error) {
	switch p := pub.(type) {
	case *ecdh.PublicKey:
		return p, nil
	case *ecdsa.PublicKey:
		return p.ECDH()
	}
	return nil, fmt.Errorf("%T is not an elliptic-curve key", pub)
}

// ecdhDecrypter adapts an ECDH private key to crypto.Decrypter, so that
// NewCertificateKeyWrapper takes RSA and EC keys alike: Decrypt opens an
// HPKE message whose info is given as *HPKEOptions.
type ecdhDecrypter struct {
	priv  ecdh.KeyExchanger
	hpriv hpke.PrivateKey
}

// HPKEOptions carries HPKE's info to the Decrypt of NewECDHDecrypter's
// key; the certificate wrapper passes the associated data there.
type HPKEOptions struct {
	Info []byte
}

// HashFunc is part of crypto.DecrypterOpts; HPKE's hash is its KDF's.
func (*HPKEOptions) HashFunc() crypto.Hash { return 0 }

// NewECDHDecrypter makes an elliptic-curve private key usable as
// NewCertificateKeyWrapper's key: an *ecdh.PrivateKey, the result of
// (*ecdsa.PrivateKey).ECDH(), or any ecdh.KeyExchanger (such as a key in
// hardware). Its Decrypt opens an HPKE message (DHKEM of the key's curve,
// HKDF-SHA256, AES-256-GCM) with the info of opts, an *HPKEOptions.
func NewECDHDecrypter(k ecdh.KeyExchanger) (crypto.Decrypter, error) {
	if k == nil {
		return nil, errors.New("protect: NewECDHDecrypter(nil)")
	}
	hp, err := hpke.NewDHKEMPrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("protect: NewECDHDecrypter: %w", err)
	}
	return &ecdhDecrypter{priv: k, hpriv: hp}, nil
}

func (d *ecdhDecrypter) Public() crypto.PublicKey { return d.priv.PublicKey() }

func (d *ecdhDecrypter) Decrypt(_ io.Reader, msg []byte, opts crypto.DecrypterOpts) ([]byte, error) {
	o, ok := opts.(*HPKEOptions)
	if !ok || o == nil {
		return nil, errors.New("protect: an ECDH key decrypts HPKE messages only; pass *protect.HPKEOptions")
	}
	return hpke.Open(d.hpriv, hpke.HKDFSHA256(), hpke.AES256GCM(), o.Info, msg)
}

func (w *certWrapper) ID() string   { return w.id }
func (w *certWrapper) Kind() string { return ringadmin.KindCertificate }

// label binds the associated data and the KEK id (as the AES wrapper
// does), under a domain of its own.
func (w *certWrapper) label(aad []byte) []byte {
	const domain = "msalcache/protect certificate-kek v1\x00"
	out := make([]byte, 0, len(domain)+len(w.id)+1+len(aad))
	out = append(out, domain...)
	out = append(out, w.id...)
	out = append(out, 0)
	return append(out, aad...)
}

func (w *certWrapper) Wrap(ctx context.Context, plaintext, aad []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var ct []byte
	var err error
	switch w.format {
	case certFormatRSA:
		ct, err = rsa.EncryptOAEP(sha256.New(), rand.Reader, w.pub, plaintext, w.label(aad))
	default:
		ct, err = hpke.Seal(w.hpub, hpke.HKDFSHA256(), hpke.AES256GCM(), w.label(aad), plaintext)
	}
	if err != nil {
		return nil, fmt.Errorf("protect: KEK %q: wrap: %w", w.id, err)
	}
	return append([]byte{w.format}, ct...), nil
}

func (w *certWrapper) Unwrap(ctx context.Context, wrapped, aad []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	refused := fmt.Errorf("protect: KEK %q cannot unwrap this key (another KEK, or the record was altered)", w.id)
	if len(wrapped) < 2 || wrapped[0] != w.format {
		return nil, refused
	}
	switch w.format {
	case certFormatRSA:
		if len(wrapped)-1 != w.pub.Size() {
			return nil, refused
		}
		plain, err := w.dec.Decrypt(rand.Reader, wrapped[1:], &rsa.OAEPOptions{Hash: crypto.SHA256, Label: w.label(aad)})
		switch {
		case err == nil:
			return plain, nil
		case errors.Is(err, rsa.ErrDecryption) || errors.Is(err, rsa.ErrVerification):
			return nil, refused
		default:
			// An HSM, TPM or token that failed: no verdict on the bytes.
			return nil, fmt.Errorf("protect: KEK %q: the private key's Decrypt failed: %w: %w", w.id, ErrKEKUnavailable, err)
		}
	default:
		plain, err := hpke.Open(w.hpriv, hpke.HKDFSHA256(), hpke.AES256GCM(), w.label(aad), wrapped[1:])
		if err != nil {
			return nil, refused
		}
		return plain, nil
	}
}

// LoadCertificateKeyWrapper reads a PEM certificate from certFile and its
// PEM private key (PKCS#8, PKCS#1 or SEC 1, unencrypted) from keyFile, and
// returns NewCertificateKeyWrapper's wrapper. The key file must not be
// readable or writable by group or others, as LoadKeyFile requires; the
// certificate file may be. When certFile also holds the key (one PEM
// bundle), pass it as both. A PKCS#12 (.pfx) file converts with:
//
//	openssl pkcs12 -in cert.pfx -nokeys -out cert.pem
//	openssl pkcs12 -in cert.pfx -nocerts -nodes -out key.pem && chmod 600 key.pem
func LoadCertificateKeyWrapper(certFile, keyFile string) (KeyWrapper, error) {
	certPEM, err := readSmallFile(certFile, false)
	if err != nil {
		return nil, fmt.Errorf("protect: certificate file: %w", err)
	}
	keyPEM, err := readSmallFile(keyFile, true)
	if err != nil {
		return nil, fmt.Errorf("protect: certificate key file: %w", err)
	}
	cert, err := parseCertPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("protect: certificate file %s: %w", certFile, err)
	}
	key, err := parseKeyPEM(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("protect: certificate key file %s: %w", keyFile, err)
	}
	return NewCertificateKeyWrapper(cert, key)
}

const maxCertFile = 1 << 20

// readSmallFile reads a certificate or key file; secret files must be
// 0600 (the check LoadKeyFile makes).
func readSmallFile(path string, secret bool) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); secret && perm&0o077 != 0 && runtime.GOOS != "windows" {
		return nil, fmt.Errorf("%s has mode %04o, so other accounts can read or change the private key; run: chmod 600 %s", path, perm, path)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxCertFile+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxCertFile {
		return nil, fmt.Errorf("%s is larger than %d bytes: not a PEM certificate or key", path, maxCertFile)
	}
	return data, nil
}

// parseCertPEM returns the first CERTIFICATE block: a chain file holds the
// leaf first.
func parseCertPEM(data []byte) (*x509.Certificate, error) {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return nil, errors.New("no PEM CERTIFICATE block (a .pfx file? see LoadCertificateKeyWrapper for the openssl conversion)")
		}
		if b.Type == "CERTIFICATE" {
			return x509.ParseCertificate(b.Bytes)
		}
	}
}

// parseKeyPEM returns the first private key block as a crypto.Decrypter
// (EC keys through NewECDHDecrypter).
func parseKeyPEM(data []byte) (crypto.Decrypter, error) {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return nil, errors.New("no PEM PRIVATE KEY block (an encrypted key? decrypt it with: openssl pkey -in key.pem -out key-plain.pem)")
		}
		var key any
		var err error
		switch b.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(b.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(b.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(b.Bytes)
		case "ENCRYPTED PRIVATE KEY":
			return nil, errors.New("the private key is encrypted; decrypt it with: openssl pkey -in key.pem -out key-plain.pem (then chmod 600 key-plain.pem)")
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%s block: %w", b.Type, err)
		}
		switch k := key.(type) {
		case *rsa.PrivateKey:
			return k, nil
		case *ecdsa.PrivateKey:
			ek, err := k.ECDH()
			if err != nil {
				return nil, err
			}
			return NewECDHDecrypter(ek)
		case *ecdh.PrivateKey:
			return NewECDHDecrypter(k)
		default:
			return nil, fmt.Errorf("a %T key cannot unwrap; use an RSA or elliptic-curve certificate", key)
		}
	}
}

// BoundsContext implements driver.ContextBounder: a private key held
// in memory returns at once; another Decrypter (an HSM) may block.
func (w *certWrapper) BoundsContext() bool { return w.local }

// GenerateCertificateFiles writes a new self-signed elliptic-curve (P-256)
// certificate for commonName to certFile and its private key (PKCS#8) to
// keyFile with mode 0600, for LoadCertificateKeyWrapper; it refuses to
// overwrite either file (the error wraps fs.ErrExist). It is for
// development and for farms that keep a KEK certificate of their own; a
// certificate from the operators' PKI works the same.
func GenerateCertificateFiles(certFile, keyFile, commonName string) error {
	if commonName == "" {
		commonName = "msalcache key-encryption key"
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("protect: generate certificate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return fmt.Errorf("protect: generate certificate: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: commonName},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.AddDate(10, 0, 0),
		KeyUsage:     x509.KeyUsageKeyAgreement | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return fmt.Errorf("protect: generate certificate: %w", err)
	}
	pk, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("protect: generate certificate: %w", err)
	}
	if err := writeNewFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk})); err != nil {
		return err
	}
	if err := writeNewFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})); err != nil {
		os.Remove(keyFile)
		return err
	}
	return nil
}

// writeNewFile writes data to a new file of mode 0600.
func writeNewFile(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("protect: %s already exists; not overwriting it: %w", path, err)
		}
		return fmt.Errorf("protect: create %s: %w", path, err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("protect: write %s: %w", path, err)
	}
	return nil
}
