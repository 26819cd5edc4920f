package msalcache_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/cache"
	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/entratest"
	"github.com/msalcache/msalcache/internal/testring"
	"github.com/msalcache/msalcache/memstore"
)

const poolScope = "api://backend/read"

// countingTransport counts every HTTP request MSAL sends: token requests,
// instance discovery, OpenID metadata.
type countingTransport struct {
	n    atomic.Int64
	next http.RoundTripper
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.next.RoundTrip(r)
}

// poolFarm is a store shared by instances, each an Adapter and a pool, all
// against one emulator whose every HTTP request is counted.
type poolFarm struct {
	t      *testing.T
	entra  *entratest.Server
	store  driver.Store
	ring   driver.Protector
	http   *countingTransport
	client *http.Client
}

func newPoolFarm(t *testing.T, opts ...entratest.Option) *poolFarm {
	entra := entratest.NewServer(opts...)
	t.Cleanup(entra.Close)
	store := memstore.New()
	t.Cleanup(func() { store.Close() })
	ct := &countingTransport{next: entra.Client().Transport}
	return &poolFarm{t: t, entra: entra, store: store, ring: testring.New(t, store), http: ct,
		client: &http.Client{Transport: ct}}
}

// instance returns a new Adapter (encrypted, with the L1) on the farm's
// store and a pool of clientID's clients built with MSAL's default
// options (instance discovery on).
func (f *poolFarm) instance(clientID string, opts ...msalcache.PoolOption) (*msalcache.Adapter, *msalcache.ClientPool) {
	f.t.Helper()
	a, err := msalcache.New(f.store, msalcache.WithProtector(f.ring), msalcache.WithL1(msalcache.L1Options{}))
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { a.Close() })
	p, err := msalcache.NewClientPool(a, func(c cache.ExportReplace) (confidential.Client, error) {
		cred, err := confidential.NewCredFromSecret("secret")
		if err != nil {
			return confidential.Client{}, err
		}
		return confidential.New(f.entra.Authority("contoso"), clientID, cred,
			confidential.WithCache(c), confidential.WithHTTPClient(f.client))
	}, opts...)
	if err != nil {
		f.t.Fatal(err)
	}
	return a, p
}

func (f *poolFarm) signIn(ctx context.Context, p *msalcache.ClientPool, n int) []entratest.User {
	f.t.Helper()
	out := make([]entratest.User, n)
	for i := range out {
		u := f.entra.AddUser("contoso", fmt.Sprintf("user%d@contoso.example", i), "")
		ar, err := p.AcquireTokenByAuthCode(ctx, f.entra.AuthCode("contoso", u.Username), "https://app/cb", []string{poolScope})
		if err != nil {
			f.t.Fatalf("sign-in %d: %v", i, err)
		}
		if ar.Account.HomeAccountID != u.HomeAccountID {
			f.t.Fatalf("sign-in %d: account %q, want %q", i, ar.Account.HomeAccountID, u.HomeAccountID)
		}
		out[i] = u
	}
	return out
}

// silentFor makes a silent call for u through p, failing on a token of
// anyone else.
func silentFor(ctx context.Context, p *msalcache.ClientPool, u entratest.User) error {
	ar, err := p.AcquireTokenSilent(ctx, u.HomeAccountID, []string{poolScope})
	if err != nil {
		return err
	}
	if claims, err := entratest.ParseToken(ar.AccessToken); err != nil || claims.ObjectID != u.ObjectID {
		return fmt.Errorf("%w: %s got a token for %q", errWrongToken, u.Username, claims.ObjectID)
	}
	return nil
}

var errWrongToken = errors.New("wrong token")

