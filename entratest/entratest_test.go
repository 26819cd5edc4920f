package entratest_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/cache"
	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"
	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/public"

	"github.com/msalcache/msalcache/entratest"
)

const (
	tenant    = "contoso"
	appID     = "11111111-aaaa-4bbb-8ccc-000000000001"
	apiScope  = "api://backend/.default"
	userScope = "https://graph.microsoft.com/User.Read"
)

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func newServer(t *testing.T, opts ...entratest.Option) *entratest.Server {
	t.Helper()
	srv := entratest.NewServer(opts...)
	t.Cleanup(srv.Close)
	return srv
}

func newConfidential(t *testing.T, srv *entratest.Server, tenant, clientID string, opts ...confidential.Option) confidential.Client {
	t.Helper()
	cred, err := confidential.NewCredFromSecret("secret-" + clientID)
	if err != nil {
		t.Fatal(err)
	}
	opts = append([]confidential.Option{confidential.WithHTTPClient(srv.Client())}, opts...)
	app, err := confidential.New(srv.Authority(tenant), clientID, cred, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return app
}

func parse(t *testing.T, token string) entratest.Claims {
	t.Helper()
	c, err := entratest.ParseToken(token)
	if err != nil {
		t.Fatalf("ParseToken: %v", err)
	}
	return c
}

func wantRequests(t *testing.T, srv *entratest.Server, want int) {
	t.Helper()
	if got := srv.TokenRequests(); got != want {
		t.Fatalf("TokenRequests() = %d, want %d", got, want)
	}
}

func TestClientCredentials(t *testing.T) {
	for _, discovery := range []bool{true, false} {
		t.Run(fmt.Sprintf("InstanceDiscovery=%v", discovery), func(t *testing.T) {
			ctx := testContext(t)
			srv := newServer(t)
			app := newConfidential(t, srv, tenant, appID, confidential.WithInstanceDiscovery(discovery))

			res, err := app.AcquireTokenByCredential(ctx, []string{apiScope})
			if err != nil {
				t.Fatal(err)
			}
			c := parse(t, res.AccessToken)
			if c.ClientID != appID || c.Tenant != tenant || !c.App || c.Grant != entratest.GrantClientCredentials {
				t.Errorf("claims = %+v, want app token for %s in %s", c, appID, tenant)
			}
			if c.Audience != "api://backend" || len(c.Scopes) != 1 || c.Scopes[0] != apiScope {
				t.Errorf("aud %q scopes %q, want api://backend [%s]", c.Audience, c.Scopes, apiScope)
			}
			if c.HomeAccountID() != "" {
				t.Errorf("app token HomeAccountID = %q, want empty", c.HomeAccountID())
			}
			if _, err := srv.VerifyToken(res.AccessToken); err != nil {
				t.Errorf("VerifyToken: %v", err)
			}
			if d := time.Until(res.ExpiresOn); d < 55*time.Minute || d > 61*time.Minute {
				t.Errorf("ExpiresOn in %v, want ~1h", d)
			}
			wantRequests(t, srv, 1)

			res2, err := app.AcquireTokenByCredential(ctx, []string{apiScope})
			if err != nil {
				t.Fatal(err)
			}
			if res2.AccessToken != res.AccessToken || res2.Metadata.TokenSource != confidential.TokenSourceCache {
				t.Error("second call was not served from MSAL's cache")
			}
			wantRequests(t, srv, 1)
			if n := srv.TokenRequestsFor(entratest.GrantClientCredentials); n != 1 {
				t.Errorf("TokenRequestsFor(client_credentials) = %d, want 1", n)
			}

			// Another client gets its own, different token.
			other := newConfidential(t, srv, tenant, "other-app", confidential.WithInstanceDiscovery(discovery))
			res3, err := other.AcquireTokenByCredential(ctx, []string{apiScope})
			if err != nil {
				t.Fatal(err)
			}
			c3 := parse(t, res3.AccessToken)
			if c3.ClientID != "other-app" || c3.ID == c.ID || c3.ObjectID == c.ObjectID {
				t.Errorf("other client's token %+v not distinct from %+v", c3, c)
			}
			wantRequests(t, srv, 2)
		})
	}
}

// A production authority works unchanged when MSAL uses the Server's Client.
func TestProductionAuthority(t *testing.T) {
	ctx := testContext(t)
	srv := newServer(t)
	cred, _ := confidential.NewCredFromSecret("s")
	app, err := confidential.New("https://login.microsoftonline.com/"+tenant, appID, cred,
		confidential.WithHTTPClient(srv.Client()))
	if err != nil {
		t.Fatal(err)
	}
	res, err := app.AcquireTokenByCredential(ctx, []string{apiScope})
	if err != nil {
		t.Fatal(err)
	}
	c := parse(t, res.AccessToken)
	if c.Issuer != "https://login.microsoftonline.com/contoso/v2.0" || c.ClientID != appID {
		t.Errorf("claims = %+v", c)
	}
	wantRequests(t, srv, 1)
}

func TestAuthCodeSilentAndRefresh(t *testing.T) {
	ctx := testContext(t)
	srv := newServer(t)
	alice := srv.AddUser(tenant, "alice@contoso.com", "pw")
	app := newConfidential(t, srv, tenant, appID, confidential.WithInstanceDiscovery(false))

	code := srv.AuthCode(tenant, "alice@contoso.com")
	res, err := app.AcquireTokenByAuthCode(ctx, code, "https://app.example/callback", []string{userScope})
	if err != nil {
		t.Fatal(err)
	}
	c := parse(t, res.AccessToken)
	if c.ObjectID != alice.ObjectID || c.Subject != alice.ObjectID || c.Tenant != tenant || c.ClientID != appID ||
		c.Username != "alice@contoso.com" || c.App || c.Grant != entratest.GrantAuthorizationCode {
		t.Errorf("claims = %+v, want alice's token", c)
	}
	if c.Audience != "https://graph.microsoft.com" || c.Raw["scp"] != "User.Read" {
		t.Errorf("aud %q scp %v", c.Audience, c.Raw["scp"])
	}
	if res.Account.HomeAccountID != alice.HomeAccountID || c.HomeAccountID() != alice.HomeAccountID {
		t.Errorf("HomeAccountID = %q (claims %q), want %q", res.Account.HomeAccountID, c.HomeAccountID(), alice.HomeAccountID)
	}
	if res.Account.PreferredUsername != "alice@contoso.com" || res.IDToken.Oid != alice.ObjectID {
		t.Errorf("account %+v id token oid %q", res.Account, res.IDToken.Oid)
	}
	wantRequests(t, srv, 1)

	// The code is single use.
	if _, err := app.AcquireTokenByAuthCode(ctx, code, "https://app.example/callback", []string{userScope}); err == nil ||
		!strings.Contains(err.Error(), "invalid_grant") {
		t.Errorf("second redemption of a code: err = %v, want invalid_grant", err)
	}
	wantRequests(t, srv, 2)
	srv.ResetCounters()

	acct, err := app.Account(ctx, alice.HomeAccountID)
	if err != nil {
		t.Fatal(err)
	}
	silent, err := app.AcquireTokenSilent(ctx, []string{userScope}, confidential.WithSilentAccount(acct))
	if err != nil {
		t.Fatal(err)
	}
	if silent.AccessToken != res.AccessToken {
		t.Error("silent call did not return the cached token")
	}
	wantRequests(t, srv, 0)

	// Other scopes: MSAL redeems the refresh token.
	mail, err := app.AcquireTokenSilent(ctx, []string{"https://graph.microsoft.com/Mail.Read"}, confidential.WithSilentAccount(acct))
	if err != nil {
		t.Fatal(err)
	}
	mc := parse(t, mail.AccessToken)
	if mc.ObjectID != alice.ObjectID || mc.Grant != entratest.GrantRefreshToken || mc.Raw["scp"] != "Mail.Read" {
		t.Errorf("refreshed claims = %+v", mc)
	}
	wantRequests(t, srv, 1)
	if n := srv.TokenRequestsFor(entratest.GrantRefreshToken); n != 1 {
		t.Errorf("TokenRequestsFor(refresh_token) = %d, want 1", n)
	}
	// And caches the result.
	if _, err := app.AcquireTokenSilent(ctx, []string{"https://graph.microsoft.com/Mail.Read"}, confidential.WithSilentAccount(acct)); err != nil {
		t.Fatal(err)
	}
	wantRequests(t, srv, 1)
}

func TestAuthCodeErrors(t *testing.T) {
	ctx := testContext(t)
	srv := newServer(t)
	srv.AddUser("fabrikam", "bob@fabrikam.com", "pw")
	app := newConfidential(t, srv, tenant, appID, confidential.WithInstanceDiscovery(false))
	for name, code := range map[string]string{
		"unknown user":  srv.AuthCode(tenant, "nobody@contoso.com"),
		"other tenant":  srv.AuthCode("fabrikam", "bob@fabrikam.com"),
		"unknown code":  "not-a-code",
		"tenant casing": srv.AuthCode("CONTOSO", "bob@fabrikam.com"),
	} {
		_, err := app.AcquireTokenByAuthCode(ctx, code, "https://app.example/cb", []string{userScope})
		if err == nil || !strings.Contains(err.Error(), "invalid_grant") {
			t.Errorf("%s: err = %v, want invalid_grant", name, err)
		}
	}
	wantRequests(t, srv, 4)
}

func TestOnBehalfOf(t *testing.T) {
	ctx := testContext(t)
	srv := newServer(t)
	alice := srv.AddUser(tenant, "alice@contoso.com", "pw")

	// The user signs in to the front end, which calls the middle tier.
	front := newConfidential(t, srv, tenant, "front-end", confidential.WithInstanceDiscovery(false))
	res, err := front.AcquireTokenByAuthCode(ctx, srv.AuthCode(tenant, alice.Username), "https://front/cb",
		[]string{"api://middle/access_as_user"})
	if err != nil {
		t.Fatal(err)
	}
	userToken := res.AccessToken

	middle := newConfidential(t, srv, tenant, "middle-tier", confidential.WithInstanceDiscovery(false))
	obo, err := middle.AcquireTokenOnBehalfOf(ctx, userToken, []string{"api://downstream/.default"})
	if err != nil {
		t.Fatal(err)
	}
	c := parse(t, obo.AccessToken)
	if c.ObjectID != alice.ObjectID || c.ClientID != "middle-tier" || c.Tenant != tenant ||
		c.Audience != "api://downstream" || c.Grant != entratest.GrantOnBehalfOf || c.App {
		t.Errorf("OBO claims = %+v", c)
	}
	if obo.Account.HomeAccountID != alice.HomeAccountID {
		t.Errorf("OBO account %q, want %q", obo.Account.HomeAccountID, alice.HomeAccountID)
	}
	wantRequests(t, srv, 2)
	if n := srv.TokenRequestsFor(entratest.GrantOnBehalfOf); n != 1 {
		t.Errorf("TokenRequestsFor(OBO) = %d, want 1", n)
	}

	again, err := middle.AcquireTokenOnBehalfOf(ctx, userToken, []string{"api://downstream/.default"})
	if err != nil {
		t.Fatal(err)
	}
	if again.AccessToken != obo.AccessToken {
		t.Error("second OBO call did not return the cached token")
	}
	wantRequests(t, srv, 2)

	// Not a user token, not a token at all.
	app, err := middle.AcquireTokenByCredential(ctx, []string{apiScope})
	if err != nil {
		t.Fatal(err)
	}
	for name, assertion := range map[string]string{"app token": app.AccessToken, "garbage": "not.a.jwt"} {
		if _, err := middle.AcquireTokenOnBehalfOf(ctx, assertion, []string{"api://downstream/.default"}); err == nil ||
			!strings.Contains(err.Error(), "invalid_grant") {
			t.Errorf("OBO with %s: err = %v, want invalid_grant", name, err)
		}
	}
}

// Any JWT naming a user is a valid OBO assertion, as long as it is not
// expired.
func TestOnBehalfOfForeignAssertion(t *testing.T) {
	ctx := testContext(t)
	srv := newServer(t)
	middle := newConfidential(t, srv, tenant, "middle-tier", confidential.WithInstanceDiscovery(false))
	jwt := func(claims string) string {
		enc := base64.RawURLEncoding.EncodeToString
		return enc([]byte(`{"alg":"none"}`)) + "." + enc([]byte(claims)) + ".c2ln"
	}
	exp := time.Now().Add(time.Hour).Unix()
	res, err := middle.AcquireTokenOnBehalfOf(ctx,
		jwt(fmt.Sprintf(`{"oid":"u-1","tid":"fabrikam","preferred_username":"carol@fabrikam.com","exp":%d}`, exp)),
		[]string{"api://downstream/.default"})
	if err != nil {
		t.Fatal(err)
	}
	c := parse(t, res.AccessToken)
	if c.ObjectID != "u-1" || c.Username != "carol@fabrikam.com" || c.Tenant != tenant {
		t.Errorf("claims = %+v", c)
	}
	expired := jwt(fmt.Sprintf(`{"oid":"u-1","tid":"fabrikam","exp":%d}`, time.Now().Add(-time.Hour).Unix()))
	if _, err := middle.AcquireTokenOnBehalfOf(ctx, expired, []string{"api://downstream/.default"}); err == nil ||
		!strings.Contains(err.Error(), "AADSTS500133") {
		t.Errorf("expired assertion: err = %v, want AADSTS500133", err)
	}
}

func TestPublicUsernamePassword(t *testing.T) {
	for _, discovery := range []bool{true, false} {
		t.Run(fmt.Sprintf("InstanceDiscovery=%v", discovery), func(t *testing.T) {
			ctx := testContext(t)
			srv := newServer(t)
			bob := srv.AddUser(tenant, "bob@contoso.com", "correct horse")
			app, err := public.New("public-app", public.WithAuthority(srv.Authority(tenant)),
				public.WithHTTPClient(srv.Client()), public.WithInstanceDiscovery(discovery))
			if err != nil {
				t.Fatal(err)
			}
			//lint:ignore SA1019 ROPC is deprecated in MSAL-Go but still supported, and the emulator serves it.
			res, err := app.AcquireTokenByUsernamePassword(ctx, []string{userScope}, "Bob@Contoso.com", "correct horse")
			if err != nil {
				t.Fatal(err)
			}
			c := parse(t, res.AccessToken)
			if c.ObjectID != bob.ObjectID || c.ClientID != "public-app" || c.Grant != entratest.GrantPassword || c.Raw["azpacr"] != "0" {
				t.Errorf("claims = %+v", c)
			}
			if res.Account.HomeAccountID != bob.HomeAccountID {
				t.Errorf("HomeAccountID = %q, want %q", res.Account.HomeAccountID, bob.HomeAccountID)
			}
			accts, err := app.Accounts(ctx)
			if err != nil || len(accts) != 1 {
				t.Fatalf("Accounts() = %v, %v", accts, err)
			}
			if _, err := app.AcquireTokenSilent(ctx, []string{userScope}, public.WithSilentAccount(accts[0])); err != nil {
				t.Fatal(err)
			}
			wantRequests(t, srv, 1)
			if n := srv.TokenRequestsFor(entratest.GrantPassword); n != 1 {
				t.Errorf("TokenRequestsFor(password) = %d", n)
			}

			for name, pw := range map[string]string{"bob@contoso.com": "wrong", "nobody@contoso.com": "x"} {
				//lint:ignore SA1019 see above
				_, err := app.AcquireTokenByUsernamePassword(ctx, []string{userScope}, name, pw)
				if err == nil || !strings.Contains(err.Error(), "invalid_grant") {
					t.Errorf("%s/%s: err = %v, want invalid_grant", name, pw, err)
				}
			}
		})
	}
}

func TestPublicInteractive(t *testing.T) {
	ctx := testContext(t)
	srv := newServer(t)
	dave := srv.AddUser(tenant, "dave@contoso.com", "pw")
	app, err := public.New("desktop-app", public.WithAuthority(srv.Authority(tenant)),
		public.WithHTTPClient(srv.Client()), public.WithInstanceDiscovery(false))
	if err != nil {
		t.Fatal(err)
	}
	res, err := app.AcquireTokenInteractive(ctx, []string{userScope}, public.WithOpenURL(srv.OpenURL("dave@contoso.com")))
	if err != nil {
		t.Fatal(err)
	}
	if c := parse(t, res.AccessToken); c.ObjectID != dave.ObjectID || c.Grant != entratest.GrantAuthorizationCode {
		t.Errorf("claims = %+v", c)
	}
	_, err = app.AcquireTokenInteractive(ctx, []string{userScope}, public.WithOpenURL(srv.OpenURL("nobody@contoso.com")))
	if err == nil {
		t.Error("interactive sign-in of an unknown user succeeded")
	}
}

// The authorize endpoint checks PKCE, client and redirect URI when the code
// is redeemed.
func TestAuthorizeEndpoint(t *testing.T) {
	ctx := testContext(t)
	srv := newServer(t)
	srv.AddUser(tenant, "erin@contoso.com", "pw")
	app := newConfidential(t, srv, tenant, appID, confidential.WithInstanceDiscovery(false))
	verifier := "a-verifier-of-sufficient-length-0123456789"
	sum := sha256.Sum256([]byte(verifier))
	challenge := base64.RawURLEncoding.EncodeToString(sum[:])

	authURL, err := app.AuthCodeURL(ctx, appID, "https://app.example/cb", []string{userScope},
		confidential.WithLoginHint("erin@contoso.com"))
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(authURL)
	q := u.Query()
	q.Set("code_challenge", challenge)
	q.Set("code_challenge_method", "S256")
	q.Set("state", "xyz")
	u.RawQuery = q.Encode()

	client := *srv.Client()
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	getCode := func() string {
		t.Helper()
		resp, err := client.Get(u.String())
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		loc, err := resp.Location()
		if err != nil {
			t.Fatalf("authorize: status %d, no redirect: %v", resp.StatusCode, err)
		}
		if loc.Query().Get("state") != "xyz" || loc.Query().Get("code") == "" {
			t.Fatalf("authorize redirected to %s", loc)
		}
		return loc.Query().Get("code")
	}

	if _, err := app.AcquireTokenByAuthCode(ctx, getCode(), "https://app.example/cb", []string{userScope},
		confidential.WithChallenge("wrong-verifier")); err == nil || !strings.Contains(err.Error(), "AADSTS501481") {
		t.Errorf("wrong verifier: err = %v", err)
	}
	if _, err := app.AcquireTokenByAuthCode(ctx, getCode(), "https://elsewhere/cb", []string{userScope},
		confidential.WithChallenge(verifier)); err == nil || !strings.Contains(err.Error(), "invalid_grant") {
		t.Errorf("wrong redirect URI: err = %v", err)
	}
	other := newConfidential(t, srv, tenant, "another-app", confidential.WithInstanceDiscovery(false))
	if _, err := other.AcquireTokenByAuthCode(ctx, getCode(), "https://app.example/cb", []string{userScope},
		confidential.WithChallenge(verifier)); err == nil || !strings.Contains(err.Error(), "invalid_grant") {
		t.Errorf("wrong client: err = %v", err)
	}
	if _, err := app.AcquireTokenByAuthCode(ctx, getCode(), "https://app.example/cb", []string{userScope},
		confidential.WithChallenge(verifier)); err != nil {
		t.Errorf("valid code: %v", err)
	}

	// response_mode=form_post: an auto-submitting form carries the code.
	fq := u.Query()
	fq.Set("response_mode", "form_post")
	fu := *u
	fu.RawQuery = fq.Encode()
	resp, err := client.Get(fu.String())
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(page), `name="code"`) ||
		!strings.Contains(string(page), `action="https://app.example/cb"`) {
		t.Errorf("form_post: status %d page %s", resp.StatusCode, page)
	}

	// Not an authorize URL.
	if err := srv.OpenURL("erin@contoso.com")(srv.URL() + "/contoso/oauth2/v2.0/token"); err == nil {
		t.Error("OpenURL accepted a token endpoint URL")
	}

	// No known user: the error goes back to the redirect URI.
	q.Set("login_hint", "nobody@contoso.com")
	u.RawQuery = q.Encode()
	resp, err = client.Get(u.String())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if loc, err := resp.Location(); err != nil || loc.Query().Get("error") != "login_required" {
		t.Errorf("unknown user: redirect %v, %v", loc, err)
	}
}

