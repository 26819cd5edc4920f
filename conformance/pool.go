package conformance

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/cache"
	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/entratest"
)

// pool builds a msalcache.ClientPool over the instance's adapter, its
// clients made with MSAL-Go's default options (instance discovery on). It
// skips the subtest when the suite runs a stand-in adapter (msal_test.go):
// a pool needs the real one.
func (f *fixture) pool(a suiteAdapter, opts ...msalcache.PoolOption) *msalcache.ClientPool {
	f.t.Helper()
	real, ok := a.(*msalcache.Adapter)
	if !ok {
		f.t.Skip("a ClientPool needs a *msalcache.Adapter")
	}
	p, err := msalcache.NewClientPool(real, func(c cache.ExportReplace) (confidential.Client, error) {
		cred, err := confidential.NewCredFromSecret(suiteSecret)
		if err != nil {
			return confidential.Client{}, err
		}
		return confidential.New(f.srv.Authority(suiteTenant), suiteClientID, cred,
			confidential.WithCache(c), confidential.WithHTTPClient(f.srv.Client()))
	}, opts...)
	if err != nil {
		f.t.Fatalf("msalcache.NewClientPool: %v", err)
	}
	return p
}

// testPool runs the suite's user and app scenarios through a ClientPool on
// each of two instances: app tokens and users' tokens shared between them,
// then many goroutines and users at once, with refreshes and app token
// calls among the silent calls: no call fails, none returns another
// user's or app's token, and no token request is made beyond the
// refreshes asked for; then a sign-out through one pool that no client of
// either serves afterwards.
func testPool(f *fixture) {
	a1, a2 := f.adapter(nil), f.adapter(nil)
	p1, p2 := f.pool(a1, msalcache.WithPoolSize(8)), f.pool(a2, msalcache.WithPoolSize(8))
	ctx := f.ctx

	// App tokens: one request for the farm.
	var app string
	for i, p := range []*msalcache.ClientPool{p1, p2, p1} {
		ar, err := p.AcquireTokenByCredential(ctx, []string{appScope})
		if err != nil {
			f.t.Fatalf("app token through pool %d: %v", i%2+1, err)
		}
		if c, _ := entratest.ParseToken(ar.AccessToken); !c.App || c.ClientID != suiteClientID {
			f.t.Fatalf("app token through a pool is not the app's: %+v", c)
		}
		if app == "" {
			app = ar.AccessToken
		} else if ar.AccessToken != app {
			f.t.Fatal("the second instance's pool got another app token than the one stored")
		}
	}
	f.requests(1)

	// Users: signed in through one pool, served by the other.
	users := append([]entratest.User(nil), f.users...)
	for i := range 24 {
		users = append(users, f.srv.AddUser(suiteTenant, fmt.Sprintf("pool%d@contoso.example", i), ""))
	}
	for _, u := range users {
		ar, err := p1.AcquireTokenByAuthCode(ctx, f.srv.AuthCode(suiteTenant, u.Username), suiteRedirect, []string{userScope})
		if err != nil {
			f.t.Fatalf("sign-in of %s through a pool: %v", u.Username, err)
		}
		f.mustBeFor(ar.AccessToken, u)
	}
	before := f.srv.TokenRequests()
	for _, u := range users {
		ar, err := p2.AcquireTokenSilent(ctx, u.HomeAccountID, []string{userScope})
		if err != nil {
			f.t.Fatalf("instance 2's pool, silent call for %s: %v", u.Username, err)
		}
		f.mustBeFor(ar.AccessToken, u)
	}
	if n := f.srv.TokenRequests() - before; n != 0 {
		f.t.Fatalf("%d token requests for users another instance signed in", n)
	}

	// Load: many goroutines, many users, both instances.
	const goroutines, perG = 32, 40
	var failures, wrong, refreshes atomic.Int64
	var firstErr atomic.Value
	before = f.srv.TokenRequests()
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := []*msalcache.ClientPool{p1, p2}[g%2]
			for i := range perG {
				if i%7 == 3 {
					ar, err := p.AcquireTokenByCredential(ctx, []string{appScope})
					switch {
					case err != nil:
						failures.Add(1)
						firstErr.CompareAndSwap(nil, err)
					case ar.AccessToken != app:
						wrong.Add(1)
					}
					continue
				}
				u := users[(g*5+i*3)%len(users)]
				scope := userScope
				if i%10 == 9 {
					// A scope not cached yet: MSAL redeems the refresh
					// token and writes while other calls are in flight.
					scope = fmt.Sprintf("api://pool-fresh-%d-%d/read", g, i)
					refreshes.Add(1)
				}
				ar, err := p.AcquireTokenSilent(ctx, u.HomeAccountID, []string{scope})
				switch {
				case err != nil:
					failures.Add(1)
					firstErr.CompareAndSwap(nil, err)
				case tokenFor(ar.AccessToken, u) != nil:
					wrong.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	extra := f.srv.TokenRequests() - before - int(refreshes.Load())
	f.t.Logf("pool: %d calls, %d failed, %d wrong tokens, %d extra token requests", goroutines*perG, failures.Load(), wrong.Load(), extra)
	if failures.Load() != 0 || wrong.Load() != 0 || extra != 0 {
		f.t.Fatalf("through a pool: %d failed calls (first: %v), %d wrong tokens, %d extra token requests; want none",
			failures.Load(), firstErr.Load(), wrong.Load(), extra)
	}
	for _, u := range users {
		for owner, n := range owners(f.partition(a1, u.HomeAccountID)) {
			if owner != u.HomeAccountID {
				f.t.Fatalf("after the run through pools, %s's partition holds %d entries of account %s", u.Username, n, owner)
			}
		}
	}
	for i, a := range []suiteAdapter{a1, a2} {
		if s := a.Stats(); s.LendingOverflows != 0 {
			f.t.Errorf("instance %d: %d lending overflows through a pool", i+1, s.LendingOverflows)
		}
	}

	// Sign-out through one pool: no client of either serves the user.
	alice := users[0]
	if err := p1.SignOut(ctx, alice.HomeAccountID); err != nil {
		f.t.Fatalf("ClientPool.SignOut: %v", err)
	}
	for i, p := range []*msalcache.ClientPool{p1, p2} {
		for range 8 {
			_, err := p.AcquireTokenSilent(ctx, alice.HomeAccountID, []string{userScope})
			if !errors.Is(err, msalcache.ErrNoAccount) {
				f.t.Fatalf("pool %d after the sign-out: %v, want ErrNoAccount", i+1, err)
			}
		}
	}
}

// poolClientRun is sharedClientRun through a ClientPool.
func (f *fixture) poolClientRun(t *testing.T, goroutines, perG int) sharedClientFigures {
	a := f.adapter(nil)
	p := f.pool(a)
	users := f.users
	for _, u := range users {
		if _, err := p.AcquireTokenByAuthCode(f.ctx, f.srv.AuthCode(suiteTenant, u.Username), suiteRedirect, []string{userScope}); err != nil {
			t.Fatal(err)
		}
	}
	before := f.srv.TokenRequests()
	var failures, wrong, refreshes atomic.Int64
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perG {
				u := users[(g+i)%len(users)]
				scope := userScope
				if i%10 == 9 {
					scope = fmt.Sprintf("api://fresh-%d-%d/read", g, i)
					refreshes.Add(1)
				}
				ar, err := p.AcquireTokenSilent(f.ctx, u.HomeAccountID, []string{scope})
				switch {
				case err != nil:
					failures.Add(1)
				case tokenFor(ar.AccessToken, u) != nil:
					wrong.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	return sharedClientFigures{
		Calls:              goroutines * perG,
		Failures:           int(failures.Load()),
		WrongTokens:        int(wrong.Load()),
		ExtraTokenRequests: f.srv.TokenRequests() - before - int(refreshes.Load()),
	}
}
