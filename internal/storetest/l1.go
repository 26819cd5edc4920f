package storetest

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/cache"

	"github.com/msalcache/msalcache"
)

// AppKey is the partition MSAL-Go files the app tokens of client "c" in
// tenant "t" under; AppToken, with its secret formatted in, is such a
// partition holding one token.
const (
	AppKey   = "c_t_AppTokenCache"
	AppToken = `{"AccessToken":{"at":{"client_id":"c","realm":"t","expires_on":"1900000000","secret":"%s"}}}`
)

// fakeCache stands in for MSAL's cache: what the adapter hands it on
// Replace, and what it exports.
type fakeCache struct {
	mu   sync.Mutex
	data []byte
}

func (c *fakeCache) Unmarshal(b []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.data = bytes.Clone(b)
	return nil
}

func (c *fakeCache) Marshal() ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Clone(c.data), nil
}

// NewL1Adapter returns a plaintext Adapter over s with an L1 that trusts
// what it confirmed for maxStale, closed when t ends.
func NewL1Adapter(t testing.TB, s driver.Store, maxStale time.Duration) *msalcache.Adapter {
	t.Helper()
	a, err := msalcache.New(s, msalcache.WithPlaintext(), msalcache.WithLogger(slog.New(slog.DiscardHandler)),
		msalcache.WithL1(msalcache.L1Options{MaxStale: maxStale}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

// WriteApp stores AppToken with secret through a, as MSAL's Export after a
// token request does.
func WriteApp(t testing.TB, a *msalcache.Adapter, secret string) {
	t.Helper()
	c := &fakeCache{}
	if err := a.Replace(context.Background(), c, cache.ReplaceHints{PartitionKey: AppKey}); err != nil {
		t.Fatal(err)
	}
	c.data = []byte(fmt.Sprintf(AppToken, secret))
	if err := a.Export(context.Background(), c, cache.ExportHints{PartitionKey: AppKey}); err != nil {
		t.Fatal(err)
	}
}

// ReadApp returns what a new client of a is handed for AppKey.
func ReadApp(t testing.TB, a *msalcache.Adapter) string {
	t.Helper()
	c := &fakeCache{}
	if err := a.Replace(context.Background(), c, cache.ReplaceHints{PartitionKey: AppKey}); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return string(c.data)
}

// ExactL1 checks a store that tells every Adapter in the process of each
// change before the change returns: two Adapters with an L1 over s, B
// serves from memory, and a write or a Remove through A reaches B's very
// next call (and the other way round), with MaxStale an hour away.
func ExactL1(t *testing.T, s driver.Store) {
	t.Helper()
	a, b := NewL1Adapter(t, s, time.Hour), NewL1Adapter(t, s, time.Hour)
	WriteApp(t, a, "one")
	want := fmt.Sprintf(AppToken, "one")
	for range 3 {
		if got := ReadApp(t, b); got != want {
			t.Fatalf("b read %q; want %q", got, want)
		}
	}
	if st := b.Stats(); st.L1Hits < 2 {
		t.Fatalf("b's L1 served %d of 3 reads; the test needs the L1 in play", st.L1Hits)
	}
	WriteApp(t, a, "two")
	if got, want := ReadApp(t, b), fmt.Sprintf(AppToken, "two"); got != want {
		t.Fatalf("after a wrote, b read %q; want %q", got, want)
	}
	if err := a.Remove(context.Background(), AppKey); err != nil {
		t.Fatal(err)
	}
	if got := ReadApp(t, b); got != "{}" {
		t.Fatalf("after a removed the partition, b read %q; want {}", got)
	}
	WriteApp(t, b, "three") // and the other way round
	if got, want := ReadApp(t, a), fmt.Sprintf(AppToken, "three"); got != want {
		t.Fatalf("after b wrote, a read %q; want %q", got, want)
	}
}
