package entratest_test

import (
	"crypto/sha256"
	"encoding/base64"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"

	"github.com/msalcache/msalcache/entratest"
)

// browser is a stand-in for a person's browser: it follows no redirects,
// so a test sees where each page sends it, and says it wants HTML.
type browser struct {
	t *testing.T
	c http.Client
}

func newBrowser(t *testing.T) *browser {
	return &browser{t: t, c: http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (b *browser) do(method, u string, form url.Values) (status int, page string, loc *url.URL) {
	b.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		b.t.Fatal(err)
	}
	req.Header.Set("Accept", "text/html,application/xhtml+xml")
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	p, _ := io.ReadAll(resp.Body)
	loc, _ = resp.Location()
	return resp.StatusCode, string(p), loc
}

// The authorize endpoint, asked by a browser with no login_hint, shows a
// sign-in page over plain HTTP; picking an account (or typing it and its
// password) signs the user in, with PKCE, state and nonce carried through.
func TestBrowserSignIn(t *testing.T) {
	ctx := testContext(t)
	srv := newServer(t, entratest.WithBrowserHTTP("127.0.0.1:0"))
	if !strings.HasPrefix(srv.BrowserURL(), "http://127.0.0.1:") {
		t.Fatalf("BrowserURL %q", srv.BrowserURL())
	}
	srv.AddUser(tenant, "erin@contoso.com", "")
	srv.AddUser(tenant, "frank@contoso.com", "frank-pw")
	srv.AddUser("fabrikam", "gina@fabrikam.com", "")
	app := newConfidential(t, srv, "organizations", appID, confidential.WithInstanceDiscovery(false))
	authURL, err := app.AuthCodeURL(ctx, appID, "http://127.0.0.1:1/cb", []string{userScope})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(authURL, srv.BrowserURL()+"/organizations/oauth2/v2.0/authorize?") {
		t.Fatalf("MSAL's authorize URL %s is not on the browser pages", authURL)
	}
	verifier := "a-verifier-of-sufficient-length-0123456789"
	sum := sha256.Sum256([]byte(verifier))
	u, _ := url.Parse(authURL)
	q := u.Query()
	q.Set("code_challenge", base64.RawURLEncoding.EncodeToString(sum[:]))
	q.Set("code_challenge_method", "S256")
	q.Set("state", "st-1")
	q.Set("nonce", "n-1")
	u.RawQuery = q.Encode()

	b := newBrowser(t)
	status, page, _ := b.do(http.MethodGet, u.String(), nil)
	for _, want := range []string{`<label for="username">`, `<label for="password">`, `value="erin@contoso.com"`, `value="gina@fabrikam.com"`, `name="code_challenge"`} {
		if status != http.StatusOK || !strings.Contains(page, want) {
			t.Fatalf("sign-in page: status %d, no %s in\n%s", status, want, page)
		}
	}
	post := func(fields url.Values) (int, string, *url.URL) {
		f := url.Values{}
		for k, v := range q {
			f[k] = v
		}
		for k, v := range fields {
			f[k] = v
		}
		return b.do(http.MethodPost, srv.BrowserURL()+u.Path, f)
	}
	code := func(loc *url.URL) string {
		t.Helper()
		if loc == nil || loc.Query().Get("state") != "st-1" || loc.Query().Get("code") == "" {
			t.Fatalf("no code in redirect %v", loc)
		}
		return loc.Query().Get("code")
	}

	// A password user picked from the list is asked for the password, a
	// wrong one is refused, the right one signs in.
	if _, page, loc := post(url.Values{"entratest_username": {"frank@contoso.com"}}); loc != nil || !strings.Contains(page, "Enter the password") {
		t.Fatalf("password user without password: redirect %v page %s", loc, page)
	}
	if _, page, loc := post(url.Values{"entratest_username": {"frank@contoso.com"}, "entratest_password": {"nope"}}); loc != nil || !strings.Contains(page, "AADSTS50126") {
		t.Fatalf("wrong password: redirect %v page %s", loc, page)
	}
	if _, page, loc := post(url.Values{"entratest_username": {"nobody@contoso.com"}}); loc != nil || !strings.Contains(page, "AADSTS50034") {
		t.Fatalf("unknown user: redirect %v page %s", loc, page)
	}
	_, _, loc := post(url.Values{"entratest_username": {"frank@contoso.com"}, "entratest_password": {"frank-pw"}})
	res, err := app.AcquireTokenByAuthCode(ctx, code(loc), "http://127.0.0.1:1/cb", []string{userScope}, confidential.WithChallenge(verifier))
	if err != nil {
		t.Fatal(err)
	}
	idt, _ := entratest.ParseToken(res.IDToken.RawToken)
	if res.Account.PreferredUsername != "frank@contoso.com" || idt.Raw["nonce"] != "n-1" {
		t.Errorf("signed in %q with nonce %v", res.Account.PreferredUsername, idt.Raw["nonce"])
	}
	// A passwordless user picked from the list, in another tenant.
	_, _, loc = post(url.Values{"entratest_username": {"gina@fabrikam.com"}})
	res, err = app.AcquireTokenByAuthCode(ctx, code(loc), "http://127.0.0.1:1/cb", []string{userScope}, confidential.WithChallenge(verifier))
	if err != nil {
		t.Fatal(err)
	}
	if c, _ := entratest.ParseToken(res.AccessToken); c.Tenant != "fabrikam" {
		t.Errorf("gina's token is of tenant %q", c.Tenant)
	}

	// prompt=none still fails at once, and errors a browser meets are pages.
	q2 := u.Query()
	q2.Set("prompt", "none")
	if _, _, loc := b.do(http.MethodGet, srv.BrowserURL()+u.Path+"?"+q2.Encode(), nil); loc == nil || loc.Query().Get("error") != "login_required" {
		t.Errorf("prompt=none: redirect %v", loc)
	}
	status, page, _ = b.do(http.MethodGet, srv.BrowserURL()+"/contoso/oauth2/v2.0/authorize?client_id=x&response_type=code", nil)
	if status != http.StatusBadRequest || !strings.Contains(page, "<html") || !strings.Contains(page, "AADSTS900971") {
		t.Errorf("no redirect URI: status %d page %s", status, page)
	}
	if status, page, _ := b.do(http.MethodGet, srv.BrowserURL()+"/contoso/oauth2/v2.0/token", nil); status != http.StatusNotFound || !strings.Contains(page, "<html") {
		t.Errorf("token endpoint on the browser pages: status %d page %s", status, page)
	}
	// Sign-out sends the browser back.
	if _, _, loc := b.do(http.MethodGet, srv.BrowserURL()+"/organizations/oauth2/v2.0/logout?post_logout_redirect_uri="+url.QueryEscape("http://127.0.0.1:1/"), nil); loc == nil || loc.String() != "http://127.0.0.1:1/" {
		t.Errorf("logout redirect %v", loc)
	}
}

func TestWithBrowserHTTPRefusesNonLoopback(t *testing.T) {
	if _, err := entratest.Start(entratest.WithBrowserHTTP("0.0.0.0:0")); err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Errorf("Start with 0.0.0.0: %v", err)
	}
}

