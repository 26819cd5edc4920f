package pgstore_test

import (
	"context"
	"encoding/binary"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/conformance"
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

// capabilities are the suite's Capabilities for stores over srv.
func capabilities(srv *testserver.PostgresServer, p *rawPlanter) conformance.Capabilities {
	return conformance.Capabilities{
		MaxValueSize:   suiteMax,
		PutRaw:         p.put,
		CorruptRecords: corruptRecords,
		OpenHandle: func(t *testing.T, s driver.Store) driver.Store {
			pool := newPool(t, srv)
			h, err := pgstore.New(context.Background(), pool, pgstore.WithTable(s.(*pgstore.Store).Table()), pgstore.WithMaxValueSize(suiteMax))
			if err != nil {
				t.Fatal(err)
			}
			return p.add(h, pool)
		},
		BreakWatch: func(t *testing.T, s driver.Store) {
			cutListener(t, srv, s.(*pgstore.Store))
		},
	}
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
	pool := newPool(t, srv)
	p := &rawPlanter{}
	conformance.RunStoreTests(t, func(t *testing.T) driver.Store {
		s, err := pgstore.New(context.Background(), pool, pgstore.WithTable(freshTable()), pgstore.WithMaxValueSize(suiteMax))
		if err != nil {
			t.Fatal(err)
		}
		return p.add(s, pool)
	}, capabilities(srv, p))
}

// TestMSAL runs the MSAL end-to-end suite, L1 two-instance scenarios
// included, once on plaintext and once encrypted by a key ring kept in the
// same database (a table of its own).
func TestMSAL(t *testing.T) {
	srv := server(t)
	pool := newPool(t, srv)
	p := &rawPlanter{}
	newStore := func(t *testing.T) driver.Store {
		s, err := pgstore.New(context.Background(), pool, pgstore.WithTable(freshTable()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return p.add(s, pool)
	}
	t.Run("Plain", func(t *testing.T) {
		conformance.RunMSALTests(t, conformance.MSALSetup{NewStore: newStore, PutRaw: p.put, Damaged: corruptRecords})
	})
	t.Run("Encrypted", func(t *testing.T) {
		conformance.RunMSALTests(t, conformance.MSALSetup{NewStore: newStore, NewProtector: testring.New,
			PutRaw: p.put, Damaged: corruptRecords, SkipLoadTests: true})
	})
}
