package surveys

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"

	"github.com/msalcache/msalcache"
)

// The web app, one instance of the farm. Each instance has its own MSAL
// client and msalcache Adapter, as separate servers would; what they share
// is the token store, the cookie keys and the app's tenant records.

// errSignIn means the user must sign in (again): no session, or no token
// for the session's account in the shared cache.
var errSignIn = errors.New("sign-in required")

type instance struct {
	name    string
	farm    *Farm
	adapter *msalcache.Adapter
	// pool hands each request an MSAL client no other request is using
	// (one client shared by concurrent users cannot be kept exact through
	// MSAL's cache hook; a client per request costs more, see docs/usage.md, "Which MSAL client shape").
	pool  *msalcache.ClientPool
	close func()
	log   *slog.Logger
}

func (in *instance) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", in.home)
	mux.HandleFunc("GET /enroll", in.enroll)
	mux.HandleFunc("GET /enroll/callback", in.enrolled)
	mux.HandleFunc("GET /signin", in.signIn)
	mux.HandleFunc("GET /signin-oidc", in.signedIn)
	mux.HandleFunc("GET /not-enrolled", in.notEnrolled)
	mux.HandleFunc("POST /signout", in.signOut)
	mux.HandleFunc("GET /surveys", in.surveys)
	mux.HandleFunc("GET /surveys/new", in.newSurvey)
	mux.HandleFunc("POST /surveys", in.createSurvey)
	mux.HandleFunc("POST /surveys/{id}/publish", in.publishSurvey)
	mux.HandleFunc("GET /surveys/{id}/edit", in.editSurvey)
	mux.HandleFunc("POST /surveys/{id}", in.saveSurvey)
	mux.HandleFunc("POST /surveys/{id}/delete", in.deleteSurvey)
	mux.HandleFunc("POST /surveys/{id}/contributors", in.addContributor)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		in.fail(w, r, http.StatusNotFound, "Page not found", "There is no page at this address.")
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Served-By", in.name)
		w.Header().Set("Cache-Control", "no-store")
		mux.ServeHTTP(w, r)
	})
}

// page is what every template gets.
type page struct {
	Title    string
	Instance string
	User     string // signed-in user's name, "" when anonymous
	Tenant   string
	CSRF     string
	Token    *tokenInfo // the page's API token; nil: no API call with a user token
	Message  string
	Problem  bool
	Link     string // a next step for Message pages
	LinkText string
	Surveys  []Survey
	Creator  bool
	Survey   *Survey // the survey an edit page is about
}

// tokenInfo says where the page's API token came from.
type tokenInfo struct {
	FromCache     bool
	Session, Farm Counts
}

func (in *instance) render(w http.ResponseWriter, status int, name string, p page) {
	p.Instance = in.name
	var buf bytes.Buffer
	if err := templates.ExecuteTemplate(&buf, name, p); err != nil {
		in.log.Error("render", "page", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self' "+in.farm.loginBase)
	w.Header().Set("X-Frame-Options", "DENY")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

func (in *instance) fail(w http.ResponseWriter, r *http.Request, status int, title, msg string) {
	p := page{Title: title, Message: msg, Problem: true, Link: "/", LinkText: "Home"}
	if s, ok := in.farm.keys.readSession(r); ok {
		p.Tenant = s.Tenant()
	}
	in.render(w, status, "message", p)
}

// user returns the session's MSAL account, or errSignIn.
func (in *instance) account(ctx context.Context, s session) (confidential.Account, error) {
	acct, err := in.pool.Account(ctx, s.AccountID)
	if err != nil {
		return acct, err
	}
	if acct.IsZero() {
		return acct, errSignIn
	}
	return acct, nil
}

// apiToken acquires the API token for the session silently, as every page
// that calls the API does: from MSAL's cache, which the Adapter fills
// from the shared store, or with the refresh token at the token endpoint.
func (in *instance) apiToken(ctx context.Context, s session) (string, *tokenInfo, confidential.Account, error) {
	acct, err := in.account(ctx, s)
	if err != nil {
		return "", nil, acct, err
	}
	ar, err := in.pool.AcquireTokenSilent(ctx, acct.HomeAccountID, []string{APIScope}, confidential.WithTenantID(s.Tenant()))
	if err != nil {
		// The refresh token is gone or refused: the user signs in again.
		return "", nil, acct, fmt.Errorf("%w: %v", errSignIn, err)
	}
	fromCache := ar.Metadata.TokenSource == confidential.TokenSourceCache
	sess, total := in.farm.stats.record(s.ID(in.farm.keys), fromCache)
	return ar.AccessToken, &tokenInfo{FromCache: fromCache, Session: sess, Farm: total}, acct, nil
}

// callAPI sends a request to the Survey API with token (none: anonymous)
// and decodes its JSON answer into out.
func (in *instance) callAPI(ctx context.Context, method, path, token string, body, out any) (int, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, in.farm.apiURL+path, rd)
	if err != nil {
		return 0, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := in.farm.apiClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("survey API: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		var e struct{ Error string }
		_ = json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&e)
		return resp.StatusCode, fmt.Errorf("survey API: %s: %s", resp.Status, e.Error)
	}
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			return resp.StatusCode, fmt.Errorf("survey API: %w", err)
		}
	}
	return resp.StatusCode, nil
}

