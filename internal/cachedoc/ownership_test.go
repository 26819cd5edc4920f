package cachedoc

import (
	"encoding/json"
	"testing"
)

func TestEntryPartition(t *testing.T) {
	for _, c := range []struct {
		section int
		raw     string
		want    string
		ok      bool
	}{
		{secRefreshToken, `{"home_account_id":"u1.t1","secret":"x"}`, "u1.t1", true},
		{secAccount, "{\n  \"username\": \"a\",\n  \"home_account_id\" : \"u1.t1\"\n}", "u1.t1", true},
		{secAccessToken, `{"future_field":{"home_account_id":"other"},"home_account_id":"u1.t1"}`, "u1.t1", true},
		{secAccessToken, `{"client_id":"c","realm":"r","secret":"x"}`, "c_r_AppTokenCache", true},
		{secAccessToken, `{"realm":"r","ext_cache_key":"h","client_id":"c","home_account_id":""}`, "c_r_h_AppTokenCache", true},
		{secAccessToken, `{"client_id":"c\u0041","realm":"r"}`, "cA_r_AppTokenCache", true},
		{secIDToken, `{}`, "", true},
		// What one JSON decoder reads one way and another another way
		// belongs to nobody.
		{secRefreshToken, `{"home_account_id":"u1.t1","home_account_id":"u2.t2"}`, "", false},
		{secRefreshToken, `{"home_account_id":"u1.t1","Home_Account_Id":"u2.t2"}`, "", false},
		{secRefreshToken, `{"home_account_id":"u1.t1","HomeAccountID":"u2.t2"}`, "", false},
		{secAccessToken, `{"client_id":"c","realm":"r","Realm":"s"}`, "", false},
		{secRefreshToken, `{"home_account_id":null}`, "", false},
		{secRefreshToken, `{"home_account_id":7}`, "", false},
		{secRefreshToken, `"u1.t1"`, "", false},
		{secRefreshToken, `[{"home_account_id":"u1.t1"}]`, "", false},
	} {
		got, ok := entryPartition(c.section, json.RawMessage(c.raw))
		if got != c.want || ok != c.ok {
			t.Errorf("entryPartition(%d, %s) = %q, %v; want %q, %v", c.section, c.raw, got, ok, c.want, c.ok)
		}
	}
}

func TestOwnedByKeepsOnlyThePartitionsEntries(t *testing.T) {
	// Bytes MSAL would never write itself: indented, reordered, with
	// fields it does not know. Ownership is read from the fields.
	d := mustDoc(t, `{
	  "RefreshToken": {
	    "bob-rt":   {"secret": "B", "home_account_id": "bob.t"},
	    "alice-rt": {"extra": [1, 2], "home_account_id": "alice.t", "secret": "A"}
	  },
	  "AccessToken": {
	    "alice-at": {"home_account_id":"alice.t","client_id":"c","realm":"t"},
	    "app-at":   {"client_id":"c","realm":"t"},
	    "odd":      {"home_account_id":"alice.t","HOME_ACCOUNT_ID":"bob.t"}
	  },
	  "Account": {"bob": {"home_account_id": "bob.t"}},
	  "AppMetadata": {"app": {"client_id": "c"}},
	  "FutureSection": {"x": {"home_account_id": "bob.t"}}
	}`)
	alice, dropped := d.OwnedBy("alice.t", nil)
	if dropped != 5 {
		t.Errorf("alice: dropped %d entries, want 5 (bob's two, the app token, the ambiguous one, the unknown section)", dropped)
	}
	if got := entries(alice, secRefreshToken); len(got) != 1 || got["alice-rt"] == "" {
		t.Errorf("alice's refresh tokens = %v", got)
	}
	if got := entries(alice, secAccessToken); len(got) != 1 || got["alice-at"] == "" {
		t.Errorf("alice's access tokens = %v", got)
	}
	if len(alice.sections[secAccount]) != 0 || len(alice.extra) != 0 {
		t.Error("alice's partition keeps bob's account or an unknown section")
	}
	if len(alice.sections[secAppMetadata]) != 1 {
		t.Error("the client's app metadata was dropped")
	}
	app, _ := d.OwnedBy("c_t_AppTokenCache", nil)
	if got := entries(app, secAccessToken); len(got) != 1 || got["app-at"] == "" {
		t.Errorf("app partition's access tokens = %v", got)
	}
	if app.IsUserCache() {
		t.Error("the app partition holds a user's sign-in")
	}
	if none, _ := d.OwnedBy("", nil); none.HasTokens() {
		t.Error(`the "" partition (RemoveAccount, Accounts) holds tokens of an account`)
	}
	clean := mustDoc(t, `{"RefreshToken":{"r":{"home_account_id":"alice.t"}}}`)
	if same, n := clean.OwnedBy("alice.t", nil); n != 0 || same != clean {
		t.Error("a document holding only its own entries was copied")
	}
}

