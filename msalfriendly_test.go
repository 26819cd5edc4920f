package msalcache

import (
	"bytes"
	"encoding/json"
	"testing"
)

// msalFriendly changes only whitespace: the JSON means the same, and what
// is not JSON comes back as it was or still fails to parse.
func FuzzMSALFriendly(f *testing.F) {
	for _, s := range []string{
		`{"AccessToken":{"k":{"secret":"a\\"b","n":12,"t":true}},"Account":{}}`,
		`{"a":[1,"x",null,{"b":"c\\\\"}],"d":-1.5e3}`,
		`{}`, ``, `"`, `{"a":"\\`, `[1,2]`, `{"a" :"b" }`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		orig := bytes.Clone(b)
		out := msalFriendly(b)
		if !bytes.Equal(b, orig) {
			t.Fatal("msalFriendly modified its input")
		}
		if !json.Valid(b) {
			if json.Valid(out) {
				t.Fatalf("invalid input %q became valid %q", b, out)
			}
			return
		}
		var x, y any
		if err := json.Unmarshal(b, &x); err != nil {
			return // valid JSON Go cannot hold (a huge number)
		}
		if err := json.Unmarshal(out, &y); err != nil {
			t.Fatalf("%q became invalid %q: %v", b, out, err)
		}
		xb, _ := json.Marshal(x)
		yb, _ := json.Marshal(y)
		if !bytes.Equal(xb, yb) {
			t.Fatalf("%q means something else as %q", b, out)
		}
		if len(bytes.Fields(out)) > 0 && !bytes.Equal(bytes.Join(bytes.Fields(out), nil), bytes.Join(bytes.Fields(b), nil)) {
			// Only spaces are added, outside strings; this checks that no
			// other byte changed.
			t.Fatalf("%q -> %q changed more than spaces", b, out)
		}
	})
}