// requireToken is the start of every page that calls the API for the
// user: the session, its API token, or a redirect to sign in.
func (in *instance) requireToken(w http.ResponseWriter, r *http.Request) (session, string, page, bool) {
	s, ok := in.farm.keys.readSession(r)
	if !ok {
		http.Redirect(w, r, "/signin?return="+url.QueryEscape(r.URL.Path), http.StatusSeeOther)
		return s, "", page{}, false
	}
	token, info, acct, err := in.apiToken(r.Context(), s)
	if err != nil {
		if errors.Is(err, errSignIn) {
			clearCookie(w, sessionCookie)
			http.Redirect(w, r, "/signin?return="+url.QueryEscape(r.URL.Path), http.StatusSeeOther)
		} else {
			in.log.Warn("token cache", "err", err)
			in.fail(w, r, http.StatusBadGateway, "Try again", "The token cache did not answer. Try again in a moment.")
		}
		return s, "", page{}, false
	}
	return s, token, page{User: acct.PreferredUsername, Tenant: s.Tenant(), CSRF: s.csrf(in.farm.keys), Token: info}, true
}

// checkCSRF verifies a form's CSRF field against the session.
func (in *instance) checkCSRF(w http.ResponseWriter, r *http.Request, s session) bool {
	if r.PostFormValue("csrf") != s.csrf(in.farm.keys) {
		in.fail(w, r, http.StatusForbidden, "Form expired", "This form is out of date. Go back, reload the page and try again.")
		return false
	}
	return true
}

func (in *instance) home(w http.ResponseWriter, r *http.Request) {
	p := page{Title: "Tailspin Surveys"}
	if s, ok := in.farm.keys.readSession(r); ok {
		if acct, err := in.account(r.Context(), s); err == nil {
			p.User, p.Tenant, p.CSRF = acct.PreferredUsername, s.Tenant(), s.csrf(in.farm.keys)
		}
	}
	if r.URL.Query().Has("signed-out") {
		p.Message = "You signed out. Your tokens are gone from every server of the farm."
	}
	// Published surveys are public: the API serves them without a token.
	if _, err := in.callAPI(r.Context(), http.MethodGet, "/published", "", nil, &p.Surveys); err != nil {
		in.log.Warn("published surveys", "err", err)
	}
	in.render(w, http.StatusOK, "home", p)
}

// enroll sends a tenant administrator to the admin-consent page: the
// organization signs up.
func (in *instance) enroll(w http.ResponseWriter, r *http.Request) {
	st := signIn{Kind: "enroll", State: randomString(24)}
	in.farm.keys.setSignIn(w, st)
	q := url.Values{
		"client_id":    {ClientID},
		"redirect_uri": {in.farm.baseURL + "/enroll/callback"},
		"scope":        {APIResource + "/.default"},
		"state":        {st.State},
	}
	http.Redirect(w, r, in.farm.loginBase+"/organizations/v2.0/adminconsent?"+q.Encode(), http.StatusSeeOther)
}

