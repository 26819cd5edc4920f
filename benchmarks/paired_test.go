package benchmarks

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/entratest"
)

// BenchmarkL1Paired is the L1's target measured without drift: each op is
// one silent call of a client with no external cache (floor) and one of a
// client on an Adapter with the L1 (encrypted), in turn, each timed on its
// own. Both rows of a store come from the same loop, so whatever slows the
// machine down slows both; the L1 row's "vs floor" is its time over the
// floor row's. Every L1 call must be an L1 hit.
func BenchmarkL1Paired(b *testing.B) {
	for _, bk := range backends {
		b.Run(bk.name, func(b *testing.B) {
			be := bk.open(b)
			b.Run("pair", func(b *testing.B) { pairedBench(b, be) })
		})
	}
}

func pairedBench(b *testing.B, be *backend) {
	ctx := context.Background()
	type side struct {
		srv    *entratest.Server
		client confidential.Client
		acct   confidential.Account
		h      histogram
		spent  time.Duration
	}
	a := newAdapter(b, be.store, be.ring, msalcache.WithL1(msalcache.L1Options{}))
	sides := [2]*side{{}, {}}
	for i, acc := range []*msalcache.Adapter{nil, a} {
		s := sides[i]
		s.srv = entratest.NewServer()
		defer s.srv.Close()
		if acc == nil {
			s.client = newClient(b, s.srv, nil)
		} else {
			s.client = newClient(b, s.srv, acc)
		}
		u := signIn(b, s.srv, s.client)
		var err error
		if s.acct, err = s.client.Account(ctx, u.HomeAccountID); err != nil {
			b.Fatal(err)
		}
	}
	before := a.Stats()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		for _, s := range sides {
			start := time.Now()
			if _, err := s.client.AcquireTokenSilent(ctx, silentScopes, confidential.WithSilentAccount(s.acct)); err != nil {
				b.Fatal(err)
			}
			d := time.Since(start)
			s.h.record(d)
			s.spent += d
		}
	}
	b.StopTimer()
	if hits := a.Stats().L1Hits - before.L1Hits; hits != uint64(b.N) {
		b.Fatalf("%d L1 hits in %d silent calls, want one each", hits, b.N)
	}
	var none runtime.MemStats
	for i, kase := range []string{"floor", "l1-encrypted"} {
		s := sides[i]
		r := figures(b.Name()[:len(b.Name())-len("pair")]+kase, b.N, s.spent, b.N, &none, &none, &s.h)
		r.bytesPerOp, r.allocsPerOp = 0, 0 // counted for both together by go test's line
		r.tokenRequests = s.srv.TokenRequests()
		record(r)
	}
	b.ReportMetric(float64(sides[1].spent)/float64(sides[0].spent), "l1/floor")
}
