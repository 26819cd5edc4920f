package benchmarks

import (
	"bytes"
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/cache"
	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/entratest"
)

// BenchmarkSilent measures a silent token call (AcquireTokenSilent for a
// signed-in user whose access token is cached) of a real MSAL-Go
// confidential client: without an external cache (floor), and for each
// store through the naive accessor and the Adapter (without and with its
// L1), next to the store's raw read of a 4 KiB value.
func BenchmarkSilent(b *testing.B) {
	b.Run("floor", func(b *testing.B) { silentBench(b, nil) })
	for _, bk := range backends {
		b.Run(bk.name, func(b *testing.B) {
			be := bk.open(b)
			// The floor again, beside this store's rows: a run's later
			// rows meet a warmer, busier process than its first one, and
			// the L1's ratio to the floor is within that drift.
			b.Run("floor", func(b *testing.B) { silentBench(b, nil) })
			b.Run("raw", func(b *testing.B) {
				ctx := context.Background()
				record(measure(b, func() error { return be.raw(ctx) }))
			})
			eachAccessor(b, be, silentBench)
			l1 := msalcache.WithL1(msalcache.L1Options{})
			b.Run("adapter-l1-plain", func(b *testing.B) { silentBench(b, newAdapter(b, be.store, nil, l1)) })
			b.Run("adapter-l1-encrypted", func(b *testing.B) { silentBench(b, newAdapter(b, be.store, be.ring, l1)) })
		})
	}
}

// eachAccessor runs bench as the sub-benchmarks naive, adapter-plain and
// adapter-encrypted of b, over be; a new Adapter for every invocation
// starts from an empty partition.
func eachAccessor(b *testing.B, be *backend, bench func(*testing.B, cache.ExportReplace)) {
	b.Run("naive", func(b *testing.B) { bench(b, be.naive) })
	b.Run("adapter-plain", func(b *testing.B) { bench(b, newAdapter(b, be.store, nil)) })
	b.Run("adapter-encrypted", func(b *testing.B) { bench(b, newAdapter(b, be.store, be.ring)) })
}

// users numbers the users signIn adds, so that no two runs share one.
var users atomic.Int64

// silentScopes are the scopes of every token the benchmarks ask for.
var silentScopes = []string{"api://backend/read"}