func TestWithClientSecret(t *testing.T) {
	ctx := testContext(t)
	srv := newServer(t, entratest.WithClientSecret("strict-app", "the-secret"))
	for secret, ok := range map[string]bool{"the-secret": true, "wrong": false} {
		cred, _ := confidential.NewCredFromSecret(secret)
		app, err := confidential.New(srv.Authority(tenant), "strict-app", cred,
			confidential.WithHTTPClient(srv.Client()), confidential.WithInstanceDiscovery(false))
		if err != nil {
			t.Fatal(err)
		}
		_, err = app.AcquireTokenByCredential(ctx, []string{apiScope})
		if ok != (err == nil) || (err != nil && !strings.Contains(err.Error(), "invalid_client")) {
			t.Errorf("secret %q: err = %v", secret, err)
		}
	}
}

func TestClientAssertion(t *testing.T) {
	ctx := testContext(t)
	srv := newServer(t)
	enc := base64.RawURLEncoding.EncodeToString
	cred := confidential.NewCredFromAssertionCallback(func(context.Context, confidential.AssertionRequestOptions) (string, error) {
		return enc([]byte(`{"alg":"RS256"}`)) + "." + enc([]byte(`{"sub":"`+appID+`","iss":"`+appID+`"}`)) + ".c2ln", nil
	})
	app, err := confidential.New(srv.Authority(tenant), appID, cred,
		confidential.WithHTTPClient(srv.Client()), confidential.WithInstanceDiscovery(false))
	if err != nil {
		t.Fatal(err)
	}
	res, err := app.AcquireTokenByCredential(ctx, []string{apiScope})
	if err != nil {
		t.Fatal(err)
	}
	if c := parse(t, res.AccessToken); c.ClientID != appID || c.Raw["azpacr"] != "2" {
		t.Errorf("claims = %+v", c)
	}
}

