package conformance

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/entratest"
)

// The L1 scenarios run two instances, each an Adapter with msalcache.WithL1
// behind its own MSAL client, over the shared store. They check the
// promise that sets this L1 apart from one that is never told of other
// servers' writes: a token one instance buys is what the other serves once
// the change reached it, a sign-out on one is a sign-out on all, and
// whatever the push channel does, nothing older than MaxStale is served.
//
// "Reached it" is observed, not guessed: every instance's store is wrapped
// in a storeProbe that records what the instance's watch was told, after
// the Adapter was told. On a store that pushes (a Watcher) the scenarios
// wait for the write to arrive there, with MaxStale an hour away so that
// only the push can explain a fresh read; on any other store they wait
// until MaxStale has passed since the write. Then the very next silent
// call must see the new state: no poll of the instance itself, whose
// answer before that point proves nothing either way.

const (
	// pushedMaxStale is the L1's MaxStale when the store pushes: far
	// beyond any subtest, so that a fresh read can only come from the
	// push.
	pushedMaxStale = time.Hour
	// shortMaxStale is the L1's MaxStale when only MaxStale protects: long
	// enough that an instance serves from memory in between, short
	// enough to keep the suite quick.
	shortMaxStale = 200 * time.Millisecond
	// caClaims is a Conditional Access claims challenge, which the user
	// meets by signing in again: the token that buys is what
	// Microsoft.Identity.Web's L1 keeps missing on other servers.
	caClaims = `{"access_token":{"acrs":{"essential":true,"value":"c1"}}}`
)

// storeProbe sits between one instance's Adapter and the shared store. It
// counts the calls that reach the store, keeps the version of each key's
// last successful Save, and, when the store is a Watcher, records what the
// Adapter's watch was told. When deaf, it swallows ChangeKey before the
// Adapter hears it while passing ChangeWatchUp and ChangeWatchDown on: a
// push lost in a way the store cannot notice, which leaves MaxStale as the
// only protection.
type storeProbe struct {
	driver.Store
	deaf  bool
	calls atomic.Int64
	log   *watchLog

	mu      sync.Mutex
	saved   map[string]driver.Version
	started map[string]time.Time // when the last Save or Delete of a key began
}

// newProbe wraps inner. The Store it returns is a Watcher and a Versioner
// exactly when inner is, so that the Adapter over it uses what the store
// under test offers.
func newProbe(inner driver.Store, deaf bool) (*storeProbe, driver.Store) {
	p := &storeProbe{Store: inner, deaf: deaf, log: newWatchLog(), saved: map[string]driver.Version{}, started: map[string]time.Time{}}
	var w driver.Watcher
	if iw, ok := inner.(driver.Watcher); ok {
		w = probeWatcher{p, iw}
	}
	var v driver.Versioner
	if iv, ok := inner.(driver.Versioner); ok {
		v = probeVersioner{p, iv}
	}
	return p, withCaps(p, w, v)
}

// withCaps returns s with the Watcher and Versioner given, when not nil:
// the method set a wrapper must have to pass on what the store beneath it
// can do, which no single struct type can vary.
func withCaps(s driver.Store, w driver.Watcher, v driver.Versioner) driver.Store {
	switch {
	case w != nil && v != nil:
		return struct {
			driver.Store
			driver.Watcher
			driver.Versioner
		}{s, w, v}
	case w != nil:
		return struct {
			driver.Store
			driver.Watcher
		}{s, w}
	case v != nil:
		return struct {
			driver.Store
			driver.Versioner
		}{s, v}
	}
	return s
}

// Load implements driver.Store.
func (p *storeProbe) Load(ctx context.Context, key string) ([]byte, driver.Version, error) {
	p.calls.Add(1)
	return p.Store.Load(ctx, key)
}

// Save implements driver.Store.
func (p *storeProbe) Save(ctx context.Context, key string, value []byte, ifVersion driver.Version, ttl time.Duration) (driver.Version, error) {
	p.calls.Add(1)
	p.begin(key)
	v, err := p.Store.Save(ctx, key, value, ifVersion, ttl)
	if err == nil {
		p.mu.Lock()
		p.saved[key] = v
		p.mu.Unlock()
	}
	return v, err
}

// Delete implements driver.Store.
func (p *storeProbe) Delete(ctx context.Context, key string) error {
	p.calls.Add(1)
	p.begin(key)
	return p.Store.Delete(ctx, key)
}

// begin notes that a write of key begins, for the delay until another
// instance hears of it.
func (p *storeProbe) begin(key string) {
	p.mu.Lock()
	p.started[key] = time.Now()
	p.mu.Unlock()
}

// startedAt is when the last write of key began.
func (p *storeProbe) startedAt(key string) time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.started[key]
}

// lastSaved is the version the last successful Save of key returned.
func (p *storeProbe) lastSaved(key string) driver.Version {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.saved[key]
}

