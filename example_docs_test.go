package msalcache_test

// The Go snippets of docs/*.md and of the package doc comments, each in a
// function that gives it the variables it uses, so that the compiler
// checks them (TestSnippetsCompile finds each one here, line for line).
// None of them runs: an Example or a test shows each behaviour.

import (
	"context"
	"errors"
	"net/http"
	"path/filepath"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/cache"
	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"
	"github.com/bradfitz/gomemcache/memcache"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/boltstore"
	"github.com/msalcache/msalcache/driver"
	"github.com/msalcache/msalcache/entratest"
	"github.com/msalcache/msalcache/memcachestore"
	"github.com/msalcache/msalcache/msalcacheotel"
	"github.com/msalcache/msalcache/pgstore"
	"github.com/msalcache/msalcache/protect"
	"github.com/msalcache/msalcache/redisstore"
)

// docs/usage.md, "Use".
var _ = func(ctx context.Context, authority, clientID string, cred confidential.Credential, code, redirectURI string, scopes []string, req *http.Request) (err error) {
	store, err := boltstore.Open("/var/lib/myapp/tokens.db") // file created 0600
	if err != nil {
		return err
	}
	defer store.Close()

	kek, err := protect.KeyFromEnv("MSALCACHE_KEK") // 32 bytes, base64: openssl rand -base64 32
	if err != nil {
		return err
	}
	wrapper, err := protect.NewAESKeyWrapper("kek-2026", kek)
	if err != nil {
		return err
	}
	ring, err := protect.NewKeyRing(ctx, store, wrapper) // data keys rotate every 30 days
	if err != nil {
		return err
	}
	defer ring.Close()

	adapter, err := msalcache.New(store, msalcache.WithProtector(ring))
	if err != nil {
		return err
	}
	// Close reports the sign-outs it could not store (see below).
	defer func() { err = errors.Join(err, adapter.Close()) }()

	// One pool for the whole app: each call gets an MSAL client no other call is using.
	pool, err := msalcache.NewClientPool(adapter, func(c cache.ExportReplace) (confidential.Client, error) {
		return confidential.New(authority, clientID, cred, confidential.WithCache(c))
	})
	if err != nil {
		return err
	}

	// Sign-in: keep ar.Account.HomeAccountID in the session.
	ar, err := pool.AcquireTokenByAuthCode(ctx, code, redirectURI, scopes)
	if err != nil {
		return err
	}
	homeAccountID := ar.Account.HomeAccountID

	// Every later request, on any instance, from any goroutine.
	ar, err = pool.AcquireTokenSilent(ctx, homeAccountID, scopes)
	if errors.Is(err, msalcache.ErrNoAccount) {
		return err // signed out, or the sign-in expired: sign the user in again
	}
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+ar.AccessToken)

	// Sign-out: MSAL's RemoveAccount and the stored partition.
	if err := pool.SignOut(ctx, homeAccountID); err != nil {
		return err
	}
	return nil
}

// docs/usage.md, what a sign-out handler does with the error.
var _ = func(r *http.Request, pool *msalcache.ClientPool, homeAccountID string) {
	err := pool.SignOut(r.Context(), homeAccountID) // or msalcache.SignOut
	switch {
	case err == nil:
		// Signed out everywhere.
	case errors.Is(err, msalcache.ErrRemovalPending):
		// This server forgot the user, but the store was unreachable: other
		// servers may serve the user until the removal is stored, which this
		// server retries on its own. Clear the session, and tell the user
		// that sign-out completes once the service recovers.
	default:
		// Log it; clear the session all the same.
	}
}

// docs/stores.md, Redis.
var _ = func() {
	// single node
	single := redisstore.New(redis.NewClient(&redis.Options{Addr: "redis:6379", ContextTimeoutEnabled: true}))
	// Cluster
	cluster := redisstore.New(redis.NewClusterClient(&redis.ClusterOptions{
		Addrs: []string{"n1:6379", "n2:6379", "n3:6379"}, ContextTimeoutEnabled: true}))
	// Sentinel
	sentinel := redisstore.New(redis.NewFailoverClient(&redis.FailoverOptions{
		MasterName: "mymaster", SentinelAddrs: []string{"s1:26379", "s2:26379", "s3:26379"}, ContextTimeoutEnabled: true}))
	_, _, _ = single, cluster, sentinel
}

// docs/stores.md, PostgreSQL.
var _ = func(ctx context.Context) error {
	pool, err := pgxpool.New(ctx, "postgres://app@db:5432/app?sslmode=verify-full")
	if err != nil {
		return err
	}
	defer pool.Close()
	store, err := pgstore.New(ctx, pool) // creates the table "msalcache" if absent
	if err != nil {
		return err
	}
	defer store.Close()
	return nil
}

// docs/stores.md, memcached.
var _ = func() {
	store := memcachestore.New(memcache.New("mc1:11211", "mc2:11211"))
	defer store.Close()
}

// docs/security.md, an AES key as the KEK.
var _ = func() error {
	key, err := protect.KeyFromEnv("MSALCACHE_KEK")
	if err != nil {
		return err
	}
	kek, err := protect.NewAESKeyWrapper("kek-2030-01", key)
	if err != nil {
		return err
	}
	_ = kek
	return nil
}

// docs/security.md, a certificate as the KEK.
var _ = func() error {
	kek, err := protect.LoadCertificateKeyWrapper("/etc/app/kek.crt", "/etc/app/kek.key")
	if err != nil {
		return err
	}
	_ = kek
	return nil
}