func (in *instance) enrolled(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	st, ok := in.farm.keys.takeSignIn(w, r, "enroll")
	switch {
	case !ok || q.Get("state") != st.State:
		in.fail(w, r, http.StatusBadRequest, "Sign-up failed", "This sign-up answer is not the one we asked for, or it came too late. Start again.")
		return
	case q.Get("error") != "":
		in.fail(w, r, http.StatusForbidden, "Sign-up cancelled", "The administrator did not grant the permissions: "+q.Get("error_description"))
		return
	case q.Get("admin_consent") != "True" || q.Get("tenant") == "":
		in.fail(w, r, http.StatusBadRequest, "Sign-up failed", "The answer did not say that an administrator consented.")
		return
	}
	tenant := strings.ToLower(q.Get("tenant"))
	// The tenant in the answer is not signed: confirm that the app now
	// exists there, which only a real consent achieves.
	if _, err := in.pool.AcquireTokenByCredential(r.Context(), []string{APIResource + "/.default"}, confidential.WithTenantID(tenant)); err != nil {
		in.fail(w, r, http.StatusForbidden, "Sign-up failed", "The organization has not granted the app its permissions.")
		return
	}
	in.farm.tenants.Enroll(tenant)
	in.render(w, http.StatusOK, "message", page{Title: "Your organization signed up", Tenant: tenant,
		Message: "The organization " + tenant + " is enrolled: its users can now sign in.", Link: "/signin", LinkText: "Sign in"})
}

// signIn starts the authorization-code flow with PKCE, state and nonce.
func (in *instance) signIn(w http.ResponseWriter, r *http.Request) {
	ret := r.URL.Query().Get("return")
	if !strings.HasPrefix(ret, "/") || strings.HasPrefix(ret, "//") || strings.HasPrefix(ret, "/\\") {
		ret = "/surveys"
	}
	st := signIn{Kind: "signin", State: randomString(24), Nonce: randomString(24), Verifier: randomString(48), Return: ret}
	authURL, err := in.pool.AuthCodeURL(r.Context(), ClientID, in.farm.baseURL+"/signin-oidc", []string{APIScope})
	if err != nil {
		in.log.Error("authorize URL", "err", err)
		in.fail(w, r, http.StatusBadGateway, "Sign-in unavailable", "The identity provider did not answer. Try again in a moment.")
		return
	}
	// MSAL-Go's AuthCodeURL takes no PKCE challenge, state or nonce
	// (AcquireTokenByAuthCode takes the verifier): add them to its URL.
	u, err := url.Parse(authURL)
	if err != nil {
		in.fail(w, r, http.StatusBadGateway, "Sign-in unavailable", "The identity provider's address is not valid.")
		return
	}
	aq := u.Query()
	aq.Set("code_challenge", challengeS256(st.Verifier))
	aq.Set("code_challenge_method", "S256")
	aq.Set("state", st.State)
	aq.Set("nonce", st.Nonce)
	u.RawQuery = aq.Encode()
	in.farm.keys.setSignIn(w, st)
	http.Redirect(w, r, u.String(), http.StatusSeeOther)
}

