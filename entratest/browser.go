package entratest

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"html/template"
	"log"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// What a person's browser sees: the sign-in page the authorize endpoint
// shows when the request names no user, the admin-consent page an
// application sends a tenant administrator to when the tenant signs up,
// the sign-out endpoint, and errors as pages rather than JSON. A program
// drives them with form posts, as a browser does; tests that have no
// browser keep using login_hint, [Server.AuthCode] and [Server.OpenURL].
//
// Browsers do not trust the emulator's self-signed certificate, so
// [WithBrowserHTTP] serves these pages over plain HTTP on a loopback
// address of their own, and the OpenID configuration names that address as
// authorization_endpoint and end_session_endpoint; MSAL builds its
// authorize URLs from there. The token endpoint stays on TLS.

// Form fields of the emulator's own pages, prefixed so that they never
// clash with the protocol parameters carried along as hidden fields.
const (
	fieldUsername = "entratest_username"
	fieldPassword = "entratest_password"
	fieldConsent  = "entratest_consent"
)

// WithBrowserHTTP also serves the pages a browser visits (authorize with
// its sign-in page, admin consent, sign-out) over plain HTTP at addr, a
// loopback address such as "127.0.0.1:0" (a free port) or
// "127.0.0.1:48080", and advertises that address in the OpenID
// configuration as authorization_endpoint and end_session_endpoint. It is
// for a program a person signs into with a real browser, which would
// otherwise stop at the certificate warning of the emulator's self-signed
// TLS certificate. Start fails for an address that is not loopback:
// passwords typed into the sign-in page travel in clear.
func WithBrowserHTTP(addr string) Option {
	return func(o *options) { o.browserAddr = addr }
}

// BrowserURL returns the base URL of the pages a browser visits, such as
// http://127.0.0.1:PORT with [WithBrowserHTTP], or [Server.URL] without it.
func (s *Server) BrowserURL() string {
	if s.browser != nil {
		return s.browser.url
	}
	return s.url
}

// AdminConsentURL returns the admin-consent URL of tenant ("organizations"
// lets the administrator's own tenant be the one that signs up) for
// clientID, with the response sent to redirectURI: what an application's
// "sign up your organization" link points to, as
// https://login.microsoftonline.com/organizations/v2.0/adminconsent does.
// After the administrator accepts, the browser goes to redirectURI with
// admin_consent=True, tenant (the tenant that consented), scope and state;
// after a refusal, with error and error_description.
func (s *Server) AdminConsentURL(tenant, clientID, redirectURI, scope, state string) string {
	q := url.Values{"client_id": {clientID}, "redirect_uri": {redirectURI}}
	if scope != "" {
		q.Set("scope", scope)
	}
	if state != "" {
		q.Set("state", state)
	}
	return s.BrowserURL() + "/" + strings.ToLower(tenant) + "/v2.0/adminconsent?" + q.Encode()
}

// browserServer is the plain-HTTP listener of WithBrowserHTTP.
type browserServer struct {
	url      string
	hs       *http.Server
	serveErr chan error
}

func (s *Server) startBrowser() error {
	addr := s.opts.browserAddr
	if addr == "" {
		return nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("WithBrowserHTTP(%q): %w", addr, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("WithBrowserHTTP(%q): not a loopback address; the sign-in page takes passwords in clear, so it listens on 127.0.0.1 or ::1 only", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("WithBrowserHTTP: listen on %s: %w", addr, err)
	}
	b := &browserServer{url: "http://" + ln.Addr().String(), serveErr: make(chan error, 1)}
	mux := http.NewServeMux()
	mux.HandleFunc("/{tenant}/oauth2/v2.0/authorize", s.handleAuthorize)
	mux.HandleFunc("/{tenant}/v2.0/adminconsent", s.handleAdminConsent)
	mux.HandleFunc("/{tenant}/oauth2/v2.0/logout", s.handleLogout)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeErrorPage(w, http.StatusNotFound, "Page not found",
			fmt.Sprintf("The emulator's browser pages have nothing at %s. Tokens are served over TLS at %s.", r.URL.Path, s.url))
	})
	b.hs = &http.Server{Handler: recoverer(mux), ReadHeaderTimeout: 30 * time.Second}
	go func() { b.serveErr <- b.hs.Serve(ln) }()
	s.browser = b
	return nil
}

