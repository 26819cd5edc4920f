package redisstore_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"testing"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/conformance"
	"github.com/msalcache/msalcache/entratest"
	"github.com/msalcache/msalcache/internal/testring"
	"github.com/msalcache/msalcache/internal/testserver"
	"github.com/msalcache/msalcache/memstore"
	"github.com/msalcache/msalcache/redisstore"
	"github.com/redis/go-redis/v9"
)

// damagedValues are the values of issue 8 that wedged a Redis key: too
// short for a version, and a version of 0.
var damagedValues = map[string][]byte{
	"3-bytes":      []byte("abc"),
	"zero-version": append(make([]byte, 8), `{"AccessToken":{}}`...),
}

// TestMSALHealsDamagedPartition plants damaged values under an app-token
// partition's key and lets five fresh clients, as five instances of a farm
// would, ask for the app token: the first one must treat the damaged
// record as a miss and replace it, so that the other four are served from
// the store (issue 8: before the fix the key stayed wedged: 5 token
// requests, 0 writes, 30 store errors).
func TestMSALHealsDamagedPartition(t *testing.T) {
	t.Parallel()
	srv := testserver.Redis(t)
	runHealDamaged(t, newClient(t, &redis.Options{Addr: srv.Addr()}))
}

// TestClusterCorrupt runs the conformance suite with raw values, and the
// end-to-end repair of a damaged partition, on a 3-master cluster: the
// compare-and-set script that replaces a corrupt value must stay a
// one-key script. (TestCluster runs the suite without Capabilities.PutRaw,
// so its CorruptRecord subtest skips.)
func TestClusterCorrupt(t *testing.T) {
	t.Parallel()
	c := newClusterClient(t, testserver.RedisCluster(t, 3))
	t.Run("Conformance", func(t *testing.T) {
		conformance.RunStoreTests(t, func(t *testing.T) msalcache.Store {
			return redisstore.New(c, redisstore.WithPrefix(freshPrefix()), redisstore.WithMaxValueSize(smallMax))
		}, withRaw(conformance.Capabilities{MaxValueSize: smallMax}))
	})
	t.Run("MSALHealsDamagedPartition", func(t *testing.T) { runHealDamaged(t, c) })
}

// runHealDamaged runs healDamagedPartition on c for every damaged value,
// in plaintext and encrypted.
func runHealDamaged(t *testing.T, c redis.UniversalClient) {
	for _, enc := range []string{"plain", "encrypted"} {
		for name, raw := range damagedValues {
			t.Run(enc+"/"+name, func(t *testing.T) {
				store := redisstore.New(c, redisstore.WithPrefix(freshPrefix()))
				var p msalcache.Protector
				if enc == "encrypted" {
					ring := memstore.New()
					t.Cleanup(func() { ring.Close() })
					p = testring.New(t, ring)
				}
				healDamagedPartition(t, store, p, redisstore.PutRaw, raw)
			})
		}
	}
}

// The client of the emulated farm; the partition MSAL-Go exports an app
// token under is clientID_tenant_AppTokenCache.
const (
	healClientID = "8a7c0e52-0000-4000-8000-0000000da7a0"
	healTenant   = "damaged-tenant"
	healScope    = "api://backend/.default"
	healClients  = 5
)

// healDamagedPartition plants raw under the store key of the app partition
// with put, which writes raw bytes past the store's record format, then
// runs healClients fresh adapters and clients (with protector p, or in
// plaintext) and checks that only the first one asked Entra ID for a token
// and that the partition was repaired. It logs the figures of the run.
func healDamagedPartition(t *testing.T, store msalcache.Store, p msalcache.Protector, put func(ctx context.Context, s msalcache.Store, key string, raw []byte) error, raw []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	entra := entratest.NewServer()
	defer entra.Close()
	newAdapter := func() *msalcache.Adapter {
		t.Helper()
		opts := []msalcache.Option{msalcache.WithLogger(slog.New(slog.DiscardHandler))}
		if p != nil {
			opts = append(opts, msalcache.WithProtector(p))
		} else {
			opts = append(opts, msalcache.WithPlaintext())
		}
		a, err := msalcache.New(store, opts...)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	key := newAdapter().StoreKey(healClientID + "_" + healTenant + "_AppTokenCache")
	if err := put(ctx, store, key, raw); err != nil {
		t.Fatalf("planting the damaged value: %v", err)
	}
	cred, err := confidential.NewCredFromSecret("farm-secret")
	if err != nil {
		t.Fatal(err)
	}
	var sum msalcache.Stats
	for i := range healClients {
		a := newAdapter()
		c, err := confidential.New(entra.Authority(healTenant), healClientID, cred,
			confidential.WithHTTPClient(entra.Client()), confidential.WithInstanceDiscovery(false), confidential.WithCache(a))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.AcquireTokenByCredential(ctx, []string{healScope}); err != nil {
			t.Fatalf("client %d: %v", i+1, err)
		}
		s := a.Stats()
		sum.Writes += s.Writes
		sum.StoreErrors += s.StoreErrors
		sum.CorruptBlobs += s.CorruptBlobs
		sum.Hits += s.Hits
	}
	t.Logf("%d fresh clients over a damaged partition: %d token requests, %d writes, %d store errors, %d corrupt records seen, %d hits",
		healClients, entra.TokenRequests(), sum.Writes, sum.StoreErrors, sum.CorruptBlobs, sum.Hits)
	if got := entra.TokenRequests(); got != 1 {
		t.Errorf("%d fresh clients made %d token requests, want 1: the damaged partition was not repaired by the first", healClients, got)
	}
	if sum.StoreErrors != 0 || sum.CorruptBlobs == 0 {
		t.Errorf("the adapters counted %d store errors and %d corrupt records; want the damaged record reported as corrupt (ErrCorrupt), not as a store failure",
			sum.StoreErrors, sum.CorruptBlobs)
	}
	blob, _, err := store.Load(ctx, key)
	if err != nil {
		t.Fatalf("Load of the partition after %d clients: %v; want it repaired", healClients, err)
	}
	if p != nil {
		if blob, err = p.Unprotect(ctx, blob, []byte(key)); err != nil {
			t.Fatalf("the repaired partition does not decrypt: %v", err)
		}
	}
	var doc map[string]map[string]json.RawMessage
	if err := json.Unmarshal(blob, &doc); err != nil {
		t.Fatalf("the repaired partition is not MSAL's cache JSON: %v", err)
	}
	if n := len(doc["AccessToken"]); n != 1 {
		t.Fatalf("the repaired partition holds %d access tokens, want 1", n)
	}
}