// warmAll holds every one of the pool's size clients at once and makes a
// silent call for a user on each, so that each is built and has resolved
// its authority (MSAL's instance discovery and metadata requests).
func warmAll(t *testing.T, ctx context.Context, p *msalcache.ClientPool, size int, u entratest.User) {
	t.Helper()
	var wg, held sync.WaitGroup
	held.Add(size)
	errs := make(chan error, size)
	for range size {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- p.Do(ctx, "", func(ctx context.Context, c confidential.Client) error {
				held.Done()
				held.Wait() // every client is out at once: size distinct clients
				acct, err := c.Account(ctx, u.HomeAccountID)
				if err != nil {
					return err
				}
				_, err = c.AcquireTokenSilent(ctx, []string{poolScope}, confidential.WithSilentAccount(acct))
				return err
			})
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

// Many goroutines, many users, one pool per instance on two instances: no
// call fails, none returns another user's token, and after the warm-up no
// HTTP request of any kind is made, with MSAL's default options.
func TestPoolManyUsersManyGoroutines(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	f := newPoolFarm(t)
	const size, nUsers, goroutines, calls = 8, 120, 32, 40
	a1, p1 := f.instance("web-app", msalcache.WithPoolSize(size))
	a2, p2 := f.instance("web-app", msalcache.WithPoolSize(size))
	users := f.signIn(ctx, p1, nUsers)
	warmAll(t, ctx, p1, size, users[0])
	warmAll(t, ctx, p2, size, users[0])

	before := f.http.n.Load()
	var failed, wrong atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := p1
			if g%2 == 1 {
				p = p2
			}
			for i := range calls {
				u := users[(g*7+i*13)%nUsers]
				// Sometimes four calls in a row for one user.
				for range 1 + 3*(i%4/3) {
					if err := silentFor(ctx, p, u); err != nil {
						if errors.Is(err, errWrongToken) {
							wrong.Add(1)
						}
						failed.Add(1)
						firstErr.CompareAndSwap(nil, err)
					}
				}
			}
		}()
	}
	wg.Wait()
	if n := failed.Load(); n > 0 {
		t.Errorf("%d silent calls failed (%d wrong tokens), first: %v", n, wrong.Load(), firstErr.Load())
	}
	if n := f.http.n.Load() - before; n != 0 {
		t.Errorf("%d HTTP requests after the warm-up, want 0", n)
	}
	for i, a := range []*msalcache.Adapter{a1, a2} {
		if s := a.Stats(); s.LendingOverflows != 0 {
			t.Errorf("instance %d: %d lending overflows through a pool", i+1, s.LendingOverflows)
		}
	}
}

// A caller past the pool's size waits for a client until its ctx is done,
// and gets one as soon as one is free.
func TestPoolWaitIsBoundedByContext(t *testing.T) {
	f := newPoolFarm(t)
	_, p := f.instance("web-app", msalcache.WithPoolSize(1))
	holding, release := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- p.Do(context.Background(), "", func(context.Context, confidential.Client) error {
			close(holding)
			<-release
			return nil
		})
	}()
	<-holding
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := p.Do(ctx, "", func(context.Context, confidential.Client) error {
		t.Error("f ran while the only client was busy")
		return nil
	})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Do past the pool's size: %v, want context.DeadlineExceeded", err)
	}
	// A waiter is served once the client comes back.
	waited := make(chan error, 1)
	go func() {
		waited <- p.Do(context.Background(), "", func(context.Context, confidential.Client) error { return nil })
	}()
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-waited:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a waiting Do was not served after the client came back")
	}
	if _, err := msalcache.NewClientPool(nil, nil); err == nil {
		t.Error("NewClientPool(nil, nil) succeeded")
	}
	if _, err := msalcache.NewClientPool(f.instanceAdapter(), func(cache.ExportReplace) (confidential.Client, error) {
		return confidential.Client{}, nil
	}, msalcache.WithPoolSize(0)); err == nil {
		t.Error("WithPoolSize(0) accepted")
	}
}

func (f *poolFarm) instanceAdapter() *msalcache.Adapter {
	a, _ := f.instance("web-app")
	return a
}

