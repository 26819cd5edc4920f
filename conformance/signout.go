package conformance

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/entratest"
)

// gate is an http.RoundTripper that parks the token requests of one grant
// type until the test releases them: a token call held in flight, so that
// a race is run as a race, without sleeps.
type gate struct {
	next  http.RoundTripper
	grant string

	mu      sync.Mutex
	armed   bool
	parked  chan struct{} // closed when a request is parked
	release chan struct{} // closed to let the parked requests go
}

func newGate(next http.RoundTripper) *gate {
	if next == nil {
		next = http.DefaultTransport
	}
	return &gate{next: next}
}

// arm makes the next requests of grant type grant wait for open.
func (g *gate) arm(grant string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.armed, g.grant = true, grant
	g.parked, g.release = make(chan struct{}), make(chan struct{})
}

// open lets the parked requests go and disarms the gate.
func (g *gate) open() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.armed {
		g.armed = false
		close(g.release)
	}
}

func (g *gate) RoundTrip(r *http.Request) (*http.Response, error) {
	g.mu.Lock()
	armed, grant, parked, release := g.armed, g.grant, g.parked, g.release
	g.mu.Unlock()
	if armed && r.Body != nil && r.Method == http.MethodPost {
		body, err := io.ReadAll(r.Body)
		r.Body.Close()
		if err != nil {
			return nil, err
		}
		r.Body = io.NopCloser(strings.NewReader(string(body)))
		if form, err := url.ParseQuery(string(body)); err == nil && form.Get("grant_type") == grant {
			g.mu.Lock()
			select {
			case <-parked:
			default:
				close(parked)
			}
			g.mu.Unlock()
			select {
			case <-release:
			case <-r.Context().Done():
				return nil, r.Context().Err()
			}
		}
	}
	return g.next.RoundTrip(r)
}

// waitParked waits until a request is parked, failing the test after d or
// when the call ends without one (done).
func (f *fixture) waitParked(g *gate, done <-chan error, d time.Duration) {
	f.t.Helper()
	g.mu.Lock()
	parked := g.parked
	g.mu.Unlock()
	select {
	case <-parked:
	case err := <-done:
		f.t.Fatalf("the call ended without a token request at the gate: %v", err)
	case <-time.After(d):
		f.t.Fatalf("no token request reached the gate within %v", d)
	}
}

// gatedClient builds an MSAL client over a whose token requests pass g.
func (f *fixture) gatedClient(a suiteAdapter, g *gate) confidential.Client {
	f.t.Helper()
	cred, err := confidential.NewCredFromSecret(suiteSecret)
	if err != nil {
		f.t.Fatal(err)
	}
	g.next = f.srv.Client().Transport
	hc := &http.Client{Transport: g}
	c, err := confidential.New(f.srv.Authority(suiteTenant), suiteClientID, cred,
		confidential.WithHTTPClient(hc), confidential.WithInstanceDiscovery(false), confidential.WithCache(a))
	if err != nil {
		f.t.Fatalf("confidential.New: %v", err)
	}
	return c
}

// signOutInstances builds instances A (where the user signs out) and B
// (where a token call is in flight), both with the L1 when l1 is set.
func (f *fixture) signOutInstances(l1 bool) (a, b suiteAdapter) {
	var opts []msalcache.Option
	if l1 {
		opts = append(opts, msalcache.WithL1(msalcache.L1Options{MaxStale: f.maxStale()}))
	}
	return f.adapter(nil, opts...), f.adapter(nil, opts...)
}

// signOut signs u out through instance a and its client web.
func (f *fixture) signOut(a suiteAdapter, web confidential.Client, u entratest.User) {
	f.t.Helper()
	acct, err := web.Account(f.ctx, u.HomeAccountID)
	if err != nil {
		f.t.Fatal(err)
	}
	ad, ok := a.(*msalcache.Adapter)
	if !ok {
		// A broken adapter of the suite's own tests: sign out by hand.
		if err := web.RemoveAccount(f.ctx, acct); err != nil {
			f.t.Fatal(err)
		}
		if err := a.Remove(f.ctx, u.HomeAccountID); err != nil {
			f.t.Fatalf("Remove: %v", err)
		}
		return
	}
	if err := msalcache.SignOut(f.ctx, ad, web, acct, u.HomeAccountID); err != nil {
		f.t.Fatalf("SignOut of %s: %v", u.Username, err)
	}
}

