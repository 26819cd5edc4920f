package conformance

import (
	"maps"
	"slices"

	"github.com/msalcache/msalcache"
)

// healClients is how many fresh instances ask for the app token after a
// partition was damaged.
const healClients = 5

// testDamagedPartitionHealed plants each of the Harness's CorruptRecords,
// and a 3-byte value, past the store's record format, under the key of an
// app partition (one tenant each) and lets healClients fresh instances, as the servers of a farm
// would, ask for the app token. The first must read the damaged record as
// a miss (counted as corrupt, not as a store failure) and replace it, so
// that the others are served from the store: one token request, not five.
func testDamagedPartitionHealed(f *fixture) {
	damaged := maps.Clone(f.raw.CorruptRecords())
	if len(damaged) == 0 {
		f.t.Fatal("the Harness is a RawPutter but CorruptRecords is empty: name the damaged records to plant")
	}
	damaged["3-bytes"] = []byte("abc") // too short for any header
	for _, name := range slices.Sorted(maps.Keys(damaged)) {
		tenant := "damaged-" + name
		key := f.adapter(nil).StoreKey(appPartitionKey(tenant))
		if err := f.raw.PutRaw(f.ctx, f.store, key, damaged[name]); err != nil {
			f.t.Fatalf("%s: planting the damaged record: %v", name, err)
		}
		before := f.srv.TokenRequests()
		var sum msalcache.Stats
		for i := range healClients {
			a := f.adapter(nil)
			if _, err := f.confidential(a, tenant).AcquireTokenByCredential(f.ctx, []string{appScope}); err != nil {
				f.t.Fatalf("%s: client %d: %v", name, i+1, err)
			}
			s := a.Stats()
			sum.Writes += s.Writes
			sum.StoreErrors += s.StoreErrors
			sum.CorruptBlobs += s.CorruptBlobs
		}
		requests := f.srv.TokenRequests() - before
		f.t.Logf("%s: %d fresh clients over a damaged partition: %d token requests, %d writes, %d store errors, %d corrupt records seen",
			name, healClients, requests, sum.Writes, sum.StoreErrors, sum.CorruptBlobs)
		if requests != 1 {
			f.t.Errorf("%s: %d fresh clients made %d token requests, want 1: the first did not repair the damaged partition", name, healClients, requests)
		}
		if sum.StoreErrors != 0 || sum.CorruptBlobs == 0 {
			f.t.Errorf("%s: the adapters counted %d store errors and %d corrupt records; want the damaged record reported as corrupt (ErrCorrupt), not as a store failure",
				name, sum.StoreErrors, sum.CorruptBlobs)
		}
		if n := len(f.partition(f.adapter(nil), appPartitionKey(tenant))["AccessToken"]); n != 1 {
			f.t.Errorf("%s: the repaired partition holds %d access tokens, want 1", name, n)
		}
	}
}
