// Command quickstart shows msalcache at work: two instances of an
// application share one encrypted token cache, so a token bought by one is
// served to the other, and to both again after a restart.
//
// It runs offline by default: an Entra ID emulator (entratest) answers on
// a fixed loopback port and the cache is a bbolt file. Run it twice: the
// second run makes no token request.
//
//	go run ./examples/quickstart
//
// With AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET set, it
// asks real Microsoft Entra ID for an app token instead (client
// credentials, scope https://graph.microsoft.com/.default by default).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/cache"
	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/boltstore"
	"github.com/msalcache/msalcache/entratest"
	"github.com/msalcache/msalcache/protect"
)

func main() {
	dir := flag.String("dir", ".msalcache-quickstart", "folder for the cache file and the key file")
	addr := flag.String("addr", "127.0.0.1:48443", "loopback address of the Entra ID emulator; fixed so a second run finds its tokens")
	scope := flag.String("scope", "https://graph.microsoft.com/.default", "app scope to request from real Entra ID")
	flag.Parse()
	if err := run(context.Background(), os.Stdout, *dir, *addr, *scope); err != nil {
		log.SetFlags(0)
		log.Fatalf("quickstart: %v", err)
	}
}

// env is where tokens come from: the emulator, or real Entra ID.
type env struct {
	authority func(tenant string) string
	options   []confidential.Option
	clientID  string
	secret    string
	requests  func() int // token-endpoint requests so far; nil when unknown
}

func run(ctx context.Context, out io.Writer, dir, addr, scope string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	store, err := boltstore.Open(filepath.Join(dir, "tokens.db"))
	if err != nil {
		return err
	}
	defer store.Close()

	keyPath := filepath.Join(dir, "master.key")
	kek, created, err := keyWrapper(keyPath)
	if err != nil {
		return err
	}
	if created {
		fmt.Fprintf(out, "Created key-encryption key %s (0600). In production, supply it from a secret store: see README.\n", keyPath)
	}
	ring, err := protect.NewKeyRing(ctx, store, kek)
	if err != nil {
		return err
	}
	defer ring.Close()

	if os.Getenv("AZURE_CLIENT_SECRET") != "" {
		e := env{
			authority: func(string) string { return "https://login.microsoftonline.com/" + os.Getenv("AZURE_TENANT_ID") },
			clientID:  os.Getenv("AZURE_CLIENT_ID"),
			secret:    os.Getenv("AZURE_CLIENT_SECRET"),
		}
		fmt.Fprintln(out, "Using real Microsoft Entra ID (AZURE_* set).")
		return appTokens(ctx, out, store, ring, e, []string{os.Getenv("AZURE_TENANT_ID")}, scope)
	}

	srv, err := entratest.Start(entratest.WithAddr(addr), entratest.WithLatency(20*time.Millisecond), entratest.WithTokenLifetime(24*time.Hour))
	if err != nil {
		return fmt.Errorf("start the Entra ID emulator on %s: %w (pass -addr with a free port)", addr, err)
	}
	defer srv.Close()
	e := env{
		authority: srv.Authority,
		options:   []confidential.Option{confidential.WithHTTPClient(srv.Client())},
		clientID:  "8f7e6d5c-0000-4000-8000-00000000beef",
		secret:    "quickstart-secret",
		requests:  srv.TokenRequests,
	}
	fmt.Fprintf(out, "Entra ID emulator at %s; cache %s (encrypted).\n\n", srv.URL(), store.Path())
	tenants := []string{"contoso", "fabrikam"}
	if err := appTokens(ctx, out, store, ring, e, tenants, "api://inventory/.default"); err != nil {
		return err
	}
	users := []entratest.User{
		srv.AddUser("contoso", "alice@contoso.example", "alice-pw"),
		srv.AddUser("fabrikam", "bob@fabrikam.example", "bob-pw"),
	}
	return userTokens(ctx, out, store, ring, e, srv, users)
}

// keyWrapper loads the key-encryption key, creating it on first run.
func keyWrapper(path string) (protect.KeyWrapper, bool, error) {
	created := false
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		if err := protect.GenerateKeyFile(path); err != nil {
			return nil, false, err
		}
		created = true
	}
	key, err := protect.LoadKeyFile(path)
	if err != nil {
		return nil, false, err
	}
	w, err := protect.NewAESKeyWrapper("quickstart-kek", key)
	return w, created, err
}

// instance is one simulated server of the farm: its own adapter, its own
// pool of MSAL clients per tenant, the shared store.
type instance struct {
	name    string
	adapter *msalcache.Adapter
	pools   map[string]*msalcache.ClientPool
	e       env
}

func newInstance(name string, store driver.Store, p driver.Protector, e env) (*instance, error) {
	a, err := msalcache.New(store, msalcache.WithProtector(p), msalcache.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		return nil, err
	}
	return &instance{name: name, adapter: a, pools: map[string]*msalcache.ClientPool{}, e: e}, nil
}

