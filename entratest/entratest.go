// Package entratest provides an offline Microsoft Entra ID (Azure AD) token
// endpoint for tests, in the spirit of [net/http/httptest].
//
// A [Server] is a real HTTPS server on the loopback interface with a fresh
// self-signed certificate. It speaks enough of the Microsoft identity
// platform's v2.0 protocol for MSAL-Go (github.com/AzureAD/microsoft-authentication-library-for-go)
// to sign applications and users in against it exactly as it would against
// login.microsoftonline.com: OpenID discovery, instance discovery, the
// authorize endpoint and the token endpoint with the grants MSAL uses
// (client_credentials, authorization_code, refresh_token, password and
// on-behalf-of). It counts the token requests it serves, so a test can prove
// that a token came from a cache rather than from the endpoint.
//
// Why: code that caches MSAL tokens (or that merely calls MSAL) is hard to
// test against the real service: it needs an Entra tenant, secrets, network
// access, and it cannot tell a cache hit from a round trip. The emulator
// needs none of these and runs under go test -race.
//
// Usage:
//
//	srv := entratest.NewServer()
//	defer srv.Close()
//
//	cred, _ := confidential.NewCredFromSecret("any-secret")
//	app, _ := confidential.New(srv.Authority("contoso"), "my-client-id", cred,
//		confidential.WithHTTPClient(srv.Client()))
//	res, _ := app.AcquireTokenByCredential(ctx, []string{"api://backend/.default"})
//	claims, _ := entratest.ParseToken(res.AccessToken)
//	// claims.ClientID == "my-client-id", claims.Tenant == "contoso"
//	// srv.TokenRequests() == 1; a second call is served by MSAL's cache.
//
// Users sign in with [Server.AddUser] and then either the password grant or
// an authorization code minted by [Server.AuthCode] (or, for public clients'
// interactive flow, the browser stand-in returned by [Server.OpenURL]).
//
// # Clients and authorities
//
// [Server.Authority] returns an authority such as
// https://127.0.0.1:PORT/contoso. Always hand MSAL the [Server.Client]: it
// trusts the server's certificate, and it routes the Microsoft login hosts
// (login.microsoftonline.com and the other hosts MSAL trusts) to the
// emulator too. That matters because MSAL-Go, unless told
// WithInstanceDiscovery(false), validates any authority whose host it does
// not know by calling https://login.microsoftonline.com/common/discovery/instance;
// with the Client that call lands here and succeeds offline. It also means an
// application's production authority, e.g.
// https://login.microsoftonline.com/contoso, works unchanged in a test as long
// as its HTTP client is the Server's Client. WithInstanceDiscovery(false)
// works as well and saves that request.
//
// # Tokens
//
// Access tokens and ID tokens are ES256-signed JWTs (keys published at the
// tenant's jwks_uri; [Server.VerifyToken] checks them). Each access token
// carries a unique jti and says whom it was issued to: tid, oid and sub (the
// user's object id, or the application's service principal id for app
// tokens), azp/appid (the client id), aud and scp derived from the requested
// scopes, and the grant that produced it. [ParseToken] decodes these into
// [Claims] without needing the Server.
//
// Tenants are names: the path segment of the authority, lower-cased
// ("contoso"), which is also the tid claim and the utid of client_info.
// "common" and "organizations" sign users into the tenant they were added
// to. Object ids are derived from tenant and name, so they are stable across
// runs (a program that restarts a Server on a fixed address with [WithAddr]
// finds its cached tokens still match the user).
//
// # Fidelity
//
// The emulator follows the service where MSAL or a caching layer could tell
// the difference: client_credentials requires scopes ending in /.default;
// authorization codes are single use (and checked against PKCE, client and
// redirect URI when minted through the authorize endpoint); refresh tokens
// are bound to their client; errors are OAuth error JSON (invalid_request,
// invalid_client, invalid_grant, invalid_scope, unsupported_grant_type)
// with AADSTS codes. It does not model user consent, conditional access,
// device code, or federated (WS-Trust) users; it accepts any JWT-shaped
// client assertion and any JWT carrying a user as an on-behalf-of
// assertion.
//
// # Browsers
//
// A web app's sign-in runs in a browser, and the emulator serves what the
// browser sees: without login_hint the authorize endpoint shows a sign-in
// page (pick an account, or type one and, for users added with a
// password, the password), [Server.AdminConsentURL] is the page where a
// tenant administrator ([Server.AddAdmin]) signs the organization up, the
// end-session endpoint sends the browser back, and errors a person meets
// are pages. [WithBrowserHTTP] serves these pages over plain HTTP on
// loopback, so a browser that does not trust the emulator's certificate
// reaches them. App roles assigned with [Server.AssignRoles] travel in the
// roles claim; [WithAdminConsentRequired] makes an application usable in a
// tenant (for client credentials) only after its admin consent.
package entratest

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Grant types accepted by the token endpoint, as sent in grant_type and as
// counted by [Server.TokenRequestsFor].
const (
	GrantClientCredentials = "client_credentials"
	GrantAuthorizationCode = "authorization_code"
	GrantRefreshToken      = "refresh_token"
	GrantPassword          = "password"
	// GrantOnBehalfOf is the JWT bearer grant MSAL uses for on-behalf-of.
	GrantOnBehalfOf = "urn:ietf:params:oauth:grant-type:jwt-bearer"
)

