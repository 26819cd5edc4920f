package protect

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"log/slog"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/msalcache/msalcache/internal/ringadmin"
	"github.com/msalcache/msalcache/memstore"
)

// fuzzRing is one ring shared by the fuzz targets: a fixed clock, no
// background refresh, a store of its own.
var fuzzRing = sync.OnceValues(func() (*KeyRing, error) {
	kek, err := NewAESKeyWrapper("fuzz", bytes.Repeat([]byte{3}, KEKSize))
	if err != nil {
		return nil, err
	}
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	return NewKeyRing(context.Background(), memstore.New(), kek,
		WithClock(func() time.Time { return now }), WithAutoRefresh(false),
		WithLogger(slog.New(slog.DiscardHandler)))
})

// FuzzParsePayload feeds arbitrary bytes to the payload parser and to
// Unprotect: neither may panic, the parser accepts only the exact framing,
// and nothing but a genuine seal opens.
func FuzzParsePayload(f *testing.F) {
	r, err := fuzzRing()
	if err != nil {
		f.Fatal(err)
	}
	valid, err := r.Protect(context.Background(), []byte("seed plaintext"), []byte("aad"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(valid)
	f.Add(valid[:Overhead])
	f.Add([]byte{})
	f.Add([]byte(`{"AccessToken":{}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := parsePayload(b)
		if err == nil {
			if len(b) < Overhead || !bytes.Equal(b[:4], magic[:]) || b[4] != suiteAES256GCMHKDF ||
				!bytes.Equal(h.id[:], b[5:21]) || !bytes.Equal(h.salt[:], b[21:37]) || !bytes.Equal(h.nonce[:], b[37:49]) {
				t.Fatalf("parsePayload accepted % x as %+v", b, h)
			}
		} else if !errors.Is(err, ErrNotProtected) {
			t.Fatalf("parse error %v does not wrap ErrNotProtected", err)
		}
		plain, err := r.Unprotect(context.Background(), b, []byte("aad"))
		if err == nil && (!bytes.Equal(b, valid) || string(plain) != "seed plaintext") {
			t.Fatalf("Unprotect opened a forged payload % x", b)
		}
		if err != nil && plain != nil {
			t.Fatal("Unprotect returned data with an error")
		}
		r.NeedsReprotect(b)
	})
}

// goldenKEK wrapped testdata/ring-v1.json.
func goldenKEK(t testing.TB) KeyWrapper {
	kek, err := NewAESKeyWrapper("golden", bytes.Repeat([]byte{4}, KEKSize))
	if err != nil {
		t.Fatal(err)
	}
	return kek
}

// FuzzDecodeRing feeds arbitrary bytes to the ring record decoder and to
// its verification: no panic, what decodes re-encodes canonically, and
// nothing verifies but entries the KEK wrote (those of the golden records,
// format 1 and format 2).
func FuzzDecodeRing(f *testing.F) {
	golden, err := os.ReadFile("testdata/ring-v1.json")
	if err != nil {
		f.Fatal(err)
	}
	goldenRec, err := decodeRecord(golden)
	if err != nil {
		f.Fatal(err)
	}
	golden2, err := os.ReadFile("testdata/ring-v2.json")
	if err != nil {
		f.Fatal(err)
	}
	goldenRec2, err := decodeRecord(golden2)
	if err != nil || goldenRec2.naming == nil {
		f.Fatalf("golden format 2 record: %v", err)
	}
	verifier := &KeyRing{cfg: defaultConfig(), keks: map[string]KeyWrapper{"golden": goldenKEK(f)}}
	f.Add(golden)
	f.Add(golden2)
	f.Add([]byte(`{"v":2,"keys":[]}`))
	f.Add([]byte(`{"v":1,"keys":[],"naming":{"kek":"golden","wrapped":"AAAA"}}`))
	f.Add([]byte(`{"v":2,"keys":[],"naming":{"kek":"golden","wrapped":"AAAA"}}`))
	f.Add([]byte(`{"v":3,"keys":[],"naming":{"kek":"golden","wrapped":"AAAA"},"new":true}`))
	f.Add([]byte(`{"v":1,"keys":[]}`))
	f.Add([]byte(`{"v":1,"keys":[{"id":"00000000000000000000000000000000","suite":1,"created":1893456000,"activation":1893456000,"expiration":1896048000,"kek":"golden","wrapped":"AAAA"}],"revoked":[{"id":"00000000000000000000000000000000","at":1893456000,"kek":"golden","tag":"AAAA"}]}`))
	f.Add([]byte(`{"v":2}`))
	f.Add([]byte(`{"v":3,"keys":[{"id":"00000000000000000000000000000000","suite":1,"created":1893456000,"activation":1893456000,"expiration":1896048000,"kek":"cert-sha256:00","kind":"certificate","wrapped":"AAAA"}],"naming":{"kek":"golden","wrapped":"AAAA"}}`))
	f.Add([]byte(`{"v":2,"keys":[{"id":"00000000000000000000000000000000","suite":1,"created":1893456000,"activation":1893456000,"expiration":1896048000,"kek":"golden","kind":"aes","wrapped":"AAAA"}],"naming":{"kek":"golden","wrapped":"AAAA"}}`))
	f.Add([]byte(`{"v":4,"keys":[],"naming":{"kek":"golden","wrapped":"AAAA"},"new":true}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		rec, err := decodeRecord(b)
		if err != nil {
			return
		}
		enc, err := encodeRecord(rec)
		if err != nil {
			t.Fatalf("encode of a decoded record: %v", err)
		}
		rec2, err := decodeRecord(enc)
		if err != nil {
			t.Fatalf("re-decode of %s: %v", enc, err)
		}
		enc2, _ := encodeRecord(rec2)
		if !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding is not canonical:\n%s\n%s", enc, enc2)
		}
		// Entries that fail are reported in the second result; whatever
		// lands in w must be genuine, damaged record or not.
		w, _, _, err := verifier.verify(context.Background(), rec, nil)
		if err != nil {
			return
		}
		for _, k := range w.keys {
			if !slices.ContainsFunc(goldenRec.keys, func(e keyEntry) bool { return e.equal(&k.keyEntry) }) {
				t.Fatalf("key %s verified but the KEK never wrapped it: %s", k.id, b)
			}
		}
		for _, rv := range w.revoked {
			if !slices.ContainsFunc(goldenRec.revoked, func(e revEntry) bool { return e.equal(rv) }) {
				t.Fatalf("revocation of %s verified but the KEK never signed it: %s", rv.id, b)
			}
		}
		if w.naming != nil && !w.naming.namingEntry.equal(goldenRec2.naming) {
			t.Fatalf("naming secret verified but the KEK never wrapped it: %s", b)
		}
		if (rec.naming == nil) != bytes.Contains(enc, []byte(`"v":1,`)) {
			t.Fatalf("format number does not follow the naming secret: %s", enc)
		}
	})
}

// openGolden stores the golden ring record in path, with its marker, in a
// fresh memstore, and opens it as a server would on 2030-01-02, when the
// golden keys are valid. It returns what the golden tests check against.
func openGolden(t *testing.T, path string) (ring, payload []byte, store *memstore.Store, r *KeyRing, now time.Time) {
	t.Helper()
	ring, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	payload, err = os.ReadFile("testdata/payload-v1.bin")
	if err != nil {
		t.Fatal(err)
	}
	store = memstore.New()
	ctx := context.Background()
	if _, err := store.Save(ctx, DefaultRingKey, ring, 0, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Save(ctx, DefaultRingKey+markerSuffix, markerValue, 0, 0); err != nil {
		t.Fatal(err)
	}
	now = time.Date(2030, 1, 2, 0, 0, 0, 0, time.UTC)
	r, err = NewKeyRing(ctx, store, goldenKEK(t), WithClock(func() time.Time { return now }),
		WithAutoRefresh(false), WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return ring, payload, store, r, now
}

// The format is a promise to data at rest: a ring and a payload written by
// the first release open with today's code.
func TestGoldenFormat(t *testing.T) {
	ring, payload, store, r, now := openGolden(t, "testdata/ring-v1.json")
	ctx := context.Background()
	plain, err := r.Unprotect(ctx, payload, []byte("msalcache:default:golden"))
	if err != nil || string(plain) != "golden plaintext" {
		t.Fatalf("golden payload: %q, %v", plain, err)
	}
	if r.NeedsReprotect(payload) {
		t.Fatal("golden payload is under the default key")
	}
	// Opening a format 1 record adds a naming secret and the keys' KEK
	// kinds (format 3), and nothing else: every entry is kept byte for
	// byte, no key is rewrapped.
	after, _, _ := store.Load(ctx, DefaultRingKey)
	upgraded, err := decodeRecord(after)
	if err != nil || upgraded.naming == nil || !bytes.Contains(after, []byte(`{"v":3,`)) {
		t.Fatalf("format 1 record after opening (%v):\n%s", err, after)
	}
	old, _ := decodeRecord(ring)
	old.naming = upgraded.naming
	for i := range old.keys {
		old.keys[i].kekKind = KindAES
	}
	if enc, _ := encodeRecord(old); !bytes.Equal(enc, after) {
		t.Fatalf("opening a format 1 ring changed more than the naming secret:\n%s\n%s", after, enc)
	}
	ks, _ := ringadmin.Keys(ctx, r)
	if len(ks) != 2 || ks[0].Status != KeyRevoked || ks[1].Status != KeyActive || !ks[1].Default {
		t.Fatalf("golden keys: %+v", ks)
	}
	r2, err := NewKeyRing(ctx, store, goldenKEK(t), WithClock(func() time.Time { return now }),
		WithAutoRefresh(false), WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	if again, _, _ := store.Load(ctx, DefaultRingKey); !bytes.Equal(again, after) {
		t.Fatalf("loading an up-to-date ring rewrote it:\n%s", again)
	}
	if r.HashKey("p") != r2.HashKey("p") {
		t.Fatal("two rings on the upgraded record hash differently")
	}
}

// A format 2 record names partitions the same way forever: the secret
// and the HMAC construction are a promise to data at rest, like the
// payload format.
func TestGoldenFormatV2(t *testing.T) {
	ring, payload, store, r, _ := openGolden(t, "testdata/ring-v2.json")
	ctx := context.Background()
	if plain, err := r.Unprotect(ctx, payload, []byte("msalcache:default:golden")); err != nil || string(plain) != "golden plaintext" {
		t.Fatalf("golden payload: %q, %v", plain, err)
	}
	if after, _, _ := store.Load(ctx, DefaultRingKey); !bytes.Equal(after, ring) {
		t.Fatalf("loading an up-to-date ring rewrote it:\n%s", after)
	}
	h := r.HashKey("golden partition")
	if got, want := hex.EncodeToString(h[:]), "88ddbcb163ace35397fcc3ad2c4fdd75ab440a11db57f23b86d7c7b43f06fa86"; got != want {
		t.Fatalf("HashKey of the golden record = %s, want %s", got, want)
	}
}

// A format 3 record (format 2 and each key's KEK kind) is a promise to
// data at rest too: it opens, is not rewritten by loading, names
// partitions as its format 2 original did, and shows each key's kind.
func TestGoldenFormatV3(t *testing.T) {
	ring, payload, store, r, _ := openGolden(t, "testdata/ring-v3.json")
	ctx := context.Background()
	if plain, err := r.Unprotect(ctx, payload, []byte("msalcache:default:golden")); err != nil || string(plain) != "golden plaintext" {
		t.Fatalf("golden payload: %q, %v", plain, err)
	}
	if after, _, _ := store.Load(ctx, DefaultRingKey); !bytes.Equal(after, ring) {
		t.Fatalf("loading an up-to-date ring rewrote it:\n%s", after)
	}
	h := r.HashKey("golden partition")
	if got, want := hex.EncodeToString(h[:]), "88ddbcb163ace35397fcc3ad2c4fdd75ab440a11db57f23b86d7c7b43f06fa86"; got != want {
		t.Fatalf("HashKey of the golden record = %s, want %s", got, want)
	}
	ks, err := ringadmin.Keys(ctx, r)
	if err != nil || len(ks) != 2 || ks[1].KEKKind != KindAES {
		t.Fatalf("golden keys: %+v, %v", ks, err)
	}
	// A format 2 record gets its kinds at the ring's next write, with no
	// key rewrapped: the same bytes as the format 3 golden.
	_, _, store2, r2, _ := openGolden(t, "testdata/ring-v2.json")
	if err := r2.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	after, _, _ := store2.Load(ctx, DefaultRingKey)
	for _, k := range mustDecode(t, ring).keys {
		if !slices.ContainsFunc(mustDecode(t, after).keys, func(e keyEntry) bool { return e.equal(&k) }) {
			t.Fatalf("key %s of the format 2 record was not kept byte for byte, with its kind, in:\n%s", k.id, after)
		}
	}
}

func mustDecode(t *testing.T, b []byte) *record {
	t.Helper()
	rec, err := decodeRecord(b)
	if err != nil {
		t.Fatal(err)
	}
	return rec
}