func TestWithLatency(t *testing.T) {
	ctx := testContext(t)
	const latency = 150 * time.Millisecond
	srv := newServer(t, entratest.WithLatency(latency))
	app := newConfidential(t, srv, tenant, appID, confidential.WithInstanceDiscovery(false))
	start := time.Now()
	if _, err := app.AcquireTokenByCredential(ctx, []string{apiScope}); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < latency {
		t.Errorf("token call took %v, want >= %v", d, latency)
	}
	start = time.Now()
	if _, err := app.AcquireTokenByCredential(ctx, []string{apiScope}); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d >= latency {
		t.Errorf("cached call took %v, want < %v", d, latency)
	}
}

func TestWithAddr(t *testing.T) {
	ctx := testContext(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	srv := newServer(t, entratest.WithAddr(addr))
	if srv.URL() != "https://"+addr || srv.Authority("Contoso") != "https://"+addr+"/contoso" {
		t.Fatalf("URL %q Authority %q, want address %s", srv.URL(), srv.Authority("Contoso"), addr)
	}
	app := newConfidential(t, srv, tenant, appID, confidential.WithInstanceDiscovery(false))
	res, err := app.AcquireTokenByCredential(ctx, []string{apiScope})
	if err != nil {
		t.Fatal(err)
	}
	if c := parse(t, res.AccessToken); c.Issuer != "https://"+addr+"/contoso/v2.0" {
		t.Errorf("iss = %q", c.Issuer)
	}

	// The address is taken now.
	if _, err := entratest.Start(entratest.WithAddr(addr)); err == nil {
		t.Error("Start on a busy address succeeded")
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Error("NewServer on a busy address did not panic")
			}
		}()
		entratest.NewServer(entratest.WithAddr(addr)).Close()
	}()

	// A restart on the same address serves the same user the same ids.
	u1 := srv.AddUser(tenant, "alice@contoso.com", "pw")
	srv.Close()
	srv2 := newServer(t, entratest.WithAddr(addr))
	if u2 := srv2.AddUser(tenant, "alice@contoso.com", "pw"); u2 != u1 {
		t.Errorf("user after restart %+v, want %+v", u2, u1)
	}
}

