package memcachestore_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"testing"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/entratest"
	"github.com/msalcache/msalcache/internal/testring"
	"github.com/msalcache/msalcache/internal/testserver"
	"github.com/msalcache/msalcache/memcachestore"
	"github.com/msalcache/msalcache/memstore"
)

// TestMSALHealsDamagedPartition plants damaged values under an app-token
// partition's key and lets five fresh clients, as five instances of a farm
// would, ask for the app token: the first one must treat the damaged item
// as a miss and replace it, so that the other four are served from the
// store. (Before issue 8 memcached read such an item as absent, which
// healed it too; it now reports ErrCorrupt, and this checks that the
// Adapter still heals it.) The key ring lives in memstore: memcached
// evicts.
func TestMSALHealsDamagedPartition(t *testing.T) {
	t.Parallel()
	srv := testserver.Memcached(t)
	c := newClient(t, srv.Addr())
	damaged := map[string][]byte{
		"3-bytes":      []byte("abc"),
		"zero-version": append(make([]byte, 8), `{"AccessToken":{}}`...),
	}
	for _, enc := range []string{"plain", "encrypted"} {
		for name, raw := range damaged {
			t.Run(enc+"/"+name, func(t *testing.T) {
				store := memcachestore.New(c, memcachestore.WithPrefix(uniquePrefix("heal:")))
				t.Cleanup(func() { store.Close() })
				var p msalcache.Protector
				if enc == "encrypted" {
					ring := memstore.New()
					t.Cleanup(func() { ring.Close() })
					p = testring.New(t, ring)
				}
				healDamagedPartition(t, store, p, memcachestore.PutRaw, raw)
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