// signedOut fails the test if any of the clients, or a new instance,
// still serves u.
func (f *fixture) signedOut(u entratest.User, what string, clients map[string]confidential.Client) {
	f.t.Helper()
	clients["a new instance"] = f.confidential(f.adapter(nil), suiteTenant)
	for name, c := range clients {
		if tok, err := f.silent(c, u, userScope); err == nil {
			f.t.Errorf("%s: %s still serves %s (their token: %v): the sign-out was undone", what, name, u.Username, tokenFor(tok, u) == nil)
		}
	}
}

// testSignOutBeatsRefreshInFlight: instance B redeems alice's refresh
// token; while the token endpoint answers, alice signs out on A. B's call
// ends with the refreshed session, which must not be stored: no instance,
// B and A included, serves her afterwards; bob, untouched, still is.
func testSignOutBeatsRefreshInFlight(f *fixture, l1 bool) {
	alice, bob := f.users[0], f.users[1]
	a, b := f.signOutInstances(l1)
	webA := f.confidential(a, suiteTenant)
	g := newGate(nil)
	webB := f.gatedClient(b, g)
	f.signIn(webA, alice)
	f.signIn(webA, bob)
	for _, u := range []entratest.User{alice, bob} {
		if _, err := f.silent(webB, u, userScope); err != nil {
			f.t.Fatalf("instance B before the sign-out, %s: %v", u.Username, err)
		}
	}
	acct, err := webB.Account(f.ctx, alice.HomeAccountID)
	if err != nil {
		f.t.Fatal(err)
	}
	g.arm("refresh_token")
	done := make(chan error, 1)
	go func() {
		// The access token has expired: MSAL redeems the refresh token,
		// on its refresh path, which loads the partition twice.
		_, err := webB.AcquireTokenSilent(f.ctx, []string{userScope}, confidential.WithSilentAccount(acct))
		done <- err
	}()
	f.waitParked(g, done, 30*time.Second)
	f.signOut(a, webA, alice)
	g.open()
	if err := <-done; err != nil {
		// In flight when she signed out: its result may go either way.
		f.t.Logf("instance B's call in flight during the sign-out: %v", err)
	}
	f.signedOut(alice, "after a refresh in flight on B", map[string]confidential.Client{"instance A": webA, "instance B": webB})
	if _, err := f.silent(webB, bob, userScope); err != nil {
		f.t.Errorf("bob lost his session on B when alice signed out: %v", err)
	}
}

// testSignInAfterSignOut: alice signs out on A while B's client holds her
// session; she then signs in again on B (a new session): that sign-in is
// stored and served everywhere, as any sign-in.
func testSignInAfterSignOut(f *fixture) {
	alice := f.users[0]
	a, b := f.signOutInstances(false)
	webA, webB := f.confidential(a, suiteTenant), f.confidential(b, suiteTenant)
	f.signIn(webA, alice)
	if _, err := f.silent(webB, alice, userScope); err != nil {
		f.t.Fatalf("instance B before the sign-out: %v", err)
	}
	f.signOut(a, webA, alice)
	f.signedOut(alice, "after the sign-out", map[string]confidential.Client{"instance A": webA, "instance B": webB})
	f.signIn(webB, alice)
	for name, c := range map[string]confidential.Client{
		"instance A": webA, "instance B": webB, "a new instance": f.confidential(f.adapter(nil), suiteTenant),
	} {
		tok, err := f.silent(c, alice, userScope)
		if err != nil {
			f.t.Errorf("%s does not serve alice after she signed in again on B: %v", name, err)
			continue
		}
		f.mustBeFor(tok, alice)
	}
	if doc := f.partition(a, alice.HomeAccountID); doc == nil {
		f.t.Error("alice's new sign-in was not stored")
	}
}