// newFarm returns two instances over one store.
func newFarm(store driver.Store, p driver.Protector, e env) ([]*instance, error) {
	var farm []*instance
	for _, name := range []string{"server-1", "server-2"} {
		in, err := newInstance(name, store, p, e)
		if err != nil {
			return nil, err
		}
		farm = append(farm, in)
	}
	return farm, nil
}

// pool returns the instance's client pool for tenant: an app builds one
// at start-up and makes every token call through it, from any number of
// goroutines; each call gets a client no other call is using.
func (in *instance) pool(tenant string) (*msalcache.ClientPool, error) {
	if p, ok := in.pools[tenant]; ok {
		return p, nil
	}
	cred, err := confidential.NewCredFromSecret(in.e.secret)
	if err != nil {
		return nil, err
	}
	p, err := msalcache.NewClientPool(in.adapter, func(c cache.ExportReplace) (confidential.Client, error) {
		return confidential.New(in.e.authority(tenant), in.e.clientID, cred, append(in.e.options, confidential.WithCache(c))...)
	})
	if err != nil {
		return nil, err
	}
	in.pools[tenant] = p
	return p, nil
}

// report prints one line per token call.
type report struct {
	out      io.Writer
	e        env
	endpoint int
}

func (r *report) call(who, what string, f func() error) error {
	before := 0
	if r.e.requests != nil {
		before = r.e.requests()
	}
	start := time.Now()
	if err := f(); err != nil {
		return fmt.Errorf("%s: %s: %w", who, what, err)
	}
	took := time.Since(start)
	source := "shared cache"
	if r.e.requests != nil {
		if n := r.e.requests() - before; n > 0 {
			source = "token endpoint"
			r.endpoint += n
		}
	}
	fmt.Fprintf(r.out, "  %-10s %-34s %-15s %8.2f ms\n", who, what, source, float64(took.Microseconds())/1000)
	return nil
}

func appTokens(ctx context.Context, out io.Writer, store driver.Store, p driver.Protector, e env, tenants []string, scope string) error {
	fmt.Fprintln(out, "App tokens (client credentials), two instances:")
	r := &report{out: out, e: e}
	instances, err := newFarm(store, p, e)
	if err != nil {
		return err
	}
	for _, tenant := range tenants {
		for _, in := range instances {
			p, err := in.pool(tenant)
			if err != nil {
				return err
			}
			if err := r.call(in.name, "app token, tenant "+tenant, func() error {
				_, err := p.AcquireTokenByCredential(ctx, []string{scope})
				return err
			}); err != nil {
				return err
			}
		}
	}
	summary(out, r, instances)
	return nil
}

func userTokens(ctx context.Context, out io.Writer, store driver.Store, p driver.Protector, e env, srv *entratest.Server, users []entratest.User) error {
	fmt.Fprintln(out, "\nUser tokens (signed in once, then silent), two instances:")
	r := &report{out: out, e: e}
	instances, err := newFarm(store, p, e)
	if err != nil {
		return err
	}
	scopes := []string{"api://inventory/read"}
	for _, u := range users {
		for _, in := range instances {
			p, err := in.pool(u.Tenant)
			if err != nil {
				return err
			}
			acct, err := p.Account(ctx, u.HomeAccountID)
			if err != nil {
				return err
			}
			if acct.HomeAccountID == "" {
				err = r.call(in.name, "sign-in "+u.Username, func() error {
					_, err := p.AcquireTokenByAuthCode(ctx, srv.AuthCode(u.Tenant, u.Username), "http://localhost/callback", scopes)
					return err
				})
			} else {
				err = r.call(in.name, "silent "+u.Username, func() error {
					// The session keeps the account id; the pool finds the account.
					_, err := p.AcquireTokenSilent(ctx, u.HomeAccountID, scopes)
					return err
				})
			}
			if err != nil {
				return err
			}
		}
	}
	summary(out, r, instances)
	fmt.Fprintf(out, "\nTotal token-endpoint requests this run: %d. Run it again: tokens come from the same cache.\n", srv.TokenRequests())
	return nil
}

func summary(out io.Writer, r *report, instances []*instance) {
	var hits, misses, writes uint64
	for _, in := range instances {
		s := in.adapter.Stats()
		hits, misses, writes = hits+s.Hits, misses+s.Misses, writes+s.Writes
	}
	if r.e.requests != nil {
		fmt.Fprintf(out, "  -> token-endpoint requests: %d; cache hits: %d, misses: %d, writes: %d\n", r.endpoint, hits, misses, writes)
	} else {
		fmt.Fprintf(out, "  -> cache hits: %d, misses: %d, writes: %d\n", hits, misses, writes)
	}
}
