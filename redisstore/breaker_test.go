package redisstore_test

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/entratest"
	"github.com/msalcache/msalcache/internal/testserver"
	"github.com/msalcache/msalcache/redisstore"
	"github.com/redis/go-redis/v9"
)

// breakerTimeout is the Adapter's timeout in the breaker tests: the first
// call that meets the fault may wait that long, no call longer.
const breakerTimeout = 500 * time.Millisecond

// The breaker, end to end: one shared MSAL client serving a signed-in user
// and app tokens (so that its cache swaps partitions on every call), on a
// Redis with default go-redis options (as a new user builds it), while
// Redis is killed (connections refused) or frozen (accepts, never
// answers). Every token call succeeds during the outage, none waits longer
// than the Adapter's timeout, what is bought meanwhile is kept and stored
// once Redis is back, and the breaker closes on its own.
func TestBreakerOutage(t *testing.T) {
	for _, fault := range []string{"killed", "frozen"} {
		t.Run(fault, func(t *testing.T) {
			srv := testserver.Redis(t)
			c := newClient(t, &redis.Options{Addr: srv.Addr(), ContextTimeoutEnabled: true})
			store := redisstore.New(c)
			t.Cleanup(func() { store.Close() })
			entra := entratest.NewServer()
			t.Cleanup(entra.Close)
			newAdapter := func() *msalcache.Adapter {
				a, err := msalcache.New(store, msalcache.WithPlaintext(), msalcache.WithTimeout(breakerTimeout),
					msalcache.WithL1(msalcache.L1Options{}), msalcache.WithLogger(slog.New(slog.DiscardHandler)))
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { a.Close() })
				return a
			}
			a := newAdapter()
			client, err := newFarmClient(entra, "contoso", a)
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			alice := entra.AddUser("contoso", "alice@contoso.example", "pw")
			if _, err := client.AcquireTokenByAuthCode(ctx, entra.AuthCode("contoso", alice.Username), farmRedirect, []string{userScope}); err != nil {
				t.Fatal(err)
			}
			call := func(i int) error {
				if i%2 == 0 {
					_, err := acquireAppToken(ctx, client, "contoso")
					return err
				}
				acct, err := client.Account(ctx, alice.HomeAccountID)
				if err != nil {
					return err
				}
				ar, err := client.AcquireTokenSilent(ctx, []string{userScope}, confidential.WithSilentAccount(acct))
				if err != nil {
					return err
				}
				if claims, _ := entratest.ParseToken(ar.AccessToken); claims.ObjectID != alice.ObjectID {
					return fmt.Errorf("alice was served another user's token")
				}
				return nil
			}
			for i := range 4 {
				if err := call(i); err != nil {
					t.Fatal(err)
				}
			}

			switch fault {
			case "killed":
				srv.Kill()
			case "frozen":
				srv.Freeze()
				t.Cleanup(srv.Thaw)
			}
			// Calls go on until 60 of them were served with the breaker
			// open (the first ones may still be L1 hits, until the watch
			// notices the fault, within about 2 s).
			var took []time.Duration
			deadline := time.Now().Add(20 * time.Second)
			for i := 0; a.Stats().BreakerSkips < 60; i++ {
				if time.Now().After(deadline) {
					t.Fatalf("after 20 s and %d token calls, %+v", i, a.Stats())
				}
				start := time.Now()
				if err := call(i); err != nil {
					t.Fatalf("token call %d during the outage failed: %v", i, err)
				}
				took = append(took, time.Since(start))
			}
			// A user signs in during the outage: the write is kept.
			bob := entra.AddUser("contoso", "bob@contoso.example", "pw")
			if _, err := client.AcquireTokenByAuthCode(ctx, entra.AuthCode("contoso", bob.Username), farmRedirect, []string{userScope}); err != nil {
				t.Fatalf("sign-in during the outage: %v", err)
			}
			st := a.Stats()
			if !st.BreakerOpen || st.BreakerTrips != 1 || st.PendingWrites == 0 {
				t.Fatalf("during the outage: %+v, want the breaker open once and writes pending", st)
			}
			slices.Sort(took)
			if worst := took[len(took)-1]; worst > breakerTimeout+250*time.Millisecond {
				t.Fatalf("a token call took %v during the outage; none may wait longer than the %v timeout", worst, breakerTimeout)
			}
			t.Logf("%s: %d token calls, 0 failed; slowest %v, p50 %v, p99 %v", fault, len(took), took[len(took)-1].Round(time.Millisecond),
				took[len(took)/2].Round(time.Microsecond), took[max(len(took)*99/100-1, 0)].Round(time.Microsecond))

			back := time.Now()
			switch fault {
			case "killed":
				srv.Restart(t)
			case "frozen":
				srv.Thaw()
			}
			deadline = back.Add(10 * time.Second)
			for a.Stats().BreakerOpen {
				if time.Now().After(deadline) {
					t.Fatalf("the breaker is still open 10 s after Redis came back: %+v", a.Stats())
				}
				time.Sleep(5 * time.Millisecond)
			}
			t.Logf("%s: breaker closed %v after Redis came back", fault, time.Since(back).Round(time.Millisecond))
			// The breaker closes first, then flushes what it kept.
			for st := a.Stats(); (st.PendingWrites != 0 || st.PendingFlushed == 0) && time.Now().Before(deadline); st = a.Stats() {
				time.Sleep(5 * time.Millisecond)
			}
			if st := a.Stats(); st.PendingWrites != 0 || st.PendingFlushed == 0 || st.PendingDropped != 0 {
				t.Fatalf("after the outage: %+v, want every pending write flushed", st)
			}
			// Another instance serves bob from Redis: his sign-in was not lost.
			other, err := newFarmClient(entra, "contoso", newAdapter())
			if err != nil {
				t.Fatal(err)
			}
			before := entra.TokenRequests()
			acct, err := other.Account(ctx, bob.HomeAccountID)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := other.AcquireTokenSilent(ctx, []string{userScope}, confidential.WithSilentAccount(acct)); err != nil {
				t.Fatalf("another instance cannot serve bob after the outage: %v", err)
			}
			if n := entra.TokenRequests() - before; n != 0 {
				t.Fatalf("another instance made %d token requests for bob: his sign-in during the outage was lost", n)
			}
		})
	}
}
