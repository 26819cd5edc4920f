package msalcache_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/cache"
	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/boltstore"
	"github.com/msalcache/msalcache/entratest"
	"github.com/msalcache/msalcache/memstore"
)

// The benchmarks compare, side by side in one run:
//   - MSAL-Go's silent call with no external cache (the floor);
//   - the same call through a naive ExportReplace (what users write today:
//     load and save the blob, no CAS, no encryption) over memstore;
//   - the same call through the Adapter over memstore and boltstore;
//   - Replace and Export alone, without MSAL, over memstore and boltstore.
// Run: go test -run '^$' -bench . -benchmem .

type benchStore struct {
	name string
	open func(b *testing.B) msalcache.Store
}

func benchStores() []benchStore {
	return []benchStore{
		{"memstore", func(b *testing.B) msalcache.Store {
			s := memstore.New()
			b.Cleanup(func() { s.Close() })
			return s
		}},
		{"boltstore", func(b *testing.B) msalcache.Store {
			s, err := boltstore.Open(filepath.Join(b.TempDir(), "bench.db"))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { s.Close() })
			return s
		}},
	}
}

// naive is the hand-written accessor the adapter is measured against.
type naive struct{ store msalcache.Store }

func (n naive) Replace(ctx context.Context, u cache.Unmarshaler, h cache.ReplaceHints) error {
	b, _, err := n.store.Load(ctx, h.PartitionKey)
	if err != nil {
		b = []byte("{}")
	}
	return u.Unmarshal(b)
}

func (n naive) Export(ctx context.Context, m cache.Marshaler, h cache.ExportHints) error {
	b, err := m.Marshal()
	if err != nil {
		return err
	}
	cur, v, err := n.store.Load(ctx, h.PartitionKey)
	_ = cur
	if err != nil {
		v = msalcache.NoVersion
	}
	_, err = n.store.Save(ctx, h.PartitionKey, b, v, 0)
	return err
}

// silentBench signs a user in through accessor (nil: no external cache),
// then measures AcquireTokenSilent for that user.
func silentBench(b *testing.B, accessor cache.ExportReplace) {
	srv := entratest.NewServer()
	defer srv.Close()
	u := srv.AddUser("contoso", "alice@contoso.example", "pw")
	cred, _ := confidential.NewCredFromSecret("secret")
	opts := []confidential.Option{confidential.WithHTTPClient(srv.Client()), confidential.WithInstanceDiscovery(false)}
	if accessor != nil {
		opts = append(opts, confidential.WithCache(accessor))
	}
	c, err := confidential.New(srv.Authority("contoso"), "bench-client", cred, opts...)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	scopes := []string{"api://backend/read"}
	if _, err := c.AcquireTokenByAuthCode(ctx, srv.AuthCode("contoso", u.Username), "http://localhost", scopes); err != nil {
		b.Fatal(err)
	}
	acct, err := c.Account(ctx, u.HomeAccountID)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := c.AcquireTokenSilent(ctx, scopes, confidential.WithSilentAccount(acct)); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if n := srv.TokenRequests(); n != 1 {
		b.Fatalf("%d token requests, want 1: the benchmark measured the network", n)
	}
}

func BenchmarkSilent(b *testing.B) {
	b.Run("floor-no-external-cache", func(b *testing.B) { silentBench(b, nil) })
	b.Run("naive-memstore", func(b *testing.B) {
		silentBench(b, naive{benchStores()[0].open(b)})
	})
	for _, s := range benchStores() {
		b.Run("adapter-"+s.name, func(b *testing.B) {
			a, err := msalcache.New(s.open(b), msalcache.WithPlaintext())
			if err != nil {
				b.Fatal(err)
			}
			silentBench(b, a)
		})
	}
}

// blob is a user's cache of about 4 KiB, shaped like MSAL's.
func blob(n int) []byte {
	at := `{"home_account_id":"uid.utid","environment":"login.example","credential_type":"AccessToken","client_id":"c","secret":"` +
		fmt.Sprintf("%03000d", n) + `","target":"api://x/read","realm":"t","expires_on":"4102444800","cached_at":"1700000000"}`
	rt := `{"home_account_id":"uid.utid","environment":"login.example","credential_type":"RefreshToken","client_id":"c","secret":"` +
		fmt.Sprintf("%0600d", 7) + `"}`
	return []byte(`{"AccessToken":{"uid.utid-login.example-accesstoken-c-t-api://x/read":` + at +
		`},"RefreshToken":{"uid.utid-login.example-refreshtoken-c--":` + rt +
		`},"Account":{"uid.utid-login.example-t":{"home_account_id":"uid.utid","username":"alice"}}}`)
}

type sink struct{ data []byte }

func (s *sink) Unmarshal(b []byte) error { s.data = b; return nil }
func (s *sink) Marshal() ([]byte, error) { return s.data, nil }