func TestWithTokenLifetime(t *testing.T) {
	ctx := testContext(t)
	srv := newServer(t, entratest.WithTokenLifetime(2*time.Minute))
	app := newConfidential(t, srv, tenant, appID, confidential.WithInstanceDiscovery(false))
	for i := 0; i < 2; i++ {
		res, err := app.AcquireTokenByCredential(ctx, []string{apiScope})
		if err != nil {
			t.Fatal(err)
		}
		if c := parse(t, res.AccessToken); c.ExpiresAt.Sub(c.IssuedAt) != 2*time.Minute {
			t.Errorf("lifetime %v, want 2m", c.ExpiresAt.Sub(c.IssuedAt))
		}
	}
	// MSAL does not cache tokens that expire within 5 minutes.
	wantRequests(t, srv, 2)
}

func TestConcurrency(t *testing.T) {
	ctx := testContext(t)
	srv := newServer(t)
	const workers, calls = 16, 20
	users := make([]entratest.User, workers)
	for i := range users {
		users[i] = srv.AddUser(tenant, fmt.Sprintf("user%d@contoso.com", i), "pw")
	}
	shared := newConfidential(t, srv, tenant, "shared-app", confidential.WithInstanceDiscovery(false))

	apps := make([]confidential.Client, workers)
	for w := range apps {
		apps[w] = newConfidential(t, srv, tenant, fmt.Sprintf("app-%d", w), confidential.WithInstanceDiscovery(false))
	}

	var wg sync.WaitGroup
	errs := make(chan error, workers*calls*2)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			// Each worker: its own app for client credentials (calls-1 cache hits),
			// and a user sign-in on the shared app.
			app := apps[w]
			for i := 0; i < calls; i++ {
				res, err := app.AcquireTokenByCredential(ctx, []string{apiScope})
				if err != nil {
					errs <- err
					return
				}
				if c, err := entratest.ParseToken(res.AccessToken); err != nil || c.ClientID != fmt.Sprintf("app-%d", w) {
					errs <- fmt.Errorf("worker %d got token for %q (%v)", w, c.ClientID, err)
				}
			}
			res, err := shared.AcquireTokenByAuthCode(ctx, srv.AuthCode(tenant, users[w].Username), "https://app/cb", []string{userScope})
			if err != nil {
				errs <- err
				return
			}
			if c, _ := entratest.ParseToken(res.AccessToken); c.ObjectID != users[w].ObjectID {
				errs <- fmt.Errorf("worker %d got %s's token", w, c.Username)
			}
		}(w)
	}
	// Meanwhile, raw requests hit the token endpoint and the counters are read.
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < calls; j++ {
				status, _ := postToken(t, srv, tenant, url.Values{"grant_type": {"client_credentials"}, "client_id": {"raw"},
					"client_secret": {"s"}, "scope": {apiScope}})
				if status != http.StatusOK {
					errs <- fmt.Errorf("raw request: status %d", status)
				}
				_ = srv.TokenRequestsFor(entratest.GrantClientCredentials)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	want := workers /* one per app */ + workers /* auth codes */ + workers*calls /* raw */
	wantRequests(t, srv, want)
	if n := srv.TokenRequestsFor(entratest.GrantAuthorizationCode); n != workers {
		t.Errorf("authorization_code requests = %d, want %d", n, workers)
	}
	srv.ResetCounters()
	wantRequests(t, srv, 0)
	if n := srv.TokenRequestsFor(entratest.GrantClientCredentials); n != 0 {
		t.Errorf("after reset: %d", n)
	}
}

