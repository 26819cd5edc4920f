// Package browsertest signs into examples/surveys with a real headless
// Chromium. It is a module of its own so that chromedp never enters the
// main module's go.mod.
package browsertest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/msalcache/msalcache/examples/surveys/internal/surveys"
)

// chromium returns the browser to drive, or skips (fails with
// MSALCACHE_REQUIRE_BROWSER=1) when there is none.
func chromium(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	const how = "no Chromium on $PATH: install it with `apt-get install chromium` (Debian) to run the browser test"
	if os.Getenv("MSALCACHE_REQUIRE_BROWSER") == "1" {
		t.Fatal(how + " (MSALCACHE_REQUIRE_BROWSER=1)")
	}
	t.Skip(how)
	return ""
}

// tab is one person's browser window, with a cookie jar of its own.
type tab struct {
	t    *testing.T
	name string
	ctx  context.Context
	shot func(ctx context.Context, label string)
}

// browser records every console error and uncaught exception of its tabs.
type browser struct {
	t      *testing.T
	root   context.Context
	shots  string
	mu     sync.Mutex
	errors []string
	n      int
}

func (b *browser) tab(name string) *tab {
	ctx, cancel := chromedp.NewContext(b.root, chromedp.WithNewBrowserContext())
	b.t.Cleanup(cancel)
	msgs := chromedp.Console(ctx)
	go func() {
		for m, err := range msgs {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.IsException() {
				b.mu.Lock()
				where, _, _ := strings.Cut(m.URL, "?") // no codes or state in the log
				b.errors = append(b.errors, fmt.Sprintf("%s: %s (%s)", name, m, where))
				b.mu.Unlock()
			}
		}
	}()
	return &tab{t: b.t, name: name, ctx: ctx, shot: b.screenshot}
}

func (b *browser) screenshot(ctx context.Context, label string) {
	b.t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", label, err)
	}
	b.mu.Lock()
	b.n++
	file := filepath.Join(b.shots, fmt.Sprintf("%02d-%s.png", b.n, label))
	b.mu.Unlock()
	if err := os.WriteFile(file, png, 0o600); err != nil {
		b.t.Fatal(err)
	}
}

func (b *browser) checkConsole() {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, e := range b.errors {
		b.t.Errorf("console error: %s", e)
	}
	b.errors = nil
}

func (tb *tab) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		loc, _ := chromedp.Run(tb.ctx, chromedp.Location())
		body, _ := chromedp.Run(tb.ctx, chromedp.Text(chromedp.CSS("body")))
		tb.t.Fatalf("%s, %s: %v\nat %s:\n%s", tb.name, what, err, loc, body)
	}
}

func (tb *tab) text(sel string) string {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 20*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		tb.t.Fatalf("%s: text of %s: %v", tb.name, sel, err)
	}
	return strings.TrimSpace(s)
}

func (tb *tab) location() string {
	tb.t.Helper()
	loc, err := chromedp.Run(tb.ctx, chromedp.Location())
	if err != nil {
		tb.t.Fatal(err)
	}
	return loc
}

// pick signs in on the emulator's sign-in page by picking the account.
func pick(username string) chromedp.Action[chromedp.Void] {
	return chromedp.Click(chromedp.CSS(`button[value="` + username + `"]`))
}