func (s *Server) closeBrowser() {
	if s.browser == nil {
		return
	}
	s.browser.hs.Close()
	if err := <-s.browser.serveErr; err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Printf("entratest: serve browser pages: %v", err)
	}
}

// endpointBase is where discovery points browsers: the plain-HTTP pages
// with WithBrowserHTTP, else the base the request came in on.
func (s *Server) endpointBase(requestBase string) string {
	if s.browser != nil {
		return s.browser.url
	}
	return requestBase
}

// wantsPage reports whether the request is a browser's, which gets errors
// as HTML pages; programs get the service's JSON or text.
func wantsPage(r *http.Request) bool {
	return strings.Contains(r.Header.Get("Accept"), "text/html")
}

// interactiveSignIn handles an authorize request that names no user, as a
// browser sends it: it shows the sign-in page, and on the page's post
// checks the user (and password, for users who have one) and puts the
// user in login_hint for the authorize flow to go on with. It reports
// whether it has answered the request itself. Requests with login_hint,
// with prompt=none, or without an absolute redirect URI (an error page
// of its own) are left to the authorize flow as they were.
func (s *Server) interactiveSignIn(w http.ResponseWriter, r *http.Request, tenant string) bool {
	f := r.Form
	if f.Get("login_hint") != "" || f.Get("prompt") == "none" || f.Get("client_id") == "" {
		return false
	}
	if u, err := url.Parse(f.Get("redirect_uri")); err != nil || !u.IsAbs() {
		return false
	}
	name := strings.TrimSpace(f.Get(fieldUsername))
	if r.Method != http.MethodPost || name == "" {
		s.writeSignInPage(w, r, tenant, http.StatusOK, name, "")
		return true
	}
	u := s.lookupUser(tenant, name)
	switch {
	case u == nil:
		s.writeSignInPage(w, r, tenant, http.StatusOK, name,
			fmt.Sprintf("AADSTS50034: The user account %s does not exist in the %s directory.", name, tenant))
		return true
	case u.password != "" && f.Get(fieldPassword) == "":
		s.writeSignInPage(w, r, tenant, http.StatusOK, u.Username, "Enter the password of "+u.Username+".")
		return true
	case u.password != "" && subtle.ConstantTimeCompare([]byte(f.Get(fieldPassword)), []byte(u.password)) != 1:
		s.writeSignInPage(w, r, tenant, http.StatusOK, u.Username,
			"AADSTS50126: Error validating credentials due to invalid username or password.")
		return true
	}
	for _, k := range []string{fieldUsername, fieldPassword} {
		f.Del(k)
	}
	f.Set("login_hint", u.Username)
	return false
}

// pageUser is a user as the pages list them.
type pageUser struct {
	Username, Tenant string
	Password, Admin  bool
}

// listUsers returns the users who may sign in at tenant (all of them at
// "common" and "organizations"), sorted, admins only if asked.
func (s *Server) listUsers(tenant string, adminsOnly bool) []pageUser {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []pageUser
	for _, u := range s.users {
		if (isMultiTenant(tenant) || u.Tenant == tenant) && (!adminsOnly || u.admin) {
			out = append(out, pageUser{Username: u.Username, Tenant: u.Tenant, Password: u.password != "", Admin: u.admin})
		}
	}
	slices.SortFunc(out, func(a, b pageUser) int {
		return strings.Compare(a.Tenant+"\x00"+strings.ToLower(a.Username), b.Tenant+"\x00"+strings.ToLower(b.Username))
	})
	return out
}

// hidden is a protocol parameter carried along in a page's form.
type hidden struct{ Name, Value string }

func carried(f url.Values) []hidden {
	var out []hidden
	for _, k := range slices.Sorted(func(yield func(string) bool) {
		for k := range f {
			if !strings.HasPrefix(k, "entratest_") && !yield(k) {
				return
			}
		}
	}) {
		for _, v := range f[k] {
			out = append(out, hidden{k, v})
		}
	}
	return out
}

func (s *Server) writeSignInPage(w http.ResponseWriter, r *http.Request, tenant string, status int, name, problem string) {
	writePage(w, status, "signin", map[string]any{
		"Title":    "Sign in",
		"Tenant":   tenant,
		"Client":   s.appName(r.Form.Get("client_id")),
		"Action":   r.URL.Path,
		"Hidden":   carried(r.Form),
		"Users":    s.listUsers(tenant, false),
		"Username": name,
		"Problem":  problem,
	})
}