func postToken(t *testing.T, srv *entratest.Server, tenant string, form url.Values) (int, map[string]any) {
	t.Helper()
	resp, err := srv.Client().PostForm(srv.URL()+"/"+tenant+"/oauth2/v2.0/token", form)
	if err != nil {
		t.Errorf("post: %v", err)
		return 0, nil
	}
	defer resp.Body.Close()
	var body map[string]any
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &body); err != nil {
		t.Errorf("response is not JSON: %q", b)
	}
	return resp.StatusCode, body
}

// Bad input gets OAuth error JSON, never a panic or a dead server.
func TestTokenEndpointErrors(t *testing.T) {
	srv := newServer(t, entratest.WithClientSecret("strict", "s3"))
	srv.AddUser(tenant, "alice@contoso.com", "pw")
	cc := func(kv ...string) url.Values {
		v := url.Values{"grant_type": {"client_credentials"}, "client_id": {appID}, "client_secret": {"s"}, "scope": {apiScope}}
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i+1] == "" {
				v.Del(kv[i])
			} else {
				v.Set(kv[i], kv[i+1])
			}
		}
		return v
	}
	for _, tc := range []struct {
		name   string
		tenant string
		form   url.Values
		status int
		err    string
	}{
		{"no grant", tenant, cc("grant_type", ""), 400, "invalid_request"},
		{"unknown grant", tenant, cc("grant_type", "magic"), 400, "unsupported_grant_type"},
		{"device code", tenant, cc("grant_type", "device_code"), 400, "unsupported_grant_type"},
		{"no client", tenant, cc("client_id", ""), 400, "invalid_request"},
		{"no secret", tenant, cc("client_secret", ""), 401, "invalid_client"},
		{"bad assertion", tenant, cc("client_secret", "", "client_assertion", "x", "client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"), 401, "invalid_client"},
		{"assertion type", tenant, cc("client_secret", "", "client_assertion", "a.b.c", "client_assertion_type", "x"), 401, "invalid_client"},
		{"strict wrong", tenant, cc("client_id", "strict"), 401, "invalid_client"},
		{"strict ok", tenant, cc("client_id", "strict", "client_secret", "s3"), 200, ""},
		{"no scope", tenant, cc("scope", ""), 400, "invalid_scope"},
		{"only oidc scopes", tenant, cc("scope", "openid profile offline_access"), 400, "invalid_scope"},
		{"not .default", tenant, cc("scope", "api://backend/read"), 400, "invalid_scope"},
		{"common tenant", "common", cc(), 400, "invalid_request"},
		{"bad tenant", "con%20toso", cc(), 400, "invalid_tenant"},
		{"no code", tenant, cc("grant_type", "authorization_code"), 400, "invalid_request"},
		{"bad code", tenant, cc("grant_type", "authorization_code", "code", "nope"), 400, "invalid_grant"},
		{"no refresh token", tenant, cc("grant_type", "refresh_token"), 400, "invalid_request"},
		{"bad refresh token", tenant, cc("grant_type", "refresh_token", "refresh_token", "nope"), 400, "invalid_grant"},
		{"password missing", tenant, cc("grant_type", "password", "username", "alice@contoso.com"), 400, "invalid_request"},
		{"password wrong", tenant, cc("grant_type", "password", "username", "alice@contoso.com", "password", "x"), 400, "invalid_grant"},
		{"password other tenant", "fabrikam", cc("grant_type", "password", "username", "alice@contoso.com", "password", "pw"), 400, "invalid_grant"},
		{"password common", "common", cc("grant_type", "password", "username", "alice@contoso.com", "password", "pw"), 200, ""},
		{"obo no use", tenant, cc("grant_type", entratest.GrantOnBehalfOf, "assertion", "a.b.c"), 400, "invalid_request"},
		{"obo no assertion", tenant, cc("grant_type", entratest.GrantOnBehalfOf, "requested_token_use", "on_behalf_of"), 400, "invalid_request"},
		{"obo bad assertion", tenant, cc("grant_type", entratest.GrantOnBehalfOf, "requested_token_use", "on_behalf_of", "assertion", "%%%"), 400, "invalid_grant"},
		{"obo public", tenant, cc("grant_type", entratest.GrantOnBehalfOf, "requested_token_use", "on_behalf_of", "assertion", "a.b.c", "client_secret", ""), 401, "invalid_client"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := postToken(t, srv, tc.tenant, tc.form)
			if status != tc.status {
				t.Errorf("status %d, want %d (%v)", status, tc.status, body)
			}
			if got, _ := body["error"].(string); got != tc.err {
				t.Errorf("error %q, want %q (%v)", got, tc.err, body["error_description"])
			}
			if tc.err != "" {
				if d, _ := body["error_description"].(string); !strings.HasPrefix(d, "AADSTS") {
					t.Errorf("error_description %q lacks an AADSTS code", d)
				}
			}
		})
	}

	// Malformed requests.
	c := srv.Client()
	tokenURL := srv.URL() + "/" + tenant + "/oauth2/v2.0/token"
	check := func(name string, resp *http.Response, err error, want int) {
		t.Helper()
		if err != nil {
			t.Errorf("%s: %v", name, err)
			return
		}
		defer resp.Body.Close()
		var body map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || body["error"] == "" {
			t.Errorf("%s: body not OAuth error JSON (%v)", name, err)
		}
		if resp.StatusCode != want {
			t.Errorf("%s: status %d, want %d", name, resp.StatusCode, want)
		}
	}
	resp, err := c.Get(tokenURL)
	check("GET", resp, err, http.StatusMethodNotAllowed)
	resp, err = c.Post(tokenURL, "application/x-www-form-urlencoded", strings.NewReader("grant_type=%zz"))
	check("bad encoding", resp, err, http.StatusBadRequest)
	resp, err = c.Post(tokenURL, "application/x-www-form-urlencoded", strings.NewReader(strings.Repeat("a", 2<<20)))
	check("huge body", resp, err, http.StatusBadRequest)
	resp, err = c.Post(tokenURL, "application/json", strings.NewReader(`{"grant_type":"client_credentials"}`))
	check("JSON body", resp, err, http.StatusBadRequest)
	resp, err = c.Get(srv.URL() + "/nowhere")
	check("unknown path", resp, err, http.StatusNotFound)
	resp, err = c.Get(srv.URL() + "/common/discovery/instance?authorization_endpoint=%zz")
	check("bad discovery", resp, err, http.StatusBadRequest)

	// Still serving.
	if status, _ := postToken(t, srv, tenant, cc()); status != http.StatusOK {
		t.Errorf("server stopped serving: %d", status)
	}
}

