package entratest_test

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"net/url"
	"strings"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"

	"github.com/msalcache/msalcache/entratest"
)

// A multitenant web app signs a tenant up through the admin-consent page,
// then signs a user in through the sign-in page, as a browser would: the
// pages are plain HTML forms on loopback HTTP, so a program can post them.
func ExampleWithBrowserHTTP() {
	ctx := context.Background()
	srv := entratest.NewServer(entratest.WithBrowserHTTP("127.0.0.1:0"), entratest.WithAdminConsentRequired("surveys-web"))
	defer srv.Close()
	srv.AddAdmin("contoso", "admin@contoso.com", "")
	srv.AddUser("contoso", "alice@contoso.com", "")
	if err := srv.AssignRoles("contoso", "alice@contoso.com", "api://surveys", "SurveyCreator"); err != nil {
		log.Fatal(err)
	}
	// The browser: follows no redirects, so we see where each page sends it.
	browser := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	submit := func(page string, fields url.Values) *url.URL {
		u, _ := url.Parse(page)
		form := u.Query()
		for k, v := range fields {
			form[k] = v
		}
		resp, err := browser.PostForm(srv.BrowserURL()+u.Path, form)
		if err != nil {
			log.Fatal(err)
		}
		resp.Body.Close()
		loc, _ := resp.Location()
		return loc
	}

	// Sign-up: the administrator accepts on the admin-consent page.
	done := submit(srv.AdminConsentURL("organizations", "surveys-web", "http://127.0.0.1:9/enrolled", "", "s1"),
		url.Values{"entratest_username": {"admin@contoso.com"}, "entratest_consent": {"accept"}})
	fmt.Println("consent:", done.Query().Get("admin_consent"), done.Query().Get("tenant"))

	// Sign-in: MSAL builds the authorize URL; the user picks the account.
	cred, _ := confidential.NewCredFromSecret("secret")
	app, _ := confidential.New(srv.Authority("organizations"), "surveys-web", cred, confidential.WithHTTPClient(srv.Client()))
	scopes := []string{"api://surveys/Surveys.Access"}
	authURL, err := app.AuthCodeURL(ctx, "surveys-web", "http://127.0.0.1:9/signed-in", scopes)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("sign-in page over http:", strings.HasPrefix(authURL, srv.BrowserURL()))
	back := submit(authURL, url.Values{"entratest_username": {"alice@contoso.com"}})
	res, err := app.AcquireTokenByAuthCode(ctx, back.Query().Get("code"), "http://127.0.0.1:9/signed-in", scopes)
	if err != nil {
		log.Fatal(err)
	}
	claims, _ := srv.VerifyToken(res.AccessToken)
	fmt.Println(claims.Username, claims.Tenant, claims.Roles)
	// Output:
	// consent: True contoso
	// sign-in page over http: true
	// alice@contoso.com contoso [SurveyCreator]
}