// docs/security.md, the ring over any KEK.
var _ = func(ctx context.Context, store driver.Store, kek protect.KeyWrapper) error {
	ring, err := protect.NewKeyRing(ctx, store, kek)
	if err != nil {
		return err
	}
	defer ring.Close()
	return nil
}

// docs/observability.md, metrics and tracing.
var _ = func(ctx context.Context, store driver.Store, kek protect.KeyWrapper) (err error) {
	obs, err := msalcacheotel.New() // global providers, or WithMeterProvider / WithTracerProvider
	if err != nil {
		return err
	}
	ring, err := protect.NewKeyRing(ctx, store, kek, protect.WithObserver(obs)) // rotations, reloads
	if err != nil {
		return err
	}
	defer ring.Close()
	adapter, err := msalcache.New(store, msalcache.WithProtector(ring), msalcache.WithObserver(obs))
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, adapter.Close()) }()
	unregister, err := obs.Register(adapter, msalcacheotel.SystemKey.String("redis")) // the gauges
	if err != nil {
		return err
	}
	defer unregister()
	return nil
}

// The root package's doc comment.
var _ = func(ctx context.Context, kek protect.KeyWrapper, authority, clientID string, cred confidential.Credential, homeAccountID string, scopes []string) (err error) {
	store, err := boltstore.Open("tokens.db")
	if err != nil {
		return err
	}
	defer store.Close()
	ring, err := protect.NewKeyRing(ctx, store, kek) // keys that rotate on their own
	if err != nil {
		return err
	}
	defer ring.Close()
	adapter, err := msalcache.New(store, msalcache.WithProtector(ring))
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, adapter.Close()) }() // sign-outs it could not store
	pool, err := msalcache.NewClientPool(adapter, func(c cache.ExportReplace) (confidential.Client, error) {
		return confidential.New(authority, clientID, cred, confidential.WithCache(c))
	})
	if err != nil {
		return err
	}
	ar, err := pool.AcquireTokenSilent(ctx, homeAccountID, scopes) // from any goroutine
	if err != nil {
		return err
	}
	_ = ar
	return nil
}

// Package msalcacheotel's doc comment.
var _ = func(store driver.Store, ring *protect.KeyRing) error {
	obs, err := msalcacheotel.New() // the global MeterProvider and TracerProvider
	if err != nil {
		return err
	}
	adapter, err := msalcache.New(store, msalcache.WithProtector(ring), msalcache.WithObserver(obs))
	if err != nil {
		return err
	}
	unregister, err := obs.Register(adapter) // L1 and breaker gauges
	if err != nil {
		return err
	}
	return unregister()
}

// Package protect's doc comment.
var _ = func(ctx context.Context, store driver.Store) error {
	kek, err := protect.LoadKeyFile("/etc/myapp/msalcache.kek")
	if err != nil {
		return err
	}
	wrapper, err := protect.NewAESKeyWrapper("kek-2030-01", kek)
	if err != nil {
		return err
	}
	ring, err := protect.NewKeyRing(ctx, store, wrapper)
	if err != nil {
		return err
	}
	defer ring.Close()
	adapter, err := msalcache.New(store, msalcache.WithProtector(ring))
	if err != nil {
		return err
	}
	return adapter.Close()
}

// Package boltstore's doc comment.
var _ = func(dir string, ring *protect.KeyRing) error {
	store, err := boltstore.Open(filepath.Join(dir, "msalcache.db"))
	if err != nil {
		return err
	}
	defer store.Close()
	adapter, err := msalcache.New(store, msalcache.WithProtector(ring))
	if err != nil {
		return err
	}
	return adapter.Close()
}

// Package redisstore's doc comment.
var _ = func(ring *protect.KeyRing) error {
	rdb := redis.NewClient(&redis.Options{Addr: "localhost:6379"})
	defer rdb.Close()
	store := redisstore.New(rdb, redisstore.WithPrefix("myapp:"))
	adapter, err := msalcache.New(store, msalcache.WithProtector(ring))
	if err != nil {
		return err
	}
	return adapter.Close()
}

// Package memcachestore's doc comment.
var _ = func(ring *protect.KeyRing) error {
	mc := memcache.New("10.0.0.1:11211", "10.0.0.2:11211")
	mc.Timeout = 200 * time.Millisecond
	store := memcachestore.New(mc, memcachestore.WithPrefix("myapp:"))
	defer store.Close()
	adapter, err := msalcache.New(store, msalcache.WithProtector(ring))
	if err != nil {
		return err
	}
	return adapter.Close()
}

// Package pgstore's doc comment.
var _ = func(ctx context.Context, ring *protect.KeyRing) error {
	pool, err := pgxpool.New(ctx, "postgres://app@db.example.com/app")
	if err != nil {
		return err
	}
	defer pool.Close()
	store, err := pgstore.New(ctx, pool)
	if err != nil {
		return err
	}
	defer store.Close()
	adapter, err := msalcache.New(store, msalcache.WithProtector(ring), msalcache.WithL1(msalcache.L1Options{}))
	if err != nil {
		return err
	}
	return adapter.Close()
}

// Package entratest's doc comment.
var _ = func(ctx context.Context) {
	srv := entratest.NewServer()
	defer srv.Close()

	cred, _ := confidential.NewCredFromSecret("any-secret")
	app, _ := confidential.New(srv.Authority("contoso"), "my-client-id", cred,
		confidential.WithHTTPClient(srv.Client()))
	res, _ := app.AcquireTokenByCredential(ctx, []string{"api://backend/.default"})
	claims, _ := entratest.ParseToken(res.AccessToken)
	// claims.ClientID == "my-client-id", claims.Tenant == "contoso"
	// srv.TokenRequests() == 1; a second call is served by MSAL's cache.
	_ = claims
}