// signedIn is the redirect URI: it redeems the code, checks the ID token
// and the tenant, and starts the session.
func (in *instance) signedIn(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	q := r.URL.Query()
	st, ok := in.farm.keys.takeSignIn(w, r, "signin")
	switch {
	case !ok || q.Get("state") == "" || q.Get("state") != st.State:
		in.fail(w, r, http.StatusBadRequest, "Sign-in failed", "This sign-in answer is not the one we asked for, or it came too late. Sign in again.")
		return
	case q.Get("error") != "":
		in.fail(w, r, http.StatusUnauthorized, "Sign-in failed", q.Get("error_description"))
		return
	}
	ar, err := in.pool.AcquireTokenByAuthCode(ctx, q.Get("code"), in.farm.baseURL+"/signin-oidc", []string{APIScope},
		confidential.WithChallenge(st.Verifier))
	if err != nil {
		in.log.Warn("redeem code", "err", err)
		in.fail(w, r, http.StatusUnauthorized, "Sign-in failed", "The identity provider refused the sign-in. Sign in again.")
		return
	}
	id, err := in.farm.idp.verify(ctx, ar.IDToken.RawToken, ClientID)
	if err != nil || id.Nonce != st.Nonce || id.Oid+"."+id.Tid != ar.Account.HomeAccountID {
		in.forget(ctx, ar.Account)
		in.fail(w, r, http.StatusUnauthorized, "Sign-in failed", "The ID token did not check out. Sign in again.")
		return
	}
	if !in.farm.tenants.Enrolled(id.Tid) {
		// The original sample refuses users of tenants that did not sign
		// up; it must also not keep their tokens.
		in.forget(ctx, ar.Account)
		// A page of its own, so that the code leaves the address bar.
		http.Redirect(w, r, "/not-enrolled?tenant="+url.QueryEscape(id.Tid), http.StatusSeeOther)
		return
	}
	s := session{AccountID: ar.Account.HomeAccountID, Started: time.Now().UnixNano()}
	in.farm.keys.setSession(w, s)
	// The sign-in bought the session's first API token.
	in.farm.stats.record(s.ID(in.farm.keys), false)
	http.Redirect(w, r, st.Return, http.StatusSeeOther)
}

// notEnrolled tells a user of a tenant that did not sign up why they are
// not signed in. It answers 200: the request succeeded, the sign-in did
// not.
func (in *instance) notEnrolled(w http.ResponseWriter, r *http.Request) {
	in.render(w, http.StatusOK, "message", page{Title: "Your organization has not signed up",
		Message: "The organization " + r.URL.Query().Get("tenant") + " is not enrolled in Tailspin Surveys, so you were not signed in. An administrator of it can enroll it.",
		Problem: true, Link: "/enroll", LinkText: "Enroll your organization"})
}

// forget signs an account out that must not stay signed in.
func (in *instance) forget(ctx context.Context, acct confidential.Account) {
	if acct.HomeAccountID == "" {
		return
	}
	if err := in.pool.SignOut(ctx, acct.HomeAccountID); err != nil {
		in.log.Error("sign-out of a refused sign-in", "err", err)
	}
}

