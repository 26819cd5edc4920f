package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"
	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/boltstore"
	"github.com/msalcache/msalcache/entratest"
	"github.com/msalcache/msalcache/protect"
)

// The tests build the binary once and run it as an operator would, on
// data written by real MSAL-Go clients through the adapter.

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "msalcache-cli-")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "msalcache")
	if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

const (
	tenant       = "contoso"
	clientID     = "cli-test-app"
	clientSecret = "cli-test-client-secret-0123456789"
	redirect     = "https://cli.example/callback"
	userScope    = "api://orders/read"
	appScope     = "api://backend/.default"
	kekID        = "kek-cli"
)

// farm is the data the tests run the binary on.
type farm struct {
	t       *testing.T
	srv     *entratest.Server
	kekFile string
	users   []entratest.User
	secrets []string // every token value the cache holds, and the client secret
}

func newFarm(t *testing.T, store driver.Store, nusers int) *farm {
	t.Helper()
	f := &farm{t: t, srv: entratest.NewServer(), kekFile: filepath.Join(t.TempDir(), "kek")}
	t.Cleanup(f.srv.Close)
	if err := protect.GenerateKeyFile(f.kekFile); err != nil {
		t.Fatal(err)
	}
	for i := range nusers {
		f.users = append(f.users, f.srv.AddUser(tenant, fmt.Sprintf("user%d@contoso.example", i), "pw"))
	}
	ctx := context.Background()
	ring := f.ring(store)
	defer ring.Close()
	ad := f.adapter(store, ring)
	defer ad.Close()
	c := f.client(ad)
	for _, u := range f.users {
		ar, err := c.AcquireTokenByAuthCode(ctx, f.srv.AuthCode(tenant, u.Username), redirect, []string{userScope})
		if err != nil {
			t.Fatal(err)
		}
		f.secrets = append(f.secrets, ar.AccessToken, ar.IDToken.RawToken)
	}
	ar, err := c.AcquireTokenByCredential(ctx, []string{appScope})
	if err != nil {
		t.Fatal(err)
	}
	f.secrets = append(f.secrets, ar.AccessToken, clientSecret)
	// Refresh tokens, as stored: read them back through the ring.
	l := store.(driver.Lister)
	err = l.List(ctx, "tc/", func(k string) error {
		b, _, err := store.Load(ctx, k)
		if err != nil {
			return err
		}
		plain, err := ring.Unprotect(ctx, b, []byte(k))
		if err != nil {
			return err
		}
		var doc map[string]map[string]struct {
			Secret string `json:"secret"`
		}
		if err := json.Unmarshal(plain, &doc); err != nil {
			return err
		}
		for _, sec := range doc {
			for _, e := range sec {
				if e.Secret != "" {
					f.secrets = append(f.secrets, e.Secret)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *farm) ring(store driver.Store) *protect.KeyRing {
	f.t.Helper()
	key, err := protect.LoadKeyFile(f.kekFile)
	if err != nil {
		f.t.Fatal(err)
	}
	w, err := protect.NewAESKeyWrapper(kekID, key)
	if err != nil {
		f.t.Fatal(err)
	}
	r, err := protect.NewKeyRing(context.Background(), store, w, protect.WithAutoRefresh(false))
	if err != nil {
		f.t.Fatal(err)
	}
	return r
}

func (f *farm) adapter(store driver.Store, ring *protect.KeyRing) *msalcache.Adapter {
	f.t.Helper()
	ad, err := msalcache.New(store, msalcache.WithProtector(ring))
	if err != nil {
		f.t.Fatal(err)
	}
	return ad
}

func (f *farm) client(ad *msalcache.Adapter) confidential.Client {
	f.t.Helper()
	cred, err := confidential.NewCredFromSecret(clientSecret)
	if err != nil {
		f.t.Fatal(err)
	}
	c, err := confidential.New(f.srv.Authority(tenant), clientID, cred, confidential.WithCache(ad),
		confidential.WithHTTPClient(f.srv.Client()), confidential.WithInstanceDiscovery(false))
	if err != nil {
		f.t.Fatal(err)
	}
	return c
}

// serveAll checks that every user and the app are served from store with
// no token request.
func (f *farm) serveAll(store driver.Store) {
	f.t.Helper()
	ctx := context.Background()
	ring := f.ring(store)
	defer ring.Close()
	ad := f.adapter(store, ring)
	defer ad.Close()
	before := f.srv.TokenRequests()
	for _, u := range f.users {
		c := f.client(ad) // a new client: nothing in its memory
		acct, err := c.Account(ctx, u.HomeAccountID)
		if err != nil || acct.HomeAccountID == "" {
			f.t.Fatalf("account of %s not in the cache: %v", u.Username, err)
		}
		if _, err := c.AcquireTokenSilent(ctx, []string{userScope}, confidential.WithSilentAccount(acct)); err != nil {
			f.t.Fatalf("silent call for %s: %v", u.Username, err)
		}
	}
	if _, err := f.client(ad).AcquireTokenByCredential(ctx, []string{appScope}); err != nil {
		f.t.Fatal(err)
	}
	if n := f.srv.TokenRequests() - before; n != 0 {
		f.t.Fatalf("%d token requests; want every user and the app served from the cache", n)
	}
}

type result struct {
	code           int
	stdout, stderr string
}

// cli runs the binary with env (NAME=value) and args, and checks that
// nothing it prints holds a secret of f.
func (f *farm) cli(env []string, args ...string) result {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = append(cleanEnv(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.Stdin = strings.NewReader("")
	return f.check(args, cmd.Run(), out.String(), errb.String())
}

// check makes the result of a run of the binary, and fails the test if
// it printed a secret of f or a user name.
func (f *farm) check(args []string, err error, stdout, stderr string) result {
	f.t.Helper()
	r := result{stdout: stdout, stderr: stderr}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		f.t.Fatal(err)
	}
	for _, s := range f.secrets {
		if len(s) >= 16 && (strings.Contains(r.stdout, s) || strings.Contains(r.stderr, s)) {
			f.t.Fatalf("msalcache %v printed a token or secret:\n%s\n%s", args, r.stdout, r.stderr)
		}
	}
	for _, u := range f.users {
		if strings.Contains(r.stdout+r.stderr, u.Username) {
			f.t.Fatalf("msalcache %v printed a user name unmasked:\n%s", args, r.stdout)
		}
	}
	return r
}

func cleanEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "MSALCACHE_") {
			out = append(out, kv)
		}
	}
	return out
}

func (r result) must(t *testing.T, code int) result {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, code, r.stdout, r.stderr)
	}
	return r
}

func boltFarm(t *testing.T, nusers int) (*farm, string, []string) {
	path := filepath.Join(t.TempDir(), "tokens.db")
	s, err := boltstore.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	f := newFarm(t, s, nusers)
	s.Close()
	return f, path, []string{"MSALCACHE_STORE=bbolt://" + path, "MSALCACHE_KEK_FILE=" + f.kekFile}
}

// blobKeys opens the bbolt file and returns each partition's data key id.
func blobKeys(t *testing.T, path string) map[string]string {
	t.Helper()
	s, err := boltstore.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	return storeBlobKeys(t, s)
}

// storeBlobKeys returns the data key id of each partition of s.
func storeBlobKeys(t *testing.T, s driver.Store) map[string]string {
	t.Helper()
	out := map[string]string{}
	ctx := context.Background()
	err := s.(driver.Lister).List(ctx, "tc/", func(k string) error {
		b, _, err := s.Load(ctx, k)
		if err != nil {
			return err
		}
		out[k], err = protect.PayloadKeyID(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestUsageAndHelp(t *testing.T) {
	f := &farm{t: t}
	f.cli(nil).must(t, 2)
	f.cli(nil, "nope").must(t, 2)
	f.cli(nil, "-h").must(t, 0)
	for _, c := range []string{"doctor", "stats", "inspect", "keys", "rewrap", "migrate", "rm", "ring"} {
		r := f.cli(nil, c, "-h").must(t, 0)
		if !strings.Contains(r.stderr, "usage: msalcache "+c) {
			t.Fatalf("%s -h:\n%s", c, r.stderr)
		}
		f.cli(nil, c, "-no-such-flag").must(t, 2)
	}
	f.cli(nil, "stats").must(t, 2) // no store
	f.cli(nil, "inspect", "-store", "bbolt:x").must(t, 2)
}

func TestReadCommands(t *testing.T) {
	f, path, env := boltFarm(t, 3)
	before := blobKeys(t, path)
	r := f.cli(env, "doctor").must(t, 0)
	for _, want := range []string{"answers in", "unwraps every key", "current key"} {
		if !strings.Contains(r.stdout, want) {
			t.Fatalf("doctor lacks %q:\n%s", want, r.stdout)
		}
	}
	f.cli(env, "doctor", "-json").must(t, 0)
	var st statsOut
	r = f.cli(env, "stats", "-json").must(t, 0)
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		t.Fatal(err)
	}
	if st.Partitions != 4 || st.ByKind["user"] != 3 || st.ByKind["app"] != 1 || len(st.ByDataKey) != 1 {
		t.Fatalf("stats = %+v; want 3 user and 1 app partitions under one key", st)
	}
	f.cli(env, "stats").must(t, 0)
	// Global flags before the command, and the env variable of the KEK.
	key, _ := os.ReadFile(f.kekFile)
	r = f.cli([]string{"MSALCACHE_KEK=" + strings.TrimSpace(string(key))}, "-store", "bbolt://"+path, "-kek-id", kekID, "inspect", "-partition", f.users[0].HomeAccountID, "-json").must(t, 0)
	var in inspectOut
	if err := json.Unmarshal([]byte(r.stdout), &in); err != nil {
		t.Fatal(err)
	}
	if !in.Readable || in.Summary.Kind != "user" || len(in.Summary.Accounts) != 1 || in.Summary.Accounts[0].HomeAccountID != f.users[0].HomeAccountID ||
		len(in.Summary.AccessTokens) != 1 || !strings.Contains(in.Summary.AccessTokens[0].Scopes, userScope) || len(in.Summary.RefreshTokens) != 1 {
		t.Fatalf("inspect = %s", r.stdout)
	}
	r = f.cli(env, "inspect", "-key", in.Key).must(t, 0)
	if !strings.Contains(r.stdout, userScope) || !strings.Contains(r.stdout, "u****@contoso.example") {
		t.Fatalf("inspect -key:\n%s", r.stdout)
	}
	f.cli(env, "keys", "list").must(t, 0)
	f.cli(env, "keys", "list", "-json").must(t, 0)
	f.cli(env, "inspect", "-key", "tc/default/absent").must(t, 1)
	if after := blobKeys(t, path); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatal("read commands changed the store")
	}
}

func TestRotateRewrapRevoke(t *testing.T) {
	f, path, env := boltFarm(t, 3)
	old := blobKeys(t, path)
	f.cli(env, "keys", "rotate").must(t, 0)
	r := f.cli(env, "rewrap", "-dry-run", "-json").must(t, 0)
	if !strings.Contains(r.stdout, `"rewrapped": 4`) {
		t.Fatalf("dry run:\n%s", r.stdout)
	}
	if fmt.Sprint(blobKeys(t, path)) != fmt.Sprint(old) {
		t.Fatal("rewrap -dry-run wrote")
	}
	f.cli(env, "rewrap").must(t, 0)
	now := blobKeys(t, path)
	var current string
	for k, id := range now {
		if id == old[k] {
			t.Fatalf("%s still under the old key %s after rewrap", k, id)
		}
		if current != "" && id != current {
			t.Fatalf("blobs under two keys after rewrap: %v", now)
		}
		current = id
	}
	r = f.cli(env, "rewrap", "-json").must(t, 0) // idempotent
	if !strings.Contains(r.stdout, `"already_current": 4`) {
		t.Fatalf("second rewrap:\n%s", r.stdout)
	}
	s, err := boltstore.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	f.serveAll(s)
	s.Close()

	f.cli(env, "keys", "revoke", current).must(t, 1) // no "yes" on stdin
	f.cli(env, "keys", "revoke", "-yes", current).must(t, 0)
	r = f.cli(env, "rewrap", "-delete", "-json").must(t, 0)
	if !strings.Contains(r.stdout, `"deleted": 4`) {
		t.Fatalf("rewrap -delete:\n%s", r.stdout)
	}
	for k, id := range blobKeys(t, path) {
		if id == current {
			t.Fatalf("%s still under the revoked key", k)
		}
	}
}

func TestRm(t *testing.T) {
	f, path, env := boltFarm(t, 2)
	f.cli(env, "rm", "-partition", f.users[0].HomeAccountID, "-dry-run").must(t, 0)
	if len(blobKeys(t, path)) != 3 {
		t.Fatal("rm -dry-run removed")
	}
	f.cli(env, "rm", "-partition", f.users[0].HomeAccountID).must(t, 0)
	if len(blobKeys(t, path)) != 2 {
		t.Fatal("rm -partition did not remove one partition")
	}
	r := f.cli(env, "rm", "-expired").must(t, 0)
	if !strings.Contains(r.stdout, "removed 0") {
		t.Fatalf("rm -expired removed live partitions:\n%s", r.stdout)
	}
	f.cli(env, "rm").must(t, 2)
	r = f.cli(env, "ring", "reset").must(t, 1)
	if !strings.Contains(r.stdout, "unreadable") {
		t.Fatalf("ring reset without -yes must say what it does:\n%s", r.stdout)
	}
	f.cli(env, "doctor").must(t, 0)
	f.cli(env, "ring", "reset", "-yes").must(t, 0)
	r = f.cli(env, "doctor").must(t, 1)
	if !strings.Contains(r.stdout, "no key ring") {
		t.Fatalf("doctor after reset:\n%s", r.stdout)
	}
}

func TestMigrateBoltToRedis(t *testing.T) {
	redisSrv := redisServer(t)
	f, path, env := boltFarm(t, 4)
	to := "redis://" + redisSrv
	checkMigrate(t, f, env, "bbolt://"+path, to)
	// The commands run on Redis too.
	renv := []string{"MSALCACHE_STORE=" + to, "MSALCACHE_KEK_FILE=" + f.kekFile}
	f.cli(renv, "stats").must(t, 0)
	f.cli(renv, "doctor").must(t, 1) // testserver's Redis does not persist: the ring is at risk
}

func TestBadInput(t *testing.T) {
	f, path, env := boltFarm(t, 1)
	before := blobKeys(t, path)
	r := f.cli(nil, "-store", "ftp://x", "stats").must(t, 1)
	if !strings.Contains(r.stderr, "unknown scheme") {
		t.Fatalf("unknown scheme:\n%s", r.stderr)
	}
	r = f.cli(nil, "-store", "redis://u:hunter2-secret@127.0.0.1:1", "-timeout", "2s", "stats").must(t, 1)
	if strings.Contains(r.stderr, "hunter2-secret") || !strings.Contains(r.stderr, "does not answer") {
		t.Fatalf("a store that is down:\n%s", r.stderr)
	}
	wrong := filepath.Join(t.TempDir(), "wrong")
	if err := protect.GenerateKeyFile(wrong); err != nil {
		t.Fatal(err)
	}
	r = f.cli([]string{env[0], "MSALCACHE_KEK_FILE=" + wrong}, "keys", "list").must(t, 1)
	if !strings.Contains(r.stderr, "damaged") && !strings.Contains(r.stderr, "unwrap") {
		t.Fatalf("wrong KEK:\n%s", r.stderr)
	}
	f.cli([]string{env[0], "MSALCACHE_KEK_FILE=" + wrong}, "keys", "rotate").must(t, 1)
	f.cli([]string{env[0], "MSALCACHE_KEK_FILE=" + wrong}, "rewrap").must(t, 1)
	if fmt.Sprint(blobKeys(t, path)) != fmt.Sprint(before) {
		t.Fatal("a failed command changed the store")
	}
	mc := memcachedServer(t)
	r = f.cli([]string{"MSALCACHE_STORE=memcache://" + mc, "MSALCACHE_KEK_FILE=" + f.kekFile, "MSALCACHE_KEK_ID=" + kekID}, "keys", "list").must(t, 1)
	if !strings.Contains(r.stderr, "durable") {
		t.Fatalf("a volatile store for the ring:\n%s", r.stderr)
	}
	r = f.cli([]string{"MSALCACHE_STORE=memcache://" + mc}, "stats").must(t, 1)
	if !strings.Contains(r.stderr, "cannot be listed") {
		t.Fatalf("memcached stats:\n%s", r.stderr)
	}
	f.cli([]string{"MSALCACHE_STORE=memcache://" + mc}, "ring", "reset", "-yes").must(t, 1)
	pw := redisWithPassword(t, "right-password-123")
	r = f.cli(nil, "-store", "redis://:wrong-password-456@"+pw, "stats").must(t, 1)
	if strings.Contains(r.stderr, "wrong-password-456") {
		t.Fatalf("the password was printed:\n%s", r.stderr)
	}
}
