package surveys

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/msalcache/msalcache/internal/testserver"
)

// person is a browser without a screen: a cookie jar, redirects followed,
// and the emulator's forms posted as a person would fill them in.
type person struct {
	t    *testing.T
	f    *Farm
	c    *http.Client
	page string   // the last page's HTML
	url  *url.URL // and its address
	code int
}

func newPerson(t *testing.T, f *Farm) *person {
	jar, _ := cookiejar.New(nil)
	return &person{t: t, f: f, c: &http.Client{Jar: jar, Timeout: 30 * time.Second}}
}

func (p *person) do(req *http.Request) {
	p.t.Helper()
	req.Header.Set("Accept", "text/html")
	resp, err := p.c.Do(req)
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	p.page, p.url, p.code = string(b), resp.Request.URL, resp.StatusCode
}

func (p *person) get(u string) {
	p.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	p.do(req)
}

func (p *person) post(u string, form url.Values) {
	p.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	p.do(req)
}

// submit posts the emulator page's form: its hidden fields are the page
// URL's query parameters.
func (p *person) submit(fields url.Values) {
	p.t.Helper()
	form := p.url.Query()
	for k, v := range fields {
		form[k] = v
	}
	u := *p.url
	u.RawQuery = ""
	p.post(u.String(), form)
}

var (
	reInstance = regexp.MustCompile(`id="instance">([^<]+)<`)
	reSource   = regexp.MustCompile(`id="token-source"[^>]*>([^<]+)<`)
	reCSRF     = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
	rePublish  = regexp.MustCompile(`action="/surveys/(\d+)/publish"`)
)

func (p *person) find(re *regexp.Regexp) string {
	p.t.Helper()
	m := re.FindStringSubmatch(p.page)
	if m == nil {
		p.t.Fatalf("no %s on the page at %s (status %d):\n%s", re, p.url, p.code, p.page)
	}
	return m[1]
}

func (p *person) onSignInPage() bool {
	return strings.HasPrefix(p.url.String(), p.f.Entra().BrowserURL()) && strings.HasSuffix(p.url.Path, "/oauth2/v2.0/authorize") &&
		strings.Contains(p.page, `<label for="username">`)
}

func (p *person) enroll(admin string) {
	p.t.Helper()
	p.get(p.f.URL() + "/enroll")
	if !strings.Contains(p.url.Path, "/v2.0/adminconsent") {
		p.t.Fatalf("enroll went to %s", p.url)
	}
	p.submit(url.Values{"entratest_username": {admin}, "entratest_consent": {"accept"}})
	if p.code != http.StatusOK || !strings.Contains(p.page, "is enrolled") {
		p.t.Fatalf("enrolling as %s: status %d at %s\n%s", admin, p.code, p.url, p.page)
	}
}

func (p *person) signIn(username string, fields url.Values) {
	p.t.Helper()
	p.get(p.f.URL() + "/surveys")
	if !p.onSignInPage() {
		p.t.Fatalf("/surveys without a session went to %s, not the sign-in page", p.url)
	}
	if fields == nil {
		fields = url.Values{}
	}
	fields.Set("entratest_username", username)
	p.submit(fields)
}

func startFarm(t *testing.T, cfg Config) *Farm {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	f, err := Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	return f
}

func TestFarmEmbeddedStore(t *testing.T) {
	var out strings.Builder
	testFarm(t, startFarm(t, Config{Out: &out}))
	if !strings.Contains(out.String(), "embedded store (bbolt)") {
		t.Errorf("start-up did not say where tokens live: %q", out.String())
	}
}

func TestFarmRedis(t *testing.T) {
	srv := testserver.Redis(t)
	var out strings.Builder
	testFarm(t, startFarm(t, Config{Out: &out, RedisURL: "redis://" + srv.Addr() + "/0", KEKFile: t.TempDir() + "/kek"}))
	if !strings.Contains(out.String(), "Redis at "+srv.Addr()) {
		t.Errorf("start-up did not say where tokens live: %q", out.String())
	}
}

