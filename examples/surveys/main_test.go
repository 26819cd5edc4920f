package main

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/msalcache/msalcache/entratest"
	"github.com/msalcache/msalcache/examples/internal/exampletest"
	"github.com/msalcache/msalcache/examples/surveys/internal/surveys"
)

// cancelOnURL stops the program once it printed the URL to open.
type cancelOnURL struct {
	mu     sync.Mutex
	b      strings.Builder
	cancel context.CancelFunc
}

func (w *cancelOnURL) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.b.Write(p)
	if strings.Contains(w.b.String(), "\nOpen http://127.0.0.1:") {
		w.cancel()
	}
	return len(p), nil
}

// go run ./examples/surveys says where tokens live and prints one URL.
func TestRunPrintsURL(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out := &cancelOnURL{cancel: cancel}
	if err := run(ctx, out, surveys.Config{Addr: "127.0.0.1:0"}); err != nil {
		t.Fatal(err)
	}
	got := out.b.String()
	for _, want := range []string{"Tokens: embedded store (bbolt) at ", "\nOpen http://127.0.0.1:"} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	if ctx.Err() == context.DeadlineExceeded {
		t.Error("run did not print the URL in time")
	}
}

// visitor is a browser without a screen, enough to enroll, sign in and
// reload: a cookie jar, redirects followed, the emulator's forms posted
// with their hidden fields (the page URL's query) and what a person types.
type visitor struct {
	t    *testing.T
	c    *http.Client
	page string
	url  *url.URL
}

func (v *visitor) do(method, u string, form url.Values) {
	v.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		v.t.Fatal(err)
	}
	req.Header.Set("Accept", "text/html")
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := v.c.Do(req)
	if err != nil {
		v.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	v.page, v.url = string(b), resp.Request.URL
	if resp.StatusCode != http.StatusOK {
		v.t.Fatalf("%s %s: status %d at %s\n%s", method, u, resp.StatusCode, v.url, v.page)
	}
}

// submit answers the emulator's page (consent or sign-in) with fields.
func (v *visitor) submit(fields url.Values) {
	v.t.Helper()
	form := v.url.Query()
	for k, f := range fields {
		form[k] = f
	}
	u := *v.url
	u.RawQuery = ""
	v.do(http.MethodPost, u.String(), form)
}

var (
	reOpen       = regexp.MustCompile(`\nOpen (http://127\.0\.0\.1:\d+)\n`)
	reMetricsURL = regexp.MustCompile(`\nMetrics \(Prometheus\): (http://127\.0\.0\.1:\d+/metrics)\n`)
	reSource     = regexp.MustCompile(`id="token-source"[^>]*>([^<]+)<`)
)

// The printed /metrics counts the Replace calls the shared cache served,
// more with each page reload, and names no user, tenant, account or
// secret.
func TestRunServesMetrics(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := exampletest.NewWatchWriter("Ctrl-C stops.\n")
	done := make(chan error, 1)
	go func() { done <- run(ctx, out, surveys.Config{Addr: "127.0.0.1:0"}) }()
	select {
	case <-out.Seen:
	case err := <-done:
		t.Fatalf("run returned before printing the URL: %v\n%s", err, out)
	case <-time.After(time.Minute):
		t.Fatalf("run did not print the URL within a minute:\n%s", out)
	}
	printed := out.String()
	front, mu := reOpen.FindStringSubmatch(printed), reMetricsURL.FindStringSubmatch(printed)
	if front == nil || mu == nil {
		t.Fatalf("the output does not say where the app and /metrics are:\n%s", printed)
	}
	if strings.HasPrefix(mu[1], front[1]+"/") {
		t.Errorf("/metrics is on the app's address %s", front[1])
	}

	jar, _ := cookiejar.New(nil)
	v := &visitor{t: t, c: &http.Client{Jar: jar, Timeout: 30 * time.Second}}
	v.do(http.MethodGet, front[1]+"/enroll", nil)
	v.submit(url.Values{"entratest_username": {"admin@contoso.com"}, "entratest_consent": {"accept"}})
	if !strings.Contains(v.page, "is enrolled") {
		t.Fatalf("enrolling contoso ended at %s:\n%s", v.url, v.page)
	}
	v.do(http.MethodGet, front[1]+"/surveys", nil)
	v.submit(url.Values{"entratest_username": {"alice@contoso.com"}})
	if v.url.Path != "/surveys" || !strings.Contains(v.page, "alice@contoso.com") {
		t.Fatalf("alice's sign-in ended at %s:\n%s", v.url, v.page)
	}
	reload := func(n int) {
		t.Helper()
		for range n {
			v.do(http.MethodGet, front[1]+"/surveys", nil)
			if m := reSource.FindStringSubmatch(v.page); m == nil || m[1] != "from the shared cache" {
				t.Fatalf("reload: API token %q, want from the shared cache", m)
			}
		}
	}
	reload(2) // both instances hold alice's tokens now

	first := exampletest.Get(t, mu[1])
	for _, want := range []string{
		"# TYPE msalcache_operations_total counter",
		"# TYPE msalcache_operation_duration_seconds histogram",
		`service_instance_id="web-1"`, `service_instance_id="web-2"`, // the gauges, one per Adapter
		`db_system_name="bbolt"`,
	} {
		if !strings.Contains(first, want) {
			t.Errorf("/metrics lacks %s:\n%s", want, first)
		}
	}
	hits1, all1 := exampletest.ReplaceHits(t, first)
	if hits1 == 0 {
		t.Fatalf("no replace hit counted after two reloads:\n%s", first)
	}
	const more = 6
	reload(more)
	second := exampletest.Get(t, mu[1])
	hits2, all2 := exampletest.ReplaceHits(t, second)
	// Each page reads the cache at least once, and finds the token.
	if hits2-hits1 < more || all2-all1 < more {
		t.Errorf("%d reloads: replace hits %v -> %v, all %v -> %v", more, hits1, hits2, all1, all2)
	}

	// The user's partition key is her HomeAccountID, which the emulator
	// derives from tenant and name alone.
	alice := entratest.NewServer()
	defer alice.Close()
	u := alice.AddUser("contoso", "alice@contoso.com", "")
	secrets := []string{"alice", "contoso", u.ObjectID, u.HomeAccountID, surveys.ClientID, "surveys-web-secret", surveys.APIScope}
	fu, _ := url.Parse(front[1])
	for _, c := range jar.Cookies(fu) {
		secrets = append(secrets, c.Value)
	}
	for _, s := range secrets {
		if strings.Contains(strings.ToLower(second), strings.ToLower(s)) {
			t.Errorf("/metrics contains %q", s)
		}
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run after Ctrl-C: %v", err)
	}
}