// signOut removes the user's tokens from MSAL and from the shared store
// in one call, ends the session and signs out at the provider.
func (in *instance) signOut(w http.ResponseWriter, r *http.Request) {
	s, ok := in.farm.keys.readSession(r)
	if !ok {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	if !in.checkCSRF(w, r, s) {
		return
	}
	if err := in.pool.SignOut(r.Context(), s.AccountID); err != nil {
		in.log.Error("sign-out", "err", err)
		in.fail(w, r, http.StatusBadGateway, "Sign-out did not finish",
			"Your tokens could not be removed from the token cache. Try signing out again.")
		return
	}
	clearCookie(w, sessionCookie)
	back := url.Values{"post_logout_redirect_uri": {in.farm.baseURL + "/?signed-out"}}
	http.Redirect(w, r, in.farm.loginBase+"/organizations/oauth2/v2.0/logout?"+back.Encode(), http.StatusSeeOther)
}

func (in *instance) surveys(w http.ResponseWriter, r *http.Request) {
	_, token, p, ok := in.requireToken(w, r)
	if !ok {
		return
	}
	p.Title = "Surveys of " + p.Tenant
	if status, err := in.callAPI(r.Context(), http.MethodGet, "/surveys", token, nil, &p.Surveys); err != nil {
		in.apiFailed(w, r, p, status, err)
		return
	}
	p.Creator = true
	in.render(w, http.StatusOK, "surveys", p)
}

func (in *instance) apiFailed(w http.ResponseWriter, r *http.Request, p page, status int, err error) {
	p.Problem, p.Link, p.LinkText = true, "/", "Home"
	switch status {
	case http.StatusForbidden:
		p.Title, p.Message = "Not allowed", "The Survey API refused: "+strings.TrimPrefix(err.Error(), "survey API: ")
	default:
		in.log.Warn("survey API", "err", err)
		p.Title, p.Message, status = "Survey API unavailable", "The Survey API did not answer. Try again.", http.StatusBadGateway
	}
	in.render(w, status, "message", p)
}

func (in *instance) newSurvey(w http.ResponseWriter, r *http.Request) {
	// The form's page makes an API call too, so that its token line tells
	// the truth and an expired session is noticed before typing.
	_, _, p, ok := in.requireToken(w, r)
	if !ok {
		return
	}
	p.Title = "New survey"
	in.render(w, http.StatusOK, "new", p)
}

func (in *instance) createSurvey(w http.ResponseWriter, r *http.Request) {
	s, token, p, ok := in.requireToken(w, r)
	if !ok || !in.checkCSRF(w, r, s) {
		return
	}
	body := map[string]string{"title": r.PostFormValue("title"), "question": r.PostFormValue("question")}
	var created Survey
	if status, err := in.callAPI(r.Context(), http.MethodPost, "/surveys", token, body, &created); err != nil {
		if status == http.StatusBadRequest {
			p.Title, p.Message, p.Problem = "New survey", "Give the survey a title (at most 200 characters).", true
			in.render(w, http.StatusBadRequest, "new", p)
			return
		}
		in.apiFailed(w, r, p, status, err)
		return
	}
	http.Redirect(w, r, "/surveys", http.StatusSeeOther)
}

func (in *instance) publishSurvey(w http.ResponseWriter, r *http.Request) {
	in.surveyAction(w, r, http.MethodPost, "/publish", nil)
}

func (in *instance) deleteSurvey(w http.ResponseWriter, r *http.Request) {
	in.surveyAction(w, r, http.MethodDelete, "", nil)
}

func (in *instance) addContributor(w http.ResponseWriter, r *http.Request) {
	in.surveyAction(w, r, http.MethodPost, "/contributors", map[string]string{"username": r.PostFormValue("username")})
}

func (in *instance) saveSurvey(w http.ResponseWriter, r *http.Request) {
	in.surveyAction(w, r, http.MethodPut, "", map[string]string{"title": r.PostFormValue("title"), "question": r.PostFormValue("question")})
}

// surveyAction is a form's POST on the survey the path names: it checks
// the session and its CSRF token, calls the API's method on
// /surveys/{id}+suffix with body, and goes back to the list. The API
// decides who may: the owner, a contributor (edit only) or a SurveyAdmin.
func (in *instance) surveyAction(w http.ResponseWriter, r *http.Request, method, suffix string, body any) {
	s, token, p, ok := in.requireToken(w, r)
	if !ok || !in.checkCSRF(w, r, s) {
		return
	}
	id, err := strconv.Atoi(r.PathValue("id"))
	if err != nil {
		in.fail(w, r, http.StatusNotFound, "No such survey", "There is no survey at this address.")
		return
	}
	if status, err := in.callAPI(r.Context(), method, "/surveys/"+strconv.Itoa(id)+suffix, token, body, nil); err != nil {
		if status == http.StatusBadRequest || status == http.StatusNotFound {
			p.Problem, p.Link, p.LinkText = true, "/surveys", "Back to the surveys"
			p.Title, p.Message = "Not saved", strings.TrimPrefix(err.Error(), "survey API: ")
			in.render(w, status, "message", p)
			return
		}
		in.apiFailed(w, r, p, status, err)
		return
	}
	http.Redirect(w, r, "/surveys", http.StatusSeeOther)
}

// editSurvey shows the edit form of a survey the caller may edit.
func (in *instance) editSurvey(w http.ResponseWriter, r *http.Request) {
	_, token, p, ok := in.requireToken(w, r)
	if !ok {
		return
	}
	id, _ := strconv.Atoi(r.PathValue("id"))
	var list []Survey
	if status, err := in.callAPI(r.Context(), http.MethodGet, "/surveys", token, nil, &list); err != nil {
		in.apiFailed(w, r, p, status, err)
		return
	}
	i := slices.IndexFunc(list, func(s Survey) bool { return s.ID == id })
	if i < 0 || !list[i].CanEdit {
		in.fail(w, r, http.StatusNotFound, "No such survey", "There is no survey here that you may edit.")
		return
	}
	p.Title, p.Survey = "Edit survey", &list[i]
	in.render(w, http.StatusOK, "edit", p)
}
