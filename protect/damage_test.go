package protect_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/msalcache/msalcache/boltstore"
	"github.com/msalcache/msalcache/driver"
	"github.com/msalcache/msalcache/internal/ringadmin"
	"github.com/msalcache/msalcache/memstore"
	"github.com/msalcache/msalcache/protect"
)

// plantRing replaces the ring's record with raw bytes through the store's
// own API, as a damaged disk, a partial write or a stray writer would.
func plantRing(t testing.TB, store driver.Store, raw []byte) {
	t.Helper()
	_, v, err := store.Load(ctx, protect.DefaultRingKey)
	if err != nil && !errors.Is(err, driver.ErrCorrupt) {
		t.Fatal(err)
	}
	if _, err := store.Save(ctx, protect.DefaultRingKey, raw, v, 0); err != nil {
		t.Fatal(err)
	}
}

// flipped returns b with byte i XORed with 1: one flipped bit.
func flipped(b []byte, i int) []byte {
	out := bytes.Clone(b)
	out[i] ^= 1
	return out
}

// formatDigit is the position of the record's format number, the one byte
// whose flip reads as a newer format rather than as damage.
func formatDigit(t testing.TB, rec []byte) int {
	t.Helper()
	i := bytes.Index(rec, []byte(`"v":`))
	if i < 0 {
		t.Fatalf("no format field in %s", rec)
	}
	return i + len(`"v":`)
}

// framedStore keeps every value behind a one-byte header over a real
// memstore, as boltstore and redisstore frame theirs. Raw bytes planted
// beneath the header make Load report driver.ErrCorrupt, as a store
// does for a record it cannot decode, and Save with NoVersion replaces
// such a record, as the Store contract requires.
type framedStore struct{ *memstore.Store }

const frameByte = 0xA5

func (s framedStore) Load(ctx context.Context, key string) ([]byte, driver.Version, error) {
	b, v, err := s.Store.Load(ctx, key)
	if err != nil {
		return nil, driver.NoVersion, err
	}
	if len(b) == 0 || b[0] != frameByte {
		return nil, driver.NoVersion, fmt.Errorf("framedstore: bad header: %w", driver.ErrCorrupt)
	}
	return b[1:], v, nil
}

func (s framedStore) Save(ctx context.Context, key string, value []byte, ifVersion driver.Version, ttl time.Duration) (driver.Version, error) {
	if ifVersion == driver.NoVersion {
		if raw, v, err := s.Store.Load(ctx, key); err == nil && (len(raw) == 0 || raw[0] != frameByte) {
			ifVersion = v // a corrupt record counts as absent
		}
	}
	return s.Store.Save(ctx, key, append([]byte{frameByte}, value...), ifVersion, ttl)
}

