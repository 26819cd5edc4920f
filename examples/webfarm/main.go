// Command webfarm runs two instances of a web API behind a round-robin
// "load balancer", sharing one Redis token cache: whichever instance serves
// a request, the farm asks Entra ID for each tenant's token once.
//
//	go run ./examples/webfarm                       # on a redis-server of its own
//	go run ./examples/webfarm -redis 10.0.0.5:6379  # on a Redis you name
//
// Without -redis it writes into no server you did not name: it starts
// redis-server from $PATH (apt-get install redis-server) on a free loopback
// port, with its data in a temporary directory, and stops it on exit.
// With -redis it uses that server, and warns when it does not persist
// (neither appendonly nor RDB snapshots): the key ring lives there too,
// without a TTL, and a restart that loses it makes every stored token
// unreadable.
//
// Each instance has its own go-redis client, key ring, Adapter and
// msalcache.ClientPool of MSAL clients per tenant, as separate servers
// would; they share only Redis and the
// key-encryption key (MSALCACHE_KEK, base64 of 32 bytes; when it is unset,
// a key file made on the first run, 0600). Tokens come from the offline
// Entra ID emulator.
//
// Both instances report to one OpenTelemetry MeterProvider whose reader is
// the Prometheus exporter; the example prints the address of its /metrics
// (-metrics picks it). With -serve it keeps the farm and /metrics up after
// its 12 requests, until Ctrl-C, so that
//
//	curl 'http://127.0.0.1:PORT/orders?tenant=contoso'   # an instance's URL, as printed
//	curl -s http://127.0.0.1:PORT/metrics | grep '^msalcache_operations_total'
//
// shows the hit ratio move as requests come: of the samples with
// db_operation_name="replace", those with msalcache_outcome hit, reused or
// l1_hit are the hits. /metrics holds no token, partition key or tenant.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/cache"
	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"
	"github.com/redis/go-redis/v9"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/entratest"
	"github.com/msalcache/msalcache/examples/internal/prommetrics"
	"github.com/msalcache/msalcache/protect"
	"github.com/msalcache/msalcache/redisstore"
)

func main() {
	addr := flag.String("redis", "", "address of the Redis to use (host:port); empty: start a redis-server of its own on a free loopback port")
	prefix := flag.String("prefix", "msalcache-webfarm:", "key prefix in Redis")
	keyFile := flag.String("kek-file", ".msalcache-webfarm.key", "key-encryption key file, used when MSALCACHE_KEK is unset")
	metricsAddr := flag.String("metrics", "127.0.0.1:0", "loopback address that serves /metrics (Prometheus); port 0: a free one")
	serve := flag.Bool("serve", false, "after the 12 requests, keep the farm and /metrics up until Ctrl-C")
	flag.Parse()
	// Ctrl-C still runs the deferred clean-up, which stops our own
	// redis-server.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Stdout, config{redis: *addr, prefix: *prefix, keyFile: *keyFile, metrics: *metricsAddr, serve: *serve})
	stop()
	if err != nil {
		log.SetFlags(0)
		log.Fatalf("webfarm: %v", err)
	}
}

const clientID = "0a1b2c3d-0000-4000-8000-0000000000fa"

// config is what the flags say.
type config struct {
	redis   string // -redis; empty: a redis-server of its own
	prefix  string
	keyFile string
	metrics string // -metrics; empty: a free loopback port
	serve   bool
}

// instance is one server of the farm.
type instance struct {
	name       string
	adapter    *msalcache.Adapter
	entra      *entratest.Server
	rdb        *redis.Client
	ring       *protect.KeyRing
	unregister func() error // its gauges

	mu    sync.Mutex
	pools map[string]*msalcache.ClientPool // by tenant
}

func newInstance(ctx context.Context, name, addr, prefix string, kek protect.KeyWrapper, entra *entratest.Server, m *prommetrics.Metrics) (*instance, error) {
	rdb := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true})
	store := redisstore.New(rdb, redisstore.WithPrefix(prefix))
	if err := store.Ping(ctx); err != nil {
		rdb.Close()
		return nil, fmt.Errorf("redis at %s: %w", addr, err)
	}
	ring, err := protect.NewKeyRing(ctx, store, kek, protect.WithObserver(m.Observer))
	if err != nil {
		rdb.Close()
		return nil, err
	}
	a, err := msalcache.New(store, msalcache.WithProtector(ring), msalcache.WithLogger(slog.New(slog.DiscardHandler)),
		msalcache.WithObserver(m.Observer))
	if err != nil {
		ring.Close()
		rdb.Close()
		return nil, err
	}
	unregister, err := m.Register(a, name, store.SystemName())
	if err != nil {
		ring.Close()
		rdb.Close()
		return nil, err
	}
	return &instance{name: name, adapter: a, entra: entra, rdb: rdb, ring: ring, unregister: unregister,
		pools: map[string]*msalcache.ClientPool{}}, nil
}

