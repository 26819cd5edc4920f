// Package azkeyvault wraps the data keys of a protect.KeyRing with a key
// in Azure Key Vault or Azure Managed HSM, so that no key-encryption key
// sits in a server's environment or on its disk: the key never leaves the
// vault, and a server needs only an identity the vault trusts (a managed
// identity) with the keys/wrapKey and keys/unwrapKey permissions (the
// "Key Vault Crypto User" role).
//
//	cred, err := azidentity.NewManagedIdentityCredential(nil)
//	if err != nil {
//		return err
//	}
//	kek, err := azkeyvault.New("https://myvault.vault.azure.net", "msalcache-kek", cred, nil)
//	if err != nil {
//		return err
//	}
//	ring, err := protect.NewKeyRing(ctx, store, kek)
//
// It is a module of its own, so that programs that do not use it never
// build the Azure SDK.
//
// # How the associated data is bound
//
// The vault's wrapKey operation takes no associated data, and a
// protect.KeyWrapper must bind some. So each Wrap draws a random 256-bit
// key, has the vault wrap it (RSA-OAEP-256 with an RSA key; A256KW with a
// Managed HSM AES key), and seals the data key under it with AES-256-GCM,
// the associated data, the wrapper's id, the algorithm and the vault key's
// version bound as GCM's. What it returns holds the key version, the
// vault's wrapping and the GCM ciphertext; Unwrap asks the vault to unwrap
// with that very version, so a key rotated in the vault (a new version)
// still unwraps every data key wrapped before, as long as the old version
// stays enabled. New data keys are wrapped by the key's current version.
//
// # Calls to the vault
//
// A ring unwraps each data key once, when it starts or first meets it,
// and holds it in memory; it calls Wrap only when it mints a key (once a
// month by default, by one server of the farm) or moves keys to another
// KEK. A server makes one UnwrapKey call per key of the ring at start (plus
// one for the naming secret and one per revoked key), none while it serves
// tokens, and one more for each key another server mints; so a vault that
// becomes unreachable after start-up costs nothing until the next
// rotation. Stats counts them, as does the ring's KEKStats.
//
// # Checking against a real vault
//
// With a key created by
//
//	az keyvault key create --vault-name myvault --name msalcache-kek --kty RSA --size 3072
//
// and a signed-in Azure CLI (or any identity azidentity's default chain
// finds) holding the Key Vault Crypto User role on it, run from this
// folder:
//
//	AZKEYVAULT_TEST_URL=https://myvault.vault.azure.net AZKEYVAULT_TEST_KEY=msalcache-kek go test -run TestRealVault -v .
package azkeyvault

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync/atomic"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
	"github.com/msalcache/msalcache/protect"
)

// Kind is the KEK kind a ring records for keys this package wraps.
const Kind = "azure-keyvault"

// Options configure New. The zero value wraps with RSA-OAEP-256 under the
// key's current version.
type Options struct {
	// Algorithm is the vault's wrapping algorithm: RSA-OAEP-256 (the
	// default) for an RSA key, A256KW for a Managed HSM AES-256 key
	// ("oct-HSM"). Unwrap uses the algorithm recorded in what it unwraps.
	Algorithm azkeys.EncryptionAlgorithm
	// ID overrides the wrapper's id, by default "azkv:" + the vault's host
	// + "/" + the key's name, which must fit in 128 characters. Every
	// server of a farm must use the same id for the same key.
	ID string
	// ClientOptions are passed to azkeys.NewClient (retries, transport,
	// and, in tests, azkeys/fake's server transport).
	ClientOptions *azkeys.ClientOptions
}

// KeyWrapper is a protect.KeyWrapper over a vault key. It is safe for
// concurrent use.
type KeyWrapper struct {
	client *azkeys.Client
	name   string
	id     string
	alg    byte

	wraps, unwraps, failures atomic.Int64
}

// Stats counts a KeyWrapper's calls to the vault since New.
type Stats struct {
	// WrapKey and UnwrapKey count the vault operations called; Failures
	// counts those that failed.
	WrapKey, UnwrapKey, Failures int64
}

// Algorithm codes recorded in what Wrap returns.
const (
	algRSAOAEP256 = 1
	algA256KW     = 2
)

var algNames = map[byte]azkeys.EncryptionAlgorithm{
	algRSAOAEP256: azkeys.EncryptionAlgorithmRSAOAEP256,
	algA256KW:     azkeys.EncryptionAlgorithmA256KW,
}

