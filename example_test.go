package msalcache_test

import (
	"context"
	"fmt"
	"log"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/entratest"
	"github.com/msalcache/msalcache/memstore"
)

// Two instances of a daemon share one store: the token the first one buys
// is served to the second without another request to Entra ID.
func Example() {
	ctx := context.Background()
	entra := entratest.NewServer() // stands in for login.microsoftonline.com
	defer entra.Close()

	store := memstore.New() // in production: redisstore, memcachestore or boltstore
	defer store.Close()

	instance := func() confidential.Client {
		// In production, encrypt: msalcache.WithProtector(keyRing).
		adapter, err := msalcache.New(store, msalcache.WithPlaintext())
		if err != nil {
			log.Fatal(err)
		}
		cred, err := confidential.NewCredFromSecret("client-secret")
		if err != nil {
			log.Fatal(err)
		}
		client, err := confidential.New(entra.Authority("contoso"), "my-client-id", cred,
			confidential.WithCache(adapter),
			confidential.WithHTTPClient(entra.Client()))
		if err != nil {
			log.Fatal(err)
		}
		return client
	}

	scopes := []string{"api://backend/.default"}
	first, err := instance().AcquireTokenByCredential(ctx, scopes)
	if err != nil {
		log.Fatal(err)
	}
	second, err := instance().AcquireTokenByCredential(ctx, scopes)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("same token:", first.AccessToken == second.AccessToken)
	fmt.Println("token requests:", entra.TokenRequests())
	// Output:
	// same token: true
	// token requests: 1
}

// Adapter.Remove completes a sign-out: MSAL's RemoveAccount leaves the
// user's own partition in the store.
func ExampleAdapter_Remove() {
	ctx := context.Background()
	store := memstore.New()
	adapter, err := msalcache.New(store, msalcache.WithPlaintext())
	if err != nil {
		log.Fatal(err)
	}
	// After client.RemoveAccount(ctx, account):
	homeAccountID := "00000000-0000-0000-0000-000000000001.contoso"
	if err := adapter.Remove(ctx, homeAccountID); err != nil {
		log.Fatal(err)
	}
	fmt.Println("deleted:", adapter.Stats().Deletes)
	// Output: deleted: 1
}