func TestBrowser(t *testing.T) {
	exe := chromium(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	farm, err := surveys.Start(ctx, surveys.Config{Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(farm.Close)
	e := farm.Entra()
	e.AddUser("fabrikam", "frank@fabrikam.com", "frank-pw")
	if err := e.AssignRoles("fabrikam", "frank@fabrikam.com", surveys.APIResource, surveys.RoleCreator); err != nil {
		t.Fatal(err)
	}

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(900, 1000))
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelAlloc()
	root, cancelRoot := chromedp.NewContext(allocCtx)
	defer cancelRoot()
	if err := chromedp.Do(root); err != nil { // starts the browser
		t.Fatalf("start %s: %v", exe, err)
	}
	b := &browser{t: t, root: root, shots: t.TempDir()}
	if dir := os.Getenv("SURVEYS_SCREENSHOTS"); dir != "" {
		b.shots = dir
	}
	t.Logf("screenshots in %s", b.shots)
	defer b.checkConsole()
	url := farm.URL()

	// An administrator of contoso and one of fabrikam enroll their
	// organizations on the admin-consent page.
	admin := b.tab("admin")
	for _, who := range []string{"admin@contoso.com", "admin@fabrikam.com"} {
		admin.do("enroll as "+who,
			chromedp.Navigate(url+"/"),
			chromedp.Click(chromedp.CSS(`a[href="/enroll"]`)),
			chromedp.WaitVisible(chromedp.CSS(`button[value="accept"]`)),
			chromedp.SendKeys(chromedp.CSS("#username"), who),
		)
		if who == "admin@contoso.com" {
			admin.shot(admin.ctx, "admin-consent")
			if page := admin.text("body"); !strings.Contains(page, "Tailspin Surveys") {
				t.Fatalf("the consent page does not name the app by its display name:\n%s", page)
			}
		}
		admin.do("accept", chromedp.Click(chromedp.CSS(`button[value="accept"]`)), chromedp.WaitVisible(chromedp.CSS("#message")))
		if msg := admin.text("#message"); !strings.Contains(msg, "is enrolled") {
			t.Fatalf("enroll as %s: %q", who, msg)
		}
	}

	// alice (contoso) picks her account; frank (fabrikam) types his name
	// and password.
	alice := b.tab("alice")
	alice.do("sign in",
		chromedp.Navigate(url+"/surveys"),
		chromedp.WaitVisible(chromedp.CSS(`button[value="alice@contoso.com"]`)),
	)
	alice.shot(alice.ctx, "sign-in-page")
	alice.do("pick alice", pick("alice@contoso.com"), chromedp.WaitVisible(chromedp.CSS("#user")))
	if u := alice.text("#user"); u != "alice@contoso.com" {
		t.Fatalf("alice signed in as %q", u)
	}
	// The signed-in header holds on one line at this window's width: the
	// brand, the links and the sign-out button share a row.
	spread, err := chromedp.Run(alice.ctx, chromedp.Evaluate[float64](`(() => {
		const tops = [...document.querySelectorAll("header .brand, header nav > *")].map(e => e.getBoundingClientRect().top + e.getBoundingClientRect().height / 2);
		return Math.max(...tops) - Math.min(...tops);
	})()`))
	if err != nil {
		t.Fatalf("measure the header: %v", err)
	}
	if spread > 8 {
		alice.shot(alice.ctx, "header-wraps")
		t.Fatalf("the signed-in header wraps: its items' middles are %.0f px apart", spread)
	}
	frank := b.tab("frank")
	frank.do("sign in",
		chromedp.Navigate(url+"/surveys"),
		chromedp.WaitVisible(chromedp.CSS("#password")),
		chromedp.SendKeys(chromedp.CSS("#username"), "frank@fabrikam.com"),
		chromedp.SendKeys(chromedp.CSS("#password"), "frank-pw"),
		chromedp.Submit(chromedp.CSS("#password")),
		chromedp.WaitVisible(chromedp.CSS("#user")),
	)
	if u := frank.text("#user"); u != "frank@fabrikam.com" {
		t.Fatalf("frank signed in as %q", u)
	}

	// alice creates and publishes a survey.
	alice.do("create a survey",
		chromedp.Click(chromedp.CSS(`nav a[href="/surveys/new"]`)),
		chromedp.WaitVisible(chromedp.CSS("#title")),
		chromedp.SendKeys(chromedp.CSS("#title"), "Team lunch"),
		chromedp.SendKeys(chromedp.CSS("#question"), "Pizza or sushi?"),
		chromedp.Click(chromedp.CSS(`main button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(`button[aria-label="Publish Team lunch"]`)),
		chromedp.Click(chromedp.CSS(`button[aria-label="Publish Team lunch"]`)),
		chromedp.WaitNotPresent(chromedp.CSS(`button[aria-label="Publish Team lunch"]`)),
	)
	if s := alice.text("#surveys"); !strings.Contains(s, "Team lunch") || !strings.Contains(s, "published") {
		t.Fatalf("alice's surveys: %q", s)
	}
	alice.shot(alice.ctx, "surveys")

	// alice edits the survey, invites a contributor, and deletes a draft.
	alice.do("edit a survey",
		chromedp.Click(chromedp.CSS(`a[aria-label="Edit Team lunch"]`)),
		chromedp.WaitVisible(chromedp.CSS("#title")),
		chromedp.SetValue(chromedp.CSS("#title"), "Team lunch (Friday)"),
		chromedp.Click(chromedp.CSS(`main button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(`a[aria-label="Edit Team lunch (Friday)"]`)),
	)
	alice.do("add a contributor",
		chromedp.SendKeys(chromedp.CSS(`input[name="username"]`), "admin@contoso.com"),
		chromedp.Submit(chromedp.CSS(`input[name="username"]`)),
		chromedp.WaitVisible(chromedp.CSS(".contributors")),
	)
	if c := alice.text(".contributors"); c != "admin@contoso.com" {
		t.Fatalf("contributors after the invitation: %q", c)
	}
	alice.do("create and delete a draft",
		chromedp.Click(chromedp.CSS(`nav a[href="/surveys/new"]`)),
		chromedp.WaitVisible(chromedp.CSS("#title")),
		chromedp.SendKeys(chromedp.CSS("#title"), "Scratch"),
		chromedp.Click(chromedp.CSS(`main button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(`button[aria-label="Delete Scratch"]`)),
		chromedp.Click(chromedp.CSS(`button[aria-label="Delete Scratch"]`)),
		chromedp.WaitNotPresent(chromedp.CSS(`button[aria-label="Delete Scratch"]`)),
	)
	if s := alice.text("#surveys"); !strings.Contains(s, "Team lunch (Friday)") || strings.Contains(s, "Scratch") {
		t.Fatalf("alice's surveys after edit and delete: %q", s)
	}
	alice.shot(alice.ctx, "surveys-managed")

	// Reloads alternate between the instances; none asks the token
	// endpoint.
	before := e.TokenRequests()
	var seq []string
	seen := map[string]map[string]bool{"alice": {}, "frank": {}}
	for i := range 8 {
		p := []*tab{alice, frank}[i/2%2] // two reloads each, in turn
		p.do("reload", chromedp.Navigate(url+"/surveys"), chromedp.WaitVisible(chromedp.CSS("#instance")))
		inst, src := p.text("#instance"), p.text("#token-source")
		seq = append(seq, p.name+"@"+inst)
		seen[p.name][inst] = true
		if src != "from the shared cache" {
			t.Errorf("reload %d (%s on %s): API token %s", i, p.name, inst, src)
		}
	}
	if n := e.TokenRequests() - before; n != 0 {
		t.Errorf("%d token requests during the reloads, want 0", n)
	}
	for who, by := range seen {
		if !by["web-1"] || !by["web-2"] {
			t.Errorf("%s's reloads were not served by both instances: %v", who, seq)
		}
	}
	t.Logf("reloads: %v", seq)
	frank.shot(frank.ctx, "reload-from-cache")

	// carol's organization, northwind, did not enroll: she is refused.
	carol := b.tab("carol")
	carol.do("sign in",
		chromedp.Navigate(url+"/surveys"),
		pick("carol@northwind.com"),
		chromedp.WaitVisible(chromedp.CSS("#message")),
	)
	if msg := carol.text("#message"); !strings.Contains(msg, "not enrolled") {
		t.Errorf("carol: %q", msg)
	}
	carol.shot(carol.ctx, "refused")

	// alice signs out; the next API page needs a sign-in again.
	alice.do("sign out",
		chromedp.Click(chromedp.CSS(`form[action="/signout"] button`)),
		chromedp.WaitVisible(chromedp.CSS("#message")),
	)
	if msg := alice.text("#message"); !strings.Contains(msg, "You signed out") {
		t.Errorf("after sign-out: %q", msg)
	}
	alice.do("API page after sign-out", chromedp.Navigate(url+"/surveys"), chromedp.WaitVisible(chromedp.CSS(`button[value="alice@contoso.com"]`)))
	if loc := alice.location(); !strings.HasPrefix(loc, e.BrowserURL()) || !strings.Contains(loc, "/oauth2/v2.0/authorize") {
		t.Errorf("after sign-out /surveys went to %s, not the sign-in page", loc)
	}
	alice.shot(alice.ctx, "signed-out-needs-sign-in")

	// A third instance, started now, serves frank from the cache.
	before = e.TokenRequests()
	name, direct, err := farm.AddInstance(ctx)
	if err != nil {
		t.Fatal(err)
	}
	frank.do("new instance", chromedp.Navigate(direct+"/surveys"), chromedp.WaitVisible(chromedp.CSS("#instance")))
	if inst, src := frank.text("#instance"), frank.text("#token-source"); inst != name || src != "from the shared cache" {
		t.Errorf("new instance: served by %s, API token %s", inst, src)
	}
	if n := e.TokenRequests() - before; n != 0 {
		t.Errorf("%d token requests for the new instance, want 0", n)
	}
	frank.shot(frank.ctx, "third-instance")
}
