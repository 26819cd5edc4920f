package record

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/msalcache/msalcache"
)

func TestRoundTrip(t *testing.T) {
	for _, value := range [][]byte{nil, {}, []byte("token cache"), bytes.Repeat([]byte{0}, 4096)} {
		rec := Encode(42, value)
		got, v, err := Decode(rec)
		if err != nil || v != 42 || !bytes.Equal(got, value) {
			t.Fatalf("Decode(Encode(42, %q)) = %q, %d, %v", value, got, v, err)
		}
	}
}

// TestDecodeRejects checks every record no store writes: it must fail with
// ErrCorrupt (so that a Load reports it and a create replaces it), and the
// error must not quote the record's bytes.
func TestDecodeRejects(t *testing.T) {
	for _, bad := range [][]byte{nil, {}, []byte("a"), []byte("abc"), []byte("secret!"),
		make([]byte, HeaderSize), append(make([]byte, HeaderSize), "secret token"...)} {
		value, v, err := Decode(bad)
		if !errors.Is(err, driver.ErrCorrupt) {
			t.Errorf("Decode(%x) = %q, %d, %v; want an error wrapping ErrCorrupt", bad, value, v, err)
			continue
		}
		if v != driver.NoVersion || value != nil {
			t.Errorf("Decode(%x) failed but returned %q, version %d", bad, value, v)
		}
		if strings.Contains(err.Error(), "secret") {
			t.Errorf("Decode's error %q quotes the record", err)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(Encode(1, []byte(`{"AccessToken":{}}`)))
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0, 'x'})
	f.Add([]byte{1})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, rec []byte) {
		value, v, err := Decode(rec)
		if err != nil {
			if !errors.Is(err, driver.ErrCorrupt) || v != driver.NoVersion || value != nil {
				t.Fatalf("Decode(%x) = %x, %d, %v: a failure must wrap ErrCorrupt and return nothing else", rec, value, v, err)
			}
			if len(rec) >= 4 && strings.Contains(err.Error(), string(rec)) {
				t.Fatalf("Decode's error %q quotes the record", err)
			}
			return
		}
		if v == driver.NoVersion || !bytes.Equal(Encode(v, value), rec) {
			t.Fatalf("Decode(%x) = %x, %d does not encode back", rec, value, v)
		}
		if cap(value) != len(value) {
			t.Fatal("the value's capacity reaches past the record: appending to it would write into memory the caller does not own")
		}
	})
}
