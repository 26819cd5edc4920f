// Package surveys is the Tailspin Surveys example: a multitenant web app
// on a farm of servers, signing users in with Entra ID and calling its
// Survey API with each user's token, the tokens shared by every server
// through one encrypted msalcache store. Everything runs on loopback: the
// Entra ID emulator (entratest), the Survey API, the web instances and a
// round-robin reverse proxy in front of them.
package surveys

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/cache"
	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"
	"github.com/redis/go-redis/v9"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/boltstore"
	"github.com/msalcache/msalcache/entratest"
	"github.com/msalcache/msalcache/examples/internal/prommetrics"
	"github.com/msalcache/msalcache/protect"
	"github.com/msalcache/msalcache/redisstore"
)

// The app's registration: the web app is a confidential client, the API a
// resource with app roles. In Entra ID these come from the app
// registrations; here the emulator accepts them as they are.
const (
	ClientID     = "7a1b2c3d-5e6f-4a00-8b00-5075e7a11e00"
	clientSecret = "surveys-web-secret" // from a secret store in production
	APIResource  = "api://surveys"
	APIScope     = APIResource + "/Surveys.Access"
)

// Config says where the farm keeps its tokens and where it listens.
type Config struct {
	// Addr is the proxy's address, the one URL a person opens;
	// "127.0.0.1:0" picks a free port.
	Addr string
	// RedisURL, when set, keeps the tokens in that Redis
	// (redis://[user:password@]host:port[/db], or rediss:// for TLS),
	// under RedisPrefix. Otherwise they are in an embedded bbolt file.
	RedisURL    string
	RedisPrefix string
	// BoltPath is the bbolt file; empty: a file in a new temporary folder,
	// removed on Close.
	BoltPath string
	// KEKFile is the key-encryption key file used when MSALCACHE_KEK is
	// unset and the tokens outlive the run (BoltPath or RedisURL given);
	// created 0600 on the first run. Empty: BoltPath + ".kek", or
	// ".msalcache-surveys.key" with Redis.
	KEKFile string
	// KEKCert, when set, makes a certificate the key-encryption key: the
	// PEM certificate KEKCert and its private key KEKCert + ".key",
	// created (self-signed, the key 0600) on the first run. The key file
	// or MSALCACHE_KEK stays an older KEK, so a store first run without
	// a certificate moves to it (the ring rewraps its keys at its next
	// rotation) and keeps its tokens.
	KEKCert string
	// MetricsAddr serves /metrics, the farm's cache metrics for
	// Prometheus; empty: a free loopback port.
	MetricsAddr string
	// Out receives the start-up messages; nil: discarded.
	Out io.Writer
	// Logger receives the farm's logs; nil: warnings and errors to stderr.
	Logger *slog.Logger
}

// Farm is the running example.
type Farm struct {
	entra     *entratest.Server
	keys      *keys
	tenants   *Tenants
	stats     *Stats
	idp       *keySet
	api       *server
	apiURL    string
	apiClient *http.Client
	loginBase string // where browsers meet the identity provider
	baseURL   string // the proxy: the app's public address
	proxy     *roundRobin
	front     *server
	metrics   *prommetrics.Metrics
	log       *slog.Logger

	kek       protect.KeyWrapper
	oldKEKs   []protect.KeyWrapper // with KEKCert: the AES KEK, kept to unwrap
	newStore  func(ctx context.Context) (driver.Store, func(), error)
	cleanups  []func()
	mu        sync.Mutex
	instances []*instance
	servers   []*server
}

