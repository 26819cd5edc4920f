package pgstore_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/cache"
	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/entratest"
	"github.com/msalcache/msalcache/pgstore"
)

const (
	farmClientID = "7c1e0de5-0000-4000-8000-00000000fa17"
	farmRedirect = "http://localhost/callback"
	userScope    = "api://backend/read"
	appScope     = "api://backend/.default"
	// faultTimeout is the Adapter's timeout in the fault test: no token
	// call waits longer for the store.
	faultTimeout = 500 * time.Millisecond
)

func newFarmClient(entra *entratest.Server, tenant string, hook cache.ExportReplace) (confidential.Client, error) {
	cred, err := confidential.NewCredFromSecret("fault-secret")
	if err != nil {
		return confidential.Client{}, err
	}
	return confidential.New(entra.Authority(tenant), farmClientID, cred,
		confidential.WithHTTPClient(entra.Client()),
		confidential.WithInstanceDiscovery(false),
		confidential.WithCache(hook))
}

// recorder keeps what a watch was told.
type recorder struct {
	mu      sync.Mutex
	changes []driver.Change
}

func (r *recorder) add(ch driver.Change) {
	r.mu.Lock()
	r.changes = append(r.changes, ch)
	r.mu.Unlock()
}

// waitFor polls until cond holds for the changes from index from on, and
// returns the index of the change that satisfied it.
func (r *recorder) waitFor(t *testing.T, from int, what string, cond func(driver.Change) bool) int {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		r.mu.Lock()
		for i := from; i < len(r.changes); i++ {
			if cond(r.changes[i]) {
				r.mu.Unlock()
				return i
			}
		}
		r.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("waited 15 s for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func (r *recorder) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.changes)
}

func isKind(k driver.ChangeKind) func(driver.Change) bool {
	return func(ch driver.Change) bool { return ch.Kind == k }
}

// TestKillAndRestartUnderLoad kills the postmaster (SIGKILL: a crash, with
// crash recovery at the next start) while four goroutines make token calls
// through one shared MSAL client whose Adapter has an L1 and the breaker,
// then restarts it. No token call fails and none waits longer than the
// Adapter's timeout (plus slack); the watch goes down and comes back, and
// hears the writes of another instance again.
func TestKillAndRestartUnderLoad(t *testing.T) {
	srv := server(t)
	table := freshTable()
	pool := newPool(t, srv)
	store := newStore(t, pool, table)
	pgstore.SetWatchTiming(store, 100*time.Millisecond, 500*time.Millisecond)
	rec := &recorder{}
	stop, err := store.Watch(context.Background(), rec.add)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	rec.waitFor(t, 0, "the watch to come up", isKind(driver.ChangeWatchUp))

	entra := entratest.NewServer()
	t.Cleanup(entra.Close)
	a, err := msalcache.New(store, msalcache.WithPlaintext(), msalcache.WithTimeout(faultTimeout),
		msalcache.WithL1(msalcache.L1Options{}), msalcache.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
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
			_, err := client.AcquireTokenByCredential(ctx, []string{appScope})
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
			return errors.New("alice was served another user's token")
		}
		return nil
	}

	var (
		calls, failed atomic.Int64
		slowest       atomic.Int64
		firstErr      atomic.Value
		done          = make(chan struct{})
		wg            sync.WaitGroup
	)
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; ; i++ {
				select {
				case <-done:
					return
				default:
				}
				start := time.Now()
				err := call(i)
				took := int64(time.Since(start))
				for cur := slowest.Load(); took > cur && !slowest.CompareAndSwap(cur, took); cur = slowest.Load() {
				}
				calls.Add(1)
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("%v", err))
				}
			}
		}()
	}
	waitCalls := func(n int64, what string) {
		t.Helper()
		target := calls.Load() + n
		deadline := time.Now().Add(20 * time.Second)
		for calls.Load() < target {
			if time.Now().After(deadline) {
				t.Fatalf("%s: only %d calls in 20 s", what, calls.Load())
			}
			time.Sleep(time.Millisecond)
		}
	}
	waitCalls(200, "before the crash")

	mark := rec.len()
	srv.Kill()
	rec.waitFor(t, mark, "ChangeWatchDown after the crash", isKind(driver.ChangeWatchDown))
	// Calls go on with the breaker open.
	deadline := time.Now().Add(20 * time.Second)
	for a.Stats().BreakerSkips < 50 {
		if time.Now().After(deadline) {
			t.Fatalf("the breaker did not skip 50 store calls in 20 s: %+v", a.Stats())
		}
		time.Sleep(time.Millisecond)
	}
	mark = rec.len()
	back := time.Now()
	srv.Restart(t)
	rec.waitFor(t, mark, "ChangeWatchUp after the restart", isKind(driver.ChangeWatchUp))
	t.Logf("watch up %v after the server answered again", time.Since(back).Round(time.Millisecond))
	for a.Stats().BreakerOpen {
		if time.Since(back) > 15*time.Second {
			t.Fatalf("the breaker is still open 15 s after the restart: %+v", a.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
	waitCalls(200, "after the restart")
	close(done)
	wg.Wait()
	if n := failed.Load(); n != 0 {
		t.Fatalf("%d of %d token calls failed; first: %v", n, calls.Load(), firstErr.Load())
	}
	if worst := time.Duration(slowest.Load()); worst > faultTimeout+time.Second {
		t.Errorf("the slowest token call took %v; the Adapter's timeout is %v", worst, faultTimeout)
	}
	st := a.Stats()
	t.Logf("%d token calls, 0 failed, slowest %v; breaker trips %d, skips %d", calls.Load(), time.Duration(slowest.Load()).Round(time.Millisecond), st.BreakerTrips, st.BreakerSkips)

	// Another instance's write reaches the watch again.
	other := newStore(t, newPool(t, srv), table)
	mark = rec.len()
	v, err := other.Save(ctx, "after-restart", []byte("x"), driver.NoVersion, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, mark, "the change written after the restart", func(ch driver.Change) bool {
		return ch.Kind == driver.ChangeKey && ch.Key == "after-restart" && ch.Version == v
	})
}
