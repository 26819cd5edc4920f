package entratest_test

import (
	"crypto/sha256"
	"encoding/base64"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"
	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/public"

	"github.com/msalcache/msalcache/entratest"
)

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

// OpenURL delivers the same response the authorize endpoint writes: by GET
// with the response added to the redirect URI's own query, or for
// form_post by POST, and the error of a failed sign-in both to the
// redirect URI and to its caller.
func TestOpenURLDelivers(t *testing.T) {
	srv := newServer(t)
	srv.AddUser(tenant, "erin@contoso.com", "pw")
	type delivery struct {
		method string
		form   url.Values
	}
	got := make(chan delivery, 1)
	cb := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			t.Error(err)
		}
		got <- delivery{r.Method, r.Form}
	}))
	t.Cleanup(cb.Close)
	authURL := func(mode string) string {
		q := url.Values{"client_id": {appID}, "response_type": {"code"}, "redirect_uri": {cb.URL + "/cb?keep=1"},
			"state": {"xyz"}, "scope": {userScope}}
		if mode != "" {
			q.Set("response_mode", mode)
		}
		return srv.Authority(tenant) + "/oauth2/v2.0/authorize?" + q.Encode()
	}

	for mode, method := range map[string]string{"": http.MethodGet, "query": http.MethodGet, "form_post": http.MethodPost} {
		if err := srv.OpenURL("erin@contoso.com")(authURL(mode)); err != nil {
			t.Fatalf("mode %q: %v", mode, err)
		}
		d := <-got
		if d.method != method || d.form.Get("code") == "" || d.form.Get("state") != "xyz" {
			t.Errorf("mode %q: delivered %s %v", mode, d.method, d.form)
		}
		if method == http.MethodGet && d.form.Get("keep") != "1" {
			t.Errorf("mode %q: the redirect URI's own query was lost: %v", mode, d.form)
		}
	}

	err := srv.OpenURL("nobody@contoso.com")(authURL("form_post"))
	if err == nil || !strings.Contains(err.Error(), "login_required") {
		t.Errorf("unknown user: err = %v, want login_required", err)
	}
	if d := <-got; d.form.Get("error") != "login_required" || !strings.HasPrefix(d.form.Get("error_description"), "AADSTS50034") {
		t.Errorf("unknown user: delivered %v", d.form)
	}

	noRedirect := srv.Authority(tenant) + "/oauth2/v2.0/authorize?client_id=" + appID + "&response_type=code"
	if err := srv.OpenURL("erin@contoso.com")(noRedirect); err == nil || !strings.Contains(err.Error(), "AADSTS900971") {
		t.Errorf("no redirect_uri: err = %v, want AADSTS900971", err)
	}
}

// Without a redirect URI the authorize endpoint has nowhere to send its
// response, and shows an error page, as the service does.
func TestAuthorizeNoReplyAddress(t *testing.T) {
	srv := newServer(t)
	resp, err := srv.Client().Get(srv.Authority(tenant) + "/oauth2/v2.0/authorize?client_id=" + appID + "&response_type=code")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.HasPrefix(string(page), "AADSTS900971") {
		t.Errorf("status %d page %q", resp.StatusCode, page)
	}
}
