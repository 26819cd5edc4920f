package msalcache_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"
	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/public"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/entratest"
	"github.com/msalcache/msalcache/memstore"
)

const signOutScope = "api://surveys/Surveys.Access"

func signOutContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// A web farm: alice and bob sign in on instance 1; alice signs out there
// with one SignOut call; then no instance serves her, an instance that
// held her tokens in memory included, and bob is still served everywhere.
func TestSignOutConfidential(t *testing.T) {
	ctx := signOutContext(t)
	entra := entratest.NewServer()
	t.Cleanup(entra.Close)
	store := memstore.New()
	t.Cleanup(func() { store.Close() })
	alice := entra.AddUser("contoso", "alice@contoso.com", "")
	bob := entra.AddUser("contoso", "bob@contoso.com", "")

	instance := func() (*msalcache.Adapter, confidential.Client) {
		t.Helper()
		a, err := msalcache.New(store, msalcache.WithPlaintext())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { a.Close() })
		cred, _ := confidential.NewCredFromSecret("secret")
		c, err := confidential.New(entra.Authority("contoso"), "web-app", cred,
			confidential.WithCache(a), confidential.WithHTTPClient(entra.Client()), confidential.WithInstanceDiscovery(false))
		if err != nil {
			t.Fatal(err)
		}
		return a, c
	}
	silent := func(c confidential.Client, u entratest.User) error {
		acct, err := c.Account(ctx, u.HomeAccountID)
		if err != nil {
			return err
		}
		_, err = c.AcquireTokenSilent(ctx, []string{signOutScope}, confidential.WithSilentAccount(acct))
		return err
	}
	a1, web1 := instance()
	for _, u := range []entratest.User{alice, bob} {
		if _, err := web1.AcquireTokenByAuthCode(ctx, entra.AuthCode("contoso", u.Username), "https://app/cb", []string{signOutScope}); err != nil {
			t.Fatal(err)
		}
	}
	_, web2 := instance()
	for _, u := range []entratest.User{alice, bob} {
		if err := silent(web2, u); err != nil {
			t.Fatalf("instance 2 before sign-out, %s: %v", u.Username, err)
		}
	}

	acct, err := web1.Account(ctx, alice.HomeAccountID)
	if err != nil {
		t.Fatal(err)
	}
	if err := msalcache.SignOut(ctx, a1, web1, acct, alice.HomeAccountID); err != nil {
		t.Fatalf("SignOut: %v", err)
	}
	before := entra.TokenRequests()
	_, web3 := instance()
	for name, c := range map[string]confidential.Client{"1": web1, "2": web2, "3 (new)": web3} {
		if err := silent(c, alice); err == nil {
			t.Errorf("instance %s still serves alice after SignOut", name)
		}
		if err := silent(c, bob); err != nil {
			t.Errorf("instance %s no longer serves bob after alice's SignOut: %v", name, err)
		}
	}
	if n := entra.TokenRequests() - before; n != 0 {
		t.Errorf("%d token requests after sign-out; bob's tokens should come from the store", n)
	}
	if blob, _, err := store.Load(ctx, a1.StoreKey(alice.HomeAccountID)); err != nil || !msalcache.IsRemovalRecord(blob) {
		t.Errorf("alice's partition after SignOut: %v; want a removal record", err)
	}
}

// An account this instance no longer finds (the zero Account) still has
// its stored partition deleted.
func TestSignOutZeroAccount(t *testing.T) {
	ctx := signOutContext(t)
	entra := entratest.NewServer()
	t.Cleanup(entra.Close)
	store := memstore.New()
	t.Cleanup(func() { store.Close() })
	alice := entra.AddUser("contoso", "alice@contoso.com", "")
	a, err := msalcache.New(store, msalcache.WithPlaintext())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	cred, _ := confidential.NewCredFromSecret("secret")
	c, _ := confidential.New(entra.Authority("contoso"), "web-app", cred,
		confidential.WithCache(a), confidential.WithHTTPClient(entra.Client()), confidential.WithInstanceDiscovery(false))
	if _, err := c.AcquireTokenByAuthCode(ctx, entra.AuthCode("contoso", alice.Username), "https://app/cb", []string{signOutScope}); err != nil {
		t.Fatal(err)
	}
	if err := msalcache.SignOut(ctx, a, c, confidential.Account{}, alice.HomeAccountID); err != nil {
		t.Fatalf("SignOut with a zero account: %v", err)
	}
	if blob, _, err := store.Load(ctx, a.StoreKey(alice.HomeAccountID)); err != nil || !msalcache.IsRemovalRecord(blob) {
		t.Errorf("partition after SignOut: %v; want a removal record", err)
	}
	if err := msalcache.SignOut(ctx, a, c, confidential.Account{}, ""); !errors.Is(err, msalcache.ErrNoAccountID) {
		t.Errorf("SignOut with no id: %v; want ErrNoAccountID", err)
	}
}

// A public client (WithSinglePartition) keeps every account in one
// partition: SignOut removes one account and leaves the other signed in.
func TestSignOutPublicSinglePartition(t *testing.T) {
	ctx := signOutContext(t)
	entra := entratest.NewServer()
	t.Cleanup(entra.Close)
	store := memstore.New()
	t.Cleanup(func() { store.Close() })
	entra.AddUser("contoso", "alice@contoso.com", "pw-a")
	entra.AddUser("contoso", "bob@contoso.com", "pw-b")
	newClient := func() (*msalcache.Adapter, public.Client) {
		a, err := msalcache.New(store, msalcache.WithPlaintext(), msalcache.WithSinglePartition())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { a.Close() })
		c, err := public.New("desktop-app", public.WithAuthority(entra.Authority("contoso")), public.WithCache(a),
			public.WithHTTPClient(entra.Client()), public.WithInstanceDiscovery(false))
		if err != nil {
			t.Fatal(err)
		}
		return a, c
	}
	a, c := newClient()
	for _, name := range []string{"alice@contoso.com", "bob@contoso.com"} {
		pw := map[string]string{"alice@contoso.com": "pw-a", "bob@contoso.com": "pw-b"}[name]
		//lint:ignore SA1019 the password grant is the offline way to sign a public client in
		if _, err := c.AcquireTokenByUsernamePassword(ctx, []string{signOutScope}, name, pw); err != nil {
			t.Fatal(err)
		}
	}
	accts, err := c.Accounts(ctx)
	if err != nil || len(accts) != 2 {
		t.Fatalf("accounts: %v, %v", accts, err)
	}
	var alice, bob public.Account
	for _, x := range accts {
		if x.PreferredUsername == "alice@contoso.com" {
			alice = x
		} else {
			bob = x
		}
	}
	if err := msalcache.SignOut(ctx, a, c, alice, alice.HomeAccountID); err != nil {
		t.Fatal(err)
	}
	_, other := newClient()
	if _, err := other.AcquireTokenSilent(ctx, []string{signOutScope}, public.WithSilentAccount(alice)); err == nil {
		t.Error("another client still serves alice after SignOut")
	}
	if _, err := other.AcquireTokenSilent(ctx, []string{signOutScope}, public.WithSilentAccount(bob)); err != nil {
		t.Errorf("bob was signed out with alice: %v", err)
	}
}