// newClient returns a confidential client of srv that keeps its cache
// through accessor (nil: in memory only).
func newClient(tb testing.TB, srv *entratest.Server, accessor cache.ExportReplace) confidential.Client {
	tb.Helper()
	c, err := clientOf(srv, accessor)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// clientOf is newClient for goroutines other than the benchmark's, which
// must not call Fatal.
func clientOf(srv *entratest.Server, accessor cache.ExportReplace) (confidential.Client, error) {
	cred, err := confidential.NewCredFromSecret("secret")
	if err != nil {
		return confidential.Client{}, err
	}
	opts := []confidential.Option{confidential.WithHTTPClient(srv.Client()), confidential.WithInstanceDiscovery(false)}
	if accessor != nil {
		opts = append(opts, confidential.WithCache(accessor))
	}
	return confidential.New(srv.Authority("contoso"), "bench-client", cred, opts...)
}

// signIn adds a user to srv and signs them in through c with an
// authorization code: one token request.
func signIn(tb testing.TB, srv *entratest.Server, c confidential.Client) entratest.User {
	tb.Helper()
	// A user of its own per call: the naive accessors store under the
	// partition key as is, and a partition left by an earlier invocation
	// would hand MSAL that run's tokens too (its authority had another
	// port), so each run would parse a larger cache than the last.
	u := srv.AddUser("contoso", fmt.Sprintf("user%d@contoso.example", users.Add(1)), "pw")
	if _, err := c.AcquireTokenByAuthCode(context.Background(), srv.AuthCode("contoso", u.Username), "http://localhost", silentScopes); err != nil {
		tb.Fatal(err)
	}
	return u
}

// silentBench signs a user in through accessor (nil: no external cache),
// then measures AcquireTokenSilent for that user. Every call must be served
// from the cache: the run fails if the token endpoint saw more than the
// sign-in.
func silentBench(b *testing.B, accessor cache.ExportReplace) {
	srv := entratest.NewServer()
	defer srv.Close()
	c := newClient(b, srv, accessor)
	u := signIn(b, srv, c)
	ctx := context.Background()
	acct, err := c.Account(ctx, u.HomeAccountID)
	if err != nil {
		b.Fatal(err)
	}
	var before msalcache.Stats
	a, _ := accessor.(*msalcache.Adapter)
	if a != nil {
		before = a.Stats()
	}
	r := measure(b, func() error {
		_, err := c.AcquireTokenSilent(ctx, silentScopes, confidential.WithSilentAccount(acct))
		return err
	})
	r.tokenRequests = srv.TokenRequests()
	if r.tokenRequests != 1 {
		b.Fatalf("%d token requests, want 1 (the sign-in): the benchmark measured the network", r.tokenRequests)
	}
	if a != nil {
		// Each silent call must have read the store (or, with an L1,
		// been served by it), or the Adapter would be measured against a
		// naive accessor that does.
		after := a.Stats()
		if hits := after.Hits + after.L1Hits - before.Hits - before.L1Hits; hits != uint64(b.N) {
			b.Fatalf("%d store and L1 hits in %d silent calls, want one each", hits, b.N)
		}
	}
	b.ReportMetric(float64(r.tokenRequests), "token-requests")
	record(r)
}

// BenchmarkExport measures the write path alone: storing a user's cache of
// about 4 KiB that changed since the last write, through the naive
// accessor (marshal, SET) and the Adapter (compare-and-set, and with
// encryption), next to the store's own compare-and-set of exactly the
// bytes each Adapter stores (raw: what adapter-plain stores; raw-sealed:
// what adapter-encrypted stores, 65 bytes more). The cases take turns in
// one loop (measureInterleaved), each call timed on its own: they differ by
// tens of microseconds, less than a loaded machine drifts between
// sub-benchmarks run seconds apart. The go test line reports
// plain/raw and encrypted/raw-sealed, each Adapter over the floor of its
// own bytes. In a real token acquisition the round trip to Entra ID dwarfs
// all of it.
func BenchmarkExport(b *testing.B) {
	for _, bk := range backends {
		b.Run(bk.name, func(b *testing.B) {
			be := bk.open(b)
			b.Run("turns", func(b *testing.B) { exportTurns(b, be) })
		})
	}
}

// exportTurns is one invocation of BenchmarkExport/<store>: it builds the
// cases, runs them in turn, checks each and records its row under
// BenchmarkExport/<store>/<case>.
func exportTurns(b *testing.B, be *backend) {
	plain := newExport(b, "adapter-plain", newAdapter(b, be.store, nil), be.store)
	encrypted := newExport(b, "adapter-encrypted", newAdapter(b, be.store, be.ring), be.store)
	cases := []*exportCase{
		newRawSave(b, "raw", be.store, plain.stored),
		newRawSave(b, "raw-sealed", be.store, encrypted.stored),
		newExport(b, "naive", be.naive, nil),
		plain,
		encrypted,
	}
	ops := make([]interleaved, len(cases))
	for i, c := range cases {
		ops[i] = interleaved{c.name, c.op}
	}
	rs := measureInterleaved(b, ops)
	byName := map[string]float64{}
	prefix := b.Name()[:len(b.Name())-len("turns")]
	for i, r := range rs {
		cases[i].check(b)
		byName[cases[i].name] = r.nsPerOp
		r.name = prefix + cases[i].name
		record(r)
	}
	b.ReportMetric(byName["adapter-plain"]/byName["raw"], "plain/raw")
	b.ReportMetric(byName["adapter-encrypted"]/byName["raw-sealed"], "encrypted/raw-sealed")
}

// exportCase is one case of BenchmarkExport: op writes the next of two
// blobs in turn, so that no write can be skipped as unchanged, and check
// fails b unless the store holds the last one written.
type exportCase struct {
	name   string
	op     func() error
	check  func(b *testing.B)
	stored [2][]byte // for an Adapter: the bytes its first two exports stored
}

// newRawSave is Export's floor: the store's own compare-and-set of blobs
// (on Redis, one EVALSHA of the script the Adapter runs), with no MSAL
// parse, no merge and no encryption.
func newRawSave(b *testing.B, name string, store driver.Store, blobs [2][]byte) *exportCase {
	ctx := context.Background()
	key := "bench:rawsave:" + name
	if err := store.Delete(ctx, key); err != nil {
		b.Fatal(err)
	}
	v := driver.NoVersion
	n := 0
	return &exportCase{
		name: name,
		op: func() (err error) {
			v, err = store.Save(ctx, key, blobs[n%2], v, 24*time.Hour)
			n++
			return err
		},
		check: func(b *testing.B) {
			got, _, err := store.Load(ctx, key)
			if err != nil || !bytes.Equal(got, blobs[(n-1)%2]) {
				b.Fatalf("%s: the store holds %d bytes that are not the last save (%v)", name, len(got), err)
			}
		},
	}
}

// newExport exports two user caches in turn through acc. For an Adapter
// over store it exports both once first and keeps, in stored, the bytes
// each left there, so that the raw cases write exactly what the Adapter
// does; check also requires that every export wrote once.
func newExport(b *testing.B, name string, acc cache.ExportReplace, store driver.Store) *exportCase {
	ctx := context.Background()
	target := &msalCache{}
	if err := acc.Replace(ctx, target, cache.ReplaceHints{PartitionKey: userPartition}); err != nil {
		b.Fatal(err)
	}
	blobs := [2][]byte{userCache(1), userCache(2)}
	hints := cache.ExportHints{PartitionKey: userPartition}
	n := 0
	c := &exportCase{name: name}
	c.op = func() error {
		target.data = blobs[n%2]
		n++
		return acc.Export(ctx, target, hints)
	}
	a, _ := acc.(*msalcache.Adapter)
	if a != nil {
		for i := range c.stored {
			if err := c.op(); err != nil {
				b.Fatal(err)
			}
			blob, _, err := store.Load(ctx, a.StoreKey(userPartition))
			if err != nil {
				b.Fatal(err)
			}
			c.stored[i] = blob
		}
	}
	c.check = func(b *testing.B) {
		got := &msalCache{}
		if err := acc.Replace(ctx, got, cache.ReplaceHints{PartitionKey: userPartition}); err != nil {
			b.Fatal(err)
		}
		if !bytes.Equal(got.data, blobs[(n-1)%2]) {
			b.Fatalf("%s: the store holds %d bytes that are not the last export", name, len(got.data))
		}
		if a != nil {
			if st := a.Stats(); st.Writes != uint64(n) || st.Conflicts != 0 {
				b.Fatalf("%s: stats %+v after %d exports: every export should write once", name, st, n)
			}
		}
	}
	return c
}

// BenchmarkReplace measures the read path alone, without MSAL: Replace of
// a stored user cache of about 4 KiB, through the naive accessor (load,
// hand over) and the Adapter, plain and encrypted, in the two cases a
// silent call meets. unchanged: the MSAL cache already holds the stored
// version, as on every call after the first of a long-lived client.
// handed-over: a new MSAL cache each call, as with a client per request,
// so the blob is decrypted, parsed and handed over every time. Without
// MSAL's parse, which dominates a naive silent call, this is where the
// Adapter's own cost on the read path shows.
func BenchmarkReplace(b *testing.B) {
	for _, bk := range backends {
		b.Run(bk.name, func(b *testing.B) {
			be := bk.open(b)
			b.Run("naive", func(b *testing.B) { replaceBench(b, be.naive, false) })
			b.Run("adapter-plain/unchanged", func(b *testing.B) {
				replaceBench(b, newAdapter(b, be.store, nil), false)
			})
			b.Run("adapter-plain/handed-over", func(b *testing.B) {
				replaceBench(b, newAdapter(b, be.store, nil), true)
			})
			b.Run("adapter-encrypted/unchanged", func(b *testing.B) {
				replaceBench(b, newAdapter(b, be.store, be.ring), false)
			})
			b.Run("adapter-encrypted/handed-over", func(b *testing.B) {
				replaceBench(b, newAdapter(b, be.store, be.ring), true)
			})
		})
	}
}

// replaceBench stores a user cache through acc, then replaces it b.N
// times into one MSAL cache, or into a new one each time when fresh. For
// the Adapter it checks that every call read the store and that each was
// reused or handed over as the case says, so the two cases cannot
// silently measure the same thing.
func replaceBench(b *testing.B, acc cache.ExportReplace, fresh bool) {
	ctx := context.Background()
	hints := cache.ReplaceHints{PartitionKey: userPartition}
	want := userCache(1)
	target := &msalCache{}
	if err := acc.Replace(ctx, target, hints); err != nil {
		b.Fatal(err)
	}
	target.data = want
	if err := acc.Export(ctx, target, cache.ExportHints{PartitionKey: userPartition}); err != nil {
		b.Fatal(err)
	}
	a, _ := acc.(*msalcache.Adapter)
	var before msalcache.Stats
	if a != nil {
		before = a.Stats()
	}
	r := measure(b, func() error {
		if fresh {
			target = &msalCache{}
		}
		return acc.Replace(ctx, target, hints)
	})
	if !bytes.Equal(target.data, want) {
		b.Fatalf("Replace handed over %d bytes that are not the stored cache", len(target.data))
	}
	if a != nil {
		st := a.Stats()
		hits, reused := st.Hits-before.Hits, st.Reused-before.Reused
		wantReused := uint64(b.N)
		if fresh {
			wantReused = 0
		}
		if hits != uint64(b.N) || reused != wantReused {
			b.Fatalf("%d hits, %d reused in %d calls, want %d and %d", hits, reused, b.N, b.N, wantReused)
		}
	}
	record(r)
}

// userPartition is MSAL's partition key of the user whose cache userCache
// builds.
const userPartition = "00000000-0000-0000-0000-00000000a11c.contoso"

// msalCache stands in for MSAL's in-memory cache on the read and write
// paths: it hands out and takes in the serialized cache as is.
type msalCache struct{ data []byte }

func (c *msalCache) Unmarshal(b []byte) error { c.data = b; return nil }
func (c *msalCache) Marshal() ([]byte, error) { return c.data, nil }

// userCache is one user's MSAL cache of about 4 KiB, shaped like MSAL's;
// n changes the access token's secret.
func userCache(n int) []byte {
	const home = userPartition
	entry := func(kind, secret string) string {
		return fmt.Sprintf(`{"home_account_id":%q,"environment":"login.example","credential_type":%q,"client_id":"bench-client","secret":%q,"realm":"contoso","target":"api://backend/read","expires_on":"4102444800","cached_at":"1700000000"}`,
			home, kind, secret)
	}
	at := entry("AccessToken", fmt.Sprintf("%02200d", n))
	rt := entry("RefreshToken", fmt.Sprintf("%0700d", 7))
	id := entry("IdToken", fmt.Sprintf("%0600d", 9))
	return []byte(`{"AccessToken":{"` + home + `-login.example-accesstoken-bench-client-contoso-api://backend/read":` + at +
		`},"RefreshToken":{"` + home + `-login.example-refreshtoken-bench-client--":` + rt +
		`},"IdToken":{"` + home + `-login.example-idtoken-bench-client-contoso-":` + id +
		`},"Account":{"` + home + `-login.example-contoso":{"home_account_id":"` + home +
		`","environment":"login.example","realm":"contoso","local_account_id":"00000000-0000-0000-0000-00000000a11c","authority_type":"MSSTS","username":"alice@contoso.example"}}` +
		`,"AppMetadata":{"appmetadata-login.example-bench-client":{"environment":"login.example","client_id":"bench-client"}}}`)
}
