package entratest

import (
	"context"
	"fmt"
	"html"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// The authorize flow: a user signs in and the client's redirect URI
// receives an authorization code (or an error), which the client then
// redeems at the token endpoint (grants.go). The user named by login_hint
// is signed in at once; without login_hint a browser gets the sign-in page
// of browser.go.
//
// A browser reaches the flow through handleAuthorize, and a public client's
// interactive sign-in through the stand-in browser of OpenURL. Both call
// authorize, which checks the request and builds the one authResponse; they
// differ only in how it travels to the redirect URI: handleAuthorize hands
// it to the browser, OpenURL delivers it as the browser would.

// authCode is what an authorization code grants, kept until the code is
// redeemed or expires.
type authCode struct {
	tenant, username string
	// Set when the code was minted by the authorize endpoint.
	clientID, redirectURI string
	challenge, method     string
	nonce                 string
	expires               time.Time
	redeemed              bool
}

// AuthCode mints a single-use authorization code for username in tenant, as
// if the user had just signed in at the authorize endpoint; redeem it with
// confidential.Client.AcquireTokenByAuthCode (or the public client's) against
// the same tenant's authority. It exists because a web app's sign-in starts
// in a browser, which a test does not have. The code is valid for 10
// minutes, for any client and redirect URI, without PKCE. The user is looked
// up when the code is redeemed: a code for a username never added is
// refused with invalid_grant.
func (s *Server) AuthCode(tenant, username string) string {
	return s.storeCode(&authCode{tenant: strings.ToLower(tenant), username: username})
}

func (s *Server) storeCode(c *authCode) string {
	c.expires = time.Now().Add(authCodeLifetime)
	return storeSecret(s, s.codes, "entratest-code.", 24, c)
}

// redeemCode marks code redeemed and returns it. Codes are single use:
// redeemed reports whether the code had been redeemed before.
func (s *Server) redeemCode(code string) (c authCode, found, redeemed bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.codes[code]
	if p == nil {
		return authCode{}, false, false
	}
	redeemed = p.redeemed
	p.redeemed = true
	return *p, true, redeemed
}

// noReplyAddress is the service's error page for an authorize request
// without an absolute redirect_uri: the response has nowhere to go.
const noReplyAddress = "AADSTS900971: No reply address provided (redirect_uri missing or not absolute)."

// An authResponse is the authorize endpoint's answer, addressed to the
// client's redirect URI.
type authResponse struct {
	redirect *url.URL
	formPost bool        // response_mode=form_post, else query
	params   url.Values  // code or error and error_description; state
	err      *oauthError // nil when params carry a code
}

// authorize runs the authorize flow for tenant and the request parameters
// q. It reports false when q has no redirect URI to answer (see
// noReplyAddress); any other failure is an error response for the redirect
// URI, as the service sends it.
func (s *Server) authorize(tenant string, q url.Values) (*authResponse, bool) {
	redirect, err := url.Parse(q.Get("redirect_uri"))
	if err != nil || !redirect.IsAbs() {
		return nil, false
	}
	res := &authResponse{redirect: redirect, formPost: q.Get("response_mode") == "form_post", params: url.Values{}}
	if st := q.Get("state"); st != "" {
		res.params.Set("state", st)
	}
	code, oerr := s.signIn(tenant, q)
	if oerr != nil {
		res.err = oerr
		res.params.Set("error", oerr.code)
		res.params.Set("error_description", oerr.desc)
	} else {
		res.params.Set("code", code)
	}
	return res, true
}

// signIn checks the authorization request q and signs in the user named by
// login_hint, returning a code that remembers what the token request must
// match: client, redirect URI, PKCE challenge and nonce.
func (s *Server) signIn(tenant string, q url.Values) (string, *oauthError) {
	if q.Get("client_id") == "" {
		return "", errMissing("client_id")
	}
	if rt := q.Get("response_type"); rt != "code" {
		return "", newOAuthError(http.StatusBadRequest, "unsupported_response_type", 700054,
			fmt.Sprintf("response_type %q is not supported; the emulator issues codes only.", rt))
	}
	method := q.Get("code_challenge_method")
	if q.Get("code_challenge") != "" && method != "" && method != "S256" && method != "plain" {
		return "", errInvalidRequest(501491, fmt.Sprintf("Invalid code_challenge_method %q.", method))
	}
	hint := q.Get("login_hint")
	if hint == "" {
		return "", newOAuthError(http.StatusBadRequest, "login_required", 50058,
			"No user is signed in. The emulator signs in the user named by login_hint (see entratest.Server.OpenURL).")
	}
	u := s.lookupUser(tenant, hint)
	if u == nil {
		return "", errUnknownUser("login_required", hint, tenant)
	}
	return s.storeCode(&authCode{
		tenant:      u.Tenant,
		username:    u.Username,
		clientID:    q.Get("client_id"),
		redirectURI: q.Get("redirect_uri"),
		challenge:   q.Get("code_challenge"),
		method:      method,
		nonce:       q.Get("nonce"),
	}), nil
}

// location is the redirect URI with the response in its query: where
// response_mode=query sends the browser.
func (a *authResponse) location() string {
	u := *a.redirect
	q := u.Query()
	for k, v := range a.params {
		q[k] = v
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// write hands the response to the browser: a redirect to location, or for
// form_post a page whose form posts the response to the redirect URI.
func (a *authResponse) write(w http.ResponseWriter, r *http.Request) {
	if !a.formPost {
		http.Redirect(w, r, a.location(), http.StatusFound)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	fmt.Fprintf(w, `<html><head><title>Working...</title></head><body onload="document.forms[0].submit()"><form method="POST" action="%s">`,
		html.EscapeString(a.redirect.String()))
	for _, k := range slices.Sorted(maps.Keys(a.params)) {
		for _, v := range a.params[k] {
			fmt.Fprintf(w, `<input type="hidden" name="%s" value="%s"/>`, html.EscapeString(k), html.EscapeString(v))
		}
	}
	fmt.Fprint(w, `<noscript><input type="submit" value="Continue"/></noscript></form></body></html>`)
}

// deliver does what a browser does with the response write sends: a GET of
// location, or the form's POST to the redirect URI.
func (a *authResponse) deliver() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var req *http.Request
	var err error
	if a.formPost {
		req, err = http.NewRequestWithContext(ctx, http.MethodPost, a.redirect.String(), strings.NewReader(a.params.Encode()))
		if err == nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
	} else {
		req, err = http.NewRequestWithContext(ctx, http.MethodGet, a.location(), nil)
	}
	if err == nil {
		var res *http.Response
		if res, err = http.DefaultClient.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, res.Body)
			_ = res.Body.Close()
		}
	}
	if err != nil {
		return fmt.Errorf("entratest: redirect to %s: %w", a.redirect, err)
	}
	return nil
}

func (s *Server) handleAuthorize(w http.ResponseWriter, r *http.Request) {
	fail := func(oerr *oauthError) {
		if wantsPage(r) {
			writeErrorPage(w, oerr.status, "Sign-in failed", oerr.desc)
		} else {
			writeError(w, r, oerr)
		}
	}
	tenant, oerr := tenantOf(r)
	if oerr != nil {
		fail(oerr)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		fail(newOAuthError(http.StatusMethodNotAllowed, "invalid_request", 0, "The authorize endpoint accepts GET and POST."))
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxRequestBody)
	if err := r.ParseForm(); err != nil {
		fail(errInvalidRequest(0, "cannot parse request: "+err.Error()))
		return
	}
	if s.interactiveSignIn(w, r, tenant) {
		return
	}
	res, ok := s.authorize(tenant, r.Form)
	if !ok {
		if wantsPage(r) {
			writeErrorPage(w, http.StatusBadRequest, "Sign-in failed", noReplyAddress)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprintln(w, noReplyAddress)
		return
	}
	res.write(w, r)
}

// OpenURL returns a function to pass to public.WithOpenURL that stands in
// for the browser in public.Client.AcquireTokenInteractive, which a test
// does not have: given the authorize URL MSAL would open, it signs username
// in (as if with login_hint) and delivers the code, or the error, to MSAL's
// local redirect listener. It returns an error if the URL is not this
// server's authorize endpoint or the user does not exist.
func (s *Server) OpenURL(username string) func(authURL string) error {
	return func(authURL string) error {
		u, err := url.Parse(authURL)
		if err != nil {
			return fmt.Errorf("entratest: parse authorize URL: %w", err)
		}
		parts := strings.Split(strings.Trim(u.Path, "/"), "/")
		if len(parts) != 4 || parts[1] != "oauth2" || parts[2] != "v2.0" || parts[3] != "authorize" {
			return fmt.Errorf("entratest: %s is not an authorize endpoint", authURL)
		}
		q := u.Query()
		q.Set("login_hint", username)
		res, ok := s.authorize(strings.ToLower(parts[0]), q)
		if !ok {
			return fmt.Errorf("entratest: authorize URL %s: %s", authURL, noReplyAddress)
		}
		if err := res.deliver(); err != nil {
			return err
		}
		if res.err != nil {
			return fmt.Errorf("entratest: sign-in of %s failed: %s: %s", username, res.err.code, res.err.desc)
		}
		return nil
	}
}
