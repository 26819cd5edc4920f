package protect

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"runtime"
	"strings"
)

// KeyWrapper encrypts the ring's data keys at rest: the key-encryption key
// (KEK). The ring's record in the store holds only wrapped keys, so whoever
// reads the store, or a backup of it, learns nothing without the KEK.
//
// NewAESKeyWrapper wraps with a local AES-256 key from a file or an
// environment variable; the interface is small so that a cloud KMS (which
// encrypts with associated data and names its key) fits it too.
//
// Implementations must be safe for concurrent use. Unwrap must fail when
// wrapped or aad differ in any bit from what Wrap was given.
type KeyWrapper interface {
	// ID names the KEK. It is stored beside every key the KEK wraps, so
	// that a ring knows which of its wrappers opens which key. 1 to 128
	// printable ASCII characters; it is not secret.
	ID() string
	// Wrap encrypts plaintext and binds it to aad.
	Wrap(ctx context.Context, plaintext, aad []byte) ([]byte, error)
	// Unwrap decrypts what Wrap returned for the same aad.
	Unwrap(ctx context.Context, wrapped, aad []byte) ([]byte, error)
}

// KEKSize is the length of the key NewAESKeyWrapper takes: AES-256.
const KEKSize = 32

type aesWrapper struct {
	id   string
	aead cipher.AEAD
}