func TestDiscoveryDocuments(t *testing.T) {
	srv := newServer(t)
	get := func(path string) map[string]any {
		t.Helper()
		resp, err := srv.Client().Get(srv.URL() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&m); err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s: %d %v", path, resp.StatusCode, err)
		}
		return m
	}
	cfg := get("/Contoso/v2.0/.well-known/openid-configuration")
	if cfg["issuer"] != srv.URL()+"/contoso/v2.0" || cfg["token_endpoint"] != srv.URL()+"/contoso/oauth2/v2.0/token" {
		t.Errorf("openid-configuration = %v", cfg)
	}
	if cfg := get("/common/v2.0/.well-known/openid-configuration"); cfg["issuer"] != srv.URL()+"/{tenantid}/v2.0" {
		t.Errorf("common issuer = %v", cfg["issuer"])
	}
	keys := get("/contoso/discovery/v2.0/keys")
	if k, _ := keys["keys"].([]any); len(k) != 1 {
		t.Errorf("jwks = %v", keys)
	}
	host := strings.TrimPrefix(srv.URL(), "https://")
	inst := get("/common/discovery/instance?api-version=1.1&authorization_endpoint=" +
		url.QueryEscape(srv.URL()+"/contoso/oauth2/v2.0/authorize"))
	if inst["tenant_discovery_endpoint"] != srv.URL()+"/contoso/v2.0/.well-known/openid-configuration" ||
		!strings.Contains(fmt.Sprint(inst["metadata"]), host) {
		t.Errorf("instance discovery = %v", inst)
	}
	if realm := get("/common/UserRealm/a@contoso.com?api-version=1.0"); realm["account_type"] != "Managed" {
		t.Errorf("user realm = %v", realm)
	}
}

