package entratest_test

import (
	"context"
	"fmt"
	"log"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"
	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/public"

	"github.com/msalcache/msalcache/entratest"
)

// An MSAL confidential client gets an app token from the emulator, then
// from its own cache: the server saw one token request.
func Example() {
	srv := entratest.NewServer()
	defer srv.Close()

	cred, err := confidential.NewCredFromSecret("any-secret")
	if err != nil {
		log.Fatal(err)
	}
	app, err := confidential.New(srv.Authority("contoso"), "my-daemon", cred,
		confidential.WithHTTPClient(srv.Client()))
	if err != nil {
		log.Fatal(err)
	}

	ctx := context.Background()
	for i := 0; i < 2; i++ {
		res, err := app.AcquireTokenByCredential(ctx, []string{"api://backend/.default"})
		if err != nil {
			log.Fatal(err)
		}
		claims, err := entratest.ParseToken(res.AccessToken)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("token for %s in %s, audience %s\n", claims.ClientID, claims.Tenant, claims.Audience)
	}
	fmt.Println("token requests:", srv.TokenRequests())
	// Output:
	// token for my-daemon in contoso, audience api://backend
	// token for my-daemon in contoso, audience api://backend
	// token requests: 1
}

// A web app redeems an authorization code for a user, then serves the
// user's next request silently from its cache.
func ExampleServer_AuthCode() {
	srv := entratest.NewServer()
	defer srv.Close()
	alice := srv.AddUser("contoso", "alice@contoso.com", "p@ss")

	cred, _ := confidential.NewCredFromSecret("any-secret")
	app, err := confidential.New(srv.Authority("contoso"), "my-web-app", cred,
		confidential.WithHTTPClient(srv.Client()), confidential.WithInstanceDiscovery(false))
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	scopes := []string{"https://graph.microsoft.com/User.Read"}

	// The code the browser would bring back from the authorize endpoint.
	code := srv.AuthCode("contoso", "alice@contoso.com")
	res, err := app.AcquireTokenByAuthCode(ctx, code, "https://my-web-app.example/callback", scopes)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("signed in:", res.Account.PreferredUsername)
	fmt.Println("home account id matches:", res.Account.HomeAccountID == alice.HomeAccountID)

	res, err = app.AcquireTokenSilent(ctx, scopes, confidential.WithSilentAccount(res.Account))
	if err != nil {
		log.Fatal(err)
	}
	claims, _ := entratest.ParseToken(res.AccessToken)
	fmt.Println("token for user:", claims.Username, claims.ObjectID == alice.ObjectID)
	fmt.Println("token requests:", srv.TokenRequests())
	// Output:
	// signed in: alice@contoso.com
	// home account id matches: true
	// token for user: alice@contoso.com true
	// token requests: 1
}

// A desktop app signs a user in interactively; OpenURL plays the browser.
func ExampleServer_OpenURL() {
	srv := entratest.NewServer()
	defer srv.Close()
	srv.AddUser("contoso", "bob@contoso.com", "p@ss")

	app, err := public.New("my-desktop-app", public.WithAuthority(srv.Authority("contoso")),
		public.WithHTTPClient(srv.Client()))
	if err != nil {
		log.Fatal(err)
	}
	res, err := app.AcquireTokenInteractive(context.Background(), []string{"User.Read"},
		public.WithOpenURL(srv.OpenURL("bob@contoso.com")))
	if err != nil {
		log.Fatal(err)
	}
	claims, _ := entratest.ParseToken(res.AccessToken)
	fmt.Println(claims.Username, claims.Grant, claims.Audience)
	// Output:
	// bob@contoso.com authorization_code https://graph.microsoft.com
}
