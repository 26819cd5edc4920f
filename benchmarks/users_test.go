package benchmarks

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/entratest"
)

// userCounts are the populations of BenchmarkUsers, each signed in on top
// of the one before.
var userCounts = []int{1, 10, 100, 1000, 10000}

// BenchmarkUsers measures how the silent call scales with the number of
// users an instance serves: n users signed in, their silent calls in turn
// from concurrentPerCPU goroutines per CPU. floor is one confidential
// client with no external cache holding all n users. shared and
// per-request go through one Adapter on Redis with the L1 and encryption
// (the farm's set-up): shared through one client built once, per-request
// through a new client per call, served by the L1's blob hand-over. The
// "vs floor" column of these rows divides by the 1-user row of the same
// pattern: the target is at most 2x at 10,000 users. Failed calls and
// wrong tokens are counted as in BenchmarkSharedClient (a wrong token fails
// the run). Sign-ins are made before the timer, on clients of their own.
func BenchmarkUsers(b *testing.B) {
	be := openRedis(b)
	srv := entratest.NewServer()
	b.Cleanup(srv.Close)
	a := newAdapter(b, be.store, be.ring, msalcache.WithL1(msalcache.L1Options{}))

	floorClient := newClient(b, srv, nil)
	sharedClient := newClient(b, srv, a)
	var floorUsers, users []entratest.User
	for _, n := range userCounts {
		floorUsers = append(floorUsers, signInMany(b, srv, func() (confidential.Client, error) { return floorClient, nil }, n-len(floorUsers))...)
		users = append(users, signInMany(b, srv, func() (confidential.Client, error) { return clientOf(srv, a) }, n-len(users))...)
		b.Run(fmt.Sprintf("floor/%d", n), func(b *testing.B) {
			silentInTurn(b, srv, floorUsers, func() (confidential.Client, error) { return floorClient, nil }, srv.TokenRequests())
		})
		b.Run(fmt.Sprintf("shared/%d", n), func(b *testing.B) {
			silentInTurn(b, srv, users, func() (confidential.Client, error) { return sharedClient, nil }, srv.TokenRequests())
		})
		b.Run(fmt.Sprintf("per-request/%d", n), func(b *testing.B) {
			silentInTurn(b, srv, users, func() (confidential.Client, error) { return clientOf(srv, a) }, srv.TokenRequests())
		})
	}
}

// signInMany signs n new users in at srv, from a few goroutines, each
// through a client that clientFor returns, and returns them.
func signInMany(b *testing.B, srv *entratest.Server, clientFor func() (confidential.Client, error), n int) []entratest.User {
	out := make([]entratest.User, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				c, err := clientFor()
				if err != nil {
					errs <- err
					return
				}
				u := srv.AddUser("contoso", fmt.Sprintf("user%d@contoso.example", users.Add(1)), "pw")
				if _, err := c.AcquireTokenByAuthCode(context.Background(), srv.AuthCode("contoso", u.Username), "http://localhost", silentScopes); err != nil {
					errs <- err
					return
				}
				out[i] = u
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatal(err)
	}
	return out
}

// silentInTurn times silent calls for users in turn through the client
// clientFor returns, from concurrentPerCPU goroutines per CPU, counting
// failed calls and the token requests made since the count was base; a
// call that returns another user's token fails the run.
func silentInTurn(b *testing.B, srv *entratest.Server, users []entratest.User, clientFor func() (confidential.Client, error), base int) {
	ctx := context.Background()
	var next, failed, wrong atomic.Int64
	call := func() error {
		u := users[next.Add(1)%int64(len(users))]
		c, err := clientFor()
		if err != nil {
			return err
		}
		acct, err := c.Account(ctx, u.HomeAccountID)
		if err == nil {
			var ar confidential.AuthResult
			ar, err = c.AcquireTokenSilent(ctx, silentScopes, confidential.WithSilentAccount(acct))
			if err == nil {
				if claims, _ := entratest.ParseToken(ar.AccessToken); claims.ObjectID != u.ObjectID {
					wrong.Add(1)
				}
			}
		}
		if err != nil {
			failed.Add(1)
		}
		return nil
	}
	r := measureParallel(b, concurrentPerCPU, func() func() error { return call })
	if n := wrong.Load(); n > 0 {
		b.Fatalf("%d of %d silent calls returned another user's token", n, b.N)
	}
	r.counted, r.failed = b.N, int(failed.Load())
	r.tokenRequests = srv.TokenRequests() - base
	b.ReportMetric(float64(r.failed)/float64(b.N), "failed/op")
	b.ReportMetric(float64(r.tokenRequests), "token-requests")
	record(r)
}
