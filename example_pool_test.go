package msalcache_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/cache"
	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/entratest"
	"github.com/msalcache/msalcache/memstore"
)

// A web app builds one pool at start-up and makes every token call through
// it: sign-in, silent calls from any request handler (any number at once),
// sign-out.
func ExampleClientPool() {
	ctx := context.Background()
	entra := entratest.NewServer() // in production: login.microsoftonline.com
	defer entra.Close()
	alice := entra.AddUser("contoso", "alice@contoso.com", "")

	store := memstore.New() // in production the farm's Redis
	defer store.Close()
	adapter, err := msalcache.New(store, msalcache.WithPlaintext())
	if err != nil {
		log.Fatal(err)
	}
	defer adapter.Close()
	cred, _ := confidential.NewCredFromSecret("secret")
	pool, err := msalcache.NewClientPool(adapter, func(c cache.ExportReplace) (confidential.Client, error) {
		return confidential.New(entra.Authority("contoso"), "web-app", cred,
			confidential.WithCache(c), confidential.WithHTTPClient(entra.Client()))
	})
	if err != nil {
		log.Fatal(err)
	}

	scopes := []string{"api://surveys/Surveys.Access"}
	// The redirect handler: redeem the code, keep the account id in the session.
	ar, err := pool.AcquireTokenByAuthCode(ctx, entra.AuthCode("contoso", alice.Username), "https://app/cb", scopes)
	if err != nil {
		log.Fatal(err)
	}
	accountID := ar.Account.HomeAccountID

	// Any later request, on any instance sharing the store.
	if _, err := pool.AcquireTokenSilent(ctx, accountID, scopes); err != nil {
		log.Fatal(err)
	}
	fmt.Println("token requests:", entra.TokenRequests())

	// Sign-out.
	if err := pool.SignOut(ctx, accountID); err != nil {
		log.Fatal(err)
	}
	_, err = pool.AcquireTokenSilent(ctx, accountID, scopes)
	fmt.Println("signed out:", errors.Is(err, msalcache.ErrNoAccount))
	// Output:
	// token requests: 1
	// signed out: true
}

// A middle-tier API calls a downstream API on behalf of its caller: the
// token is shared through the store, so another instance presented the
// same incoming token makes no token request.
func ExampleClientPool_AcquireTokenOnBehalfOf() {
	ctx := context.Background()
	entra := entratest.NewServer()
	defer entra.Close()
	alice := entra.AddUser("contoso", "alice@contoso.com", "")
	store := memstore.New()
	defer store.Close()

	instance := func() *msalcache.ClientPool {
		adapter, err := msalcache.New(store, msalcache.WithPlaintext())
		if err != nil {
			log.Fatal(err)
		}
		cred, _ := confidential.NewCredFromSecret("secret")
		pool, err := msalcache.NewClientPool(adapter, func(c cache.ExportReplace) (confidential.Client, error) {
			return confidential.New(entra.Authority("contoso"), "middle-tier", cred,
				confidential.WithCache(c), confidential.WithHTTPClient(entra.Client()))
		})
		if err != nil {
			log.Fatal(err)
		}
		return pool
	}
	a, b := instance(), instance()

	// The token the middle tier received from its caller.
	in, err := a.AcquireTokenByAuthCode(ctx, entra.AuthCode("contoso", alice.Username), "https://app/cb", []string{"api://middle-tier/access"})
	if err != nil {
		log.Fatal(err)
	}
	downstream := []string{"api://downstream/read"}
	first, err := a.AcquireTokenOnBehalfOf(ctx, in.AccessToken, downstream)
	if err != nil {
		log.Fatal(err)
	}
	second, err := b.AcquireTokenOnBehalfOf(ctx, in.AccessToken, downstream)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("same token:", first.AccessToken == second.AccessToken)
	fmt.Println("on-behalf-of requests:", entra.TokenRequestsFor(entratest.GrantOnBehalfOf))
	// Output:
	// same token: true
	// on-behalf-of requests: 1
}

// Do runs MSAL calls the pool has no method for on a client of its own.
func ExampleClientPool_Do() {
	ctx := context.Background()
	entra := entratest.NewServer()
	defer entra.Close()
	entra.AddUser("contoso", "bob@contoso.com", "pw")
	store := memstore.New()
	defer store.Close()
	adapter, err := msalcache.New(store, msalcache.WithPlaintext())
	if err != nil {
		log.Fatal(err)
	}
	defer adapter.Close()
	cred, _ := confidential.NewCredFromSecret("secret")
	pool, err := msalcache.NewClientPool(adapter, func(c cache.ExportReplace) (confidential.Client, error) {
		return confidential.New(entra.Authority("contoso"), "web-app", cred,
			confidential.WithCache(c), confidential.WithHTTPClient(entra.Client()))
	}, msalcache.WithPoolSize(16))
	if err != nil {
		log.Fatal(err)
	}
	err = pool.Do(ctx, "", func(ctx context.Context, c confidential.Client) error {
		ar, err := c.AcquireTokenByUsernamePassword(ctx, []string{"api://x/read"}, "bob@contoso.com", "pw")
		if err == nil {
			fmt.Println("signed in:", ar.Account.PreferredUsername)
		}
		return err
	})
	if err != nil {
		log.Fatal(err)
	}
	// Output: signed in: bob@contoso.com
}
