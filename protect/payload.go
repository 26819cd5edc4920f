package protect

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
)

// Payload layout. Every blob the KeyRing seals is
//
//	magic (4) | suite (1) | key id (16) | salt (16) | nonce (12) | ciphertext | tag (16)
//
// and the GCM associated data is header | len(purpose) | purpose | len(aad) | aad,
// lengths as 4-byte big-endian integers, so that no two (purpose, aad) pairs
// share an encoding.
const (
	magicLen  = 4
	suiteLen  = 1
	keyIDLen  = 16
	saltLen   = 16
	nonceLen  = 12
	tagLen    = 16
	headerLen = magicLen + suiteLen + keyIDLen + saltLen + nonceLen // 49

	// Overhead is how many bytes Protect adds to a plaintext: a 49-byte
	// header and a 16-byte GCM tag.
	Overhead = headerLen + tagLen

	masterKeyLen = 32

	// suiteAES256GCMHKDF is AES-256-GCM under a per-message key
	// HKDF-SHA256(master, salt, hkdfLabel || key id).
	suiteAES256GCMHKDF byte = 0x01
)

// magic opens every payload: 0xFF cannot start valid UTF-8 or JSON, so a
// protected blob is never mistaken for MSAL's plaintext cache, and "PR" v1
// names the format.
var magic = [magicLen]byte{0xFF, 0x50, 0x52, 0x01}

// hkdfLabel separates the subkeys of this format from any other use of the
// same master key.
// It is short so that label, key id and HKDF's counter byte fit one
// SHA-256 block after HMAC's pad.
const hkdfLabel = "msalcache protect v1"

// keyID names a data key. It is random, so ids minted by servers racing each
// other never collide.
type keyID [keyIDLen]byte

func (id keyID) String() string { return hex.EncodeToString(id[:]) }

// parseKeyID reads the 32-hex-digit form that KeyInfo.ID shows.
func parseKeyID(s string) (keyID, error) {
	var id keyID
	if len(s) != 2*keyIDLen {
		return id, fmt.Errorf("protect: key id must be %d hex digits, got %d characters", 2*keyIDLen, len(s))
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return id, fmt.Errorf("protect: key id is not hex: %w", err)
	}
	return id, nil
}

// payloadHeader is the parsed fixed-size front of a payload.
type payloadHeader struct {
	suite byte
	id    keyID
	salt  [saltLen]byte
	nonce [nonceLen]byte
}

// parsePayload checks the framing of b without any key. It accepts exactly
// what sealPayload produces: the magic, the one suite it knows, and room for
// at least a tag after the header.
func parsePayload(b []byte) (payloadHeader, error) {
	var h payloadHeader
	if len(b) < Overhead {
		return h, fmt.Errorf("%w: %d bytes is shorter than the %d-byte minimum", ErrNotProtected, len(b), Overhead)
	}
	if [magicLen]byte(b[:magicLen]) != magic {
		return h, fmt.Errorf("%w: no protect header", ErrNotProtected)
	}
	h.suite = b[magicLen]
	if h.suite != suiteAES256GCMHKDF {
		return h, fmt.Errorf("%w: unknown suite %#02x", ErrNotProtected, h.suite)
	}
	off := magicLen + suiteLen
	copy(h.id[:], b[off:])
	off += keyIDLen
	copy(h.salt[:], b[off:])
	off += saltLen
	copy(h.nonce[:], b[off:])
	return h, nil
}

