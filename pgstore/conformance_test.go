package pgstore_test

import (
	"context"
	"encoding/binary"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/msalcache/msalcache/conformance"
	"github.com/msalcache/msalcache/driver"
	"github.com/msalcache/msalcache/internal/testring"
	"github.com/msalcache/msalcache/internal/testserver"
	"github.com/msalcache/msalcache/pgstore"
)

// suiteMax keeps the LargeValue subtest quick under -race.
const suiteMax = 4 << 20

// rawPlanter plants rows past a store's checks, for the CorruptRecord
// subtests: it knows the pool every store of the test was opened on.
type rawPlanter struct {
	mu    sync.Mutex
	pools map[*pgstore.Store]*pgxpool.Pool
}

func (p *rawPlanter) add(s *pgstore.Store, pool *pgxpool.Pool) *pgstore.Store {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.pools == nil {
		p.pools = map[*pgstore.Store]*pgxpool.Pool{}
	}
	p.pools[s] = pool
	return s
}

// put reads raw as the layout of the byte stores (an 8-byte version, then
// the value): what decodes is a row a writer of version v made, anything
// else a row holding version 0, which no writer hands out.
func (p *rawPlanter) put(ctx context.Context, s driver.Store, key string, raw []byte) error {
	ps := s.(*pgstore.Store)
	p.mu.Lock()
	pool := p.pools[ps]
	p.mu.Unlock()
	var v int64
	value := raw
	if len(raw) >= 8 {
		v, value = int64(binary.BigEndian.Uint64(raw)), raw[8:]
	}
	return putRaw(ctx, pool, ps.Table(), key, value, v)
}

// corruptRecords are the rows the store reports as corrupt, in the byte
// layout put reads.
var corruptRecords = map[string][]byte{
	"version0":       make([]byte, 8),
	"version0-value": append(make([]byte, 8), "token cache"...),
}

// harness makes the conformance suites' stores, each over a fresh table
// of srv reached through pool, with maxValue as their limit (zero: the
// store's default, and no limit declared). It plants rows past the
// stores' checks (a conformance.RawPutter), opens second handles on a
// table through pools of their own (a conformance.HandleOpener), and cuts
// a store's listening connection (a conformance.WatchBreaker).
type harness struct {
	srv      *testserver.PostgresServer
	pool     *pgxpool.Pool
	maxValue int
	p        rawPlanter
}

// newHarness is a conformance.HarnessMaker over srv and pool.
func newHarness(srv *testserver.PostgresServer, pool *pgxpool.Pool, maxValue int) conformance.HarnessMaker {
	return func(context.Context, *testing.T) (conformance.Harness, error) {
		return &harness{srv: srv, pool: pool, maxValue: maxValue}, nil
	}
}

func (h *harness) open(ctx context.Context, pool *pgxpool.Pool, table string) (driver.Store, error) {
	opts := []pgstore.Option{pgstore.WithTable(table)}
	if h.maxValue > 0 {
		opts = append(opts, pgstore.WithMaxValueSize(h.maxValue))
	}
	s, err := pgstore.New(ctx, pool, opts...)
	if err != nil {
		return nil, err
	}
	return h.p.add(s, pool), nil
}

// MakeStore implements conformance.Harness.
func (h *harness) MakeStore(ctx context.Context, _ *testing.T) (driver.Store, error) {
	return h.open(ctx, h.pool, freshTable())
}

// Close implements conformance.Harness: the pools are the tests'.
func (*harness) Close() {}

// Limits implements conformance.Limiter.
func (h *harness) Limits() conformance.Limits { return conformance.Limits{MaxValueSize: h.maxValue} }

// PutRaw implements conformance.RawPutter.
func (h *harness) PutRaw(ctx context.Context, s driver.Store, key string, raw []byte) error {
	return h.p.put(ctx, s, key, raw)
}

// CorruptRecords implements conformance.RawPutter.
func (*harness) CorruptRecords() map[string][]byte { return corruptRecords }

// OpenHandle implements conformance.HandleOpener.
func (h *harness) OpenHandle(t *testing.T, s driver.Store) (driver.Store, error) {
	return h.open(context.Background(), newPool(t, h.srv), s.(*pgstore.Store).Table())
}

// BreakWatch implements conformance.WatchBreaker.
func (h *harness) BreakWatch(t *testing.T, s driver.Store) {
	cutListener(t, h.srv, s.(*pgstore.Store))
}

// cutListener terminates the backend of s's listening connection, as a
// failover or a dropped connection would.
func cutListener(t *testing.T, srv *testserver.PostgresServer, s *pgstore.Store) {
	t.Helper()
	pid := pgstore.ListenerPID(s)
	if pid == 0 {
		t.Fatal("the store has no listening connection to cut")
	}
	pool := newPool(t, srv)
	if _, err := pool.Exec(context.Background(), "SELECT pg_terminate_backend($1)", int32(pid)); err != nil {
		t.Fatal(err)
	}
}

func TestConformance(t *testing.T) {
	srv := server(t)
	conformance.RunStoreTests(t, newHarness(srv, newPool(t, srv), suiteMax))
}

// TestMSAL runs the MSAL end-to-end suite, L1 two-instance scenarios
// included, once on plaintext and once encrypted by a key ring kept in the
// same database (a table of its own). The suite's load subtests measure
// the Adapter, not the store: like every other store's, they are skipped
// here, and run once, over memstore, in the root package.
func TestMSAL(t *testing.T) {
	srv := server(t)
	newHarness := newHarness(srv, newPool(t, srv), 0)
	t.Run("Plain", func(t *testing.T) {
		conformance.RunMSALTests(t, newHarness, conformance.MSALSetup{SkipLoadTests: true})
	})
	t.Run("Encrypted", func(t *testing.T) {
		conformance.RunMSALTests(t, newHarness, conformance.MSALSetup{NewProtector: testring.New, SkipLoadTests: true})
	})
}
