package record

import (
	"bytes"
	"testing"

	"github.com/msalcache/msalcache"
)

func TestRoundTrip(t *testing.T) {
	for _, value := range [][]byte{nil, {}, []byte("token cache"), bytes.Repeat([]byte{0}, 4096)} {
		rec := Encode(42, value)
		got, v, ok := Decode(rec)
		if !ok || v != 42 || !bytes.Equal(got, value) {
			t.Fatalf("Decode(Encode(42, %q)) = %q, %d, %v", value, got, v, ok)
		}
	}
	for _, bad := range [][]byte{nil, []byte("short"), make([]byte, HeaderSize)} {
		if _, _, ok := Decode(bad); ok {
			t.Errorf("Decode(%x) accepted a record no store writes", bad)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(Encode(1, []byte(`{"AccessToken":{}}`)))
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0, 'x'})
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, rec []byte) {
		value, v, ok := Decode(rec)
		if !ok {
			return
		}
		if v == msalcache.NoVersion || !bytes.Equal(Encode(v, value), rec) {
			t.Fatalf("Decode(%x) = %x, %d does not encode back", rec, value, v)
		}
		if cap(value) != len(value) {
			t.Fatal("the value's capacity reaches past the record: appending to it would write into memory the caller does not own")
		}
	})
}
