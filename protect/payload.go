package protect

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"sync"
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

	keyIDOff = magicLen + suiteLen
	saltOff  = keyIDOff + keyIDLen
	nonceOff = saltOff + saltLen

	// overhead is how many bytes Protect adds to a plaintext: a 49-byte
	// header and a 16-byte GCM tag.
	overhead = headerLen + tagLen

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
// same master key. It is part of the format: another label derives other
// subkeys, and no payload sealed before would open.
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
	if len(b) < overhead {
		return h, fmt.Errorf("%w: %d bytes is shorter than the %d-byte minimum", errNotProtected, len(b), overhead)
	}
	if [magicLen]byte(b[:magicLen]) != magic {
		return h, fmt.Errorf("%w: no protect header", errNotProtected)
	}
	h.suite = b[magicLen]
	if h.suite != suiteAES256GCMHKDF {
		return h, fmt.Errorf("%w: unknown suite %#02x", errNotProtected, h.suite)
	}
	copy(h.id[:], b[keyIDOff:])
	copy(h.salt[:], b[saltOff:])
	copy(h.nonce[:], b[nonceOff:])
	return h, nil
}

// subkeyAEAD derives the per-message key. A fresh random salt per message
// makes every message use its own AES key, which lifts GCM's limit of 2^32
// random nonces per key: the ring can seal for its whole lifetime without
// counting messages.
func subkeyAEAD(master []byte, info string, salt []byte) (cipher.AEAD, error) {
	sub, err := deriveSubkey(master, info, salt)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(sub)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// deriveSubkey is HKDF-SHA256(master, salt, info), 32 bytes, computed by
// crypto/hkdf with SHA-256 states from a pool: it runs on every seal and
// open, and the five states one call asks for (one to learn the output
// size, an inner and an outer for each of Extract's and Expand's HMACs)
// were five of its sixteen allocations.
func deriveSubkey(master []byte, info string, salt []byte) ([]byte, error) {
	l := hashLenders.Get().(*hashLender)
	l.next = 0
	sub, err := hkdf.Key(l.lend, master, salt, info, masterKeyLen)
	hashLenders.Put(l)
	return sub, err
}

// hashLender is the hash constructor deriveSubkey hands crypto/hkdf: each
// call returns a reset SHA-256 state no other call of the same derivation
// holds, as HMAC requires. States are lent again only after hkdf.Key has
// returned, when nothing refers to them any more.
type hashLender struct {
	hashes []hash.Hash
	next   int
	lend   func() hash.Hash // l.take, bound once: a method value made per call would allocate
}

func (l *hashLender) take() hash.Hash {
	if l.next == len(l.hashes) {
		l.hashes = append(l.hashes, sha256.New())
	}
	h := l.hashes[l.next]
	l.next++
	h.Reset()
	return h
}

var hashLenders = sync.Pool{New: func() any {
	l := &hashLender{}
	l.lend = l.take
	return l
}}

// hkdfInfo is the HKDF info of one data key: the label and the key id, so
// that subkeys of two keys never coincide even if their masters did.
func hkdfInfo(id keyID) string {
	return hkdfLabel + string(id[:])
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
	copy(out[keyIDOff:], k.id[:])
	// crypto/rand.Read never fails on supported platforms (it crashes the
	// program instead), so there is no error to handle here.
	_, _ = rand.Read(out[saltOff:headerLen])
	aead, err := subkeyAEAD(k.secret, k.info, out[saltOff:nonceOff])
	if err != nil {
		return nil, fmt.Errorf("protect: derive key: %w", err)
	}
	return aead.Seal(out, out[nonceOff:headerLen], plaintext, payloadAAD(out[:headerLen], purpose, aad)), nil
}

// maxPlaintext keeps Seal's length arithmetic far from overflow; token
// caches are kilobytes.
const maxPlaintext = 1 << 40

// openPayload decrypts b, which parsePayload accepted, under k. Every
// authentication failure is the one errDecrypt, whatever went wrong. Salt
// and nonce are read from b rather than from the parsed header, whose
// copies would escape to the heap.
func openPayload(k *dataKey, purpose string, b, aad []byte) ([]byte, error) {
	aead, err := subkeyAEAD(k.secret, k.info, b[saltOff:nonceOff])
	if err != nil {
		return nil, fmt.Errorf("protect: derive key: %w", err)
	}
	plain, err := aead.Open(nil, b[nonceOff:headerLen], b[headerLen:], payloadAAD(b[:headerLen], purpose, aad))
	if err != nil {
		return nil, errDecrypt
	}
	if plain == nil {
		plain = []byte{}
	}
	return plain, nil
}