func TestParseTokenErrors(t *testing.T) {
	for _, s := range []string{"", "abc", "a.b", "a.b.c.d", "!!.!!.!!", "e30.bm90IGpzb24.c2ln"} {
		if _, err := entratest.ParseToken(s); !errors.Is(err, entratest.ErrMalformedToken) {
			t.Errorf("ParseToken(%q) err = %v, want ErrMalformedToken", s, err)
		}
	}
	srv := newServer(t)
	other := newServer(t)
	status, body := postToken(t, other, tenant, url.Values{"grant_type": {"client_credentials"}, "client_id": {"x"},
		"client_secret": {"s"}, "scope": {apiScope}})
	if status != 200 {
		t.Fatal(body)
	}
	tok := body["access_token"].(string)
	if _, err := srv.VerifyToken(tok); err == nil {
		t.Error("VerifyToken accepted another server's token")
	}
	if _, err := other.VerifyToken(tok); err != nil {
		t.Errorf("VerifyToken: %v", err)
	}
	if _, err := other.VerifyToken(tok[:len(tok)-4] + "AAAA"); err == nil {
		t.Error("VerifyToken accepted a bad signature")
	}
}

// recorder is a cache.ExportReplace that records the partition keys MSAL
// asks for and keeps nothing.
type recorder struct {
	mu      sync.Mutex
	replace []string
	export  []string
	events  []string // "replace:KEY" and "export:KEY", in order
}