// The pool prefers the idle client that last served a key: a user's calls
// in a row are served from what MSAL holds, nothing decrypted or parsed.
func TestPoolPrefersTheClientThatServedTheKey(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	f := newPoolFarm(t)
	a, p := f.instance("web-app", msalcache.WithPoolSize(4))
	users := f.signIn(ctx, p, 4)
	warmAll(t, ctx, p, 4, users[0])
	for _, u := range users {
		if err := silentFor(ctx, p, u); err != nil {
			t.Fatal(err)
		}
	}
	before := a.Stats()
	for range 5 {
		for _, u := range users {
			if err := silentFor(ctx, p, u); err != nil {
				t.Fatal(err)
			}
		}
	}
	after := a.Stats()
	// Two Replace calls per silent call (Account, then the token).
	if calls, reused := 2*5*uint64(len(users)), after.Reused-before.Reused; reused != calls {
		t.Errorf("%d of %d loads reused what MSAL held; want all (the pool should hand each user the client that served them)\nbefore %+v\nafter %+v", reused, calls, before, after)
	}
}

// SignOut through one instance's pool: no client of any pool serves the
// user again (each of them held the user's tokens in memory), the other
// users are still served, and no token request is made for it.
func TestPoolSignOut(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	f := newPoolFarm(t)
	const size = 4
	_, p1 := f.instance("web-app", msalcache.WithPoolSize(size))
	_, p2 := f.instance("web-app", msalcache.WithPoolSize(size))
	users := f.signIn(ctx, p1, 2)
	alice, bob := users[0], users[1]
	warmAll(t, ctx, p1, size, alice) // every client of both pools holds alice
	warmAll(t, ctx, p2, size, alice)

	if err := p1.SignOut(ctx, alice.HomeAccountID); err != nil {
		t.Fatalf("SignOut: %v", err)
	}
	tokens := f.entra.TokenRequests()
	for _, p := range []*msalcache.ClientPool{p1, p2} {
		var held sync.WaitGroup
		held.Add(size)
		var wg sync.WaitGroup
		served := make(chan string, size)
		for range size {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_ = p.Do(ctx, alice.HomeAccountID, func(ctx context.Context, c confidential.Client) error {
					held.Done()
					held.Wait() // each client of the pool, once
					acct, err := c.Account(ctx, alice.HomeAccountID)
					if err == nil && acct.HomeAccountID != "" {
						if _, err := c.AcquireTokenSilent(ctx, []string{poolScope}, confidential.WithSilentAccount(acct)); err == nil {
							served <- "a client served alice after her sign-out"
						}
					}
					return nil
				})
			}()
		}
		wg.Wait()
		close(served)
		for msg := range served {
			t.Error(msg)
		}
		if _, err := p.AcquireTokenSilent(ctx, alice.HomeAccountID, []string{poolScope}); !errors.Is(err, msalcache.ErrNoAccount) {
			t.Errorf("AcquireTokenSilent after SignOut: %v, want ErrNoAccount", err)
		}
		if err := silentFor(ctx, p, bob); err != nil {
			t.Errorf("bob after alice's sign-out: %v", err)
		}
	}
	if n := f.entra.TokenRequests() - tokens; n != 0 {
		t.Errorf("%d token requests after the sign-out", n)
	}
	// A new sign-in is stored and shared as usual.
	if _, err := p2.AcquireTokenByAuthCode(ctx, f.entra.AuthCode("contoso", alice.Username), "https://app/cb", []string{poolScope}); err != nil {
		t.Fatal(err)
	}
	if err := silentFor(ctx, p1, alice); err != nil {
		t.Errorf("alice after signing in again: %v", err)
	}
	if err := p1.SignOut(ctx, ""); !errors.Is(err, msalcache.ErrNoAccountID) {
		t.Errorf("SignOut(\"\"): %v, want ErrNoAccountID", err)
	}
}

