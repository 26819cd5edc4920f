package conformance

import (
	"encoding/json"
	"errors"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/entratest"
)

// The scenarios below plant stored partitions whose bytes differ from what
// MSAL-Go marshals (indented, fields reordered, fields MSAL does not know),
// as a farm running two MSAL-Go versions, a merge or another tool writes
// them. Whatever the bytes, no partition may ever hold another account's
// entries, and a signed-out user is never served again.

// rewrite replaces what the store holds for partitionKey with edit's
// result, re-encoded unlike MSAL (indented, keys sorted, an unknown field
// in every entry) and sealed as the adapter seals.
func (f *fixture) rewrite(a suiteAdapter, partitionKey string, edit func(doc map[string]map[string]json.RawMessage)) {
	f.t.Helper()
	doc := f.partition(a, partitionKey)
	if doc == nil {
		doc = map[string]map[string]json.RawMessage{}
	}
	edit(doc)
	for _, section := range doc {
		for k, raw := range section {
			var e map[string]any
			if json.Unmarshal(raw, &e) != nil {
				continue
			}
			e["x_written_by"] = "another tool"
			section[k], _ = json.MarshalIndent(e, "  ", "    ")
		}
	}
	blob, err := json.MarshalIndent(doc, "", "\t")
	if err != nil {
		f.t.Fatal(err)
	}
	key := a.StoreKey(partitionKey)
	if f.protector != nil {
		if blob, err = f.protector.Protect(f.ctx, blob, []byte(key)); err != nil {
			f.t.Fatal(err)
		}
	}
	_, v, err := f.store.Load(f.ctx, key)
	if err != nil && !errors.Is(err, driver.ErrNotFound) {
		f.t.Fatal(err)
	}
	if _, err := f.store.Save(f.ctx, key, blob, v, 0); err != nil {
		f.t.Fatalf("planting a rewritten partition: %v", err)
	}
}

// testForeignBytesNeverStored: bob's stored partition is in bytes MSAL
// would not write; one shared client then serves alice and bob back to
// back, with token writes, so MSAL holds both. Each partition must still
// hold its own account's entries only.
func testForeignBytesNeverStored(f *fixture) {
	alice, bob := f.users[0], f.users[1]
	a1 := f.adapter(nil)
	web1 := f.confidential(a1, suiteTenant)
	f.signIn(web1, alice)
	f.signIn(web1, bob)
	f.rewrite(a1, bob.HomeAccountID, func(map[string]map[string]json.RawMessage) {})
	f.rewrite(a1, alice.HomeAccountID, func(map[string]map[string]json.RawMessage) {})

	// Bob's call is served from the cache (his partition stays in the
	// planted bytes, lent to the client); alice's buys a token, so her
	// partition is written while MSAL holds bob's entries.
	a2 := f.adapter(nil)
	web2 := f.confidential(a2, suiteTenant)
	for i, scope := range []string{"api://one/read", "api://two/read", "api://three/read"} {
		for _, call := range []struct {
			u     entratest.User
			scope string
		}{{bob, userScope}, {alice, scope}} {
			tok, err := f.silent(web2, call.u, call.scope)
			if err != nil {
				f.t.Fatalf("round %d, silent call for %s: %v", i, call.u.Username, err)
			}
			f.mustBeFor(tok, call.u)
		}
	}
	for _, u := range []entratest.User{alice, bob} {
		for owner, n := range owners(f.partition(a2, u.HomeAccountID)) {
			if owner != u.HomeAccountID {
				f.t.Fatalf("%s's partition holds %d entries of account %s", u.Username, n, owner)
			}
		}
	}
}

// testRemovedUserNeverServed: alice's stored partition also holds bob's
// entries (written by another tool or an older version). Bob signs out;
// a new instance serving alice and then bob on one client must not serve
// bob from alice's partition.
func testRemovedUserNeverServed(f *fixture) {
	alice, bob := f.users[0], f.users[1]
	a1 := f.adapter(nil)
	web1 := f.confidential(a1, suiteTenant)
	f.signIn(web1, alice)
	f.signIn(web1, bob)
	bobs := f.partition(a1, bob.HomeAccountID)
	f.rewrite(a1, alice.HomeAccountID, func(doc map[string]map[string]json.RawMessage) {
		for name, section := range bobs {
			if doc[name] == nil {
				doc[name] = map[string]json.RawMessage{}
			}
			for k, v := range section {
				doc[name][k] = v
			}
		}
	})
	acct, err := web1.Account(f.ctx, bob.HomeAccountID)
	if err != nil {
		f.t.Fatal(err)
	}
	if err := web1.RemoveAccount(f.ctx, acct); err != nil {
		f.t.Fatalf("RemoveAccount: %v", err)
	}
	if err := a1.Remove(f.ctx, bob.HomeAccountID); err != nil {
		f.t.Fatalf("Adapter.Remove: %v", err)
	}
	before := f.srv.TokenRequests()
	web2 := f.confidential(f.adapter(nil), suiteTenant)
	tok, err := f.silent(web2, alice, userScope)
	if err != nil {
		f.t.Fatalf("alice: %v", err)
	}
	f.mustBeFor(tok, alice)
	if tok, err := f.silent(web2, bob, userScope); err == nil {
		f.t.Fatalf("a new instance served signed-out bob a token (%d token requests): %v", f.srv.TokenRequests()-before, tokenFor(tok, bob))
	}
}
