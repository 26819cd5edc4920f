package pgstore_test

import (
	"context"
	"fmt"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/managedidentity"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/pgstore"
)

// Example keeps the token cache in a PostgreSQL table, with an L1 that
// every instance's writes invalidate through LISTEN/NOTIFY. It needs the
// server it names, so `go test` compiles it without running it;
// TestExamples runs the same function against a real server.
func Example() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, "postgres://app@db.example.com/app?sslmode=verify-full")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer pool.Close()
	got, err := saveThroughAdapter(ctx, pool)
	fmt.Println(got, err)
}

// saveThroughAdapter opens the store (creating its table if absent) and an
// Adapter with the L1 over it, and reports what the store offers.
func saveThroughAdapter(ctx context.Context, pool *pgxpool.Pool) (string, error) {
	store, err := pgstore.New(ctx, pool, pgstore.WithTable("msalcache"))
	if err != nil {
		return "", err
	}
	defer store.Close() // the pool stays open: the store does not own it
	adapter, err := msalcache.New(store, msalcache.WithPlaintext(), msalcache.WithL1(msalcache.L1Options{MaxStale: time.Minute}))
	if err != nil {
		return "", err
	}
	defer adapter.Close()
	// Give adapter to confidential.New(..., confidential.WithCache(adapter)).
	_, watches := any(store).(driver.Watcher)
	return fmt.Sprintf("%s, watched: %v", store.SystemName(), watches), nil
}

// Example_entraID connects to Azure Database for PostgreSQL with a
// Microsoft Entra ID access token as the password, without the Azure SDK:
// MSAL-Go, which the application already uses, fetches the token of the
// server's managed identity, and pgx's BeforeConnect hands it to every new
// connection, the store's listening connection included (it comes from the
// same pool). A token is checked only when a connection logs in, so
// connections outlive it; MSAL-Go caches the token and renews it before it
// expires. The role is the managed identity's name, created on the server
// with pgaadauth_create_principal.
func Example_entraID() {
	ctx := context.Background()
	mi, err := managedidentity.New(managedidentity.SystemAssigned())
	if err != nil {
		fmt.Println(err)
		return
	}
	token := func(ctx context.Context) (string, error) {
		ar, err := mi.AcquireToken(ctx, "https://ossrdbms-aad.database.windows.net")
		return ar.AccessToken, err
	}
	pool, err := tokenPool(ctx, "postgres://my-app-identity@myserver.postgres.database.azure.com/app?sslmode=verify-full", token)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer pool.Close()
	store, err := pgstore.New(ctx, pool)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer store.Close()
}

// tokenPool opens a pool whose connections log in with the password token
// returns at the time each connects.
func tokenPool(ctx context.Context, url string, token func(context.Context) (string, error)) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, err
	}
	cfg.BeforeConnect = func(ctx context.Context, cc *pgx.ConnConfig) error {
		t, err := token(ctx)
		if err != nil {
			return fmt.Errorf("get an Entra ID token for PostgreSQL: %w", err)
		}
		cc.Password = t
		return nil
	}
	return pgxpool.NewWithConfig(ctx, cfg)
}
