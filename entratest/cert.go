package entratest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"fmt"
	"math/big"
	"net"
	"time"
)

// newCertificate makes a self-signed ECDSA certificate for the loopback
// addresses, localhost, extraHost (if it is a name or an address) and the
// Microsoft login hosts.
func newCertificate(extraHost string) (tls.Certificate, *x509.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("generate certificate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("certificate serial: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"entratest"}, CommonName: "entratest"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:              append([]string{"localhost"}, microsoftHosts...),
	}
	if extraHost != "" && extraHost != "localhost" {
		if ip := net.ParseIP(extraHost); ip != nil {
			if !ip.IsLoopback() && !ip.IsUnspecified() {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			}
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, extraHost)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("create certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("parse certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, leaf, nil
}

// newSigningKey makes the ES256 key that signs tokens, and its key id.
func newSigningKey() (*ecdsa.PrivateKey, string, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, "", fmt.Errorf("generate signing key: %w", err)
	}
	pub, err := key.PublicKey.ECDH()
	if err != nil {
		return nil, "", fmt.Errorf("signing key: %w", err)
	}
	sum := sha256.Sum256(pub.Bytes())
	return key, base64.RawURLEncoding.EncodeToString(sum[:12]), nil
}

// jwk returns the JSON Web Key of the public signing key.
func (s *Server) jwk() map[string]any {
	pub, _ := s.signKey.PublicKey.ECDH()
	pt := pub.Bytes() // 0x04 || X || Y
	return map[string]any{
		"kty": "EC",
		"use": "sig",
		"alg": "ES256",
		"crv": "P-256",
		"kid": s.kid,
		"x":   base64.RawURLEncoding.EncodeToString(pt[1:33]),
		"y":   base64.RawURLEncoding.EncodeToString(pt[33:65]),
	}
}