// A tenant signs up on the admin-consent page: only an administrator may
// accept; then the application's client-credentials requests for the
// tenant succeed, and users' tokens carry their app roles.
func TestAdminConsentAndRoles(t *testing.T) {
	ctx := testContext(t)
	srv := newServer(t, entratest.WithAdminConsentRequired(appID))
	srv.AddAdmin(tenant, "admin@contoso.com", "admin-pw")
	srv.AddUser(tenant, "erin@contoso.com", "")
	if err := srv.AssignRoles(tenant, "erin@contoso.com", "api://surveys", "SurveyCreator"); err != nil {
		t.Fatal(err)
	}
	if err := srv.AssignRoles(tenant, "nobody@contoso.com", "api://surveys", "SurveyCreator"); err == nil {
		t.Error("AssignRoles accepted a user never added")
	}
	app := newConfidential(t, srv, tenant, appID, confidential.WithInstanceDiscovery(false))
	if _, err := app.AcquireTokenByCredential(ctx, []string{"api://surveys/.default"}); err == nil || !strings.Contains(err.Error(), "AADSTS700016") {
		t.Fatalf("client credentials before consent: %v, want AADSTS700016", err)
	}

	consent := srv.AdminConsentURL("organizations", appID, "http://127.0.0.1:1/enrolled", "api://surveys/.default", "st-2")
	b := newBrowser(t)
	b.c.Transport = srv.Client().Transport // the pages are on TLS without WithBrowserHTTP
	status, page, _ := b.do(http.MethodGet, consent, nil)
	if status != http.StatusOK || !strings.Contains(page, "admin@contoso.com") || !strings.Contains(page, `<label for="username">`) {
		t.Fatalf("consent page: status %d\n%s", status, page)
	}
	cu, _ := url.Parse(consent)
	post := func(f url.Values) (int, string, *url.URL) {
		for k, v := range cu.Query() {
			f[k] = v
		}
		return b.do(http.MethodPost, srv.BrowserURL()+cu.Path, f)
	}
	if _, page, loc := post(url.Values{"entratest_username": {"erin@contoso.com"}, "entratest_consent": {"accept"}}); loc != nil || !strings.Contains(page, "AADSTS90094") {
		t.Fatalf("a non-admin consented: redirect %v page %s", loc, page)
	}
	if _, page, loc := post(url.Values{"entratest_username": {"admin@contoso.com"}, "entratest_password": {"x"}, "entratest_consent": {"accept"}}); loc != nil || !strings.Contains(page, "AADSTS50126") {
		t.Fatalf("wrong admin password: redirect %v page %s", loc, page)
	}
	if _, _, loc := post(url.Values{"entratest_consent": {"cancel"}}); loc == nil || loc.Query().Get("error") != "access_denied" || loc.Query().Get("state") != "st-2" {
		t.Fatalf("cancel: redirect %v", loc)
	}
	if srv.Consented(tenant, appID) {
		t.Fatal("consented before acceptance")
	}
	_, _, loc := post(url.Values{"entratest_username": {"admin@contoso.com"}, "entratest_password": {"admin-pw"}, "entratest_consent": {"accept"}})
	if loc == nil || loc.Query().Get("admin_consent") != "True" || loc.Query().Get("tenant") != tenant || loc.Query().Get("state") != "st-2" {
		t.Fatalf("accept: redirect %v", loc)
	}
	if !srv.Consented(tenant, appID) {
		t.Fatal("not consented after acceptance")
	}
	if _, err := app.AcquireTokenByCredential(ctx, []string{"api://surveys/.default"}); err != nil {
		t.Fatalf("client credentials after consent: %v", err)
	}

	res, err := app.AcquireTokenByAuthCode(ctx, srv.AuthCode(tenant, "erin@contoso.com"), "http://127.0.0.1:1/cb", []string{"api://surveys/Surveys.Access"})
	if err != nil {
		t.Fatal(err)
	}
	c, err := srv.VerifyToken(res.AccessToken)
	if err != nil || !slices.Equal(c.Roles, []string{"SurveyCreator"}) {
		t.Errorf("erin's roles %v (%v)", c.Roles, err)
	}
	res, err = app.AcquireTokenByAuthCode(ctx, srv.AuthCode(tenant, "erin@contoso.com"), "http://127.0.0.1:1/cb", []string{userScope})
	if err != nil {
		t.Fatal(err)
	}
	if c, _ := entratest.ParseToken(res.AccessToken); len(c.Roles) != 0 {
		t.Errorf("roles for another resource: %v", c.Roles)
	}
}