// handleAdminConsent is the v2.0 admin-consent endpoint: a tenant
// administrator signs in and grants clientID the permissions it asks for,
// in the administrator's tenant. The grant is what makes the tenant's
// client-credentials requests succeed under [WithAdminConsentRequired].
func (s *Server) handleAdminConsent(w http.ResponseWriter, r *http.Request) {
	tenant, oerr := tenantOf(r)
	if oerr != nil {
		writeErrorPage(w, oerr.status, "Sign-up failed", oerr.desc)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxRequestBody)
	if err := r.ParseForm(); err != nil {
		writeErrorPage(w, http.StatusBadRequest, "Sign-up failed", "Cannot parse the request: "+err.Error())
		return
	}
	f := r.Form
	clientID := f.Get("client_id")
	redirect, err := url.Parse(f.Get("redirect_uri"))
	switch {
	case clientID == "":
		writeErrorPage(w, http.StatusBadRequest, "Sign-up failed", "AADSTS900144: The request must contain the parameter 'client_id'.")
		return
	case err != nil || !redirect.IsAbs():
		writeErrorPage(w, http.StatusBadRequest, "Sign-up failed", noReplyAddress)
		return
	}
	answer := func(params url.Values) {
		q := redirect.Query()
		for k, v := range params {
			q[k] = v
		}
		if st := f.Get("state"); st != "" {
			q.Set("state", st)
		}
		u := *redirect
		u.RawQuery = q.Encode()
		http.Redirect(w, r, u.String(), http.StatusFound)
	}
	page := func(name, problem string) {
		writePage(w, http.StatusOK, "consent", map[string]any{
			"Title":    "Permissions requested",
			"Tenant":   tenant,
			"Client":   s.appName(clientID),
			"Scope":    f.Get("scope"),
			"Action":   r.URL.Path,
			"Hidden":   carried(f),
			"Admins":   s.listUsers(tenant, true),
			"Username": name,
			"Problem":  problem,
		})
	}
	if r.Method != http.MethodPost {
		page("", "")
		return
	}
	if f.Get(fieldConsent) == "cancel" {
		answer(url.Values{"error": {"access_denied"}, "error_description": {"AADSTS65004: User declined to consent to access the app."}})
		return
	}
	name := strings.TrimSpace(f.Get(fieldUsername))
	u := s.lookupUser(tenant, name)
	switch {
	case name == "":
		page("", "Sign in as an administrator of the organization that signs up.")
		return
	case u == nil:
		page(name, fmt.Sprintf("AADSTS50034: The user account %s does not exist in the %s directory.", name, tenant))
		return
	case u.password != "" && subtle.ConstantTimeCompare([]byte(f.Get(fieldPassword)), []byte(u.password)) != 1:
		page(u.Username, "AADSTS50126: Error validating credentials due to invalid username or password.")
		return
	case !u.admin:
		page(u.Username, "AADSTS90094: "+u.Username+" is not an administrator of "+u.Tenant+": granting permissions for the whole organization needs an administrator.")
		return
	}
	s.grantConsent(u.Tenant, clientID)
	answer(url.Values{"admin_consent": {"True"}, "tenant": {u.Tenant}, "scope": {f.Get("scope")}})
}

// handleLogout is the end-session endpoint. The emulator keeps no browser
// session, so there is nothing to end: it sends the browser to
// post_logout_redirect_uri, or shows that the user is signed out.
func (s *Server) handleLogout(w http.ResponseWriter, r *http.Request) {
	if u, err := url.Parse(r.URL.Query().Get("post_logout_redirect_uri")); err == nil && u.IsAbs() &&
		(u.Scheme == "http" || u.Scheme == "https") {
		http.Redirect(w, r, u.String(), http.StatusFound)
		return
	}
	writePage(w, http.StatusOK, "message", map[string]any{
		"Title":   "You signed out of your account",
		"Message": "It's a good idea to close all browser windows.",
	})
}

// writeErrorPage shows an error to a person: the browser's counterpart of
// writeError's JSON.
func writeErrorPage(w http.ResponseWriter, status int, title, msg string) {
	writePage(w, status, "message", map[string]any{"Title": title, "Message": msg, "Error": true})
}

