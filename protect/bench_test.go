package protect_test

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"testing"
)

// The ring's Protect and Unprotect of a 4 KiB blob next to a bare
// AES-256-GCM Seal and Open of the same size under one fixed key: the
// difference is the per-message HKDF, the key schedule and the header.
//
//	go test -run '^$' -bench . -benchmem ./protect

func BenchmarkProtect4K(b *testing.B) {
	r := newRing(b, newMem(b), nil)
	plain := make([]byte, 4096)
	aad := []byte("msalcache:default:0123456789abcdef0123456789abcdef")
	b.SetBytes(int64(len(plain)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Protect(ctx, plain, aad); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkUnprotect4K(b *testing.B) {
	r := newRing(b, newMem(b), nil)
	aad := []byte("msalcache:default:0123456789abcdef0123456789abcdef")
	blob, err := r.Protect(ctx, make([]byte, 4096), aad)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(4096)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Unprotect(ctx, blob, aad); err != nil {
			b.Fatal(err)
		}
	}
}

func rawGCM(b *testing.B) cipher.AEAD {
	key := make([]byte, 32)
	rand.Read(key)
	block, err := aes.NewCipher(key)
	if err != nil {
		b.Fatal(err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		b.Fatal(err)
	}
	return aead
}

func BenchmarkRawGCMSeal4K(b *testing.B) {
	aead := rawGCM(b)
	plain := make([]byte, 4096)
	nonce := make([]byte, 12)
	aad := []byte("msalcache:default:0123456789abcdef0123456789abcdef")
	b.SetBytes(int64(len(plain)))
	b.ReportAllocs()
	for b.Loop() {
		rand.Read(nonce)
		aead.Seal(nil, nonce, plain, aad)
	}
}

func BenchmarkRawGCMOpen4K(b *testing.B) {
	aead := rawGCM(b)
	nonce := make([]byte, 12)
	aad := []byte("msalcache:default:0123456789abcdef0123456789abcdef")
	sealed := aead.Seal(nil, nonce, make([]byte, 4096), aad)
	b.SetBytes(4096)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := aead.Open(nil, nonce, sealed, aad); err != nil {
			b.Fatal(err)
		}
	}
}

// HashKey names a partition on every Replace and Export, so it must cost
// next to nothing: a pooled HMAC-SHA256, no allocation.
//
//	go test -run '^$' -bench HashKey -benchmem ./protect
func BenchmarkHashKey(b *testing.B) {
	r := newRing(b, newMem(b), nil)
	key := "00000000-0000-0000-0000-000000000001.00000000-0000-0000-0000-0000000000aa"
	b.ReportAllocs()
	for b.Loop() {
		r.HashKey(key)
	}
}

func BenchmarkHashKeyParallel(b *testing.B) {
	r := newRing(b, newMem(b), nil)
	key := "00000000-0000-0000-0000-000000000001.00000000-0000-0000-0000-0000000000aa"
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r.HashKey(key)
		}
	})
}
