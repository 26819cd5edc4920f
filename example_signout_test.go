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

// A web app's sign-out handler: one call removes the user from MSAL's
// cache and their partition from the shared store, so no instance of the
// farm serves their tokens any more.
func ExampleSignOut() {
	ctx := context.Background()
	entra := entratest.NewServer()
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
	client, err := confidential.New(entra.Authority("contoso"), "web-app", cred,
		confidential.WithCache(adapter), confidential.WithHTTPClient(entra.Client()))
	if err != nil {
		log.Fatal(err)
	}
	scopes := []string{"api://surveys/Surveys.Access"}
	if _, err := client.AcquireTokenByAuthCode(ctx, entra.AuthCode("contoso", alice.Username), "https://app/cb", scopes); err != nil {
		log.Fatal(err)
	}

	// Sign-out: the session holds the account id.
	accountID := alice.HomeAccountID
	account, err := client.Account(ctx, accountID)
	if err != nil {
		log.Fatal(err)
	}
	if err := msalcache.SignOut(ctx, adapter, client, account, accountID); err != nil {
		log.Fatal(err) // the user's tokens may survive: tell the user
	}

	after, _ := client.Account(ctx, accountID)
	_, err = client.AcquireTokenSilent(ctx, scopes, confidential.WithSilentAccount(after))
	fmt.Println("served after sign-out:", err == nil)
	// Output: served after sign-out: false
}
