package redisstore_test

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"
	"github.com/redis/go-redis/v9"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/entratest"
	"github.com/msalcache/msalcache/internal/faultnet"
	"github.com/msalcache/msalcache/internal/testserver"
	"github.com/msalcache/msalcache/internal/wait"
	"github.com/msalcache/msalcache/redisstore"
)

// wireFarm is two instances (Adapters with the L1, each its own go-redis
// client) on one Redis, every connection through one faultnet.Wire, and a
// shared MSAL client on the first serving a signed-in user and app tokens.
type wireFarm struct {
	t      *testing.T
	srv    *testserver.RedisServer
	wire   *faultnet.Wire
	entra  *entratest.Server
	a, b   *msalcache.Adapter
	client confidential.Client
	alice  entratest.User
}

// newWireFarm builds the farm; maxStale 0 means no L1, so that every
// call goes to Redis.
func newWireFarm(t *testing.T, maxStale time.Duration) *wireFarm {
	srv := testserver.Redis(t)
	f := &wireFarm{t: t, srv: srv, wire: &faultnet.Wire{}, entra: entratest.NewServer()}
	t.Cleanup(f.entra.Close)
	instance := func() *msalcache.Adapter {
		c := newClient(t, &redis.Options{Addr: srv.Addr(), ContextTimeoutEnabled: true, Dialer: f.wire.DialContext})
		store := redisstore.New(c)
		t.Cleanup(func() { store.Close() })
		opts := []msalcache.Option{msalcache.WithPlaintext(), msalcache.WithTimeout(breakerTimeout), msalcache.WithLogger(slog.New(slog.DiscardHandler))}
		if maxStale > 0 {
			opts = append(opts, msalcache.WithL1(msalcache.L1Options{MaxStale: maxStale}))
		}
		a, err := msalcache.New(store, opts...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { a.Close() })
		return a
	}
	f.a, f.b = instance(), instance()
	var err error
	if f.client, err = newFarmClient(f.entra, "contoso", f.a); err != nil {
		t.Fatal(err)
	}
	f.alice = f.entra.AddUser("contoso", "alice@contoso.example", "pw")
	f.signIn(f.client, f.alice)
	return f
}

func (f *wireFarm) signIn(c confidential.Client, u entratest.User) string {
	f.t.Helper()
	ar, err := c.AcquireTokenByAuthCode(context.Background(), f.entra.AuthCode("contoso", u.Username), farmRedirect, []string{userScope})
	if err != nil {
		f.t.Fatalf("sign-in of %s: %v", u.Username, err)
	}
	return ar.AccessToken
}

// call is one token call of the shared client: an app token when i is
// even, alice's silent call otherwise.
func (f *wireFarm) call(i int) error {
	ctx := context.Background()
	if i%2 == 0 {
		_, err := acquireAppToken(ctx, f.client, "contoso")
		return err
	}
	return silentFor(f.client, f.alice, "")
}

// silentFor makes u's silent call through c and checks it is u's token
// (and want, when not empty).
func silentFor(c confidential.Client, u entratest.User, want string) error {
	ctx := context.Background()
	acct, err := c.Account(ctx, u.HomeAccountID)
	if err != nil {
		return err
	}
	ar, err := c.AcquireTokenSilent(ctx, []string{userScope}, confidential.WithSilentAccount(acct))
	if err != nil {
		return err
	}
	if claims, _ := entratest.ParseToken(ar.AccessToken); claims.ObjectID != u.ObjectID {
		return fmt.Errorf("%s was served another user's token", u.Username)
	}
	if want != "" && ar.AccessToken != want {
		return errStale
	}
	return nil
}

var errStale = fmt.Errorf("served an older token than the latest")

