package msalcache_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"
	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/public"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/entratest"
	"github.com/msalcache/msalcache/memstore"
)

// Two instances of a daemon share one store: the token the first one buys
// is served to the second without another request to Entra ID.
func Example() {
	ctx := context.Background()
	entra := entratest.NewServer() // stands in for login.microsoftonline.com
	defer entra.Close()

	store := memstore.New() // in production: redisstore, memcachestore or boltstore
	defer store.Close()

	instance := func() confidential.Client {
		// In production, encrypt: msalcache.WithProtector(keyRing).
		adapter, err := msalcache.New(store, msalcache.WithPlaintext())
		if err != nil {
			log.Fatal(err)
		}
		cred, err := confidential.NewCredFromSecret("client-secret")
		if err != nil {
			log.Fatal(err)
		}
		client, err := confidential.New(entra.Authority("contoso"), "my-client-id", cred,
			confidential.WithCache(adapter),
			confidential.WithHTTPClient(entra.Client()))
		if err != nil {
			log.Fatal(err)
		}
		return client
	}

	scopes := []string{"api://backend/.default"}
	first, err := instance().AcquireTokenByCredential(ctx, scopes)
	if err != nil {
		log.Fatal(err)
	}
	second, err := instance().AcquireTokenByCredential(ctx, scopes)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("same token:", first.AccessToken == second.AccessToken)
	fmt.Println("token requests:", entra.TokenRequests())
	// Output:
	// same token: true
	// token requests: 1
}

// Adapter.Remove completes a sign-out: MSAL's RemoveAccount leaves the
// user's own partition in the store.
func ExampleAdapter_Remove() {
	ctx := context.Background()
	store := memstore.New()
	adapter, err := msalcache.New(store, msalcache.WithPlaintext())
	if err != nil {
		log.Fatal(err)
	}
	// After client.RemoveAccount(ctx, account):
	homeAccountID := "00000000-0000-0000-0000-000000000001.contoso"
	if err := adapter.Remove(ctx, homeAccountID); err != nil {
		log.Fatal(err)
	}
	fmt.Println("deleted:", adapter.Stats().Deletes)
	// Output: deleted: 1
}

// A desktop or CLI app signs its user in once; after a restart, the silent
// call is served from the cache. Public clients need WithSinglePartition
// (MSAL-Go writes their tokens under one partition key and reads them under
// another).
func ExampleWithSinglePartition() {
	ctx := context.Background()
	entra := entratest.NewServer()
	defer entra.Close()
	entra.AddUser("contoso", "alice@contoso.example", "secret-pw")
	store := memstore.New() // a desktop app would use boltstore.Open in the user's cache dir

	start := func() public.Client {
		adapter, err := msalcache.New(store, msalcache.WithPlaintext(), msalcache.WithSinglePartition())
		if err != nil {
			log.Fatal(err)
		}
		client, err := public.New("desktop-app-id",
			public.WithAuthority(entra.Authority("contoso")),
			public.WithHTTPClient(entra.Client()),
			public.WithCache(adapter))
		if err != nil {
			log.Fatal(err)
		}
		return client
	}
	scopes := []string{"api://backend/read"}
	//lint:ignore SA1019 the password grant keeps the example non-interactive.
	if _, err := start().AcquireTokenByUsernamePassword(ctx, scopes, "alice@contoso.example", "secret-pw"); err != nil {
		log.Fatal(err)
	}

	restarted := start()
	accounts, err := restarted.Accounts(ctx)
	if err != nil || len(accounts) != 1 {
		log.Fatal(accounts, err)
	}
	if _, err := restarted.AcquireTokenSilent(ctx, scopes, public.WithSilentAccount(accounts[0])); err != nil {
		log.Fatal(err)
	}
	fmt.Println("signed in:", accounts[0].PreferredUsername)
	fmt.Println("token requests:", entra.TokenRequests())
	// Output:
	// signed in: alice@contoso.example
	// token requests: 1
}

// Stats shows what the Adapter absorbed; export it to your metrics.
func ExampleAdapter_Stats() {
	ctx := context.Background()
	entra := entratest.NewServer()
	defer entra.Close()
	adapter, err := msalcache.New(memstore.New(), msalcache.WithPlaintext())
	if err != nil {
		log.Fatal(err)
	}
	cred, _ := confidential.NewCredFromSecret("client-secret")
	client, err := confidential.New(entra.Authority("contoso"), "daemon-id", cred,
		confidential.WithCache(adapter), confidential.WithHTTPClient(entra.Client()))
	if err != nil {
		log.Fatal(err)
	}
	for range 3 {
		if _, err := client.AcquireTokenByCredential(ctx, []string{"api://backend/.default"}); err != nil {
			log.Fatal(err)
		}
	}
	s := adapter.Stats()
	// The first call misses twice (MSAL looks before and after buying the
	// token) and writes once; the next two find what MSAL already holds.
	fmt.Printf("misses=%d writes=%d hits=%d reused=%d errors=%d\n", s.Misses, s.Writes, s.Hits, s.Reused, s.StoreErrors)
	// Output: misses=2 writes=1 hits=2 reused=2 errors=0
}

// A cap on what one partition may hold: a stored blob above it is a miss,
// logged with its size, instead of a stall while it is decrypted and
// parsed.
func ExampleWithMaxPartitionSize() {
	a, err := msalcache.New(memstore.New(), msalcache.WithPlaintext(),
		msalcache.WithMaxPartitionSize(4<<20))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(a.Stats().Oversized)
	// Output: 0
}

// With an L1, a silent call whose partition the instance already confirmed
// is served from memory, and a write on another instance drops it at once
// on a store that reports changes (Redis, memstore, boltstore); on others,
// MaxStale bounds how long it is trusted.
func ExampleWithL1() {
	ctx := context.Background()
	entra := entratest.NewServer()
	defer entra.Close()
	store := memstore.New()
	defer store.Close()

	adapter, err := msalcache.New(store, msalcache.WithPlaintext(),
		msalcache.WithL1(msalcache.L1Options{MaxBytes: 16 << 20, MaxStale: time.Second}))
	if err != nil {
		log.Fatal(err)
	}
	defer adapter.Close() // ends the watch of the store
	cred, err := confidential.NewCredFromSecret("client-secret")
	if err != nil {
		log.Fatal(err)
	}
	for range 3 { // a client per request, as a web handler builds one
		client, err := confidential.New(entra.Authority("contoso"), "my-client-id", cred,
			confidential.WithCache(adapter), confidential.WithHTTPClient(entra.Client()))
		if err != nil {
			log.Fatal(err)
		}
		if _, err := client.AcquireTokenByCredential(ctx, []string{"api://backend/.default"}); err != nil {
			log.Fatal(err)
		}
	}
	st := adapter.Stats()
	fmt.Println("token requests:", entra.TokenRequests())
	fmt.Println("store loads:", st.Hits+st.Misses) // the first client's miss
	fmt.Println("served from the L1:", st.L1Hits > 0)
	// Output:
	// token requests: 1
	// store loads: 1
	// served from the L1: true
}