// The sign-in and consent pages name the app by the display name given
// with WithAppName, never by its client ID; without one, by its client ID.
func TestPagesShowAppDisplayName(t *testing.T) {
	for _, named := range []bool{true, false} {
		opts := []entratest.Option{entratest.WithBrowserHTTP("127.0.0.1:0"), entratest.WithAdminConsentRequired(appID)}
		want := appID
		if named {
			opts = append(opts, entratest.WithAppName(appID, "Tailspin Surveys"))
			want = "Tailspin Surveys"
		}
		srv := newServer(t, opts...)
		srv.AddAdmin(tenant, "admin@contoso.com", "")
		b := newBrowser(t)
		signIn := srv.BrowserURL() + "/" + tenant + "/oauth2/v2.0/authorize?" + url.Values{
			"client_id": {appID}, "redirect_uri": {"http://127.0.0.1:1/cb"}, "response_type": {"code"}, "scope": {userScope},
		}.Encode()
		consent := srv.AdminConsentURL("organizations", appID, "http://127.0.0.1:1/enrolled", "api://surveys/.default", "st")
		for name, u := range map[string]string{"sign-in": signIn, "consent": consent} {
			status, page, _ := b.do(http.MethodGet, u, nil)
			if status != http.StatusOK || !strings.Contains(page, "<strong>"+want+"</strong>") {
				t.Fatalf("%s page (named %v): status %d, want the app named %q:\n%s", name, named, status, want, page)
			}
			if named && strings.Contains(page, "<strong>"+appID+"</strong>") {
				t.Fatalf("%s page names the app by its client ID:\n%s", name, page)
			}
		}
	}
}
