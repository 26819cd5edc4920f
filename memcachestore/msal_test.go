package memcachestore_test

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/conformance"
	"github.com/msalcache/msalcache/entratest"
	"github.com/msalcache/msalcache/internal/testring"
	"github.com/msalcache/msalcache/internal/testserver"
	"github.com/msalcache/msalcache/memcachestore"
	"github.com/msalcache/msalcache/memstore"
)

// The suite's load subtests measure the Adapter, not the store: they run
// once, over memstore, in the root package.
func TestMSALConformance(t *testing.T) {
	srv := testserver.Memcached(t)
	c := newClient(t, srv.Addr())
	newStore := func(t *testing.T) driver.Store {
		return memcachestore.New(c, memcachestore.WithPrefix(uniquePrefix("msal:")))
	}
	t.Run("Plain", func(t *testing.T) {
		conformance.RunMSALTests(t, conformance.MSALSetup{NewStore: newStore,
			PutRaw: memcachestore.PutRaw, Damaged: memcachestore.CorruptRecords, SkipLoadTests: true})
	})
	t.Run("Encrypted", func(t *testing.T) {
		conformance.RunMSALTests(t, conformance.MSALSetup{
			NewStore:      newStore,
			PutRaw:        memcachestore.PutRaw,
			Damaged:       memcachestore.CorruptRecords,
			SkipLoadTests: true,
			// memcached evicts: the key ring lives in a durable store.
			NewProtector: func(t *testing.T, _ driver.Store) driver.Protector {
				ring := memstore.New()
				t.Cleanup(func() { ring.Close() })
				return testring.New(t, ring)
			},
		})
	})
}

// appFarm acquires app tokens for tenants through a fresh client per call,
// as instances of a farm would, and returns how many token calls failed.
func appFarm(t *testing.T, a *msalcache.Adapter, srv *entratest.Server, tenants int) (failed int) {
	t.Helper()
	cred, _ := confidential.NewCredFromSecret("secret")
	for i := range tenants {
		c, err := confidential.New(srv.Authority(fmt.Sprintf("tenant-%d", i)), "farm-client", cred,
			confidential.WithHTTPClient(srv.Client()), confidential.WithInstanceDiscovery(false), confidential.WithCache(a))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.AcquireTokenByCredential(context.Background(), []string{"api://backend/.default"}); err != nil {
			t.Logf("tenant-%d: %v", i, err)
			failed++
		}
	}
	return failed
}

// One of two memcached servers dies: its partitions become misses, token
// calls keep succeeding, and the other server keeps serving its share.
// Then both are down: calls still succeed, each bounded by the timeout.
func TestMSALServersDown(t *testing.T) {
	const tenants = 12
	mc1, mc2 := testserver.Memcached(t), testserver.Memcached(t)
	// With the server list the Adapter's breaker tells the servers apart
	// (memcachestore's Shard), so one dead server costs only its keys.
	var servers memcache.ServerList
	if err := servers.SetServers(mc1.Addr(), mc2.Addr()); err != nil {
		t.Fatal(err)
	}
	client := memcache.NewFromSelector(&servers)
	client.Timeout = 300 * time.Millisecond
	t.Cleanup(func() { client.Close() })
	store := memcachestore.New(client, memcachestore.WithServerList(&servers))
	entra := entratest.NewServer()
	defer entra.Close()
	newAdapter := func() *msalcache.Adapter {
		a, err := msalcache.New(store, msalcache.WithPlaintext(), msalcache.WithTimeout(500*time.Millisecond),
			msalcache.WithLogger(slog.New(slog.DiscardHandler)))
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	if n := appFarm(t, newAdapter(), entra, tenants); n != 0 {
		t.Fatalf("%d token calls failed with both servers up", n)
	}
	if got := entra.TokenRequests(); got != tenants {
		t.Fatalf("%d token requests, want %d", got, tenants)
	}

	mc1.Kill()
	entra.ResetCounters()
	a := newAdapter()
	if n := appFarm(t, a, entra, tenants); n != 0 {
		t.Fatalf("%d token calls failed with one server down", n)
	}
	refetched := entra.TokenRequests()
	if refetched == 0 || refetched == tenants {
		t.Fatalf("%d of %d tenants refetched with one of two servers down: want only the dead server's share", refetched, tenants)
	}
	if a.Stats().StoreErrors == 0 {
		t.Fatal("the dead server's errors were not counted")
	}

	mc2.Freeze()
	defer mc2.Thaw()
	start := time.Now()
	if n := appFarm(t, newAdapter(), entra, tenants); n != 0 {
		t.Fatalf("%d token calls failed with both servers down", n)
	}
	// Each call: a silent Replace, a Replace and an Export, each bounded
	// by the adapter's 500ms timeout (the Export retries within it).
	if per := time.Since(start) / tenants; per > 3*time.Second {
		t.Fatalf("a token call took %v on average with both servers down", per)
	}
}
