package msalcache_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/entratest"
	"github.com/msalcache/msalcache/internal/storetest"
	"github.com/msalcache/msalcache/internal/wait"
	"github.com/msalcache/msalcache/memstore"
)

// farm is a token endpoint whose access tokens MSAL takes for expired, so
// that every silent call redeems the refresh token, and a store.
type farm struct {
	t     *testing.T
	ctx   context.Context
	entra *entratest.Server
	store driver.Store
	alice entratest.User
}

func newFarm(t *testing.T) *farm {
	entra := entratest.NewServer(entratest.WithTokenLifetime(time.Minute))
	t.Cleanup(entra.Close)
	store := memstore.New()
	t.Cleanup(func() { store.Close() })
	return &farm{t: t, ctx: signOutContext(t), entra: entra, store: store,
		alice: entra.AddUser("contoso", "alice@contoso.com", "")}
}

func (f *farm) instance(s driver.Store) (*msalcache.Adapter, confidential.Client) {
	f.t.Helper()
	a, err := msalcache.New(s, msalcache.WithPlaintext(), msalcache.WithLogger(slog.New(slog.DiscardHandler)),
		msalcache.WithBreaker(msalcache.BreakerOptions{ProbeMax: 50 * time.Millisecond}))
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { a.Close() })
	cred, _ := confidential.NewCredFromSecret("secret")
	c, err := confidential.New(f.entra.Authority("contoso"), "web-app", cred,
		confidential.WithCache(a), confidential.WithHTTPClient(f.entra.Client()), confidential.WithInstanceDiscovery(false))
	if err != nil {
		f.t.Fatal(err)
	}
	return a, c
}

func (f *farm) signIn(c confidential.Client) {
	f.t.Helper()
	if _, err := c.AcquireTokenByAuthCode(f.ctx, f.entra.AuthCode("contoso", f.alice.Username), "https://app/cb", []string{signOutScope}); err != nil {
		f.t.Fatal(err)
	}
}

func (f *farm) silent(c confidential.Client) error {
	acct, err := c.Account(f.ctx, f.alice.HomeAccountID)
	if err != nil {
		return err
	}
	if acct.HomeAccountID == "" {
		return errors.New("no account")
	}
	_, err = c.AcquireTokenSilent(f.ctx, []string{signOutScope}, confidential.WithSilentAccount(acct))
	return err
}

func (f *farm) signOut(a *msalcache.Adapter, c confidential.Client) error {
	acct, _ := c.Account(f.ctx, f.alice.HomeAccountID)
	return msalcache.SignOut(f.ctx, a, c, acct, f.alice.HomeAccountID)
}

// notServed fails the test if a new instance serves alice.
func (f *farm) notServed(what string) {
	f.t.Helper()
	_, c := f.instance(f.store)
	if err := f.silent(c); err == nil {
		f.t.Errorf("%s: a new instance serves alice: the sign-out was undone", what)
	}
}

// B refreshes alice while its store is unreachable: the write is kept for
// the store's return. Alice signs out on A meanwhile. When B's store
// comes back, the kept write must not bring her back.
func TestSignOutBeatsPendingFlush(t *testing.T) {
	f := newFarm(t)
	a, webA := f.instance(f.store)
	outage := &storetest.Outage{Store: f.store}
	b, webB := f.instance(outage)
	f.signIn(webA)
	if err := f.silent(webB); err != nil {
		t.Fatal(err)
	}
	outage.Down.Store(true)
	if err := f.silent(webB); err != nil {
		t.Fatalf("silent call on B during its outage: %v", err)
	}
	if st := b.Stats(); st.PendingWrites != 1 {
		t.Fatalf("B during its outage: %+v, want the refreshed session kept", st)
	}
	if err := f.signOut(a, webA); err != nil {
		t.Fatalf("SignOut on A: %v", err)
	}
	outage.Down.Store(false)
	wait.For(t, "B's kept write flushed", func() bool { st := b.Stats(); return !st.BreakerOpen && st.PendingWrites == 0 })
	f.notServed("after B's kept write was flushed")
	if err := f.silent(webA); err == nil {
		t.Error("A serves alice after she signed out there")
	}
	if st := b.Stats(); st.RemovedSkips != 1 || st.PendingDropped != 0 {
		t.Errorf("B after the flush: RemovedSkips %d, PendingDropped %d; want 1 and 0", st.RemovedSkips, st.PendingDropped)
	}
}

// Alice signs out on A while A's own store is unreachable: SignOut says
// the removal is pending (B may still serve her), A's MSAL forgets her at
// once, and A stores the removal when its store is back, after which no
// instance serves her. A removal still pending at Close is counted in
// Close's error.
func TestSignOutDuringOwnOutage(t *testing.T) {
	f := newFarm(t)
	outage := &storetest.Outage{Store: f.store}
	a, webA := f.instance(outage)
	_, webB := f.instance(f.store)
	f.signIn(webA)
	if err := f.silent(webB); err != nil {
		t.Fatal(err)
	}
	outage.Down.Store(true)
	err := f.signOut(a, webA)
	if !errors.Is(err, msalcache.ErrRemovalPending) {
		t.Fatalf("SignOut with A's store down: %v, want ErrRemovalPending", err)
	}
	if err := f.silent(webA); err == nil {
		t.Error("A's MSAL client still serves alice after SignOut")
	}
	if st := a.Stats(); st.PendingRemovals != 1 {
		t.Fatalf("A during its outage: PendingRemovals %d, want 1", st.PendingRemovals)
	}
	outage.Down.Store(false)
	wait.For(t, "A's removal stored after its store came back", func() bool { return a.Stats().PendingRemovals == 0 })
	if err := f.silent(webB); err == nil {
		t.Error("B still serves alice once A stored her removal")
	}
	f.notServed("after A stored the removal")

	// Signed in again, and out during an outage that outlasts A.
	a2, webA2 := f.instance(outage)
	f.signIn(webA2)
	outage.Down.Store(true)
	if err := f.signOut(a2, webA2); !errors.Is(err, msalcache.ErrRemovalPending) {
		t.Fatalf("second SignOut: %v, want ErrRemovalPending", err)
	}
	err = a2.Close()
	if !errors.Is(err, msalcache.ErrRemovalPending) || !strings.Contains(err.Error(), "1 removals") {
		t.Fatalf("Close with a removal pending: %v, want ErrRemovalPending counting 1", err)
	}
}