// New returns a KeyWrapper over the key keyName in the vault (or Managed
// HSM) at vaultURL, authenticating with cred: a managed identity, a
// workload identity or any azcore.TokenCredential the caller builds (this
// package makes no credential of its own). New makes no call to the vault;
// the first is the ring's start, where a missing permission or key fails
// NewKeyRing with an error wrapping protect.ErrKEKUnavailable.
func New(vaultURL, keyName string, cred azcore.TokenCredential, opts *Options) (*KeyWrapper, error) {
	if cred == nil {
		return nil, errors.New("azkeyvault: nil credential (for example azidentity.NewManagedIdentityCredential)")
	}
	if keyName == "" || strings.ContainsAny(keyName, "/?#") {
		return nil, fmt.Errorf("azkeyvault: key name %q: give the key's name only, without a version", keyName)
	}
	u, err := url.Parse(vaultURL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("azkeyvault: vault URL %q must be https://NAME.vault.azure.net (or a Managed HSM's https://NAME.managedhsm.azure.net)", vaultURL)
	}
	if opts == nil {
		opts = &Options{}
	}
	w := &KeyWrapper{name: keyName, id: opts.ID}
	switch opts.Algorithm {
	case "", azkeys.EncryptionAlgorithmRSAOAEP256:
		w.alg = algRSAOAEP256
	case azkeys.EncryptionAlgorithmA256KW:
		w.alg = algA256KW
	default:
		return nil, fmt.Errorf("azkeyvault: algorithm %q: use RSA-OAEP-256 (an RSA key) or A256KW (a Managed HSM AES key)", opts.Algorithm)
	}
	if w.id == "" {
		w.id = "azkv:" + u.Host + "/" + keyName
	}
	if len(w.id) > 128 {
		return nil, fmt.Errorf("azkeyvault: id %q is longer than 128 characters; set Options.ID", w.id)
	}
	// Check the id as the ring will, to fail here rather than there.
	if _, err := protect.NewAESKeyWrapper(w.id, make([]byte, protect.KEKSize)); err != nil {
		return nil, fmt.Errorf("azkeyvault: %w", err)
	}
	if w.client, err = azkeys.NewClient(vaultURL, cred, opts.ClientOptions); err != nil {
		return nil, fmt.Errorf("azkeyvault: %w", err)
	}
	return w, nil
}

// ID names the key: "azkv:" + the vault's host + "/" + the key's name,
// unless Options.ID set another. It holds no version, so a key rotated in
// the vault stays the same KEK to the ring.
func (w *KeyWrapper) ID() string { return w.id }

// Kind is Kind, for protect.KindedKeyWrapper.
func (w *KeyWrapper) Kind() string { return Kind }

// Stats reports the calls made to the vault so far.
func (w *KeyWrapper) Stats() Stats {
	return Stats{WrapKey: w.wraps.Load(), UnwrapKey: w.unwraps.Load(), Failures: w.failures.Load()}
}

// Wrapping format:
//
//	01 | alg (1) | len(version) (1) | version | len(vault) (2, big endian) | vault's wrapping | nonce (12) | AES-256-GCM ciphertext and tag
const (
	formatV1  = 1
	nonceSize = 12
	gcmTag    = 16
)

// Wrap has the vault wrap a fresh random key, and seals plaintext under
// it with AES-256-GCM bound to aad.
func (w *KeyWrapper) Wrap(ctx context.Context, plaintext, aad []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	cek := make([]byte, 32)
	_, _ = rand.Read(cek) // never fails
	w.wraps.Add(1)
	alg := algNames[w.alg]
	resp, err := w.client.WrapKey(ctx, w.name, "", azkeys.KeyOperationParameters{Algorithm: &alg, Value: cek}, nil)
	if err != nil {
		w.failures.Add(1)
		return nil, w.vaultError("wrapKey", err)
	}
	if resp.KID == nil || len(resp.Result) == 0 {
		w.failures.Add(1)
		return nil, fmt.Errorf("azkeyvault: KEK %q: wrapKey returned no key id or no result: %w", w.id, protect.ErrKEKUnavailable)
	}
	version := resp.KID.Version()
	if version == "" || len(version) > 255 || len(resp.Result) > 0xffff {
		w.failures.Add(1)
		return nil, fmt.Errorf("azkeyvault: KEK %q: wrapKey returned key id %q of no usable version: %w", w.id, *resp.KID, protect.ErrKEKUnavailable)
	}
	out := []byte{formatV1, w.alg, byte(len(version))}
	out = append(out, version...)
	out = binary.BigEndian.AppendUint16(out, uint16(len(resp.Result)))
	out = append(out, resp.Result...)
	nonce := make([]byte, nonceSize)
	_, _ = rand.Read(nonce)
	out = append(out, nonce...)
	gcm, err := newGCM(cek)
	if err != nil {
		return nil, err
	}
	return gcm.Seal(out, nonce, plaintext, w.gcmAAD(w.alg, version, aad)), nil
}

