package cachedoc

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"
)

func mustDoc(t testing.TB, s string) *Document {
	t.Helper()
	d, err := Parse([]byte(s))
	if err != nil {
		t.Fatalf("Parse(%s): %v", s, err)
	}
	return d
}

func entries(d *Document, section int) map[string]string {
	out := map[string]string{}
	for k, v := range d.sections[section] {
		out[k] = string(v)
	}
	return out
}

func TestParseDocumentShape(t *testing.T) {
	for _, bad := range []string{``, `[]`, `"x"`, `{"AccessToken":[1]}`, `{"RefreshToken":"x"}`, `{`} {
		if _, err := Parse([]byte(bad)); err == nil {
			t.Errorf("Parse(%q) accepted a blob that is not MSAL's shape", bad)
		}
	}
	d := mustDoc(t, `{"AccessToken":{"a":{"x":1}},"AppMetadata":null,"Future":{"k":true}}`)
	if got := entries(d, secAccessToken); got["a"] != `{"x":1}` {
		t.Errorf("AccessToken = %v", got)
	}
	if string(d.extra["Future"]) != `{"k":true}` {
		t.Errorf("unknown top-level field not kept: %v", d.extra)
	}
}

func TestEncodeRoundTripAndDeterminism(t *testing.T) {
	src := `{"RefreshToken":{"z":{"s":"r"},"a\"q":{"s":"\u00e9"}},"AccessToken":{"b":{"expires_on":"10"}},"Extra":[1,2]}`
	d := mustDoc(t, src)
	enc := d.Encode()
	if !json.Valid(enc) {
		t.Fatalf("encode produced invalid JSON: %s", enc)
	}
	again := mustDoc(t, string(enc))
	if !again.EqualEntries(d) || string(again.extra["Extra"]) != "[1,2]" {
		t.Fatalf("round trip changed the document: %s", enc)
	}
	if string(again.Encode()) != string(enc) {
		t.Fatalf("encode is not deterministic")
	}
	if !strings.HasPrefix(string(enc), `{"AccessToken":{"b":`) {
		t.Errorf("sections not in MSAL's order: %s", enc)
	}
}

func TestAppendJSONStringEscapes(t *testing.T) {
	for _, s := range []string{"plain", "quo\"te", `back\slash`, "ctl\x01\n", "é✓", "bad\xffutf8"} {
		b := appendJSONString(nil, s)
		var back string
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("appendJSONString(%q) = %s: invalid JSON: %v", s, b, err)
		}
		if back != strings.ToValidUTF8(s, "\ufffd") {
			t.Errorf("appendJSONString(%q) decodes to %q", s, back)
		}
	}
}

func TestMerge3(t *testing.T) {
	base := mustDoc(t, `{"AccessToken":{"keep":1,"oursChanged":1,"theirsChanged":1,"bothChanged":1,"oursRemoved":1,"theirsRemoved":1,"removedVsChanged":1}}`)
	ours := mustDoc(t, `{"AccessToken":{"keep":1,"oursChanged":2,"theirsChanged":1,"bothChanged":2,"theirsRemoved":1,"removedVsChanged":1,"oursAdded":1}}`)
	theirs := mustDoc(t, `{"AccessToken":{"keep":1,"oursChanged":1,"theirsChanged":3,"bothChanged":3,"oursRemoved":1,"theirsAdded":1}}`)
	// removedVsChanged: theirs removed it while ours left it alone, so it goes.
	got := entries(Merge3(base, ours, theirs), secAccessToken)
	want := map[string]string{"keep": "1", "oursChanged": "2", "theirsChanged": "3", "bothChanged": "2", "oursAdded": "1", "theirsAdded": "1"}
	if len(got) != len(want) {
		t.Errorf("merge3 = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("merge3[%s] = %q, want %q (all: %v)", k, got[k], v, got)
		}
	}
}

func TestMerge3RemovalWinsOverChange(t *testing.T) {
	// A sign-out (ours removes the refresh token) races a refresh elsewhere
	// (theirs rewrites it): the sign-out must stick.
	base := mustDoc(t, `{"RefreshToken":{"rt":"old"}}`)
	ours := mustDoc(t, `{}`)
	theirs := mustDoc(t, `{"RefreshToken":{"rt":"new"}}`)
	if got := entries(Merge3(base, ours, theirs), secRefreshToken); len(got) != 0 {
		t.Fatalf("a removed refresh token came back: %v", got)
	}
}