func BenchmarkReplace(b *testing.B) {
	for _, s := range benchStores() {
		store := s.open(b)
		a, _ := msalcache.New(store, msalcache.WithPlaintext())
		ctx := context.Background()
		hint := cache.ReplaceHints{PartitionKey: "uid.utid"}
		if _, err := store.Save(ctx, a.StoreKey(hint.PartitionKey), blob(1), msalcache.NoVersion, 0); err != nil {
			b.Fatal(err)
		}
		// unchanged: MSAL already holds the stored version (every silent
		// call after the first on an instance).
		b.Run(s.name+"/unchanged", func(b *testing.B) {
			target := &sink{}
			b.ReportAllocs()
			for range b.N {
				if err := a.Replace(ctx, target, hint); err != nil {
					b.Fatal(err)
				}
			}
		})
		// changed: a new MSAL client each time, so the blob is handed over.
		b.Run(s.name+"/handed-over", func(b *testing.B) {
			b.ReportAllocs()
			for range b.N {
				if err := a.Replace(ctx, &sink{}, hint); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkExport(b *testing.B) {
	for _, s := range benchStores() {
		b.Run(s.name, func(b *testing.B) {
			store := s.open(b)
			a, _ := msalcache.New(store, msalcache.WithPlaintext())
			ctx := context.Background()
			target := &sink{}
			if err := a.Replace(ctx, target, cache.ReplaceHints{PartitionKey: "uid.utid"}); err != nil {
				b.Fatal(err)
			}
			blobs := [2][]byte{blob(1), blob(2)} // alternate, so no write is skipped
			var n atomic.Int64
			b.ReportAllocs()
			b.SetBytes(int64(len(blobs[0])))
			for i := range b.N {
				target.data = blobs[i%2]
				if err := a.Export(ctx, target, cache.ExportHints{PartitionKey: "uid.utid"}); err != nil {
					b.Fatal(err)
				}
				n.Add(1)
			}
			b.StopTimer()
			if st := a.Stats(); st.Writes != uint64(n.Load()) || st.Conflicts != 0 {
				b.Fatalf("stats %+v after %d exports: every export should write once", st, n.Load())
			}
			b.ReportMetric(float64(len(blobs[0])), "blob-bytes")
		})
	}
}

// BenchmarkSharedClient measures DESIGN 4.5: 8 users' silent calls from 16
// goroutines, through one shared confidential client or a client per call,
// with the naive accessor and with the Adapter. failed/op is the share of
// silent calls that failed with "no token found"; wrong/op the share that
// got another user's token (must be 0).
func BenchmarkSharedClient(b *testing.B) {
	accessors := []struct {
		name string
		make func(msalcache.Store) cache.ExportReplace
	}{
		{"naive", func(s msalcache.Store) cache.ExportReplace { return naive{s} }},
		{"adapter", func(s msalcache.Store) cache.ExportReplace {
			a, _ := msalcache.New(s, msalcache.WithPlaintext())
			return a
		}},
	}
	for _, acc := range accessors {
		for _, shared := range []bool{true, false} {
			name := acc.name + "/client-per-call"
			if shared {
				name = acc.name + "/shared-client"
			}
			b.Run(name, func(b *testing.B) {
				sharedClientBench(b, acc.make(benchStores()[0].open(b)), shared)
			})
		}
	}
}

func sharedClientBench(b *testing.B, accessor cache.ExportReplace, shared bool) {
	srv := entratest.NewServer()
	defer srv.Close()
	cred, _ := confidential.NewCredFromSecret("secret")
	newClient := func() confidential.Client {
		c, err := confidential.New(srv.Authority("contoso"), "bench-client", cred,
			confidential.WithHTTPClient(srv.Client()), confidential.WithInstanceDiscovery(false), confidential.WithCache(accessor))
		if err != nil {
			b.Fatal(err)
		}
		return c
	}
	ctx := context.Background()
	scopes := []string{"api://backend/read"}
	signer := newClient()
	var users []entratest.User
	for i := range 8 {
		u := srv.AddUser("contoso", fmt.Sprintf("user%d@contoso.example", i), "pw")
		if _, err := signer.AcquireTokenByAuthCode(ctx, srv.AuthCode("contoso", u.Username), "http://localhost", scopes); err != nil {
			b.Fatal(err)
		}
		users = append(users, u)
	}
	var failed, wrong, next atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(8) // 16 goroutines on 2 cores
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			u := users[next.Add(1)%int64(len(users))]
			c := signer
			if !shared {
				c = newClient()
			}
			acct, err := c.Account(ctx, u.HomeAccountID)
			if err == nil {
				var ar confidential.AuthResult
				ar, err = c.AcquireTokenSilent(ctx, scopes, confidential.WithSilentAccount(acct))
				if err == nil {
					if claims, _ := entratest.ParseToken(ar.AccessToken); claims.ObjectID != u.ObjectID {
						wrong.Add(1)
					}
				}
			}
			if err != nil {
				failed.Add(1)
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(failed.Load())/float64(b.N), "failed/op")
	b.ReportMetric(float64(wrong.Load())/float64(b.N), "wrong/op")
}
