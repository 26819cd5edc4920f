package protect

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"testing"
)

// FuzzParsePEM feeds arbitrary bytes to the certificate and key parsers of
// LoadCertificateKeyWrapper: errors, never a panic.
func FuzzParsePEM(f *testing.F) {
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"))
	f.Add([]byte("-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n"))
	f.Add([]byte("-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n"))
	f.Add([]byte("-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n"))
	f.Add([]byte{0x30, 0x82})
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = parseCertPEM(b)
		_, _ = parseKeyPEM(b)
	})
}

// FuzzCertificateUnwrap feeds arbitrary wrappings to an EC certificate
// wrapper: nothing unwraps under other associated data, and nothing
// panics.
func FuzzCertificateUnwrap(f *testing.F) {
	k, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	d, err := NewECDHDecrypter(k)
	if err != nil {
		f.Fatal(err)
	}
	w := &certWrapper{id: "cert-sha256:fuzz", format: certFormatHPKE, hpriv: d.(*ecdhDecrypter).hpriv}
	f.Add([]byte{certFormatHPKE, 4, 1, 2, 3})
	f.Add([]byte{certFormatRSA})
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, err := w.Unwrap(context.Background(), b, []byte("aad")); err == nil {
			t.Fatal("unwrapped bytes Wrap did not make")
		}
	})
}