// NewAESKeyWrapper returns a KeyWrapper that seals keys with AES-256-GCM
// under key (KEKSize bytes), each wrap with a fresh random nonce. id names
// this KEK in the ring's record; give a new KEK a new id so that rings can
// hold the old one (WithKEKs) while keys move over.
func NewAESKeyWrapper(id string, key []byte) (KeyWrapper, error) {
	if err := validKEKID(id); err != nil {
		return nil, err
	}
	if len(key) != KEKSize {
		return nil, fmt.Errorf("protect: KEK %q must be %d bytes, got %d (generate one with: openssl rand -base64 32)", id, KEKSize, len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("protect: KEK %q: %w", id, err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("protect: KEK %q: %w", id, err)
	}
	return &aesWrapper{id: id, aead: aead}, nil
}

func (w *aesWrapper) ID() string { return w.id }

func (w *aesWrapper) Wrap(ctx context.Context, plaintext, aad []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := make([]byte, w.aead.NonceSize(), w.aead.NonceSize()+len(plaintext)+w.aead.Overhead())
	_, _ = rand.Read(out) // never fails; see sealPayload
	return w.aead.Seal(out, out, plaintext, w.wrapAAD(aad)), nil
}

func (w *aesWrapper) Unwrap(ctx context.Context, wrapped, aad []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ns := w.aead.NonceSize()
	if len(wrapped) < ns+w.aead.Overhead() {
		return nil, fmt.Errorf("protect: KEK %q: wrapped key too short", w.id)
	}
	plain, err := w.aead.Open(nil, wrapped[:ns], wrapped[ns:], w.wrapAAD(aad))
	if err != nil {
		return nil, fmt.Errorf("protect: KEK %q cannot unwrap this key (another KEK, or the record was altered)", w.id)
	}
	return plain, nil
}

// wrapAAD adds the KEK's id, so that a key wrapped under one id never opens
// under a wrapper that claims another id, even with the same key bytes.
func (w *aesWrapper) wrapAAD(aad []byte) []byte {
	out := make([]byte, 0, len("msalcache/protect aes-kek v1\x00")+len(w.id)+1+len(aad))
	out = append(out, "msalcache/protect aes-kek v1\x00"...)
	out = append(out, w.id...)
	out = append(out, 0)
	return append(out, aad...)
}

func validKEKID(id string) error {
	if len(id) == 0 || len(id) > 128 {
		return fmt.Errorf("protect: KEK id must be 1 to 128 characters, got %d", len(id))
	}
	for i := 0; i < len(id); i++ {
		if id[i] <= 0x20 || id[i] >= 0x7f {
			return fmt.Errorf("protect: KEK id %q has a byte that is not printable ASCII at %d", id, i)
		}
	}
	return nil
}

// LoadKeyFile reads a KEK from path. The file holds 32 raw bytes, or their
// base64 (openssl rand -base64 32 > key) or hex (openssl rand -hex 32) text;
// surrounding whitespace is ignored.
//
// The file must not be readable or writable by group or others: a key that
// every local account can read protects nothing, so LoadKeyFile refuses
// such a file and says to chmod 600 it. (The mode check is skipped on
// Windows, whose permissions are ACLs.)
func LoadKeyFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("protect: open key file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("protect: key file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("protect: key file %s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 && runtime.GOOS != "windows" {
		return nil, fmt.Errorf("protect: key file %s has mode %04o, so other accounts can read or change it; run: chmod 600 %s", path, perm, path)
	}
	// A key file is tiny; refuse to read a large file given by mistake.
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return nil, fmt.Errorf("protect: key file %s: %w", path, err)
	}
	if len(data) > maxKeyFile {
		return nil, fmt.Errorf("protect: key file %s is larger than %d bytes: not a key file", path, maxKeyFile)
	}
	key, err := parseKeyText(data, true)
	if err != nil {
		return nil, fmt.Errorf("protect: key file %s: %w", path, err)
	}
	return key, nil
}

const maxKeyFile = 4096

// KeyFromEnv reads a KEK from the environment variable name, as base64 or
// hex text (export MSALCACHE_KEK=$(openssl rand -base64 32)). Errors name
// the variable, never its value.
func KeyFromEnv(name string) ([]byte, error) {
	v, ok := os.LookupEnv(name)
	if !ok || strings.TrimSpace(v) == "" {
		return nil, fmt.Errorf("protect: environment variable %s is not set (set it to the output of: openssl rand -base64 32)", name)
	}
	key, err := parseKeyText([]byte(v), false)
	if err != nil {
		return nil, fmt.Errorf("protect: environment variable %s: %w", name, err)
	}
	return key, nil
}

// parseKeyText decodes a 32-byte key written as raw bytes (files only),
// base64 (standard or URL alphabet, padded or not) or hex.
func parseKeyText(data []byte, allowRaw bool) ([]byte, error) {
	if allowRaw && len(data) == KEKSize && !allPrintable(data) {
		return bytes.Clone(data), nil
	}
	text := strings.TrimSpace(string(data))
	if len(text) == 2*KEKSize {
		if key, err := hex.DecodeString(text); err == nil {
			return key, nil
		}
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if key, err := enc.DecodeString(text); err == nil && len(key) == KEKSize {
			return key, nil
		}
	}
	if allowRaw && len(data) == KEKSize {
		// 32 printable characters: a passphrase, not 256 random bits.
		return nil, errors.New("holds 32 printable characters, which looks like a passphrase; use 32 random bytes: openssl rand -base64 32")
	}
	return nil, fmt.Errorf("must hold a %d-byte key as base64 (openssl rand -base64 32) or hex (openssl rand -hex 32)", KEKSize)
}

func allPrintable(b []byte) bool {
	for _, c := range b {
		if c < 0x20 || c >= 0x7f {
			return false
		}
	}
	return true
}

// GenerateKeyFile writes a new random KEK to path as base64 text, with mode
// 0600, for LoadKeyFile to read. It refuses to overwrite an existing file
// (the error wraps fs.ErrExist), because replacing a KEK makes every key it
// wrapped unreadable.
func GenerateKeyFile(path string) error {
	key := make([]byte, KEKSize)
	_, _ = rand.Read(key) // never fails; see sealPayload
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("protect: key file %s already exists; not overwriting a KEK: %w", path, err)
		}
		return fmt.Errorf("protect: create key file: %w", err)
	}
	// The umask can only clear bits, but an inherited ACL default or an
	// odd umask should not leave the file wider than 0600.
	if runtime.GOOS != "windows" {
		if err := f.Chmod(0o600); err != nil {
			f.Close()
			os.Remove(path)
			return fmt.Errorf("protect: key file: %w", err)
		}
	}
	text := base64.StdEncoding.EncodeToString(key) + "\n"
	if _, err := f.WriteString(text); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("protect: write key file: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("protect: write key file: %w", err)
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return fmt.Errorf("protect: write key file: %w", err)
	}
	return nil
}
