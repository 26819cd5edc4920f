package protect

import (
	"bytes"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"testing"
)

// The subkey of every payload is RFC 5869 HKDF-SHA256(master, salt,
// "msalcache protect v1" ‖ key id), 32 bytes: the info is spelled out here
// rather than taken from hkdfInfo, so that a change to the label or its
// layout fails this test.
func TestHKDFMatchesStandardLibrary(t *testing.T) {
	master := make([]byte, masterKeyLen)
	salt := make([]byte, saltLen)
	for range 2000 {
		rand.Read(master)
		rand.Read(salt)
		var id keyID
		rand.Read(id[:])
		want, err := hkdf.Key(sha256.New, master, salt, "msalcache protect v1"+string(id[:]), 32)
		if err != nil {
			t.Fatal(err)
		}
		got, err := deriveSubkey(master, hkdfInfo(id), salt)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("deriveSubkey = %x, %v; crypto/hkdf = %x", got, err, want)
		}
	}
	// RFC 5869 test case 3 shape (SHA-256, zero-length salt and info),
	// truncated to 32 bytes.
	ikm := bytes.Repeat([]byte{0x0b}, 22)
	want, _ := hkdf.Key(sha256.New, ikm, nil, "", 32)
	if got, err := deriveSubkey(ikm, "", nil); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("empty salt: %x, %v; want %x", got, err, want)
	}
}

// RFC 5869's own answers, so that the test above does not only compare
// crypto/hkdf with itself.
func TestHKDFKnownAnswers(t *testing.T) {
	for _, tc := range []struct {
		name             string
		ikm, salt, info  string
		okmFirst32Octets string
	}{
		{"A.1", "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b", "000102030405060708090a0b0c", "f0f1f2f3f4f5f6f7f8f9",
			"3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf"},
		{"A.3", "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b", "", "",
			"8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d"},
	} {
		info, _ := hex.DecodeString(tc.info)
		got, err := deriveSubkey(unhex(t, tc.ikm), string(info), unhex(t, tc.salt))
		if err != nil || hex.EncodeToString(got) != tc.okmFirst32Octets {
			t.Errorf("RFC 5869 %s: %x, %v; want %s", tc.name, got, err, tc.okmFirst32Octets)
		}
	}
}

// subkeyVectors were derived by the first release's own HKDF code (before
// protect used crypto/hkdf) from the inputs vectorInput makes: every
// payload sealed by any release must keep opening, so the subkeys must
// stay these, byte for byte.
var subkeyVectors = []string{
	"4defeb7efa2ff63ffa94ccc56231480e6566836043f1b19080843bd2258450fc",
	"e56bafd19a646828f02a84c91643b82c0ff945effb33ef15ca5e5796ba61d8dc",
	"e83f994955ac560bb3cade0ddf7a618107a44720f30590ae95e0c558ed440485",
	"c5292e46fc82bb68262ed15c56259bf469f8abc8b0f71b3c8f4e0658842a52e2",
	"a16318726b4c22d84b6b1f3a784ae5d84744dd4efffe20708923d9dc4674755a",
	"7a2dfc2a1e52ce5308e4bf7661ccd1bd4a669b968dad9108d7dc3a0776894f0f",
	"b3d20ff382dccb8b139ce214a5647b684a4335c9d5346c7fb10d8a1bd4ea459c",
	"64dde478c9c65e64ebcc35b08616fed7ddd83ee7276cdbdfe1a3b39394d8a3e4",
}

// vectorInput is the first n bytes of SHA-256("<label> <i>").
func vectorInput(label string, i, n int) []byte {
	s := sha256.Sum256(fmt.Appendf(nil, "%s %d", label, i))
	return s[:n]
}

func TestSubkeysOfTheFirstRelease(t *testing.T) {
	for i, want := range subkeyVectors {
		var id keyID
		copy(id[:], vectorInput("id", i, keyIDLen))
		got, err := deriveSubkey(vectorInput("master", i, masterKeyLen), hkdfInfo(id), vectorInput("salt", i, saltLen))
		if err != nil || hex.EncodeToString(got) != want {
			t.Errorf("vector %d: subkey %x, %v; the first release derived %s", i, got, err, want)
		}
	}
}

// goldenPayload was sealed by the first release, under master key 00 01 …
// 1f with id 40 41 … 4f, salt 80 … 8f and nonce 90 … 9b, with the default
// purpose and aad "msalcache:default:vector". (testdata/payload-v1.bin is
// another, opened through a whole ring by TestGoldenFormat.)
const goldenPayload = "ff50520101404142434445464748494a4b4c4d4e4f808182838485868788898a8b8c8d8e8f909192939495969798999a9b10f22d4ed10d939607824722a2d47a7285fd7ce9303dc0892cb3a37cfca5a5ee4b"

func TestPayloadOfTheFirstReleaseOpens(t *testing.T) {
	k := &dataKey{secret: make([]byte, masterKeyLen)}
	for i := range k.secret {
		k.secret[i] = byte(i)
	}
	for i := range k.id {
		k.id[i] = byte(0x40 + i)
	}
	k.info = hkdfInfo(k.id)
	b := unhex(t, goldenPayload)
	h, err := parsePayload(b)
	if err != nil {
		t.Fatal(err)
	}
	if h.id != k.id || h.salt[0] != 0x80 || h.nonce[0] != 0x90 {
		t.Fatalf("header parsed as id %s, salt %x, nonce %x", h.id, h.salt, h.nonce)
	}
	plain, err := openPayload(k, DefaultPurpose, b, []byte("msalcache:default:vector"))
	if err != nil || string(plain) != "payload format v1" {
		t.Fatalf("golden payload: %q, %v", plain, err)
	}
	if _, err := openPayload(k, DefaultPurpose, b, []byte("msalcache:default:other")); err != ErrDecrypt {
		t.Fatalf("golden payload under another aad: %v, want ErrDecrypt", err)
	}
}

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// What pooling the hashes saves over crypto/hkdf with fresh ones.
func BenchmarkHKDF(b *testing.B) {
	master := make([]byte, masterKeyLen)
	salt := make([]byte, saltLen)
	info := hkdfInfo(keyID{})
	b.Run("pooled", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			deriveSubkey(master, info, salt)
		}
	})
	b.Run("crypto-hkdf", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			hkdf.Key(sha256.New, master, salt, info, masterKeyLen)
		}
	})
}
