package entratest_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"log"
	"net"
	"net/http"
	"strings"
	"time"

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

// An application's production authority works unchanged in a test: the
// Server's Client sends Microsoft's login hosts to the emulator, so the
// code under test needs no test-only configuration but its HTTP client.
func ExampleServer_Client() {
	srv := entratest.NewServer()
	defer srv.Close()

	cred, _ := confidential.NewCredFromSecret("any-secret")
	app, err := confidential.New("https://login.microsoftonline.com/contoso", "my-daemon", cred,
		confidential.WithHTTPClient(srv.Client()))
	if err != nil {
		log.Fatal(err)
	}
	res, err := app.AcquireTokenByCredential(context.Background(), []string{"api://backend/.default"})
	if err != nil {
		log.Fatal(err)
	}
	claims, _ := entratest.ParseToken(res.AccessToken)
	fmt.Println(claims.Issuer)
	// Output:
	// https://login.microsoftonline.com/contoso/v2.0
}

// A client that is not MSAL, such as a resource server fetching the
// signing keys, trusts the emulator through its certificate.
func ExampleServer_Certificate() {
	srv := entratest.NewServer()
	defer srv.Close()

	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := client.Get(srv.Authority("contoso") + "/v2.0/.well-known/openid-configuration")
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	var cfg struct {
		JWKSURI string `json:"jwks_uri"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&cfg); err != nil {
		log.Fatal(err)
	}
	fmt.Println(cfg.JWKSURI == srv.Authority("contoso")+"/discovery/v2.0/keys")
	// Output:
	// true
}

// A user added to one tenant signs in at "organizations" and gets tokens of
// their home tenant, with the object id AddUser reported.
func ExampleServer_AddUser() {
	srv := entratest.NewServer()
	defer srv.Close()
	carol := srv.AddUser("fabrikam", "carol@fabrikam.com", "p@ss")

	app, err := public.New("my-desktop-app", public.WithAuthority(srv.Authority("organizations")),
		public.WithHTTPClient(srv.Client()))
	if err != nil {
		log.Fatal(err)
	}
	res, err := app.AcquireTokenInteractive(context.Background(), []string{"User.Read"},
		public.WithOpenURL(srv.OpenURL("carol@fabrikam.com")))
	if err != nil {
		log.Fatal(err)
	}
	claims, _ := entratest.ParseToken(res.AccessToken)
	fmt.Println(claims.Tenant, claims.ObjectID == carol.ObjectID)
	// Output:
	// fabrikam true
}

// A middle tier exchanges the user's token on behalf of the user; the
// counters tell which grants reached the token endpoint, and ResetCounters
// leaves out the setup.
func ExampleServer_TokenRequestsFor() {
	srv := entratest.NewServer()
	defer srv.Close()
	srv.AddUser("contoso", "alice@contoso.com", "p@ss")
	ctx := context.Background()
	newApp := func(clientID string) confidential.Client {
		cred, _ := confidential.NewCredFromSecret("any-secret")
		app, err := confidential.New(srv.Authority("contoso"), clientID, cred,
			confidential.WithHTTPClient(srv.Client()), confidential.WithInstanceDiscovery(false))
		if err != nil {
			log.Fatal(err)
		}
		return app
	}

	front := newApp("front-end")
	res, err := front.AcquireTokenByAuthCode(ctx, srv.AuthCode("contoso", "alice@contoso.com"),
		"https://front.example/callback", []string{"api://middle-tier/access_as_user"})
	if err != nil {
		log.Fatal(err)
	}
	srv.ResetCounters()

	middle := newApp("middle-tier")
	for i := 0; i < 3; i++ {
		if _, err := middle.AcquireTokenOnBehalfOf(ctx, res.AccessToken, []string{"api://downstream/.default"}); err != nil {
			log.Fatal(err)
		}
	}
	fmt.Println("on-behalf-of:", srv.TokenRequestsFor(entratest.GrantOnBehalfOf))
	fmt.Println("authorization code:", srv.TokenRequestsFor(entratest.GrantAuthorizationCode))
	fmt.Println("all:", srv.TokenRequests())
	// Output:
	// on-behalf-of: 1
	// authorization code: 0
	// all: 1
}

// VerifyToken tells the Server's own tokens from any other JWT, for a
// resource server under test that must refuse forged tokens.
func ExampleServer_VerifyToken() {
	srv := entratest.NewServer()
	defer srv.Close()
	other := entratest.NewServer()
	defer other.Close()

	token := func(s *entratest.Server) string {
		cred, _ := confidential.NewCredFromSecret("any-secret")
		app, err := confidential.New(s.Authority("contoso"), "my-daemon", cred,
			confidential.WithHTTPClient(s.Client()), confidential.WithInstanceDiscovery(false))
		if err != nil {
			log.Fatal(err)
		}
		res, err := app.AcquireTokenByCredential(context.Background(), []string{"api://backend/.default"})
		if err != nil {
			log.Fatal(err)
		}
		return res.AccessToken
	}
	claims, err := srv.VerifyToken(token(srv))
	fmt.Println("own token:", claims.ClientID, err)
	_, err = srv.VerifyToken(token(other))
	fmt.Println("another server's token refused:", err != nil)
	// Output:
	// own token: my-daemon <nil>
	// another server's token refused: true
}

// A client registered with WithClientSecret must present that secret, so
// a test can check that the code under test sends the configured one.
func ExampleWithClientSecret() {
	srv := entratest.NewServer(entratest.WithClientSecret("my-daemon", "the-secret"))
	defer srv.Close()

	for _, secret := range []string{"the-secret", "a-stale-secret"} {
		cred, _ := confidential.NewCredFromSecret(secret)
		app, err := confidential.New(srv.Authority("contoso"), "my-daemon", cred,
			confidential.WithHTTPClient(srv.Client()), confidential.WithInstanceDiscovery(false))
		if err != nil {
			log.Fatal(err)
		}
		_, err = app.AcquireTokenByCredential(context.Background(), []string{"api://backend/.default"})
		fmt.Printf("%s: refused as invalid_client: %v\n", secret, err != nil && strings.Contains(err.Error(), "invalid_client"))
	}
	// Output:
	// the-secret: refused as invalid_client: false
	// a-stale-secret: refused as invalid_client: true
}

// MSAL-Go does not cache an access token that expires within 5 minutes, so
// a short lifetime makes every acquisition reach the token endpoint: the way
// to test what a cache does when MSAL asks for a new token.
func ExampleWithTokenLifetime() {
	srv := entratest.NewServer(entratest.WithTokenLifetime(2 * time.Minute))
	defer srv.Close()

	cred, _ := confidential.NewCredFromSecret("any-secret")
	app, err := confidential.New(srv.Authority("contoso"), "my-daemon", cred,
		confidential.WithHTTPClient(srv.Client()), confidential.WithInstanceDiscovery(false))
	if err != nil {
		log.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		res, err := app.AcquireTokenByCredential(context.Background(), []string{"api://backend/.default"})
		if err != nil {
			log.Fatal(err)
		}
		claims, _ := entratest.ParseToken(res.AccessToken)
		fmt.Println("lifetime:", claims.ExpiresAt.Sub(claims.IssuedAt))
	}
	fmt.Println("token requests:", srv.TokenRequests())
	// Output:
	// lifetime: 2m0s
	// lifetime: 2m0s
	// token requests: 2
}

// With the latency of the real endpoint, a benchmark shows what a cache
// saves: the first acquisition waits, the cached one does not.
func ExampleWithLatency() {
	const latency = 100 * time.Millisecond
	srv := entratest.NewServer(entratest.WithLatency(latency))
	defer srv.Close()

	cred, _ := confidential.NewCredFromSecret("any-secret")
	app, err := confidential.New(srv.Authority("contoso"), "my-daemon", cred,
		confidential.WithHTTPClient(srv.Client()), confidential.WithInstanceDiscovery(false))
	if err != nil {
		log.Fatal(err)
	}
	start := time.Now()
	if _, err := app.AcquireTokenByCredential(context.Background(), []string{"api://backend/.default"}); err != nil {
		log.Fatal(err)
	}
	fmt.Println("token request waited:", time.Since(start) >= latency)
	// Output:
	// token request waited: true
}

// A program restarted on the same address has the same authority, so the
// tokens it cached in the last run still match, and the same users get the
// same ids. Start reports a busy address as an error where NewServer would
// panic.
func ExampleWithAddr() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	first, err := entratest.Start(entratest.WithAddr(addr))
	if err != nil {
		log.Fatal(err)
	}
	alice := first.AddUser("contoso", "alice@contoso.com", "p@ss")
	authority := first.Authority("contoso")
	if _, err := entratest.Start(entratest.WithAddr(addr)); err != nil {
		fmt.Println("second server on the address: refused")
	}
	first.Close()

	second, err := entratest.Start(entratest.WithAddr(addr))
	if err != nil {
		log.Fatal(err)
	}
	defer second.Close()
	fmt.Println("same authority:", second.Authority("contoso") == authority)
	fmt.Println("same user:", second.AddUser("contoso", "alice@contoso.com", "p@ss") == alice)
	// Output:
	// second server on the address: refused
	// same authority: true
	// same user: true
}