func TestMerge3WithoutBaseKeepsBoth(t *testing.T) {
	ours := mustDoc(t, `{"AccessToken":{"a":1,"same":2}}`)
	theirs := mustDoc(t, `{"AccessToken":{"b":1,"same":3}}`)
	got := entries(Merge3(nil, ours, theirs), secAccessToken)
	if got["a"] != "1" || got["b"] != "1" || got["same"] != "2" {
		t.Fatalf("Merge3(nil, ...) = %v: want both writers' entries, ours on a tie", got)
	}
}

func TestUnionPrefersFirst(t *testing.T) {
	first := mustDoc(t, `{"AccessToken":{"k":"first"}}`)
	other := mustDoc(t, `{"AccessToken":{"k":"other","o":"x"},"Account":{"acc":"y"}}`)
	u := Union(first, []*Document{other})
	if got := entries(u, secAccessToken); got["k"] != `"first"` || got["o"] != `"x"` {
		t.Fatalf("union AccessToken = %v", got)
	}
	if len(u.sections[secAccount]) != 1 {
		t.Fatal("union lost a section only the other had")
	}
}

func TestLatestExpiryAndKinds(t *testing.T) {
	d := mustDoc(t, `{"AccessToken":{"a":{"expires_on":"1700000000"},"b":{"expires_on":1800000000},"c":{"expires_on":"junk"}}}`)
	if got := d.LatestExpiry(); !got.Equal(time.Unix(1800000000, 0)) {
		t.Errorf("latestExpiry = %v", got)
	}
	if d.IsUserCache() || !d.HasTokens() {
		t.Error("app-token document misclassified")
	}
	if mustDoc(t, `{"AppMetadata":{"x":{}}}`).HasTokens() {
		t.Error("app metadata alone counted as tokens")
	}
	if !mustDoc(t, `{"Account":{"x":{}}}`).IsUserCache() {
		t.Error("account not a user cache")
	}
}

// FuzzDocument checks that no input makes the document code panic and that
// whatever parses survives encode and merge.
func FuzzDocument(f *testing.F) {
	f.Add([]byte(`{"AccessToken":{"a":{"expires_on":"1"}},"RefreshToken":{"r":{}}}`), []byte(`{"AccessToken":{"b":1}}`))
	f.Add([]byte(`{}`), []byte(`{"Account":{"x":null},"X":1}`))
	f.Add([]byte(`{"IdToken":{"\u0000":"\ud800"}}`), []byte(`[]`))
	f.Fuzz(func(t *testing.T, a, b []byte) {
		da, err := Parse(a)
		if err != nil {
			return
		}
		enc := da.Encode()
		back, err := Parse(enc)
		if err != nil {
			t.Fatalf("encode of a parsed document does not parse: %s: %v", enc, err)
		}
		if !back.EqualEntries(da) {
			t.Fatalf("encode changed the entries: %s", enc)
		}
		db, err := Parse(b)
		if err != nil {
			return
		}
		m := Merge3(da, db, da)
		if _, err := Parse(m.Encode()); err != nil {
			t.Fatalf("merge result does not parse: %v", err)
		}
		db.OwnedBy("uid.utid", nil)
		Union(da, []*Document{db}).Encode()
	})
}

// parseDocumentReference is the straightforward encoding/json parse that
// Parse must agree with.
func parseDocumentReference(b []byte) (*Document, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(b, &top); err != nil || top == nil {
		return nil, ErrNotCacheShape // null is JSON, not an MSAL cache
	}
	d := &Document{}
	for name, raw := range top {
		i := slices.Index(sectionNames[:], name)
		if i < 0 {
			if d.extra == nil {
				d.extra = make(map[string]json.RawMessage)
			}
			d.extra[name] = raw
			continue
		}
		if string(raw) == "null" {
			continue
		}
		var entries map[string]json.RawMessage
		if err := json.Unmarshal(raw, &entries); err != nil {
			return nil, ErrNotCacheShape
		}
		if len(entries) > 0 {
			d.sections[i] = entries
		}
	}
	return d, nil
}