// An entry equal to the known document's entry is kept unread; one that
// differs from it under the same key is read and judged like any other.
func TestOwnedByTrustsOnlyIdenticalKnownEntries(t *testing.T) {
	known := mustDoc(t, `{"RefreshToken":{"rt":{"home_account_id":"alice.t","secret":"A"}}}`)
	same := mustDoc(t, `{"RefreshToken":{"rt":{"home_account_id":"alice.t","secret":"A"}}}`)
	if _, n := same.OwnedBy("alice.t", known); n != 0 {
		t.Errorf("dropped %d of alice's own entries", n)
	}
	swapped := mustDoc(t, `{"RefreshToken":{"rt":{"home_account_id":"bob.t","secret":"B"}}}`)
	if got, n := swapped.OwnedBy("alice.t", known); n != 1 || got.HasTokens() {
		t.Errorf("bob's entry under a key alice's partition knows was kept (dropped %d)", n)
	}
}

// ownerReference reads the deciding fields the way MSAL-Go does, through
// encoding/json and the field names of MSAL's cache entries.
type ownerReference struct {
	HomeAccountID string `json:"home_account_id"`
	ClientID      string `json:"client_id"`
	Realm         string `json:"realm"`
	ExtCacheKey   string `json:"ext_cache_key"`
}

// FuzzEntryPartition checks that whenever entryPartition names an owner,
// encoding/json reads the same fields from the entry: no entry can look
// like one account's to the adapter and another's to MSAL.
func FuzzEntryPartition(f *testing.F) {
	for _, s := range []string{
		`{"home_account_id":"u.t","secret":"x"}`,
		`{"client_id":"c","realm":"r","ext_cache_key":"k"}`,
		`{"home_account_id":"a","home_account_id":"b"}`,
		`{"HOME_ACCOUNT_ID":"a"}`,
		`{"home_account_\u0069d":"a"}`,
		`{"ſecret":"x","realm":"\u00e9"}`,
		`{"home_account_id":"u.t","nested":{"home_account_id":"x"}}`,
		`[]`, `"s"`, `{}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		if !json.Valid(raw) {
			return
		}
		for _, section := range []int{secAccessToken, secRefreshToken} {
			got, ok := entryPartition(section, raw)
			if !ok {
				continue
			}
			var ref ownerReference
			if err := json.Unmarshal(raw, &ref); err != nil {
				t.Fatalf("entryPartition(%s) = %q, but encoding/json fails: %v", raw, got, err)
			}
			want := ref.HomeAccountID
			if section == secAccessToken && want == "" {
				want = ref.ClientID + "_" + ref.Realm
				if ref.ExtCacheKey != "" {
					want += "_" + ref.ExtCacheKey
				}
				want += "_AppTokenCache"
			}
			if got != want {
				t.Fatalf("entryPartition(%s) = %q, encoding/json reads %q", raw, got, want)
			}
		}
	})
}