// pool returns the instance's client pool for tenant, built on first use.
// A pool hands each request an MSAL client no other request is using, and
// keeps its clients (and what they learned of the authority) for the next
// requests. A real API would accept only the tenants it serves.
func (in *instance) pool(tenant string) (*msalcache.ClientPool, error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if p := in.pools[tenant]; p != nil {
		return p, nil
	}
	cred, err := confidential.NewCredFromSecret("webfarm-secret")
	if err != nil {
		return nil, err
	}
	p, err := msalcache.NewClientPool(in.adapter, func(c cache.ExportReplace) (confidential.Client, error) {
		return confidential.New(in.entra.Authority(tenant), clientID, cred,
			confidential.WithCache(c), confidential.WithHTTPClient(in.entra.Client()))
	})
	if err != nil {
		return nil, err
	}
	in.pools[tenant] = p
	return p, nil
}

func (in *instance) close() {
	_ = in.unregister()
	in.ring.Close()
	in.rdb.Close()
}

// ServeHTTP answers GET /orders?tenant=T: it gets the tenant's app token
// the way a web API calling a downstream API would, through the tenant's
// client pool (the cache is shared by the farm).
func (in *instance) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	tenant := r.URL.Query().Get("tenant")
	if tenant == "" {
		// Without a tenant there is no authority to ask: say what to pass
		// instead of letting MSAL fail on an empty one.
		http.Error(w, missingTenant, http.StatusBadRequest)
		return
	}
	p, err := in.pool(tenant)
	if err == nil {
		var ar confidential.AuthResult
		ar, err = p.AcquireTokenByCredential(r.Context(), []string{"api://orders/.default"})
		if err == nil {
			claims, _ := entratest.ParseToken(ar.AccessToken)
			_ = json.NewEncoder(w).Encode(map[string]string{"instance": in.name, "token": claims.ID})
			return
		}
	}
	http.Error(w, err.Error(), http.StatusBadGateway)
}

// missingTenant is the answer to a request that names no tenant.
const missingTenant = `missing tenant: this API serves each tenant's orders with that tenant's token.
Pass the tenant's name or ID, for example:
    /orders?tenant=contoso
(the demo's tenants are contoso, fabrikam and northwind)
`

func run(ctx context.Context, out io.Writer, cfg config) error {
	addr := cfg.redis
	kek, err := loadKEK(out, cfg.keyFile)
	if err != nil {
		return err
	}
	if cfg.metrics == "" {
		cfg.metrics = "127.0.0.1:0"
	}
	m, err := prommetrics.Start(cfg.metrics, "webfarm")
	if err != nil {
		return err
	}
	defer m.Close()
	if addr == "" {
		own, err := startRedis(ctx)
		if err != nil {
			return err
		}
		defer own.stop()
		addr = own.addr
		fmt.Fprintf(out, "No -redis given: started redis-server (pid %d) on %s, data in %s; it stops when the example ends.\n",
			own.pid(), own.addr, own.dir)
	} else {
		warning, note, err := checkPersistence(ctx, addr)
		if err != nil {
			return err
		}
		if warning != "" {
			fmt.Fprintf(out, "WARNING: %s\n", warning)
		}
		if note != "" {
			fmt.Fprintf(out, "Note: %s\n", note)
		}
	}

	entra := entratest.NewServer()
	defer entra.Close()
	until := "until the example ends; -serve keeps it up"
	if cfg.serve {
		until = "until Ctrl-C"
	}
	fmt.Fprintf(out, "Metrics (Prometheus): %s (%s)\n", m.URL, until)

	var farm []*httptest.Server
	for _, name := range []string{"web-1", "web-2"} {
		in, err := newInstance(ctx, name, addr, cfg.prefix, kek, entra, m)
		if err != nil {
			return err
		}
		defer in.close()
		srv := httptest.NewServer(in)
		defer srv.Close()
		farm = append(farm, srv)
	}

	tenants := []string{"contoso", "fabrikam", "northwind"}
	fmt.Fprintf(out, "%-4s %-10s %-7s %-26s %s\n", "req", "tenant", "server", "token id", "token requests so far")
	for i := range 12 {
		tenant := tenants[i%len(tenants)]
		srv := farm[i%len(farm)] // round robin
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/orders?tenant="+tenant, nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		var body map[string]string
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			return fmt.Errorf("request %d: status %s: %v", i, resp.Status, err)
		}
		fmt.Fprintf(out, "%-4d %-10s %-7s %-26s %d\n", i+1, tenant, body["instance"], body["token"], entra.TokenRequests())
	}
	fmt.Fprintf(out, "\nToken requests for the farm: %d (one per tenant), for 12 requests over 2 servers.\n", entra.TokenRequests())
	if !cfg.serve {
		return nil
	}
	fmt.Fprintf(out, "\nServing until Ctrl-C:\n")
	for i, srv := range farm {
		fmt.Fprintf(out, "  curl '%s/orders?tenant=%s'   # web-%d\n", srv.URL, tenants[i%len(tenants)], i+1)
	}
	fmt.Fprintf(out, "  curl -s %s | grep '^msalcache_operations_total'\n", m.URL)
	<-ctx.Done()
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
	return protect.NewAESKeyWrapper("webfarm-kek", key)
}