const (
	defaultTokenLifetime   = time.Hour
	refreshTokenLifetime   = 90 * 24 * time.Hour
	authCodeLifetime       = 10 * time.Minute
	maxRequestBody         = 1 << 20
	clientAssertionTypeJWT = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
)

// microsoftHosts are the login hosts MSAL-Go trusts without validation, plus
// the host of its instance discovery endpoint. The Server's Client sends
// requests for them to the Server, and its certificate covers them.
var microsoftHosts = []string{
	"login.microsoftonline.com",
	"login.microsoft.com",
	"login.windows.net",
	"sts.windows.net",
	"login.partner.microsoftonline.cn",
	"login.chinacloudapi.cn",
	"login.microsoftonline.de",
	"login-us.microsoftonline.com",
	"login.microsoftonline.us",
	"login.usgovcloudapi.net",
	"login.sovcloud-identity.fr",
	"login.sovcloud-identity.de",
	"login.sovcloud-identity.sg",
}

func isMicrosoftHost(host string) bool {
	host = strings.ToLower(host)
	for _, h := range microsoftHosts {
		if h == host {
			return true
		}
	}
	return false
}

// An Option configures a [Server]. Options exist for what a test needs to
// differ from the service's defaults; everything else behaves as the
// service does.
type Option func(*options)

type options struct {
	latency       time.Duration
	addr          string
	tokenLifetime time.Duration
	secrets       map[string]string
	// browserAddr: WithBrowserHTTP; consentRequired: WithAdminConsentRequired.
	browserAddr     string
	consentRequired map[string]bool
	// appNames: WithAppName.
	appNames map[string]string
}

// WithLatency delays every token endpoint response by d, to give the
// emulator the cost of the real endpoint (tens to hundreds of milliseconds)
// in benchmarks and timing-sensitive tests. Discovery and other endpoints
// are not delayed. A request whose context ends first gets no response.
func WithLatency(d time.Duration) Option {
	return func(o *options) { o.latency = d }
}

// WithAddr makes the Server listen on addr, such as "127.0.0.1:48443",
// instead of a random loopback port. A fixed address keeps the authority URL
// (and so MSAL's cache keys, which include the host and port) the same from
// one run of a program to the next. The certificate is new on every start,
// which MSAL does not mind: it does not remember certificates.
func WithAddr(addr string) Option {
	return func(o *options) { o.addr = addr }
}

// WithTokenLifetime sets the lifetime of access tokens (default 1h; d <= 0
// keeps the default). The token response's expires_in is rounded down to
// whole seconds. Note that MSAL-Go does not cache an access token that
// expires within 5 minutes, so a lifetime of 5 minutes or less makes every
// acquisition a token request.
func WithTokenLifetime(d time.Duration) Option {
	return func(o *options) { o.tokenLifetime = d }
}

