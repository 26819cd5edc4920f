package protect

import (
	"bytes"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"testing"
)

// The hand-rolled HKDF must equal the standard library's, bit for bit.
func TestHKDFMatchesStandardLibrary(t *testing.T) {
	master := make([]byte, masterKeyLen)
	salt := make([]byte, saltLen)
	for range 2000 {
		rand.Read(master)
		rand.Read(salt)
		var id keyID
		rand.Read(id[:])
		info := hkdfInfo(id)
		want, err := hkdf.Key(sha256.New, master, salt, info[:len(info)-1], 32)
		if err != nil {
			t.Fatal(err)
		}
		if got := hkdfSHA256(master, salt, info); !bytes.Equal(got[:], want) {
			t.Fatalf("hkdfSHA256 = %x, crypto/hkdf = %x", got, want)
		}
	}
	// RFC 5869 test case 3 shape (SHA-256, zero-length salt and info),
	// truncated to 32 bytes.
	ikm := bytes.Repeat([]byte{0x0b}, 22)
	want, _ := hkdf.Key(sha256.New, ikm, nil, "", 32)
	if got := hkdfSHA256(ikm, nil, "\x01"); !bytes.Equal(got[:], want) {
		t.Fatalf("empty salt: %x, want %x", got, want)
	}
}

func BenchmarkHKDF(b *testing.B) {
	master := make([]byte, masterKeyLen)
	salt := make([]byte, saltLen)
	info := hkdfInfo(keyID{})
	b.Run("protect", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			hkdfSHA256(master, salt, info)
		}
	})
	b.Run("crypto-hkdf", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			hkdf.Key(sha256.New, master, salt, info[:len(info)-1], 32)
		}
	})
}
