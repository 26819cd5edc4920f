package benchmarks

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"

	"github.com/msalcache/msalcache/entratest"
)

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