// testFarm walks the scenario: enroll, sign in two users of two
// tenants, create and publish, reload across instances with no token
// request, refuse an unenrolled tenant, sign out everywhere, and a new
// instance serving a signed-in user from the cache.
func testFarm(t *testing.T, f *Farm) {
	e := f.Entra()
	e.AddUser("contoso", "erin@contoso.com", "erin-pw")
	_ = e.AssignRoles("contoso", "erin@contoso.com", APIResource, RoleCreator)

	admin := newPerson(t, f)
	admin.enroll("admin@contoso.com")
	admin.enroll("admin@fabrikam.com")

	// A person who is not an administrator cannot enroll a tenant.
	nobody := newPerson(t, f)
	nobody.get(f.URL() + "/enroll")
	nobody.submit(url.Values{"entratest_username": {"carol@northwind.com"}, "entratest_consent": {"accept"}})
	if !strings.Contains(nobody.page, "AADSTS90094") {
		t.Fatalf("a non-admin's consent: %s\n%s", nobody.url, nobody.page)
	}

	alice, bob := newPerson(t, f), newPerson(t, f)
	alice.signIn("erin@contoso.com", url.Values{"entratest_password": {"wrong"}})
	if !strings.Contains(alice.page, "AADSTS50126") {
		t.Fatalf("wrong password accepted: %s", alice.url)
	}
	alice.signIn("alice@contoso.com", nil)
	if alice.url.Path != "/surveys" || !strings.Contains(alice.page, "alice@contoso.com") {
		t.Fatalf("alice's sign-in ended at %s (status %d)\n%s", alice.url, alice.code, alice.page)
	}
	bob.signIn("bob@fabrikam.com", nil)
	if !strings.Contains(bob.page, "bob@fabrikam.com") {
		t.Fatalf("bob's sign-in ended at %s\n%s", bob.url, bob.page)
	}
	erin := newPerson(t, f)
	erin.signIn("erin@contoso.com", url.Values{"entratest_password": {"erin-pw"}})
	if !strings.Contains(erin.page, "erin@contoso.com") {
		t.Fatalf("erin's sign-in ended at %s\n%s", erin.url, erin.page)
	}

	// Create and publish a survey; fabrikam does not see contoso's drafts.
	alice.get(f.URL() + "/surveys/new")
	alice.post(f.URL()+"/surveys", url.Values{"csrf": {alice.find(reCSRF)}, "title": {"Team lunch"}, "question": {"Pizza or sushi?"}})
	if !strings.Contains(alice.page, "Team lunch") {
		t.Fatalf("survey not listed after creation: %s\n%s", alice.url, alice.page)
	}
	alice.post(f.URL()+"/surveys/"+alice.find(rePublish)+"/publish", url.Values{"csrf": {alice.find(reCSRF)}})
	if !strings.Contains(alice.page, "published") {
		t.Fatalf("not published:\n%s", alice.page)
	}
	bob.get(f.URL() + "/surveys")
	if strings.Contains(bob.page, "Team lunch") {
		t.Error("fabrikam's user sees contoso's surveys")
	}
	anon := newPerson(t, f)
	anon.get(f.URL() + "/")
	if !strings.Contains(anon.page, "Team lunch") {
		t.Error("the published survey is not on the public home page")
	}
	// A form without the session's CSRF field is refused.
	alice.post(f.URL()+"/surveys", url.Values{"title": {"forged"}})
	if alice.code != http.StatusForbidden {
		t.Errorf("a form without CSRF: status %d", alice.code)
	}

	// Reloads alternate between the instances; every token comes from the
	// shared cache.
	before := e.TokenRequests()
	served := map[*person]map[string]int{alice: {}, bob: {}}
	for i := range 8 {
		p := []*person{alice, bob}[i%2]
		for range 2 {
			p.get(f.URL() + "/surveys")
			served[p][p.find(reInstance)]++
			if src := p.find(reSource); src != "from the shared cache" {
				t.Fatalf("reload %d: API token %s", i, src)
			}
		}
	}
	if n := e.TokenRequests() - before; n != 0 {
		t.Errorf("%d token requests during the reloads, want 0", n)
	}
	for _, by := range served {
		if by["web-1"] == 0 || by["web-2"] == 0 {
			t.Errorf("reloads of one person served by %v, want both instances", by)
		}
	}

	// A user of a tenant that did not sign up is refused.
	carol := newPerson(t, f)
	carol.signIn("carol@northwind.com", nil)
	if carol.url.Path != "/not-enrolled" || !strings.Contains(carol.page, "has not signed up") {
		t.Fatalf("carol of northwind: status %d at %s\n%s", carol.code, carol.url, carol.page)
	}
	carol.get(f.URL() + "/surveys")
	if !carol.onSignInPage() {
		t.Errorf("carol got a session: %s", carol.url)
	}

	// A third instance started now serves bob from the cache.
	before = e.TokenRequests()
	name, direct, err := f.AddInstance(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	bob.get(direct + "/surveys")
	if got := bob.find(reInstance); got != name || bob.find(reSource) != "from the shared cache" {
		t.Errorf("new instance: served by %s, token %s", got, bob.find(reSource))
	}
	if n := e.TokenRequests() - before; n != 0 {
		t.Errorf("%d token requests for the new instance, want 0", n)
	}

	// Sign-out: afterwards no instance serves alice's token, even to a
	// replay of her old session cookie.
	u, _ := url.Parse(f.URL())
	old := alice.c.Jar.Cookies(u)
	alice.post(f.URL()+"/signout", url.Values{"csrf": {alice.find(reCSRF)}})
	if alice.url.Path != "/" || !strings.Contains(alice.page, "You signed out") {
		t.Fatalf("sign-out ended at %s\n%s", alice.url, alice.page)
	}
	alice.get(f.URL() + "/surveys")
	if !alice.onSignInPage() {
		t.Fatalf("after sign-out /surveys went to %s", alice.url)
	}
	f.mu.Lock()
	instances := append([]*instance(nil), f.instances...)
	f.mu.Unlock()
	for _, in := range instances {
		s, ok := f.keys.readSession(&http.Request{Header: http.Header{"Cookie": {old[0].String()}}})
		if !ok {
			t.Fatal("could not read the old session cookie")
		}
		// The other instances hear of the sign-out through the store's
		// push (Redis publishes it; bbolt tells every Adapter at once),
		// which arrives a moment later: poll, bounded well under
		// MaxStale, after which nothing may serve it anyway.
		deadline := time.Now().Add(5 * time.Second)
		for {
			if _, _, _, err := in.apiToken(context.Background(), s); err != nil {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("%s still serves alice's token 5 s after sign-out", in.name)
				break
			}
			time.Sleep(time.Millisecond)
		}
	}
	// Bob is still signed in.
	bob.get(f.URL() + "/surveys")
	if !strings.Contains(bob.page, "bob@fabrikam.com") {
		t.Errorf("bob lost his session when alice signed out: %s", bob.url)
	}
}

// A farm run first with the AES key file, then with -kek-cert (a
// self-signed certificate it creates) on the same store, opens the ring
// the first run made (the certificate is the primary, the key file the
// older KEK) and walks the whole scenario again. (Tokens stored before a
// move are served after it: conformance's MigrationFromAESKeepsTokens.)
func TestFarmMovesToCertificate(t *testing.T) {
	dir := t.TempDir()
	bolt, cert := filepath.Join(dir, "tokens.db"), filepath.Join(dir, "kek.pem")
	var out strings.Builder
	f := startFarm(t, Config{Out: &out, BoltPath: bolt})
	testFarm(t, f)
	f.Close()
	out.Reset()
	g := startFarm(t, Config{Out: &out, BoltPath: bolt, KEKCert: cert})
	if !strings.Contains(out.String(), "Created a self-signed KEK certificate") || !strings.Contains(out.String(), "certificate cert-sha256:") {
		t.Fatalf("start-up with -kek-cert: %q", out.String())
	}
	testFarm(t, g)
}

// The seed's survey management: the owner edits, deletes and invites
// contributors; a contributor (a SurveyCreator the owner named) edits but
// neither deletes nor invites; another creator and a reader do none of it;
// a SurveyAdmin does all of it. The API refuses what the pages do not
// offer, so a forged form gets nowhere.
func TestSurveyEditDeleteContributors(t *testing.T) {
	f := startFarm(t, Config{Out: io.Discard})
	e := f.Entra()
	e.AddUser("contoso", "erin@contoso.com", "")
	_ = e.AssignRoles("contoso", "erin@contoso.com", APIResource, RoleCreator)
	newPerson(t, f).enroll("admin@contoso.com")

	alice, erin, dave, admin := newPerson(t, f), newPerson(t, f), newPerson(t, f), newPerson(t, f)
	alice.signIn("alice@contoso.com", nil)
	erin.signIn("erin@contoso.com", nil)
	dave.signIn("dave@contoso.com", nil)
	admin.signIn("admin@contoso.com", nil)

	alice.post(f.URL()+"/surveys", url.Values{"csrf": {alice.find(reCSRF)}, "title": {"Offsite"}, "question": {"Where?"}})
	id := alice.find(regexp.MustCompile(`action="/surveys/(\d+)/delete"`))
	base := f.URL() + "/surveys/" + id
	edit := func(p *person, title string) {
		p.t.Helper()
		p.get(f.URL() + "/surveys")
		p.post(base, url.Values{"csrf": {p.find(reCSRF)}, "title": {title}, "question": {"Where?"}})
	}
	listed := func(p *person, title string) bool {
		p.get(f.URL() + "/surveys")
		return strings.Contains(p.page, ">"+title+"<")
	}

	// Before she is a contributor, erin is offered nothing and refused.
	erin.get(f.URL() + "/surveys")
	if strings.Contains(erin.page, base[len(f.URL()):]+"/edit") || strings.Contains(erin.page, "/delete") {
		t.Fatalf("erin is offered to edit or delete alice's survey:\n%s", erin.page)
	}
	if edit(erin, "Erin's"); erin.code != http.StatusForbidden || !listed(alice, "Offsite") {
		t.Fatalf("erin edited alice's survey before being a contributor: status %d\n%s", erin.code, erin.page)
	}
	// Alice invites erin; erin edits.
	alice.get(f.URL() + "/surveys")
	alice.post(base+"/contributors", url.Values{"csrf": {alice.find(reCSRF)}, "username": {"Erin@Contoso.com"}})
	if !strings.Contains(alice.page, `class="contributors">erin@contoso.com<`) {
		t.Fatalf("erin is not listed as a contributor:\n%s", alice.page)
	}
	erin.get(base + "/edit")
	if erin.code != http.StatusOK || !strings.Contains(erin.page, `value="Offsite"`) {
		t.Fatalf("erin's edit page: status %d\n%s", erin.code, erin.page)
	}
	if edit(erin, "Offsite 2027"); !listed(alice, "Offsite 2027") {
		t.Fatalf("erin's edit did not reach the survey:\n%s", alice.page)
	}
	// A contributor neither deletes nor invites; a reader does not edit.
	erin.get(f.URL() + "/surveys")
	erin.post(base+"/delete", url.Values{"csrf": {erin.find(reCSRF)}})
	if erin.code != http.StatusForbidden || !listed(alice, "Offsite 2027") {
		t.Fatalf("a contributor deleted the survey: status %d", erin.code)
	}
	erin.get(f.URL() + "/surveys")
	erin.post(base+"/contributors", url.Values{"csrf": {erin.find(reCSRF)}, "username": {"dave@contoso.com"}})
	if erin.code != http.StatusForbidden {
		t.Fatalf("a contributor invited another: status %d", erin.code)
	}
	if edit(dave, "Dave's"); dave.code != http.StatusForbidden || !listed(alice, "Offsite 2027") {
		t.Fatalf("a SurveyReader edited the survey: status %d", dave.code)
	}
	// A SurveyAdmin edits any survey of the tenant; the owner deletes.
	if edit(admin, "Offsite 2028"); !listed(alice, "Offsite 2028") {
		t.Fatalf("the SurveyAdmin could not edit:\n%s", admin.page)
	}
	alice.get(f.URL() + "/surveys")
	alice.post(base+"/delete", url.Values{"csrf": {alice.find(reCSRF)}})
	if alice.code != http.StatusOK || listed(alice, "Offsite 2028") {
		t.Fatalf("the owner's delete: status %d\n%s", alice.code, alice.page)
	}
	// A forged form without the CSRF token is refused.
	alice.post(f.URL()+"/surveys", url.Values{"csrf": {alice.find(reCSRF)}, "title": {"Keep"}})
	id = alice.find(regexp.MustCompile(`action="/surveys/(\d+)/delete"`))
	alice.post(f.URL()+"/surveys/"+id+"/delete", url.Values{"csrf": {"forged"}})
	if !listed(alice, "Keep") {
		t.Fatal("a delete without the session's CSRF token went through")
	}
}
