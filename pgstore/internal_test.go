package pgstore

import (
	"strings"
	"testing"

	"github.com/msalcache/msalcache"
)

func TestChangeMessageRoundTrip(t *testing.T) {
	for _, c := range []driver.Change{
		{Kind: driver.ChangeKey, Key: "tc/abc", Version: 1},
		{Kind: driver.ChangeKey, Key: "a b", Version: ^driver.Version(0)},
		{Kind: driver.ChangeKey, Key: "k", Version: driver.NoVersion},
	} {
		got, ok := parseChange(changeMessage(c.Key, c.Version))
		if !ok || got != c {
			t.Errorf("parseChange(changeMessage(%q, %x)) = %+v, %v", c.Key, c.Version, got, ok)
		}
	}
}

// FuzzParseChange: no payload panics, and what parses prints back as
// itself (so a key cannot be mistaken for another).
func FuzzParseChange(f *testing.F) {
	for _, s := range []string{"k 1", "tc/x ffffffffffffffff", " 1", "k ", "k 1ffffffffffffffff", "k zz", "a b c 0", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, msg string) {
		ch, ok := parseChange(msg)
		if !ok {
			return
		}
		if ch.Key == "" || ch.Kind != driver.ChangeKey {
			t.Fatalf("parseChange(%q) = %+v", msg, ch)
		}
		if back := changeMessage(ch.Key, ch.Version); !strings.EqualFold(strings.TrimLeft(back[len(ch.Key)+1:], "0"), strings.TrimLeft(msg[len(ch.Key)+1:], "0")) {
			t.Fatalf("parseChange(%q) = %+v, which prints as %q", msg, ch, back)
		}
	})
}

func TestSchemaNamesTheTable(t *testing.T) {
	s := schema("tokens", true)
	for _, want := range []string{`CREATE UNLOGGED TABLE IF NOT EXISTS "tokens"`, `"tokens_expires_at"`, `COLLATE "C"`} {
		if !strings.Contains(s, want) {
			t.Errorf("schema lacks %q:\n%s", want, s)
		}
	}
}
