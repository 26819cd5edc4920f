package entratest_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
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