// corruptRaw overwrites key beneath the framing, so the store reports it
// as corrupt.
func (s framedStore) corruptRaw(t testing.TB, key string) {
	t.Helper()
	_, v, err := s.Store.Load(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Store.Save(ctx, key, []byte("garbage from a damaged disk"), v, 0); err != nil {
		t.Fatal(err)
	}
}

// logSink collects a ring's log records as JSON lines.
type logSink struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *logSink) logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(s, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func (s *logSink) records(t testing.TB) []map[string]any {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	for _, line := range bytes.Split(bytes.TrimSpace(s.buf.Bytes()), []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(line, &m); err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

func (s *logSink) text() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// One flipped bit anywhere in the record (here: every bit 0 of every byte
// but the format number's) is refused by a newcomer, which writes nothing,
// and is rewritten by a running server at its next refresh from its
// verified copy, byte for byte as it was; a newcomer then starts and opens
// what the running server sealed under each key.
func TestFlippedByteHealedByRunningRing(t *testing.T) {
	clock := newFakeClock()
	store := newMem(t)
	a := newRing(t, store, clock.Now)
	first := mustProtect(t, a, "first", "k")
	if err := a.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	second := mustProtect(t, a, "second", "k")
	good := ringRecord(t, store)
	skip := formatDigit(t, good)

	failures := 0
	for i := range good {
		if i == skip {
			continue
		}
		bad := flipped(good, i)
		plantRing(t, store, bad)
		_, err := tryRing(t, store, clock.Now)
		if !errors.Is(err, protect.ErrInvalidRing) {
			t.Errorf("flip at %d (%q): newcomer err = %v, want a rejected record", i, good[i], err)
		}
		if got := ringRecord(t, store); !bytes.Equal(got, bad) {
			t.Fatalf("flip at %d: the newcomer wrote over the damaged record", i)
		}
		if err := a.Refresh(ctx); err != nil {
			t.Errorf("flip at %d (%q): running ring: %v, want it to rewrite the record", i, good[i], err)
			plantRing(t, store, good)
			if failures++; failures > 5 {
				t.FailNow()
			}
			continue
		}
		if got := ringRecord(t, store); !bytes.Equal(got, good) {
			t.Fatalf("flip at %d: rewritten record differs:\n%s\nwant\n%s", i, got, good)
		}
	}
	c := newRing(t, store, clock.Now)
	mustOpen(t, c, first, "k", "first")
	mustOpen(t, c, second, "k", "second")
}

// A newcomer facing a damaged record with no running server to rewrite
// it fails with ErrRingDamaged and says what happens next and how to
// reset, naming both keys, and mints nothing. Following the reset advice
// then works.
func TestNewcomerRefusesDamagedRecord(t *testing.T) {
	for name, newStore := range map[string]func(t *testing.T) driver.Store{
		"memstore": func(t *testing.T) driver.Store { return newMem(t) },
		"boltstore": func(t *testing.T) driver.Store {
			s, err := boltstore.Open(filepath.Join(t.TempDir(), "ring.db"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		},
	} {
		t.Run(name, func(t *testing.T) {
			store := newStore(t)
			a := newRing(t, store, nil)
			blob := mustProtect(t, a, "x", "k")
			a.Close() // no running server is left
			good := ringRecord(t, store)
			wrapped := bytes.Index(good, []byte(`"wrapped":"`)) + len(`"wrapped":"`) + 10
			activation := bytes.Index(good, []byte(`"activation":`)) + len(`"activation":`) + 3
			for what, bad := range map[string][]byte{
				"wrapped key":   flipped(good, wrapped),
				"activation":    flipped(good, activation),
				"first byte":    flipped(good, 0),
				"truncated":     good[:len(good)/2],
				"not JSON":      []byte("\x00\x01garbage"),
				"empty":         {},
				"extra garbage": append(bytes.Clone(good), 'x'),
			} {
				plantRing(t, store, bad)
				_, err := tryRing(t, store, nil)
				checkDamagedError(t, what, err)
				if got := ringRecord(t, store); !bytes.Equal(got, bad) {
					t.Fatalf("%s: the newcomer wrote over the damaged record", what)
				}
			}
			// The advice: delete the record and its marker. A new ring
			// starts; the old ring's blobs are a miss (ErrKeyNotFound).
			if err := store.Delete(ctx, protect.DefaultRingKey); err != nil {
				t.Fatal(err)
			}
			if err := store.Delete(ctx, protect.DefaultRingKey+".created"); err != nil {
				t.Fatal(err)
			}
			c := newRing(t, store, nil)
			if _, err := c.Unprotect(ctx, blob, []byte("k")); !errors.Is(err, protect.ErrKeyNotFound) {
				t.Fatalf("after a reset: err = %v, want ErrKeyNotFound", err)
			}
		})
	}
}

func checkDamagedError(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, protect.ErrRingDamaged) || !errors.Is(err, protect.ErrInvalidRing) {
		t.Fatalf("%s: err = %v, want ErrRingDamaged (and ErrInvalidRing)", what, err)
	}
	msg := err.Error()
	for _, want := range []string{
		protect.DefaultRingKey + `"`,            // the record, by key
		protect.DefaultRingKey + `.created"`,    // its marker
		"running server",                        // who heals it
		"refresh interval",                      // and when
		"unreadable",                            // what a reset costs
		"Entra ID",                              // and why that is survivable
		protect.ErrRingDamaged.Error(),          // the sentinel's words lead
		protect.DefaultRefreshInterval.String(), // the figure, not a reference
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("%s: error lacks %q:\n%s", what, want, msg)
		}
	}
}

// A store that reports the record corrupt (driver.ErrCorrupt) is damage
// too: a newcomer refuses it, and a running ring rewrites it with
// NoVersion, even from a read-only reload (Keys), and logs it at ERROR.
func TestStoreCorruptRecordHealed(t *testing.T) {
	mem := newMem(t)
	store := framedStore{mem}
	logs := &logSink{}
	a := newRing(t, store, nil, protect.WithLogger(logs.logger()))
	blob := mustProtect(t, a, "x", "k")
	good := ringRecord(t, store)
	store.corruptRaw(t, protect.DefaultRingKey)
	if _, _, err := store.Load(ctx, protect.DefaultRingKey); !errors.Is(err, driver.ErrCorrupt) {
		t.Fatalf("planted record: %v, want ErrCorrupt", err)
	}
	_, err := tryRing(t, store, nil)
	checkDamagedError(t, "store says corrupt", err)

	if _, err := ringadmin.Keys(ctx, a); err != nil {
		t.Fatalf("Keys on a corrupt record: %v", err)
	}
	if got := ringRecord(t, store); !bytes.Equal(got, good) {
		t.Fatalf("rewritten record:\n%s\nwant\n%s", got, good)
	}
	mustOpen(t, newRing(t, store, nil), blob, "k", "x")

	var heal map[string]any
	for _, rec := range logs.records(t) {
		if rec["level"] == "ERROR" {
			heal = rec
		}
	}
	if heal == nil || heal["ring"] != protect.DefaultRingKey || !strings.Contains(fmt.Sprint(heal["damage"]), "corrupt") {
		t.Fatalf("no ERROR record naming the ring and the damage in:\n%s", logs.text())
	}
	d := parseDoc(t, good)
	for _, k := range d.Keys {
		if enc, _ := json.Marshal(k.Wrapped); strings.Contains(logs.text(), strings.Trim(string(enc), `"`)) {
			t.Fatal("the log holds wrapped key material")
		}
	}
}

// The failure of issue 8: with a damaged record and no fix, a running
// server keeps its copy, cannot write, and 31 days later (its key
// expired) has nothing to encrypt with, anywhere. Healing at the first
// refresh makes rotation write again: the successor is written ahead, the
// switch happens, and a newcomer shares every key.
func TestDamagedRecordDoesNotEndInErrNoKey(t *testing.T) {
	clock := newFakeClock()
	store := newMem(t)
	a := newRing(t, store, clock.Now)
	old := mustProtect(t, a, "old", "k")
	good := ringRecord(t, store)
	plantRing(t, store, flipped(good, bytes.Index(good, []byte(`"wrapped":"`))+20))

	var refreshErr error
	end := clock.Now().Add(31 * 24 * time.Hour)
	for clock.Now().Before(end) {
		clock.Add(protect.DefaultRefreshInterval)
		if err := a.Refresh(ctx); err != nil && refreshErr == nil {
			refreshErr = err
		}
	}
	blob, err := a.Protect(ctx, []byte("new"), []byte("k"))
	if err != nil {
		t.Fatalf("Protect 31 days after the damage: %v (first refresh error: %v)", err, refreshErr)
	}
	if refreshErr != nil {
		t.Fatalf("a refresh failed: %v", refreshErr)
	}
	if keyOf(blob) == keyOf(old) {
		t.Fatal("sealed under the expired key")
	}
	c := newRing(t, store, clock.Now)
	mustOpen(t, c, old, "k", "old")
	mustOpen(t, c, blob, "k", "new")
	if got := len(keyIDs(t, c)); got != 2 {
		t.Fatalf("%d keys after one rotation, want 2", got)
	}
}

// The same without any refresh in between: the Protect that finds no key
// heals the record and mints in one write.
func TestDamagedRecordHealedByProtectAfterExpiry(t *testing.T) {
	clock := newFakeClock()
	store := newMem(t)
	a := newRing(t, store, clock.Now)
	old := mustProtect(t, a, "old", "k")
	plantRing(t, store, []byte(`{"v":1,"keys":[`))
	clock.Add(31 * 24 * time.Hour)
	blob, err := a.Protect(ctx, []byte("new"), []byte("k"))
	if err != nil {
		t.Fatalf("Protect after expiry on a damaged record: %v", err)
	}
	c := newRing(t, store, clock.Now)
	mustOpen(t, c, old, "k", "old")
	mustOpen(t, c, blob, "k", "new")
}

// A record of a newer format is not damage: an older server that rewrote
// it would downgrade the ring of every newer one. It is left alone, and
// the running ring keeps its keys.
func TestNewerFormatRecordLeftAlone(t *testing.T) {
	store := newMem(t)
	a := newRing(t, store, nil)
	blob := mustProtect(t, a, "x", "k")
	good := ringRecord(t, store)
	newer := bytes.Clone(good)
	newer[formatDigit(t, good)] = '9'
	plantRing(t, store, newer)

	if err := a.Refresh(ctx); !errors.Is(err, protect.ErrInvalidRing) || errors.Is(err, protect.ErrRingDamaged) {
		t.Fatalf("running ring: err = %v, want ErrInvalidRing, not damage", err)
	}
	if _, err := tryRing(t, store, nil); !errors.Is(err, protect.ErrInvalidRing) || errors.Is(err, protect.ErrRingDamaged) ||
		!strings.Contains(err.Error(), "newer") {
		t.Fatalf("newcomer: err = %v, want ErrInvalidRing saying newer", err)
	}
	if got := ringRecord(t, store); !bytes.Equal(got, newer) {
		t.Fatal("a newer record was overwritten")
	}
	mustOpen(t, a, blob, "k", "x")
}

// A record that shares nothing with this ring and authenticates under none
// of its KEKs (a store flushed, then a server with another KEK under the
// same id started a ring there) is not this ring damaged: the running ring
// reports it and does not overwrite it, or two misconfigured servers would
// overwrite each other at every refresh.
func TestForeignRingNotOverwritten(t *testing.T) {
	store := newMem(t)
	a := newRing(t, store, nil)
	blob := mustProtect(t, a, "x", "k")
	store.Delete(ctx, protect.DefaultRingKey)
	store.Delete(ctx, protect.DefaultRingKey+".created")
	other, err := protect.NewKeyRing(ctx, store, testKEK(t, "kek-1", 99), protect.WithAutoRefresh(false), protect.WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	foreign := ringRecord(t, store)
	if err := a.Refresh(ctx); !errors.Is(err, protect.ErrInvalidRing) {
		t.Fatalf("running ring: err = %v, want ErrInvalidRing", err)
	}
	if got := ringRecord(t, store); !bytes.Equal(got, foreign) {
		t.Fatal("the running ring overwrote a foreign ring")
	}
	mustOpen(t, a, blob, "k", "x")
}

// A marker the store reports corrupt counts as present for a newcomer (it
// fails closed rather than start a second ring) and is rewritten by a
// running ring at its next refresh.
func TestCorruptMarker(t *testing.T) {
	mem := newMem(t)
	store := framedStore{mem}
	a := newRing(t, store, nil)
	marker := protect.DefaultRingKey + ".created"
	store.corruptRaw(t, marker)
	if err := store.Delete(ctx, protect.DefaultRingKey); err != nil {
		t.Fatal(err)
	}
	if _, err := tryRing(t, store, nil); !errors.Is(err, protect.ErrRingMissing) {
		t.Fatalf("newcomer with the record gone and a corrupt marker: %v, want ErrRingMissing", err)
	}
	if err := a.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, err := store.Load(ctx, marker); err != nil {
		t.Fatalf("marker after the refresh: %v", err)
	}
	newRing(t, store, nil)
}
