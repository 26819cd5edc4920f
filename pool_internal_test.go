package msalcache

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"

	"github.com/msalcache/msalcache/entratest"
)

// fakeClock is a clock a test moves by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func withClock(c *fakeClock) Option {
	return func(cfg *config) error { cfg.now = c.Now; return nil }
}

// An on-behalf-of token is stored for as long as MSAL would serve it, and
// served from the store only while MSAL would: never within MSAL's
// five-minute refresh margin, never after its refresh time.
func TestOBORecordLifetime(t *testing.T) {
	clock := &fakeClock{now: time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)}
	s := newMapStore()
	a := newTestAdapter(t, s, withClock(clock))
	const key = "tc/default/obo.k"
	ar := confidential.AuthResult{AccessToken: "at", ExpiresOn: clock.Now().Add(time.Hour), GrantedScopes: []string{"s"}}
	a.saveOBO(context.Background(), key, driver.NoVersion, &ar)
	if got := s.ttl[key]; got != 55*time.Minute {
		t.Errorf("TTL %v, want 55m (the token's life less MSAL's margin)", got)
	}
	if got, _, ok := a.loadOBO(context.Background(), key); !ok || got.AccessToken != "at" || got.Metadata.TokenSource != confidential.TokenSourceCache {
		t.Fatalf("loadOBO: %+v, %v", got, ok)
	}
	clock.Add(55*time.Minute + time.Second)
	if _, _, ok := a.loadOBO(context.Background(), key); ok {
		t.Error("served within MSAL's refresh margin")
	}

	// A refresh time shortens both.
	ar.ExpiresOn = clock.Now().Add(time.Hour)
	ar.Metadata.RefreshOn = clock.Now().Add(30 * time.Minute)
	_, v, _ := a.loadOBO(context.Background(), key)
	a.saveOBO(context.Background(), key, v, &ar)
	if got := s.ttl[key]; got != 30*time.Minute {
		t.Errorf("TTL %v, want 30m (until the refresh time)", got)
	}
	clock.Add(31 * time.Minute)
	if _, _, ok := a.loadOBO(context.Background(), key); ok {
		t.Error("served after its refresh time")
	}

	// Too close to expiry: not stored at all.
	const short = "tc/default/obo.short"
	ar = confidential.AuthResult{AccessToken: "at", ExpiresOn: clock.Now().Add(4 * time.Minute)}
	a.saveOBO(context.Background(), short, driver.NoVersion, &ar)
	if _, ok := s.data[short]; ok {
		t.Error("a token within MSAL's margin was stored")
	}
}

// countingHandler counts the records logged at warning level whose message
// contains what.
type countingHandler struct {
	slog.Handler
	what string
	n    *atomic.Int64
}

func (countingHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h countingHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level == slog.LevelWarn && contains(r.Message, h.what) {
		h.n.Add(1)
	}
	return nil
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

// One plain MSAL client shared by more users in flight than the Adapter
// lends between them: each such load is counted (Stats.LendingOverflows,
// an Event with ReasonLendingOverflow), and one warning naming ClientPool
// is logged, not one per call.
func TestLendingOverflowCountedAndWarnedOnce(t *testing.T) {
	entra := entratest.NewServer()
	t.Cleanup(entra.Close)
	// A clock that stands still: every partition stays within the lending
	// window, as it does when many users' calls overlap.
	clock := &fakeClock{now: time.Now()}
	var warnings atomic.Int64
	var overflowEvents atomic.Int64
	logger := slog.New(countingHandler{Handler: slog.DiscardHandler, what: "ClientPool", n: &warnings})
	a, err := New(newMapStore(), WithPlaintext(), WithLogger(logger), withClock(clock),
		WithObserver(observe.Func(func(_ context.Context, e observe.Event) {
			if e.Reason == observe.ReasonLendingOverflow {
				overflowEvents.Add(1)
			}
		})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	cred, _ := confidential.NewCredFromSecret("secret")
	c, err := confidential.New(entra.Authority("contoso"), "web-app", cred,
		confidential.WithCache(a), confidential.WithHTTPClient(entra.Client()), confidential.WithInstanceDiscovery(false))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	n := a.cfg.maxLent + 6
	for i := range n {
		u := entra.AddUser("contoso", fmt.Sprintf("u%d@contoso.example", i), "")
		if _, err := c.AcquireTokenByAuthCode(ctx, entra.AuthCode("contoso", u.Username), "https://app/cb", []string{"api://x/read"}); err != nil {
			t.Fatal(err)
		}
	}
	s := a.Stats()
	if s.LendingOverflows == 0 {
		t.Fatalf("%d users in one shared client within the lending window: no overflow counted", n)
	}
	if got := overflowEvents.Load(); got != int64(s.LendingOverflows) {
		t.Errorf("%d overflow events, Stats says %d", got, s.LendingOverflows)
	}
	if got := warnings.Load(); got != 1 {
		t.Errorf("%d warnings naming ClientPool, want exactly 1", got)
	}
}