// Start starts the farm: emulator, API, two web instances and the proxy.
func Start(ctx context.Context, cfg Config) (*Farm, error) {
	out := cfg.Out
	if out == nil {
		out = io.Discard
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	f := &Farm{tenants: &Tenants{}, stats: &Stats{}, log: log}
	// On any error below, what was started is stopped. The flag, not a
	// named result, decides: "return nil, err" would nil a named f
	// before this ran, and Close would dereference nil.
	started := false
	defer func() {
		if !started {
			f.Close()
		}
	}()
	secret := make([]byte, 32)
	_, _ = rand.Read(secret)
	f.keys = newKeys(secret)

	// The front first: its URL is the redirect URI the app registers.
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w (choose another with -addr)", cfg.Addr, err)
	}
	f.baseURL = "http://" + ln.Addr().String()

	f.entra, err = entratest.Start(entratest.WithBrowserHTTP("127.0.0.1:0"),
		entratest.WithClientSecret(ClientID, clientSecret), entratest.WithAdminConsentRequired(ClientID))
	if err != nil {
		ln.Close()
		return nil, err
	}
	f.cleanups = append(f.cleanups, f.entra.Close)
	f.loginBase = f.entra.BrowserURL()

	if cfg.MetricsAddr == "" {
		cfg.MetricsAddr = "127.0.0.1:0"
	}
	if f.metrics, err = prommetrics.Start(cfg.MetricsAddr, "surveys"); err != nil {
		ln.Close()
		return nil, err
	}
	f.cleanups = append(f.cleanups, func() { _ = f.metrics.Close() })
	addDirectory(f.entra)

	if err := f.openStore(ctx, cfg, out); err != nil {
		ln.Close()
		return nil, err
	}

	f.idp = newKeySet(f.entra.URL(), f.entra.Client())
	f.api, err = serve("127.0.0.1:0", newAPI(f.idp, f.tenants).handler())
	if err != nil {
		ln.Close()
		return nil, err
	}
	f.apiURL = f.api.url
	f.apiClient = &http.Client{Timeout: 10 * time.Second}

	f.proxy = &roundRobin{}
	f.front = serveListener(ln, f.proxy)
	for range 2 {
		if _, _, err := f.AddInstance(ctx); err != nil {
			return nil, err
		}
	}
	started = true
	return f, nil
}

// addDirectory adds the demonstration's organizations and people: two
// that will sign up and one that will not. Nobody has a password, so a
// person picks an account on the sign-in page.
func addDirectory(e *entratest.Server) {
	for _, u := range []struct {
		tenant, name string
		admin        bool
		roles        []string
	}{
		{"contoso", "admin@contoso.com", true, []string{RoleAdmin, RoleCreator}},
		{"contoso", "alice@contoso.com", false, []string{RoleCreator}},
		{"contoso", "dave@contoso.com", false, []string{RoleReader}},
		{"fabrikam", "admin@fabrikam.com", true, []string{RoleAdmin, RoleCreator}},
		{"fabrikam", "bob@fabrikam.com", false, []string{RoleCreator}},
		{"northwind", "admin@northwind.com", true, []string{RoleAdmin, RoleCreator}},
		{"northwind", "carol@northwind.com", false, []string{RoleCreator}},
	} {
		if u.admin {
			e.AddAdmin(u.tenant, u.name, "")
		} else {
			e.AddUser(u.tenant, u.name, "")
		}
		_ = e.AssignRoles(u.tenant, u.name, APIResource, u.roles...)
	}
}

// openStore decides where tokens live and with which key-encryption key,
// and says so.
func (f *Farm) openStore(ctx context.Context, cfg Config, out io.Writer) error {
	if cfg.RedisURL != "" {
		opt, err := redis.ParseURL(cfg.RedisURL)
		if err != nil {
			return fmt.Errorf("-redis %q: %w (want redis://host:port or rediss://...)", cfg.RedisURL, err)
		}
		opt.ContextTimeoutEnabled = true
		prefix := cfg.RedisPrefix
		if prefix == "" {
			prefix = "msalcache-surveys:"
		}
		keyFile := cfg.KEKFile
		if keyFile == "" {
			keyFile = ".msalcache-surveys.key"
		}
		if f.kek, err = loadKEK(out, keyFile); err != nil {
			return err
		}
		// One client per instance, as separate servers would have.
		f.newStore = func(ctx context.Context) (driver.Store, func(), error) {
			rdb := redis.NewClient(opt)
			s := redisstore.New(rdb, redisstore.WithPrefix(prefix))
			if err := s.Ping(ctx); err != nil {
				rdb.Close()
				return nil, nil, fmt.Errorf("redis at %s: %w", opt.Addr, err)
			}
			return s, func() { rdb.Close() }, nil
		}
		fmt.Fprintf(out, "Tokens: Redis at %s, keys under %q, encrypted (protect key ring in the same Redis: keep it persistent).\n", opt.Addr, prefix)
		return f.useCertificate(cfg, out)
	}
	path, note := cfg.BoltPath, ""
	if path == "" {
		dir, err := os.MkdirTemp("", "msalcache-surveys-")
		if err != nil {
			return err
		}
		f.cleanups = append(f.cleanups, func() { os.RemoveAll(dir) })
		path = filepath.Join(dir, "tokens.db")
		note = " (a temporary folder, removed on exit; -bolt FILE keeps it, -redis URL shares it between processes)"
		key := make([]byte, protect.KEKSize)
		_, _ = rand.Read(key)
		var err2 error
		if f.kek, err2 = protect.NewAESKeyWrapper("surveys-run", key); err2 != nil {
			return err2
		}
	} else {
		keyFile := cfg.KEKFile
		if keyFile == "" {
			keyFile = path + ".kek"
		}
		var err error
		if f.kek, err = loadKEK(out, keyFile); err != nil {
			return err
		}
	}
	// bbolt: one process holds the file, so the instances, which all run
	// in this process, share one Store value.
	store, err := boltstore.Open(path)
	if err != nil {
		return err
	}
	f.cleanups = append(f.cleanups, func() { store.Close() })
	f.newStore = func(context.Context) (driver.Store, func(), error) { return store, func() {}, nil }
	fmt.Fprintf(out, "Tokens: embedded store (bbolt) at %s%s, encrypted.\n", path, note)
	return f.useCertificate(cfg, out)
}