// Faults on the wire between real go-redis clients and a real Redis, for
// the whole data path: every token call succeeds and is the right user's,
// none waits longer than the Adapter's timeout, and a sign-in made during
// the fault is served by the other instance once the wire is healed. The
// figures are logged as one table.
func TestWireFaults(t *testing.T) {
	// The slow wires run without the L1, which would hide them: every
	// call then makes its round trips through the fault.
	faults := []struct {
		name     string
		apply    func(w *faultnet.Wire)
		broken   bool          // the store cannot answer: the breaker opens
		maxStale time.Duration // 0: no L1
	}{
		{"latency 2ms", func(w *faultnet.Wire) { w.SetLatency(2*time.Millisecond, 0); w.Set(faultnet.Latency, false) }, false, 0},
		{"jitter 0-20ms", func(w *faultnet.Wire) { w.SetLatency(0, 20*time.Millisecond); w.Set(faultnet.Latency, false) }, false, 0},
		{"black hole", func(w *faultnet.Wire) { w.Set(faultnet.BlackHole, false) }, true, 2 * time.Second},
		{"reset mid-reply", func(w *faultnet.Wire) { w.Set(faultnet.Reset, false) }, true, 2 * time.Second},
		{"bandwidth 64 KiB/s", func(w *faultnet.Wire) { w.SetBandwidth(64 << 10); w.Set(faultnet.Bandwidth, false) }, false, 0},
		// The server closes every client connection (CLIENT KILL), and
		// the clients see it 2 s late, in silence.
		{"server closes, seen 2s late", nil, false, 0},
	}
	var table strings.Builder
	table.WriteString("| fault | calls | failed | p50 | p99 | max | breaker trips | writes kept and flushed |\n|---|--:|--:|--:|--:|--:|--:|--:|\n")
	for _, fault := range faults {
		t.Run(fault.name, func(t *testing.T) {
			f := newWireFarm(t, fault.maxStale)
			for i := range 4 {
				if err := f.call(i); err != nil {
					t.Fatal(err)
				}
			}
			before := f.a.Stats()
			if fault.apply != nil {
				fault.apply(f.wire)
			} else {
				f.wire.SetCloseDelay(2 * time.Second)
				if err := newClient(t, &redis.Options{Addr: f.srv.Addr()}).ClientKillByFilter(context.Background(), "TYPE", "normal").Err(); err != nil {
					t.Fatal(err)
				}
			}
			var took []time.Duration
			deadline := time.Now().Add(20 * time.Second)
			for i := 0; len(took) < 40 || fault.broken && f.a.Stats().BreakerSkips < 20; i++ {
				if time.Now().After(deadline) {
					t.Fatalf("after 20 s and %d calls: %+v", i, f.a.Stats())
				}
				start := time.Now()
				if err := f.call(i); err != nil {
					t.Fatalf("token call %d with %s: %v", i, fault.name, err)
				}
				took = append(took, time.Since(start))
			}
			bob := f.entra.AddUser("contoso", "bob@contoso.example", "pw")
			f.signIn(f.client, bob)
			f.wire.Set(faultnet.Pass, false)
			f.wire.SetCloseDelay(0)
			healed := time.Now().Add(10 * time.Second)
			for f.a.Stats().BreakerOpen {
				if time.Now().After(healed) {
					t.Fatalf("breaker still open 10 s after the wire healed: %+v", f.a.Stats())
				}
				time.Sleep(5 * time.Millisecond)
			}
			slices.Sort(took)
			if worst := took[len(took)-1]; worst > breakerTimeout+250*time.Millisecond {
				t.Fatalf("a token call took %v with %s; none may wait longer than the %v timeout", worst, fault.name, breakerTimeout)
			}
			// Bob's sign-in reached the store, then or once healed.
			other, err := newFarmClient(f.entra, "contoso", f.b)
			if err != nil {
				t.Fatal(err)
			}
			requests := f.entra.TokenRequests()
			// The other instance's own connections may have been cut in
			// the same fault and not be seen closed yet (2 s late): its
			// read then fails, is absorbed as a miss, and finds no bob,
			// without any token request. Once its client sees the close,
			// bob's sign-in must be there.
			wait.For(t, "the other instance serves bob after "+fault.name, func() bool {
				return silentFor(other, bob, "") == nil
			})
			if n := f.entra.TokenRequests() - requests; n != 0 {
				t.Fatalf("the other instance made %d token requests for bob: his sign-in during %s was lost", n, fault.name)
			}
			after := f.a.Stats()
			fmt.Fprintf(&table, "| %s | %d | 0 | %v | %v | %v | %d | %d |\n", fault.name, len(took),
				took[len(took)/2].Round(10*time.Microsecond), took[max(len(took)*99/100-1, 0)].Round(10*time.Microsecond),
				took[len(took)-1].Round(time.Millisecond), after.BreakerTrips-before.BreakerTrips, after.PendingFlushed-before.PendingFlushed)
		})
	}
	t.Logf("wire faults on Redis (WithTimeout %v, -race):\n%s", breakerTimeout, table.String())
}

// The invalidation channel alone is cut (every subscription black-holed,
// the data path intact): instance B's L1 never serves alice's token once
// MaxStale has passed since instance A replaced it, whatever the push
// channel said, and B's watch notices the cut.
func TestWireFaultInvalidationCut(t *testing.T) {
	const maxStale = 300 * time.Millisecond
	f := newWireFarm(t, maxStale)
	b, err := newFarmClient(f.entra, "contoso", f.b)
	if err != nil {
		t.Fatal(err)
	}
	// Until B's watch is up its L1 serves nothing: wait for an L1 hit.
	up := time.Now().Add(10 * time.Second)
	for f.b.Stats().L1Hits == 0 {
		if time.Now().After(up) {
			t.Fatalf("B's L1 served nothing in 10 s: %+v", f.b.Stats())
		}
		if err := silentFor(b, f.alice, ""); err != nil {
			t.Fatal(err)
		}
	}
	f.wire.Set(faultnet.BlackHole, true)
	// Alice signs in again on A (as after a claims challenge): a new token.
	newToken := f.signIn(f.client, f.alice)
	written := time.Now()
	for {
		start := time.Now()
		err := silentFor(b, f.alice, newToken)
		if err == nil {
			t.Logf("B served the new token %v after A's write", time.Since(written).Round(time.Millisecond))
			break
		}
		if err != errStale {
			t.Fatal(err)
		}
		if start.Sub(written) > maxStale {
			t.Fatalf("B served the old token in a call begun %v after A's write, past MaxStale %v", start.Sub(written), maxStale)
		}
		time.Sleep(5 * time.Millisecond)
	}
	f.wire.Set(faultnet.Pass, true)
}