func writePage(w http.ResponseWriter, status int, name string, data map[string]any) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action *")
	w.WriteHeader(status)
	if err := pages.ExecuteTemplate(w, name, data); err != nil {
		log.Printf("entratest: page %s: %v", name, err)
	}
}

var pages = template.Must(template.New("pages").Parse(`
{{define "head"}}<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}} - Entra ID emulator</title>
<style>
body{font-family:system-ui,sans-serif;max-width:30rem;margin:2rem auto;padding:0 1rem;line-height:1.4}
.card{border:1px solid #ccc;border-radius:6px;padding:1rem 1.5rem}
label{display:block;margin-top:.8rem;font-weight:600}
input[type=text],input[type=password]{width:100%;padding:.5rem;font-size:1rem;box-sizing:border-box}
button{padding:.5rem 1rem;font-size:1rem;margin-top:.8rem}
ul.users{list-style:none;padding:0}ul.users li{margin:.3rem 0}
ul.users button{width:100%;text-align:left;margin:0}
.problem{color:#a00;border-left:4px solid #a00;padding-left:.5rem}
.small{color:#555;font-size:.9rem}
</style></head><body><main class="card">
<p class="small">Microsoft Entra ID (offline emulator)</p>
<h1>{{.Title}}</h1>{{end}}
{{define "foot"}}</main></body></html>{{end}}
{{define "hidden"}}{{range .Hidden}}<input type="hidden" name="{{.Name}}" value="{{.Value}}">{{end}}{{end}}

{{define "signin"}}{{template "head" .}}
<p>to continue to <strong>{{.Client}}</strong>{{if ne .Tenant "organizations"}}{{if ne .Tenant "common"}} in <strong>{{.Tenant}}</strong>{{end}}{{end}}</p>
{{if .Problem}}<p class="problem" role="alert" id="problem">{{.Problem}}</p>{{end}}
{{if .Users}}<form method="post" action="{{.Action}}">{{template "hidden" .}}
<h2 id="pick">Pick an account</h2>
<ul class="users" aria-labelledby="pick">{{range .Users}}
<li><button type="submit" name="entratest_username" value="{{.Username}}">{{.Username}}{{if .Password}} (password){{end}}</button></li>{{end}}
</ul></form>{{end}}
<form method="post" action="{{.Action}}">{{template "hidden" .}}
<h2>{{if .Users}}Or type it{{else}}Sign in{{end}}</h2>
<label for="username">Email or username</label>
<input type="text" id="username" name="entratest_username" value="{{.Username}}" autocomplete="username" required{{if not .Username}} autofocus{{end}}>
<label for="password">Password <span class="small">(only for accounts that have one)</span></label>
<input type="password" id="password" name="entratest_password" autocomplete="current-password"{{if .Username}} autofocus{{end}}>
<button type="submit">Sign in</button>
</form>
{{template "foot" .}}{{end}}

{{define "consent"}}{{template "head" .}}
<p><strong>{{.Client}}</strong> asks an administrator to grant it, for the whole organization:</p>
<ul><li>{{if .Scope}}{{.Scope}}{{else}}the permissions configured for it{{end}}</li><li>Sign users in and read their profile</li></ul>
{{if .Problem}}<p class="problem" role="alert" id="problem">{{.Problem}}</p>{{end}}
<form method="post" action="{{.Action}}">{{template "hidden" .}}
<label for="username">Administrator</label>
<input type="text" id="username" name="entratest_username" value="{{.Username}}" list="admins" autocomplete="username" required autofocus>
{{if .Admins}}<datalist id="admins">{{range .Admins}}<option value="{{.Username}}">{{end}}</datalist>
<p class="small">Administrators: {{range $i, $a := .Admins}}{{if $i}}, {{end}}{{$a.Username}}{{end}}</p>{{end}}
<label for="password">Password <span class="small">(only for accounts that have one)</span></label>
<input type="password" id="password" name="entratest_password" autocomplete="current-password">
<button type="submit" name="entratest_consent" value="accept">Accept</button>
<button type="submit" name="entratest_consent" value="cancel" formnovalidate>Cancel</button>
</form>
{{template "foot" .}}{{end}}

{{define "message"}}{{template "head" .}}
<p{{if .Error}} class="problem" role="alert"{{end}}>{{.Message}}</p>
{{template "foot" .}}{{end}}
`))