// WithClientSecret registers a confidential client: requests from clientID
// must then authenticate with exactly this secret on every grant (a missing
// secret or a client assertion is invalid_client). Clients not registered
// this way may present any non-empty client_secret or any JWT-shaped
// client_assertion, and need none for the grants public clients use
// (password, authorization_code, refresh_token). The option may be repeated
// for several clients.
func WithClientSecret(clientID, secret string) Option {
	return func(o *options) {
		if o.secrets == nil {
			o.secrets = make(map[string]string)
		}
		o.secrets[clientID] = secret
	}
}

// WithAppName gives the app registered as clientID the display name its
// users see on the sign-in and consent pages, as Entra ID shows an app
// registration's name rather than its client ID. Without it the pages name
// the app by its client ID.
func WithAppName(clientID, displayName string) Option {
	return func(o *options) {
		if o.appNames == nil {
			o.appNames = make(map[string]string)
		}
		o.appNames[clientID] = displayName
	}
}

// appName returns the name the pages show for clientID.
func (s *Server) appName(clientID string) string {
	if n := s.opts.appNames[clientID]; n != "" {
		return n
	}
	return clientID
}

// A Server is an Entra ID emulator listening on a loopback TLS port. Create
// one with [NewServer] or [Start] and stop it with [Server.Close]. Its
// methods are safe for concurrent use.
type Server struct {
	opts    options
	url     string
	addr    string
	ln      net.Listener
	hs      *http.Server
	client  *http.Client
	cert    *x509.Certificate
	signKey *ecdsa.PrivateKey
	kid     string

	total  atomic.Int64
	grants sync.Map // grant type -> *atomic.Int64

	mu       sync.Mutex
	users    map[string]*user // userKey(tenant, username) -> user
	byName   map[string]*user // lower(username) -> most recently added user
	codes    map[string]*authCode
	refresh  map[string]*refreshGrant
	consents map[string]bool // userKey(tenant, client id) -> admin consent given
	browser  *browserServer  // nil without WithBrowserHTTP
	serveErr chan error
	closed   sync.Once
}

// storeSecret remembers v under a new opaque credential (an authorization
// code or a refresh token) of n random bytes after prefix, and returns the
// credential. The prefix makes a credential's kind plain in a test's
// failure output.
func storeSecret[T any](s *Server, m map[string]*T, prefix string, n int, v *T) string {
	id := prefix + randomID(n)
	s.mu.Lock()
	defer s.mu.Unlock()
	m[id] = v
	return id
}

// NewServer starts and returns a new Server. The caller should call Close
// when finished, to shut it down. Like httptest.NewServer it panics if it
// cannot listen (for instance when the address given to [WithAddr] is in
// use); use [Start] to get an error instead.
func NewServer(opts ...Option) *Server {
	s, err := Start(opts...)
	if err != nil {
		panic("entratest: " + err.Error())
	}
	return s
}

// Start is like [NewServer] but returns an error instead of panicking, for
// a program (not a test) that runs the emulator on a fixed address with
// [WithAddr] and must report a busy one.
func Start(opts ...Option) (*Server, error) {
	s := &Server{
		users:    make(map[string]*user),
		byName:   make(map[string]*user),
		codes:    make(map[string]*authCode),
		refresh:  make(map[string]*refreshGrant),
		serveErr: make(chan error, 1),
	}
	for _, o := range opts {
		if o != nil {
			o(&s.opts)
		}
	}
	if s.opts.tokenLifetime <= 0 {
		s.opts.tokenLifetime = defaultTokenLifetime
	}
	addr := s.opts.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	host, _, _ := net.SplitHostPort(addr)
	tlsCert, leaf, err := newCertificate(host)
	if err != nil {
		ln.Close()
		return nil, err
	}
	s.cert = leaf
	if s.signKey, s.kid, err = newSigningKey(); err != nil {
		ln.Close()
		return nil, err
	}

	s.addr = ln.Addr().String()
	s.url = "https://" + s.addr
	s.ln = tls.NewListener(ln, &tls.Config{
		Certificates: []tls.Certificate{tlsCert},
		NextProtos:   []string{"http/1.1"},
		MinVersion:   tls.VersionTLS12,
	})

	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	dialer := &net.Dialer{Timeout: 10 * time.Second}
	serverAddr := s.addr
	s.client = &http.Client{
		Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
			DialContext: func(ctx context.Context, network, address string) (net.Conn, error) {
				if h, _, err := net.SplitHostPort(address); err == nil && isMicrosoftHost(h) {
					address = serverAddr
				}
				return dialer.DialContext(ctx, network, address)
			},
			MaxIdleConns:        256,
			MaxIdleConnsPerHost: 64,
			IdleConnTimeout:     90 * time.Second,
		},
	}

	s.hs = &http.Server{
		Handler:           s.handler(),
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          log.New(handshakeFilter{}, "entratest: ", 0),
	}
	if err := s.startBrowser(); err != nil {
		s.ln.Close()
		return nil, err
	}
	go func() { s.serveErr <- s.hs.Serve(s.ln) }()
	return s, nil
}

