package boltstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/msalcache/msalcache"
	bolt "go.etcd.io/bbolt"
)

// fakeClock is a settable clock for WithClock.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}
func (c *fakeClock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

// raw reports whether key has a record in the file, expired or not.
func (s *Store) raw(t *testing.T, key string) bool {
	t.Helper()
	var found bool
	err := s.db.View(func(tx *bolt.Tx) error {
		found = tx.Bucket(s.bucket).Get([]byte(key)) != nil
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// noSweep is a sweep interval no test lasts: the tests that call sweep
// themselves, or hold bbolt's write lock, must not meet the sweeper.
const noSweep = 24 * time.Hour

func TestSweeperDeletesExpiredRecords(t *testing.T) {
	ctx := context.Background()
	clock := newFakeClock()
	s, err := Open(filepath.Join(t.TempDir(), "cache.db"), WithClock(clock.now), WithSweepInterval(5*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	saves := []struct {
		key string
		ttl time.Duration
	}{{"expires", time.Minute}, {"lives", time.Hour}, {"forever", 0}}
	for _, sv := range saves {
		if _, err := s.Save(ctx, sv.key, []byte("v"), driver.NoVersion, sv.ttl); err != nil {
			t.Fatal(err)
		}
	}
	clock.advance(2 * time.Minute)
	if _, _, err := s.Load(ctx, "expires"); !errors.Is(err, driver.ErrNotFound) {
		t.Fatalf("Load of an expired key returned %v, want ErrNotFound", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for s.raw(t, "expires") {
		if time.Now().After(deadline) {
			t.Fatal("the sweeper left an expired record in the file for 5s with a 5ms interval")
		}
		time.Sleep(5 * time.Millisecond)
	}
	for _, key := range []string{"lives", "forever"} {
		if !s.raw(t, key) {
			t.Fatalf("the sweeper deleted %q, which has not expired", key)
		}
	}
}

// TestSweepManyChunks deletes more expired records than one sweep
// transaction handles, interleaved with live ones.
func TestSweepManyChunks(t *testing.T) {
	ctx := context.Background()
	clock := newFakeClock()
	s, err := Open(filepath.Join(t.TempDir(), "cache.db"), WithClock(clock.now), WithSweepInterval(noSweep))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const n = 2*sweepChunk + 10
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 8 {
				ttl := time.Minute
				if i%3 == 0 {
					ttl = 0
				}
				if _, err := s.Save(ctx, fmt.Sprintf("key-%05d", i), nil, driver.NoVersion, ttl); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	clock.advance(time.Hour)
	if err := s.sweep(); err != nil {
		t.Fatal(err)
	}
	var left int
	_ = s.db.View(func(tx *bolt.Tx) error {
		left = tx.Bucket(s.bucket).Stats().KeyN
		return nil
	})
	if want := (n + 2) / 3; left != want {
		t.Fatalf("after a sweep %d records are left, want the %d without a TTL", left, want)
	}
}

// TestCanceledWhileQueued holds bbolt's write lock so that a Save waits in
// the queue, cancels it, and checks that it returned at once and was never
// written.
func TestCanceledWhileQueued(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "cache.db"), WithSweepInterval(noSweep))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	tx, err := s.db.Begin(true) // the writer now blocks in db.Update
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := s.Save(ctx, "k", []byte("v"), driver.NoVersion, 0)
		errc <- err
	}()
	// Cancel only once the writer has taken the Save and waits in commit
	// for the write lock: canceled earlier, the Save could return before
	// queueing and the test would prove nothing.
	waitForStack(t, "boltstore.(*Store).commit(")
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("a Save canceled while queued returned %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a Save canceled while waiting for the writer did not return")
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	// The writer now runs the abandoned operation, which must do nothing.
	if _, err := s.Save(context.Background(), "other", []byte("v"), driver.NoVersion, 0); err != nil {
		t.Fatal(err)
	}
	if s.raw(t, "k") {
		t.Fatal("a Save that reported context.Canceled was written anyway")
	}
}

// waitForStack polls until some goroutine's stack holds frame, failing
// after a deadline far beyond what a loaded machine needs.
func waitForStack(t *testing.T, frame string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	buf := make([]byte, 1<<20)
	for !strings.Contains(string(buf[:runtime.Stack(buf, true)]), frame) {
		if time.Now().After(deadline) {
			t.Fatalf("no goroutine reached %s within 10s", frame)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestBatchIsolatesFailure: an operation that bbolt rejects must fail on
// its own, and the operations committed with it must still succeed and
// report versions that match what was stored.
func TestBatchIsolatesFailure(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "cache.db"), WithSweepInterval(noSweep))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	mk := func(key string, value []byte) *writeOp {
		return &writeOp{ctx: ctx, key: []byte(key), record: newRecord(value, 0), save: true, done: make(chan struct{})}
	}
	// A key past bbolt's own limit (which Save would have refused) makes
	// Put fail inside the transaction.
	tooBig := mk(strings.Repeat("k", bolt.MaxKeySize+1), nil)
	ops := []*writeOp{mk("a", []byte("1")), tooBig, mk("b", []byte("2"))}
	s.commit(slices.Clone(ops)) // commit reorders its argument
	if tooBig.err == nil {
		t.Fatal("the operation bbolt rejected reported success")
	}
	for _, op := range []*writeOp{ops[0], ops[2]} {
		<-op.done
		if op.err != nil {
			t.Fatalf("an operation batched with a failing one failed: %v", op.err)
		}
		b, v, err := s.Load(ctx, string(op.key))
		if err != nil || v != op.version || !bytes.Equal(b, op.record[headerLen:]) {
			t.Fatalf("Load(%q) = %q, %d, %v; the batch reported version %d", op.key, b, v, err, op.version)
		}
	}
}

func TestRecordRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		value   []byte
		expires int64
		version driver.Version
	}{{nil, 0, 1}, {[]byte("x"), 1, 2}, {bytes.Repeat([]byte{0xff}, 300), 1 << 62, 1<<64 - 1}} {
		b := newRecord(tc.value, tc.expires)
		setVersion(b, tc.version)
		r, err := decodeRecord(b)
		if err != nil {
			t.Fatal(err)
		}
		if r.version != tc.version || r.expires != tc.expires || !bytes.Equal(r.value, tc.value) {
			t.Fatalf("decode(encode(%d, %d, %q)) = %+v", tc.version, tc.expires, tc.value, r)
		}
	}
}

// FuzzDecodeRecord feeds arbitrary bytes to the decoder, as a damaged file
// would: it must never panic, must reject what it cannot read with
// ErrCorrupt, and whatever it accepts must encode back to the same bytes.
func FuzzDecodeRecord(f *testing.F) {
	valid := newRecord([]byte(`{"AccessToken":{}}`), 1700000000000000000)
	setVersion(valid, 42)
	f.Add(valid)
	f.Add([]byte{})
	f.Add([]byte{formatV1})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeRecord(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("decodeRecord failed with %v, which does not wrap ErrCorrupt", err)
			}
			return
		}
		if r.version == driver.NoVersion || r.expires < 0 {
			t.Fatalf("decodeRecord accepted version %d, expiry %d", r.version, r.expires)
		}
		again := newRecord(r.value, r.expires)
		setVersion(again, r.version)
		if !bytes.Equal(again, b) {
			t.Fatalf("record %x re-encodes as %x", b, again)
		}
	})
}