// FuzzParseDocument checks the fast parser against encoding/json.
func FuzzParseDocument(f *testing.F) {
	for _, s := range []string{`{}`, `{"AccessToken":{"a":{"x":[1,{"y":"}"}]}}}`, ` { "Future" : [ 1 , "a\"b" ] , "Account":null } `,
		`{"IdToken":{"k\u00e9\n":true,"k\u00e9\n":false}}`, `{"RefreshToken":[]}`,
		`{"AccessToken":{"0123456789abcdef":{"secret":"0123456789\"abcdef0123\\u0041xyz"}}}`, `[1]`, `{"a":1,}`, `{"AppMetadata":{"x":-1.5e3}}`, `null`, `{"Account":{"a":{"b":"\u12"}}}`, `{"x":01}`, `{}x`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, gotErr := Parse(b)
		want, wantErr := parseDocumentReference(b)
		if (gotErr == nil) != (wantErr == nil) {
			t.Fatalf("Parse(%q) err = %v, encoding/json err = %v", b, gotErr, wantErr)
		}
		if gotErr != nil {
			return
		}
		if !got.EqualEntries(want) || len(got.extra) != len(want.extra) {
			t.Fatalf("Parse(%q) = %v, encoding/json = %v", b, got.sections, want.sections)
		}
		for k, v := range want.extra {
			if string(got.extra[k]) != string(v) {
				t.Fatalf("extra[%q] = %s, want %s", k, got.extra[k], v)
			}
		}
	})
}

// validJSON is the scanner's verdict on b as a whole JSON text.
func validJSON(b []byte) bool {
	s := scanner{b: b}
	s.skip()
	return s.end() == nil
}

// FuzzValidJSON holds the scanner to encoding/json's idea of valid JSON,
// since Parse no longer asks json.Valid first.
func FuzzValidJSON(f *testing.F) {
	for _, s := range []string{``, ` `, `0`, `-0`, `01`, `-`, `1.`, `1.5e`, `1e+9`, `1E-0`, `true`, `tru`, `nullx`,
		`"a\"b"`, `"\u00e9\ud800"`, `"\x"`, `"\u12g4"`, "\"\x01\"", "\"\xff\xfe\"", `[1,]`, `[,]`, `[]`, `{"a":1}`,
		`{"a" 1}`, `{1:2}`, `{"a":1,"b":[true,false,null,{}]}`, "\t[ 1 ]\r\n", `[1 2]`, `{"a":{"b":[[]]}}`,
		// Strings long enough for str's eight-byte skip, a byte it must
		// stop at in and after the first words.
		`"0123456789abcdef\"0123456789"`, "\"0123456789a\x1fbcdef\"", `"0123456\\789abcdefghijklmn"`,
		"\"0123456789abcd\xc3\xa9\xff\"", `"0123456789abcdefg`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := validJSON(b), json.Valid(b); got != want {
			t.Fatalf("scanner says valid=%v for %q, json.Valid says %v", got, b, want)
		}
	})
}

// TestStrEveryByteAtEveryOffset holds str's eight-bytes-at-a-time skip to
// encoding/json for every byte value at every position of a word and near
// the ends of strings and inputs, where the skip hands over to the byte
// loop: a missed quote, backslash or control byte would accept what
// encoding/json rejects, or end a string in the wrong place.
func TestStrEveryByteAtEveryOffset(t *testing.T) {
	for c := range 256 {
		for before := range 18 {
			for after := range 18 {
				// after%2 puts a multi-byte rune (no flag of its own) behind it.
				body := strings.Repeat("a", before) + string([]byte{byte(c)}) + strings.Repeat("é", after%2) + strings.Repeat("b", after)
				for _, in := range []string{`"` + body + `"`, `["` + body + `", "x"]`, `"` + body} {
					if got, want := validJSON([]byte(in)), json.Valid([]byte(in)); got != want {
						t.Fatalf("byte %#02x after %d bytes (%q): scanner valid=%v, json.Valid %v", c, before, in, got, want)
					}
				}
			}
		}
	}
}

// A quote or backslash that a word test finds ends or escapes the string
// at its own byte, not at the word's: the value read must stop exactly
// where encoding/json's does.
func TestStrEndsAtItsQuote(t *testing.T) {
	for n := range 40 {
		for _, esc := range []string{``, `\"`, `\\`, `\n`, `\u0041`} {
			str := `"` + strings.Repeat("x", n) + esc + strings.Repeat("y", n%9) + `"`
			in := `{"AccessToken":{"k":` + str + `,"l":"` + strings.Repeat("z", n) + `"}}`
			d, err := Parse([]byte(in))
			if err != nil {
				t.Fatalf("%s: %v", in, err)
			}
			want, err := parseDocumentReference([]byte(in))
			if err != nil || !d.EqualEntries(want) {
				t.Fatalf("%s: parsed %v, encoding/json %v (%v)", in, d.sections, want.sections, err)
			}
		}
	}
}