type probeWatcher struct {
	p *storeProbe
	w driver.Watcher
}

// Watch implements driver.Watcher.
func (w probeWatcher) Watch(ctx context.Context, fn func(driver.Change)) (func(), error) {
	return w.w.Watch(ctx, func(c driver.Change) {
		if !w.p.deaf || c.Kind != driver.ChangeKey {
			fn(c)
		}
		w.p.log.record(c)
	})
}

type probeVersioner struct {
	p *storeProbe
	v driver.Versioner
}

// Version implements driver.Versioner.
func (v probeVersioner) Version(ctx context.Context, key string) (driver.Version, error) {
	v.p.calls.Add(1)
	return v.v.Version(ctx, key)
}

// l1Instance is one application instance with the L1 on.
type l1Instance struct {
	name  string
	a     suiteAdapter
	probe *storeProbe
	web   confidential.Client
}

// pushes reports whether the store under test tells of changes.
func (f *fixture) pushes() bool {
	_, ok := f.store.(driver.Watcher)
	return ok
}

// l1Instance builds an instance with WithL1(MaxStale: maxStale) and, on a
// store that pushes, waits for its watch to be up: until then its L1 is
// bypassed, and a scenario would pass without testing it.
func (f *fixture) l1Instance(name string, maxStale time.Duration, deaf bool) *l1Instance {
	f.t.Helper()
	p, s := newProbe(f.store, deaf)
	a := f.adapter(s, msalcache.WithL1(msalcache.L1Options{MaxStale: maxStale}))
	in := &l1Instance{name: name, a: a, probe: p, web: f.confidential(a, suiteTenant)}
	if f.pushes() {
		if _, _, ok := p.log.wait(0, time.Now().Add(watchBound), isKind(driver.ChangeWatchUp)); !ok {
			f.t.Fatalf("instance %s: the store's watch did not say ChangeWatchUp within %v of msalcache.New with WithL1 (it was told %s)",
				name, watchBound, describeEvents(p.log.since(0)))
		}
	}
	return in
}

// maxStale is the MaxStale of the scenarios that test the push, or
// MaxStale itself on a store that cannot push.
func (f *fixture) maxStale() time.Duration {
	if f.pushes() {
		return pushedMaxStale
	}
	return shortMaxStale
}

// renew buys u a new access token for userScope on c although c holds a
// valid one: u signs in again, as after a step-up to MFA or a Conditional
// Access challenge (MSAL-Go refuses a claims challenge on a silent call
// and sends the app to sign the user in).
func (f *fixture) renew(c confidential.Client, u entratest.User) string {
	f.t.Helper()
	ar, err := c.AcquireTokenByAuthCode(f.ctx, f.srv.AuthCode(suiteTenant, u.Username), suiteRedirect, []string{userScope}, confidential.WithClaims(caClaims))
	if err != nil {
		f.t.Fatalf("%s signing in again after a claims challenge: %v", u.Username, err)
	}
	f.mustBeFor(ar.AccessToken, u)
	return ar.AccessToken
}

// reached waits until what writer wrote to key, its last write, which
// returned version v (NoVersion: a Delete), can no longer be hidden from
// reader: on a store that pushes, until reader's watch was told of it (or
// was told the watch went down or came up, after which its L1 trusts
// nothing it held); on any other store, until MaxStale has passed since the
// write ended. mark is reader's watch log length before the write began.
func (f *fixture) reached(writer, reader *l1Instance, mark int, wrote time.Time, key string, v driver.Version, what string) {
	f.t.Helper()
	if !f.pushes() {
		time.Sleep(time.Until(wrote.Add(shortMaxStale)))
		for time.Since(wrote) <= shortMaxStale {
			time.Sleep(time.Millisecond) // the clock's last step
		}
		f.t.Logf("the store cannot push: MaxStale (%v) has passed since %s, which instance %s must now see", shortMaxStale, what, reader.name)
		return
	}
	_, ev, ok := reader.probe.log.wait(mark, wrote.Add(watchBound), func(c driver.Change) bool {
		return c.Kind != driver.ChangeKey || c.Key == key && (c.Version == v || c.Version == driver.NoVersion)
	})
	if !ok {
		f.t.Fatalf("%s did not reach instance %s's watch within %v (it was told %s): the store's push is lost or too slow",
			what, reader.name, watchBound, describeEvents(reader.probe.log.since(mark)))
	}
	f.t.Logf("%s reached instance %s's watch %v after instance %s's store call began (%s)",
		what, reader.name, ev.at.Sub(writer.probe.startedAt(key)).Round(time.Microsecond), writer.name, describeChange(ev.c))
}