// useCertificate makes cfg.KEKCert the primary KEK, keeping the AES one
// to unwrap what it wrapped, and creates a self-signed certificate on the
// first run.
func (f *Farm) useCertificate(cfg Config, out io.Writer) error {
	if cfg.KEKCert == "" {
		return nil
	}
	keyFile := cfg.KEKCert + ".key"
	if _, err := os.Stat(cfg.KEKCert); errors.Is(err, fs.ErrNotExist) {
		if err := protect.GenerateCertificateFiles(cfg.KEKCert, keyFile, "Tailspin Surveys token cache"); err != nil {
			return err
		}
		fmt.Fprintf(out, "Created a self-signed KEK certificate %s and its key %s (0600).\n", cfg.KEKCert, keyFile)
	}
	cert, err := protect.LoadCertificateKeyWrapper(cfg.KEKCert, keyFile)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "Key-encryption key: certificate %s.\n", cert.ID())
	f.kek, f.oldKEKs = cert, []protect.KeyWrapper{f.kek}
	return nil
}

// loadKEK reads MSALCACHE_KEK or, when it is unset, keyFile, which it
// creates on the first run.
func loadKEK(out io.Writer, keyFile string) (protect.KeyWrapper, error) {
	var key []byte
	var err error
	if os.Getenv("MSALCACHE_KEK") != "" {
		key, err = protect.KeyFromEnv("MSALCACHE_KEK")
	} else {
		if _, statErr := os.Stat(keyFile); errors.Is(statErr, fs.ErrNotExist) {
			if err := protect.GenerateKeyFile(keyFile); err != nil {
				return nil, err
			}
			fmt.Fprintf(out, "MSALCACHE_KEK is unset: created key file %s (0600).\n", keyFile)
		}
		key, err = protect.LoadKeyFile(keyFile)
	}
	if err != nil {
		return nil, err
	}
	return protect.NewAESKeyWrapper("surveys-kek", key)
}

