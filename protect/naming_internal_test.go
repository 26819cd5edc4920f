package protect

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"log/slog"
	"testing"

	"github.com/msalcache/msalcache/memstore"
)

func internalRing(t *testing.T, store *memstore.Store) *KeyRing {
	t.Helper()
	kek, err := NewAESKeyWrapper("kek-1", bytes.Repeat([]byte{7}, KEKSize))
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewKeyRing(context.Background(), store, kek, WithAutoRefresh(false), WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// HashKey is exactly HMAC-SHA256(secret, partition key), so another
// implementation (an operator tool, another language) can reproduce it.
func TestHashKeyIsHMACSHA256(t *testing.T) {
	r := internalRing(t, memstore.New())
	secret := r.state.Load().naming.h.secret
	if len(secret) != namingSecretLen {
		t.Fatalf("secret of %d bytes", len(secret))
	}
	for _, key := range []string{"", "a", "uid.utid", string(bytes.Repeat([]byte{'x'}, 10000))} {
		m := hmac.New(sha256.New, secret)
		m.Write([]byte(key))
		if got := r.HashKey(key); !bytes.Equal(got[:], m.Sum(nil)) {
			t.Fatalf("HashKey(%d bytes) is not HMAC-SHA256 under the secret", len(key))
		}
	}
}

// The store holds the secret only wrapped: not raw, not in any of the
// encodings a JSON record or an operator tool would use.
func TestNamingSecretNeverInClear(t *testing.T) {
	store := memstore.New()
	r := internalRing(t, store)
	if err := r.Rotate(context.Background()); err != nil {
		t.Fatal(err)
	}
	secret := r.state.Load().naming.h.secret
	rec, _, err := store.Load(context.Background(), DefaultRingKey)
	if err != nil {
		t.Fatal(err)
	}
	for name, form := range map[string][]byte{
		"raw":            secret,
		"base64":         []byte(base64.StdEncoding.EncodeToString(secret)),
		"base64 raw url": []byte(base64.RawURLEncoding.EncodeToString(secret)),
		"hex":            []byte(hex.EncodeToString(secret)),
		"half, base64":   []byte(base64.StdEncoding.EncodeToString(secret[:15])),
	} {
		if bytes.Contains(rec, form) {
			t.Errorf("the stored record holds the naming secret (%s)", name)
		}
	}
	if !bytes.Contains(rec, []byte(`"naming":{"kek":"kek-1","wrapped":"`)) {
		t.Fatalf("no wrapped naming secret in %s", rec)
	}
}