// settle waits, on a store that pushes, until reader's watch heard the
// last write writer made to key, so that a late push of it cannot drop
// what reader's L1 holds in the middle of a measurement. A push with
// NoVersion (a store that cannot tell versions) is taken for it.
func (f *fixture) settle(writer, reader *l1Instance, key string) {
	f.t.Helper()
	if !f.pushes() {
		return
	}
	v := writer.probe.lastSaved(key)
	if _, _, ok := reader.probe.log.wait(0, time.Now().Add(watchBound), func(c driver.Change) bool {
		return c.Kind == driver.ChangeKey && c.Key == key && (c.Version == v || c.Version == driver.NoVersion)
	}); !ok {
		f.t.Fatalf("instance %s's write of version %d did not reach instance %s's watch within %v (it was told %s)",
			writer.name, v, reader.name, watchBound, describeEvents(reader.probe.log.since(0)))
	}
}

// testL1RefreshOnAServedOnB: alice's token is renewed on A (she signs in
// again to meet a claims challenge, as after MFA); once that reached B, B serves the new token
// from the store, to its own client and to a new one, without buying one.
func testL1RefreshOnAServedOnB(f *fixture) {
	alice := f.users[0]
	stale := f.maxStale()
	a, b := f.l1Instance("A", stale, false), f.l1Instance("B", stale, false)
	old := f.signIn(a.web, alice).AccessToken
	key := a.a.StoreKey(alice.HomeAccountID)
	f.settle(a, b, key)
	for i := range 2 { // the second one, as a rule, from B's L1
		tok, err := f.silent(b.web, alice, userScope)
		if err != nil {
			f.t.Fatalf("instance B, silent call %d for alice before the renewal: %v", i+1, err)
		}
		if tok != old {
			f.t.Fatal("instance B served alice another token than the one instance A stored at sign-in")
		}
	}
	f.requests(1)

	before := a.probe.lastSaved(key)
	mark, start := b.probe.log.len(), time.Now()
	renewed := f.renew(a.web, alice)
	wrote := time.Now()
	if renewed == old {
		f.t.Fatal("signing in again on instance A returned the cached token: the scenario no longer renews it")
	}
	f.requests(2)
	v := a.probe.lastSaved(key)
	if v == before {
		f.t.Fatal("instance A bought a token but stored nothing: the renewal cannot reach instance B")
	}
	f.reached(a, b, mark, wrote, key, v, "instance A's renewed token")

	tok, err := f.silent(b.web, alice, userScope)
	if err != nil {
		f.t.Fatalf("instance B, silent call for alice after A's renewal reached it: %v", err)
	}
	if tok != renewed {
		f.t.Fatalf("instance B served alice the token it held before instance A renewed it, %v after A's write, once that write had reached B (MaxStale %v): its L1 ignores other instances' writes",
			time.Since(start).Round(time.Millisecond), stale)
	}
	fresh := f.confidential(b.a, suiteTenant)
	if tok, err := f.silent(fresh, alice, userScope); err != nil || tok != renewed {
		f.t.Fatalf("a new client on instance B, after A's renewal reached B: served the renewed token %v, error %v; want the renewed token", tok == renewed, err)
	}
	f.requests(2)
}

// testL1RemoveOnAReachesB: alice signs out on A (RemoveAccount and
// Adapter.Remove); once that reached B, B's next silent call for her fails
// instead of serving the tokens B's client and L1 held, and a new client on
// B fails too.
func testL1RemoveOnAReachesB(f *fixture) {
	alice, bob := f.users[0], f.users[1]
	stale := f.maxStale()
	a, b := f.l1Instance("A", stale, false), f.l1Instance("B", stale, false)
	f.signIn(a.web, alice)
	f.signIn(a.web, bob)
	key := a.a.StoreKey(alice.HomeAccountID)
	f.settle(a, b, key)
	f.settle(a, b, a.a.StoreKey(bob.HomeAccountID))
	for i := range 2 {
		if _, err := f.silent(b.web, alice, userScope); err != nil {
			f.t.Fatalf("instance B, silent call %d for alice before the sign-out: %v", i+1, err)
		}
	}
	acct, err := a.web.Account(f.ctx, alice.HomeAccountID)
	if err != nil {
		f.t.Fatal(err)
	}
	mark, start := b.probe.log.len(), time.Now()
	if err := a.web.RemoveAccount(f.ctx, acct); err != nil {
		f.t.Fatalf("RemoveAccount on instance A: %v", err)
	}
	if err := a.a.Remove(f.ctx, alice.HomeAccountID); err != nil {
		f.t.Fatalf("Adapter.Remove on instance A: %v", err)
	}
	wrote := time.Now()
	// The sign-out leaves a removal record: its version is what B hears.
	f.reached(a, b, mark, wrote, key, a.probe.lastSaved(key), "instance A's sign-out of alice")
	requests := f.srv.TokenRequests()
	if tok, err := f.silent(b.web, alice, userScope); err == nil {
		f.t.Fatalf("instance B still served alice (her token: %v) %v after she signed out on instance A, once the sign-out had reached B (MaxStale %v, %d token requests): its L1 ignores other instances' sign-outs",
			tokenFor(tok, alice) == nil, time.Since(start).Round(time.Millisecond), stale, f.srv.TokenRequests()-requests)
	}
	if _, err := f.silent(f.confidential(b.a, suiteTenant), alice, userScope); err == nil {
		f.t.Fatal("a new client on instance B still served alice after she signed out on instance A")
	}
	tok, err := f.silent(b.web, bob, userScope)
	if err != nil {
		f.t.Fatalf("instance B lost bob when alice signed out on instance A: %v", err)
	}
	f.mustBeFor(tok, bob)
	f.requests(requests)
}