// AddInstance starts one more web instance, with its own store client,
// key ring, Adapter and MSAL client, and puts it behind the proxy. It
// returns the instance's name and its own URL.
func (f *Farm) AddInstance(ctx context.Context) (name, instanceURL string, err error) {
	f.mu.Lock()
	n := len(f.instances) + 1
	f.mu.Unlock()
	name = "web-" + strconv.Itoa(n)
	store, closeStore, err := f.newStore(ctx)
	if err != nil {
		return "", "", err
	}
	ring, err := protect.NewKeyRing(ctx, store, f.kek, protect.WithObserver(f.metrics.Observer), protect.WithKEKs(f.oldKEKs...))
	if err != nil {
		closeStore()
		return "", "", err
	}
	adapter, err := msalcache.New(store, msalcache.WithProtector(ring), msalcache.WithL1(msalcache.L1Options{}),
		msalcache.WithLogger(f.log.With("instance", name)), msalcache.WithObserver(f.metrics.Observer))
	if err != nil {
		ring.Close()
		closeStore()
		return "", "", err
	}
	system := ""
	if n, ok := store.(driver.SystemNamer); ok {
		system = n.SystemName()
	}
	unregister, err := f.metrics.Register(adapter, name, system)
	if err != nil {
		adapter.Close()
		ring.Close()
		closeStore()
		return "", "", err
	}
	cred, err := confidential.NewCredFromSecret(clientSecret)
	if err != nil {
		_ = unregister()
		adapter.Close()
		ring.Close()
		closeStore()
		return "", "", err
	}
	pool, err := msalcache.NewClientPool(adapter, func(c cache.ExportReplace) (confidential.Client, error) {
		return confidential.New(f.entra.Authority("organizations"), ClientID, cred,
			confidential.WithCache(c), confidential.WithHTTPClient(f.entra.Client()))
	})
	if err != nil {
		_ = unregister()
		adapter.Close()
		ring.Close()
		closeStore()
		return "", "", err
	}
	in := &instance{name: name, farm: f, adapter: adapter, pool: pool, log: f.log.With("instance", name)}
	in.close = func() {
		_ = unregister()
		adapter.Close()
		ring.Close()
		closeStore()
	}
	srv, err := serve("127.0.0.1:0", in.handler())
	if err != nil {
		in.close()
		return "", "", err
	}
	f.mu.Lock()
	f.instances = append(f.instances, in)
	f.servers = append(f.servers, srv)
	f.mu.Unlock()
	target, _ := url.Parse(srv.url)
	f.proxy.add(target)
	return name, srv.url, nil
}

// URL is the one address to open: the proxy in front of the instances.
func (f *Farm) URL() string { return f.baseURL }

// MetricsURL is the address of /metrics: the cache's operations by
// outcome (the hit ratio), their durations, and each instance's L1 and
// breaker, in Prometheus' text format.
func (f *Farm) MetricsURL() string { return f.metrics.URL }

// Entra is the identity provider (the emulator), for tests that add users
// or count token requests.
func (f *Farm) Entra() *entratest.Server { return f.entra }

// Stats are the farm's counters of where API tokens came from.
func (f *Farm) Stats() Counts { return f.stats.Total() }

// Close stops everything the farm started, in reverse order.
func (f *Farm) Close() {
	if f.front != nil {
		f.front.close()
	}
	f.mu.Lock()
	servers, instances := f.servers, f.instances
	f.servers, f.instances = nil, nil
	f.mu.Unlock()
	for _, s := range servers {
		s.close()
	}
	for _, in := range instances {
		in.close()
	}
	if f.api != nil {
		f.api.close()
	}
	for i := len(f.cleanups) - 1; i >= 0; i-- {
		f.cleanups[i]()
	}
	f.cleanups = nil
}

// roundRobin is the load balancer: each request goes to the next
// instance, whatever the session, since any instance can serve any user.
type roundRobin struct {
	mu      sync.Mutex
	targets []*httputil.ReverseProxy
	next    atomic.Uint64
}

func (rr *roundRobin) add(target *url.URL) {
	p := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		r.SetURL(target)
		r.SetXForwarded()
		r.Out.Host = r.In.Host
	}}
	rr.mu.Lock()
	rr.targets = append(rr.targets, p)
	rr.mu.Unlock()
}

func (rr *roundRobin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rr.mu.Lock()
	targets := rr.targets
	rr.mu.Unlock()
	if len(targets) == 0 {
		http.Error(w, "no instance is running", http.StatusServiceUnavailable)
		return
	}
	targets[(rr.next.Add(1)-1)%uint64(len(targets))].ServeHTTP(w, r)
}

// server is an HTTP server on a loopback port.
type server struct {
	url string
	hs  *http.Server
}

func serve(addr string, h http.Handler) (*server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	return serveListener(ln, h), nil
}

func serveListener(ln net.Listener, h http.Handler) *server {
	s := &server{url: "http://" + ln.Addr().String(), hs: &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}}
	go func() { _ = s.hs.Serve(ln) }()
	return s
}

func (s *server) close() { _ = s.hs.Close() }