// drain returns and forgets the events recorded so far.
func (r *recorder) drain() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	ev := r.events
	r.events = nil
	return ev
}

func (r *recorder) Replace(_ context.Context, _ cache.Unmarshaler, h cache.ReplaceHints) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.replace = append(r.replace, h.PartitionKey)
	r.events = append(r.events, "replace:"+h.PartitionKey)
	return nil
}

func (r *recorder) Export(_ context.Context, _ cache.Marshaler, h cache.ExportHints) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.export = append(r.export, h.PartitionKey)
	r.events = append(r.events, "export:"+h.PartitionKey)
	return nil
}

func (r *recorder) last() (replace, export string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.replace) > 0 {
		replace = r.replace[len(r.replace)-1]
	}
	if len(r.export) > 0 {
		export = r.export[len(r.export)-1]
	}
	return replace, export
}

// The partition keys MSAL-Go hands a cache for each flow against the
// emulator, which a persistent cache relies on.
func TestPartitionKeys(t *testing.T) {
	ctx := testContext(t)
	srv := newServer(t)
	alice := srv.AddUser(tenant, "alice@contoso.com", "pw")
	rec := &recorder{}
	app := newConfidential(t, srv, tenant, appID, confidential.WithInstanceDiscovery(false), confidential.WithCache(rec))

	if _, err := app.AcquireTokenByCredential(ctx, []string{apiScope}); err != nil {
		t.Fatal(err)
	}
	if r, e := rec.last(); r != appID+"_contoso_AppTokenCache" || e != r {
		t.Errorf("client credentials: replace %q export %q", r, e)
	}
	t.Logf("client credentials: %q", rec.drain())

	res, err := app.AcquireTokenByAuthCode(ctx, srv.AuthCode(tenant, alice.Username), "https://app/cb", []string{userScope})
	if err != nil {
		t.Fatal(err)
	}
	if _, e := rec.last(); e != alice.HomeAccountID {
		t.Errorf("auth code: export %q, want %q", e, alice.HomeAccountID)
	}
	t.Logf("auth code: %q", rec.drain())
	if _, err := app.AcquireTokenSilent(ctx, []string{userScope}, confidential.WithSilentAccount(res.Account)); err != nil {
		t.Fatal(err)
	}
	if r, _ := rec.last(); r != alice.HomeAccountID {
		t.Errorf("silent: replace %q, want %q", r, alice.HomeAccountID)
	}
	t.Logf("silent (cache hit): %q", rec.drain())

	if _, err := app.AcquireTokenOnBehalfOf(ctx, res.AccessToken, []string{"api://downstream/.default"}); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(res.AccessToken))
	if r, e := rec.last(); r != base64.URLEncoding.EncodeToString(sum[:]) || e != r {
		t.Errorf("OBO: replace %q export %q, want the assertion hash", r, e)
	}
	t.Logf("on-behalf-of: %q", rec.drain())

	pub, err := public.New("public-app", public.WithAuthority(srv.Authority(tenant)), public.WithHTTPClient(srv.Client()),
		public.WithInstanceDiscovery(false), public.WithCache(rec))
	if err != nil {
		t.Fatal(err)
	}
	//lint:ignore SA1019 ROPC is deprecated but supported.
	if _, err := pub.AcquireTokenByUsernamePassword(ctx, []string{userScope}, alice.Username, "pw"); err != nil {
		t.Fatal(err)
	}
	if _, e := rec.last(); e != "" {
		t.Errorf("public client: export %q, want \"\"", e)
	}
	t.Logf("public username/password: %q", rec.drain())
}