// testL1NeverOlderThanMaxStale: B's push channel is cut without the store
// noticing (its probe swallows every ChangeKey but keeps the watch up, as
// an expiry, an eviction or an operator's FLUSHDB, which no store reports,
// would), so only MaxStale stands between B and a stale token. A renews
// alice's token; B may serve the old one until MaxStale has passed since
// A's write, and never after.
func testL1NeverOlderThanMaxStale(f *fixture) {
	alice := f.users[0]
	a, b := f.l1Instance("A", shortMaxStale, false), f.l1Instance("B", shortMaxStale, true)
	old := f.signIn(a.web, alice).AccessToken
	if tok, err := f.silent(b.web, alice, userScope); err != nil || tok != old {
		f.t.Fatalf("instance B before the renewal: got the token instance A stored %v, error %v", tok == old, err)
	}
	renewed := f.renew(a.web, alice)
	wrote := time.Now()
	hits := b.a.Stats().L1Hits
	served := 0
	for {
		called := time.Now()
		tok, err := f.silent(b.web, alice, userScope)
		if err != nil {
			f.t.Fatalf("instance B, silent call %v after instance A renewed alice's token: %v", called.Sub(wrote).Round(time.Millisecond), err)
		}
		if tok == renewed {
			f.t.Logf("instance B served the renewed token %v after A's write (MaxStale %v), having served the old one %d times; %d L1 hits",
				called.Sub(wrote).Round(time.Millisecond), shortMaxStale, served, b.a.Stats().L1Hits-hits)
			break
		}
		if tok != old {
			f.t.Fatal("instance B served alice a token neither instance stored")
		}
		if age := called.Sub(wrote); age > shortMaxStale {
			f.t.Fatalf("instance B served alice the token instance A had replaced, in a call begun %v after the write, with MaxStale %v and the push cut: its L1 does not bound staleness by MaxStale",
				age.Round(time.Millisecond), shortMaxStale)
		}
		served++
		time.Sleep(shortMaxStale / 10) // a request rate, not a margin
	}
	if tok, err := f.silent(f.confidential(b.a, suiteTenant), alice, userScope); err != nil || tok != renewed {
		f.t.Fatalf("a new client on instance B, past MaxStale: served the renewed token %v, error %v", tok == renewed, err)
	}
	f.requests(2)
}

// testL1HotPath: with the L1 on, once B has confirmed alice's partition,
// silent calls on B, through its client and through a new client per call,
// reach the store not once. MaxStale is an hour on every store here, so a
// store call can only come from an L1 that does not serve from memory.
func testL1HotPath(f *fixture) {
	const calls = 20
	alice := f.users[0]
	a, b := f.l1Instance("A", pushedMaxStale, false), f.l1Instance("B", pushedMaxStale, false)
	f.signIn(a.web, alice)
	f.settle(a, b, a.a.StoreKey(alice.HomeAccountID))
	if _, err := f.silent(b.web, alice, userScope); err != nil {
		f.t.Fatalf("instance B, first silent call for alice: %v", err)
	}
	for _, perCall := range []bool{false, true} {
		before := b.probe.calls.Load()
		hits := b.a.Stats().L1Hits
		for i := range calls {
			c := b.web
			if perCall {
				c = f.confidential(b.a, suiteTenant)
			}
			tok, err := f.silent(c, alice, userScope)
			if err != nil {
				f.t.Fatalf("instance B, silent call %d for alice: %v", i+1, err)
			}
			f.mustBeFor(tok, alice)
		}
		how := "through one client"
		if perCall {
			how = "through a new client each"
		}
		if n := b.probe.calls.Load() - before; n != 0 {
			f.t.Fatalf("with the L1 on, %d silent calls %s on an instance that had confirmed the partition made %d store calls, want 0: the L1 does not serve the hot path from memory",
				calls, how, n)
		}
		f.t.Logf("%d silent calls %s: 0 store calls, %d L1 hits", calls, how, b.a.Stats().L1Hits-hits)
	}
	f.requests(1)
}
