package entratest_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"
	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/public"

	"github.com/msalcache/msalcache/entratest"
)

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