// handshakeFilter drops the "TLS handshake error" lines net/http logs when a
// client that does not trust the certificate connects, and forwards the rest
// to the standard logger.
type handshakeFilter struct{}

func (handshakeFilter) Write(p []byte) (int, error) {
	if strings.Contains(string(p), "TLS handshake error") {
		return len(p), nil
	}
	return log.Writer().Write(p)
}

var _ io.Writer = handshakeFilter{}

// URL returns the base URL of the server, of the form https://127.0.0.1:PORT,
// with no trailing slash: for requests that are not MSAL's, such as a test
// posting to the token endpoint itself. MSAL wants [Server.Authority].
func (s *Server) URL() string { return s.url }

// Authority returns the authority URL of tenant on this server, for example
// https://127.0.0.1:PORT/contoso, to pass to confidential.New or
// public.WithAuthority. tenant is lower-cased, as MSAL does; "common" and
// "organizations" are accepted for user sign-ins.
func (s *Server) Authority(tenant string) string {
	return s.url + "/" + strings.ToLower(tenant)
}

// Client returns an HTTP client that trusts the server's certificate and
// sends requests for Microsoft's login hosts to the server; pass it to MSAL
// with confidential.WithHTTPClient or public.WithHTTPClient. Requests for any
// other host go out as usual. Every call returns the same client.
func (s *Server) Client() *http.Client { return s.client }

// Certificate returns the server's self-signed certificate, for a client
// other than [Server.Client] (a resource server fetching the keys, a
// browser) to trust. It is new on every start. Its names cover 127.0.0.1,
// ::1, localhost and the Microsoft login hosts.
func (s *Server) Certificate() *x509.Certificate { return s.cert }

// TokenRequests returns how many requests the token endpoint has received
// since the server started or [Server.ResetCounters] was last called,
// whether they succeeded or not: what a test compares to prove that a
// token came from a cache. Discovery requests are not counted: MSAL makes
// them whatever its token cache holds.
func (s *Server) TokenRequests() int { return int(s.total.Load()) }

// TokenRequestsFor returns how many token endpoint requests carried
// grant_type grant, such as [GrantRefreshToken], for a test that must tell
// a cached access token (no request) from a refreshed one (a refresh
// token request) or a new sign-in.
func (s *Server) TokenRequestsFor(grant string) int {
	if v, ok := s.grants.Load(grant); ok {
		return int(v.(*atomic.Int64).Load())
	}
	return 0
}

// ResetCounters sets every token request counter to zero, so that a test
// counts only what follows its setup. Users, codes and refresh tokens are
// kept.
func (s *Server) ResetCounters() {
	s.total.Store(0)
	s.grants.Range(func(_, v any) bool {
		v.(*atomic.Int64).Store(0)
		return true
	})
}

func (s *Server) countRequest(grant string) {
	v, ok := s.grants.Load(grant)
	if !ok {
		v, _ = s.grants.LoadOrStore(grant, new(atomic.Int64))
	}
	v.(*atomic.Int64).Add(1)
}

// Close shuts the server down, closing open connections, and closes the idle
// connections of its Client, so that a test leaves no goroutines behind. It
// is safe to call more than once, for a test that closes early and in its
// cleanup.
func (s *Server) Close() {
	s.closed.Do(func() {
		s.hs.Close()
		if err := <-s.serveErr; err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Printf("entratest: serve: %v", err)
		}
		s.closeBrowser()
		s.client.CloseIdleConnections()
	})
}