// Unwrap has the vault unwrap the random key with the version and
// algorithm recorded, and opens the data key with it.
func (w *KeyWrapper) Unwrap(ctx context.Context, wrapped, aad []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	refused := fmt.Errorf("azkeyvault: KEK %q cannot unwrap this key (another KEK, or the record was altered)", w.id)
	p, ok := parse(wrapped)
	if !ok {
		return nil, refused
	}
	w.unwraps.Add(1)
	alg := algNames[p.alg]
	resp, err := w.client.UnwrapKey(ctx, w.name, p.version, azkeys.KeyOperationParameters{Algorithm: &alg, Value: p.vault}, nil)
	if err != nil {
		w.failures.Add(1)
		var re *azcore.ResponseError
		if errors.As(err, &re) && re.StatusCode == 400 {
			return nil, refused // the vault's verdict: not its wrapping
		}
		return nil, w.vaultError("unwrapKey", err)
	}
	gcm, err := newGCM(resp.Result)
	if err != nil {
		return nil, refused
	}
	plain, err := gcm.Open(nil, p.nonce, p.sealed, w.gcmAAD(p.alg, p.version, aad))
	if err != nil {
		return nil, refused
	}
	return plain, nil
}

type parsed struct {
	alg     byte
	version string
	vault   []byte
	nonce   []byte
	sealed  []byte
}

func parse(b []byte) (parsed, bool) {
	var p parsed
	if len(b) < 3 || b[0] != formatV1 || algNames[b[1]] == "" {
		return p, false
	}
	p.alg = b[1]
	n := int(b[2])
	b = b[3:]
	if n == 0 || len(b) < n+2 {
		return p, false
	}
	p.version, b = string(b[:n]), b[n:]
	m := int(binary.BigEndian.Uint16(b))
	b = b[2:]
	if m == 0 || len(b) < m+nonceSize+gcmTag {
		return p, false
	}
	p.vault, b = b[:m], b[m:]
	p.nonce, p.sealed = b[:nonceSize], b[nonceSize:]
	return p, true
}

// gcmAAD binds the caller's aad, the wrapper's id, the algorithm and the
// key version, so that no part of the wrapping can be swapped.
func (w *KeyWrapper) gcmAAD(alg byte, version string, aad []byte) []byte {
	const domain = "msalcache/azkeyvault v1\x00"
	out := make([]byte, 0, len(domain)+len(w.id)+3+len(version)+len(aad))
	out = append(out, domain...)
	out = append(out, w.id...)
	out = append(out, 0, alg, byte(len(version)))
	out = append(out, version...)
	return append(out, aad...)
}

func newGCM(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// vaultError reports a failed vault call as protect.ErrKEKUnavailable: the
// vault, the network or the identity failed, which says nothing about
// the data. It names the status and error code, never a value.
func (w *KeyWrapper) vaultError(op string, err error) error {
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		hint := ""
		switch re.StatusCode {
		case 401, 403:
			hint = " (give this server's identity the Key Vault Crypto User role, or the keys/wrapKey and keys/unwrapKey permissions, on the key)"
		case 404:
			hint = " (the key, or the key version that wrapped this data key, is missing or disabled in the vault)"
		}
		return fmt.Errorf("azkeyvault: KEK %q: %s of key %q: HTTP %d %s%s: %w", w.id, op, w.name, re.StatusCode, re.ErrorCode, hint, protect.ErrKEKUnavailable)
	}
	return fmt.Errorf("azkeyvault: KEK %q: %s of key %q: %w: %w", w.id, op, w.name, protect.ErrKEKUnavailable, err)
}