// App tokens through the pool: fetched once for the farm.
func TestPoolCredential(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	f := newPoolFarm(t)
	_, p1 := f.instance("daemon")
	_, p2 := f.instance("daemon")
	scopes := []string{"api://backend/.default"}
	for i, p := range []*msalcache.ClientPool{p1, p2, p1, p2} {
		ar, err := p.AcquireTokenByCredential(ctx, scopes)
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		if claims, _ := entratest.ParseToken(ar.AccessToken); claims.ClientID != "daemon" {
			t.Fatalf("call %d: token for %q", i, claims.ClientID)
		}
	}
	if n := f.entra.TokenRequestsFor(entratest.GrantClientCredentials); n != 1 {
		t.Errorf("%d client-credentials requests for two instances, want 1", n)
	}
	u, err := p1.AuthCodeURL(ctx, "daemon", "https://app/cb", []string{poolScope})
	if err != nil || !strings.Contains(u, "client_id=daemon") {
		t.Errorf("AuthCodeURL: %q, %v", u, err)
	}
}

// On-behalf-of through the pool: a second instance presented the same
// assertion for the same scopes is served the first one's token with no
// token request; other scopes, another app, or a token within MSAL's
// refresh margin are not shared; nothing is stored in clear.
func TestPoolOnBehalfOfShared(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	f := newPoolFarm(t)
	_, p1 := f.instance("middle-tier")
	_, p2 := f.instance("middle-tier")
	_, other := f.instance("other-app")
	users := f.signIn(ctx, p1, 1)
	ar, err := p1.AcquireTokenSilent(ctx, users[0].HomeAccountID, []string{poolScope})
	if err != nil {
		t.Fatal(err)
	}
	assertion := ar.AccessToken
	down := []string{"api://downstream/read"}
	obo := func(p *msalcache.ClientPool, scopes []string) string {
		t.Helper()
		r, err := p.AcquireTokenOnBehalfOf(ctx, assertion, scopes)
		if err != nil {
			t.Fatal(err)
		}
		claims, err := entratest.ParseToken(r.AccessToken)
		if err != nil || claims.ObjectID != users[0].ObjectID {
			t.Fatalf("on-behalf-of token for %q, want %q (%v)", claims.ObjectID, users[0].ObjectID, err)
		}
		return r.AccessToken
	}
	oboRequests := func() int { return f.entra.TokenRequestsFor(entratest.GrantOnBehalfOf) }

	first := obo(p1, down)
	if n := oboRequests(); n != 1 {
		t.Fatalf("%d on-behalf-of requests, want 1", n)
	}
	if got := obo(p2, down); got != first {
		t.Error("the second instance got another token")
	}
	if got := obo(p1, down); got != first {
		t.Error("the first instance got another token")
	}
	if n := oboRequests(); n != 1 {
		t.Errorf("%d on-behalf-of requests after a second instance asked, want 1 (shared through the store)", n)
	}
	// Concurrent callers on one instance: one request between them.
	var wg sync.WaitGroup
	two := []string{"api://downstream/write"}
	for range 8 {
		wg.Add(1)
		go func() { defer wg.Done(); obo(p2, two) }()
	}
	wg.Wait()
	if n := oboRequests(); n != 2 {
		t.Errorf("%d on-behalf-of requests after 8 concurrent callers for new scopes, want 2", n)
	}
	obo(other, down) // another app: its own token
	if n := oboRequests(); n != 3 {
		t.Errorf("%d on-behalf-of requests after another app asked, want 3", n)
	}
	// Nothing of the token in clear in the store.
	lister, ok := f.store.(driver.Lister)
	if !ok {
		t.Fatal("memstore is not a Lister")
	}
	found := 0
	err = lister.List(ctx, "", func(key string) error {
		blob, _, err := f.store.Load(ctx, key)
		if err != nil {
			return nil
		}
		if strings.Contains(string(blob), first[:40]) {
			t.Errorf("the on-behalf-of token is stored in clear under %q", key)
		}
		if strings.Contains(key, "obo.") {
			found++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if found != 3 {
		t.Errorf("%d on-behalf-of records in the store, want 3", found)
	}
}