// subkeyAEAD derives the per-message key. A fresh random salt per message
// makes every message use its own AES key, which lifts GCM's limit of 2^32
// random nonces per key: the ring can seal for its whole lifetime without
// counting messages.
func subkeyAEAD(master []byte, infoCounter string, salt []byte) (cipher.AEAD, error) {
	sub := hkdfSHA256(master, salt, infoCounter)
	block, err := aes.NewCipher(sub[:])
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// hkdfSHA256 is RFC 5869 HKDF-SHA256 with a 32-byte output (one Expand
// block), for a salt of at most 64 bytes and an info of at most 127:
//
//	PRK = HMAC-SHA256(salt, master)
//	OKM = HMAC-SHA256(PRK, info || 0x01)
//
// It computes exactly what crypto/hkdf.Key(sha256.New, master, salt, info,
// 32) does (TestHKDFMatchesStandardLibrary checks it on random inputs), on
// stack buffers: crypto/hkdf allocates 16 times per call and costs about
// 1.5 µs here, this about 0.6 µs, a large share of sealing a 4 KiB token
// cache.
//
// infoCounter is info with the counter byte 0x01 already appended, as
// hkdfInfo makes it.
func hkdfSHA256(master, salt []byte, infoCounter string) [32]byte {
	prk := hmacSHA256(salt, master, "")
	return hmacSHA256(prk[:], nil, infoCounter)
}

// hmacSHA256 is HMAC-SHA256(key, msg || msg2) for a key of at most one
// block and messages of at most 128 bytes together; hkdfSHA256 only calls
// it so (salt 16, master 32, info 37 bytes).
func hmacSHA256(key, msg []byte, msg2 string) [32]byte {
	const block = sha256.BlockSize
	var buf [block + 128]byte
	for i := range block {
		var k byte
		if i < len(key) {
			k = key[i]
		}
		buf[i] = k ^ 0x36
	}
	n := block + copy(buf[block:], msg)
	n += copy(buf[n:], msg2)
	inner := sha256.Sum256(buf[:n])
	for i := range block {
		var k byte
		if i < len(key) {
			k = key[i]
		}
		buf[i] = k ^ 0x5c
	}
	copy(buf[block:], inner[:])
	return sha256.Sum256(buf[:block+sha256.Size])
}

// hkdfInfo is the HKDF info of one data key, the label and the key id (so
// that subkeys of two keys never coincide even if their masters did),
// followed by HKDF-Expand's first counter byte.
func hkdfInfo(id keyID) string {
	return hkdfLabel + string(id[:]) + "\x01"
}

// payloadAAD builds the GCM associated data: the header (so no header bit
// can change), the purpose (so another application's blob does not open)
// and the caller's aad (the store key: user and namespace).
func payloadAAD(header []byte, purpose string, aad []byte) []byte {
	out := make([]byte, 0, len(header)+4+len(purpose)+4+len(aad))
	out = append(out, header...)
	out = binary.BigEndian.AppendUint32(out, uint32(len(purpose)))
	out = append(out, purpose...)
	out = binary.BigEndian.AppendUint32(out, uint32(len(aad)))
	return append(out, aad...)
}

// sealPayload encrypts plaintext under k.
func sealPayload(k *dataKey, purpose string, plaintext, aad []byte) ([]byte, error) {
	if uint64(len(plaintext)) > maxPlaintext {
		return nil, fmt.Errorf("protect: plaintext of %d bytes is too large", len(plaintext))
	}
	out := make([]byte, headerLen, headerLen+len(plaintext)+tagLen)
	copy(out, magic[:])
	out[magicLen] = suiteAES256GCMHKDF
	copy(out[magicLen+suiteLen:], k.id[:])
	saltNonce := out[magicLen+suiteLen+keyIDLen : headerLen]
	// crypto/rand.Read never fails on supported platforms (it crashes the
	// program instead), so there is no error to handle here.
	_, _ = rand.Read(saltNonce)
	salt := saltNonce[:saltLen]
	nonce := saltNonce[saltLen:]
	aead, err := subkeyAEAD(k.secret, k.info, salt)
	if err != nil {
		return nil, fmt.Errorf("protect: derive key: %w", err)
	}
	return aead.Seal(out, nonce, plaintext, payloadAAD(out[:headerLen], purpose, aad)), nil
}

// maxPlaintext keeps Seal's length arithmetic far from overflow; token
// caches are kilobytes.
const maxPlaintext = 1 << 40

// openPayload decrypts b, whose header h was parsed already, under k. Every
// authentication failure is the one ErrDecrypt, whatever went wrong.
func openPayload(k *dataKey, purpose string, h payloadHeader, b, aad []byte) ([]byte, error) {
	aead, err := subkeyAEAD(k.secret, k.info, h.salt[:])
	if err != nil {
		return nil, fmt.Errorf("protect: derive key: %w", err)
	}
	plain, err := aead.Open(nil, h.nonce[:], b[headerLen:], payloadAAD(b[:headerLen], purpose, aad))
	if err != nil {
		return nil, ErrDecrypt
	}
	if plain == nil {
		plain = []byte{}
	}
	return plain, nil
}