// TestKnownKeys checks that knownKey hands back exactly the name it was
// given for every section and every field MSAL-Go v1.10.1 writes (the json
// tags of its storage items), that keys it does not know or that are
// spelled with escapes go through the decoder, and that a parse reading
// only such names makes no string for them.
func TestKnownKeys(t *testing.T) {
	names := []string{"AccessToken", "RefreshToken", "IdToken", "Account", "AppMetadata",
		"home_account_id", "environment", "realm", "credential_type", "client_id", "secret", "target",
		"expires_on", "extended_expires_on", "refresh_on", "cached_at", "token_type", "user_assertion_hash",
		"ext_cache_key", "family_id", "keyid", "local_account_id", "authority_type", "username",
		"client_info", "alternative_account_id", "name", "given_name", "middle_name", "family_name"}
	for _, n := range names {
		if got, ok := knownKey([]byte(n)); !ok || got != n {
			t.Errorf("knownKey(%q) = %q, %v", n, got, ok)
		}
	}
	for _, n := range []string{"", "Realm", "realm ", "x", `re\u0061lm`, "AccessTokens"} {
		if got, ok := knownKey([]byte(n)); ok {
			t.Errorf("knownKey(%q) = %q, want no match", n, got)
		}
	}
	d := mustDoc(t, `{"Acc\u0065ssToken":{"k":{"re\u0061lm":"r"}},"Realm":1}`)
	if len(d.sections[secAccessToken]) != 1 || d.extra["Realm"] == nil {
		t.Fatalf("escaped or unknown names: sections %v extra %v", d.sections, d.extra)
	}
	doc := []byte(`{"AccessToken":{},"RefreshToken":{},"IdToken":{},"Account":{},"AppMetadata":{}}`)
	if n := testing.AllocsPerRun(100, func() { _, _ = Parse(doc) }); n > 1 {
		t.Errorf("parsing the five sections' names allocates %v times, want only the document", n)
	}
}

func TestScannerDepthAsEncodingJSON(t *testing.T) {
	for _, n := range []int{maxDepth - 1, maxDepth, maxDepth + 1} {
		b := []byte(strings.Repeat("[", n) + strings.Repeat("]", n))
		if got, want := validJSON(b), json.Valid(b); got != want {
			t.Errorf("depth %d: scanner valid=%v, json.Valid %v", n, got, want)
		}
		doc := []byte(`{"Future":` + string(b) + `}`)
		_, err := Parse(doc)
		if _, rerr := parseDocumentReference(doc); (err == nil) != (rerr == nil) {
			t.Errorf("depth %d inside a document: parseDocument err %v, encoding/json err %v", n, err, rerr)
		}
	}
}

// BenchmarkParseDocument parses a user's cache of about 4 KiB, mostly
// token strings, as every Export does with what MSAL marshals.
//
//	go test -run '^$' -bench ParseDocument -benchmem .
func BenchmarkParseDocument(b *testing.B) {
	entry := func(kind string, n int) string {
		return `{"home_account_id":"uid.utid","environment":"login.example","credential_type":"` + kind +
			`","client_id":"c","secret":"` + strings.Repeat("7", n) + `","realm":"contoso","expires_on":"4102444800"}`
	}
	doc := []byte(`{"AccessToken":{"uid.utid-login.example-accesstoken-c-contoso-api://x":` + entry("AccessToken", 2200) +
		`},"RefreshToken":{"uid.utid-login.example-refreshtoken-c--":` + entry("RefreshToken", 700) +
		`},"IdToken":{"uid.utid-login.example-idtoken-c-contoso-":` + entry("IdToken", 600) +
		`},"Account":{"uid.utid-login.example-contoso":{"home_account_id":"uid.utid","username":"alice@contoso.example"}}` +
		`,"AppMetadata":{"appmetadata-login.example-c":{"environment":"login.example","client_id":"c"}}}`)
	b.SetBytes(int64(len(doc)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(doc); err != nil {
			b.Fatal(err)
		}
	}
}
