package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/cache"
	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/driver"
	"github.com/msalcache/msalcache/entratest"
	"github.com/msalcache/msalcache/internal/testserver"
	"github.com/msalcache/msalcache/internal/wait"
	"github.com/msalcache/msalcache/redisstore"
	"github.com/redis/go-redis/v9"
)

// The fault tests run real MSAL-Go confidential clients, through Adapters
// over a redisstore, against an entratest token endpoint, while Redis is
// killed, frozen, failed over or resharded. Each simulated request of a farm
// instance builds a fresh MSAL client on its instance's Adapter, as a web
// app that creates its client per request does, so that every token served
// without a token request came from Redis, not from MSAL's memory.

// Timeouts of the test clients: short, so that a fault turns into an error
// within a fraction of a second rather than go-redis's multi-second
// defaults.
const (
	faultIOTimeout = 300 * time.Millisecond
	faultRetries   = 1
)

const (
	farmClientID = "fault-farm-client"
	farmScope    = "api://backend/.default"
	farmRedirect = "http://localhost/callback"
	userScope    = "api://backend/read"
)

// fastOptions returns single-node client options tuned for fault tests:
// one retry, short dial, read and write timeouts, and one dial attempt per
// connection (go-redis v9.17 otherwise dials five times, 100 ms apart).
func fastOptions(addr string) *redis.Options {
	return &redis.Options{
		Addr:               addr,
		MaxRetries:         faultRetries,
		MinRetryBackoff:    5 * time.Millisecond,
		MaxRetryBackoff:    50 * time.Millisecond,
		DialTimeout:        faultIOTimeout,
		ReadTimeout:        faultIOTimeout,
		WriteTimeout:       faultIOTimeout,
		DialerRetries:      1,
		DialerRetryTimeout: 10 * time.Millisecond,
	}
}

// farm is a token endpoint and a shared store; each instance of the
// simulated application is an Adapter over that store.
type farm struct {
	t       *testing.T
	entra   *entratest.Server
	store   driver.Store
	timeout time.Duration
	probes  atomic.Int64
}

func newFarm(t *testing.T, store driver.Store, timeout time.Duration) *farm {
	entra := entratest.NewServer()
	t.Cleanup(entra.Close)
	return &farm{t: t, entra: entra, store: store, timeout: timeout}
}

// instance starts one application instance: a new Adapter on the farm's
// store. Failures it absorbs go nowhere but its Stats. The breaker is off:
// these tests hold the store and the Adapter's timeout to their promises
// under each fault, call by call, which an open breaker would skip
// (TestBreakerOutage tests the breaker).
func (f *farm) instance() *msalcache.Adapter {
	f.t.Helper()
	a, err := msalcache.New(f.store, msalcache.WithPlaintext(), msalcache.WithTimeout(f.timeout),
		msalcache.WithLogger(slog.New(slog.DiscardHandler)), msalcache.WithBreaker(msalcache.BreakerOptions{Disabled: true}))
	if err != nil {
		f.t.Fatal(err)
	}
	return a
}

// client returns a fresh MSAL client for tenant on instance a (an Adapter,
// or a hook wrapping one).
func (f *farm) client(a cache.ExportReplace, tenant string) (confidential.Client, error) {
	return newFarmClient(f.entra, tenant, a)
}

// newFarmClient returns a new MSAL confidential client of the fault tests'
// farm application for tenant, on entra's token endpoint, with hook as its
// cache.
func newFarmClient(entra *entratest.Server, tenant string, hook cache.ExportReplace) (confidential.Client, error) {
	cred, err := confidential.NewCredFromSecret("fault-secret")
	if err != nil {
		return confidential.Client{}, err
	}
	return confidential.New(entra.Authority(tenant), farmClientID, cred,
		confidential.WithHTTPClient(entra.Client()),
		confidential.WithInstanceDiscovery(false),
		confidential.WithCache(hook))
}

// appToken serves one request of instance a that needs an app token for
// tenant. The context has no deadline, as a web request's often has not: the
// Adapter's own timeout bounds every store call.
func (f *farm) appToken(a cache.ExportReplace, tenant string) (string, error) {
	c, err := f.client(a, tenant)
	if err != nil {
		return "", err
	}
	return acquireAppToken(context.Background(), c, tenant)
}

// acquireAppToken gets tenant's app token through c and checks that it is
// one.
func acquireAppToken(ctx context.Context, c confidential.Client, tenant string) (string, error) {
	ar, err := c.AcquireTokenByCredential(ctx, []string{farmScope})
	if err != nil {
		return "", err
	}
	claims, err := entratest.ParseToken(ar.AccessToken)
	if err != nil {
		return "", err
	}
	if claims.Tenant != tenant || !claims.App {
		return "", fmt.Errorf("asked for an app token of %s, got one of %s (app %v)", tenant, claims.Tenant, claims.App)
	}
	return ar.AccessToken, nil
}

// mustAppToken is appToken for the test goroutine.
func (f *farm) mustAppToken(a cache.ExportReplace, tenant string) string {
	f.t.Helper()
	tok, err := f.appToken(a, tenant)
	if err != nil {
		f.t.Fatalf("app token for %s: %v", tenant, err)
	}
	return tok
}

// shared reports whether a token that instance a buys for a tenant nobody
// asked for before is served to instance b from the store. Only the store
// can hand b the very token a got: the emulator issues a new one (new jti)
// on every request.
func (f *farm) shared(a, b cache.ExportReplace) (bool, error) {
	tenant := fmt.Sprintf("probe-%d", f.probes.Add(1))
	ta, err := f.appToken(a, tenant)
	if err != nil {
		return false, err
	}
	tb, err := f.appToken(b, tenant)
	if err != nil {
		return false, err
	}
	return ta == tb, nil
}

// waitShared probes until a token written by a is served to b, and returns
// when that first happened. It fails the test if a token call fails or
// sharing does not come back within limit.
func (f *farm) waitShared(a, b cache.ExportReplace, limit time.Duration) time.Time {
	f.t.Helper()
	deadline := time.Now().Add(limit)
	for {
		ok, err := f.shared(a, b)
		if err != nil {
			f.t.Fatalf("token call failed while the store recovers: %v", err)
		}
		if ok {
			return time.Now()
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("tokens not shared through the store %v after the fault ended", limit)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// servedFromStore checks that a fresh instance gets tenant's app token
// without a token request (the test must hold every other caller still).
// want, when not empty, is the token it must get.
func (f *farm) servedFromStore(tenant, want string) {
	f.t.Helper()
	fresh := f.instance()
	before := f.entra.TokenRequests()
	tok := f.mustAppToken(fresh, tenant)
	if n := f.entra.TokenRequests() - before; n != 0 {
		f.t.Fatalf("a fresh instance needed %d token requests for %s: the stored token was lost", n, tenant)
	}
	if want != "" && tok != want {
		f.t.Fatalf("a fresh instance got another token for %s than the one stored", tenant)
	}
	if s := fresh.Stats(); s.Hits == 0 {
		f.t.Fatalf("served without a store hit: %+v", s)
	}
}

func tenantNames(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%d", prefix, i)
	}
	return out
}

// sumStats adds up the counters of several instances.
func sumStats(instances ...*msalcache.Adapter) msalcache.Stats {
	var s msalcache.Stats
	for _, a := range instances {
		x := a.Stats()
		s.Hits += x.Hits
		s.Misses += x.Misses
		s.Writes += x.Writes
		s.StoreErrors += x.StoreErrors
		s.ExportFailures += x.ExportFailures
		s.Conflicts += x.Conflicts
		s.BreakerSkips += x.BreakerSkips
	}
	return s
}

// load keeps workers busy with app-token requests of farm instances until
// stop is called.
type load struct {
	calls, failures atomic.Int64
	slowest         atomic.Int64 // nanoseconds of the slowest call
	stopc           chan struct{}
	wg              sync.WaitGroup
	mu              sync.Mutex
	errs            []error // the first few failures, for the log
}

// startLoad runs workers goroutines, each serving requests of instances in
// turn for tenants in turn, a couple of milliseconds apart so that two cores
// under -race keep up with the test goroutine.
func (f *farm) startLoad(instances []*msalcache.Adapter, workers int, tenants []string) *load {
	l := &load{stopc: make(chan struct{})}
	for w := range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for i := 0; ; i++ {
				select {
				case <-l.stopc:
					return
				default:
				}
				a := instances[(w+i)%len(instances)]
				start := time.Now()
				_, err := f.appToken(a, tenants[(w*7+i)%len(tenants)])
				l.calls.Add(1)
				for el := int64(time.Since(start)); ; {
					cur := l.slowest.Load()
					if el <= cur || l.slowest.CompareAndSwap(cur, el) {
						break
					}
				}
				if err != nil {
					l.failures.Add(1)
					l.mu.Lock()
					if len(l.errs) < 5 {
						l.errs = append(l.errs, err)
					}
					l.mu.Unlock()
				}
				time.Sleep(2 * time.Millisecond)
			}
		}()
	}
	return l
}

// waitCalls waits until the load has made n more calls than it had made at
// from (a failed wait means the load is stuck: a token call hangs).
func (l *load) waitCalls(t *testing.T, from int64, n int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for l.calls.Load() < from+n {
		if time.Now().After(deadline) {
			t.Fatalf("the load made %d calls in 10 s, want %d: token calls hang", l.calls.Load()-from, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// stop ends the load and fails the test if any token call failed.
func (l *load) stop(t *testing.T) (calls int64) {
	t.Helper()
	close(l.stopc)
	l.wg.Wait()
	if n := l.failures.Load(); n != 0 {
		t.Fatalf("%d of %d token calls failed under the fault, e.g. %v", n, l.calls.Load(), errors.Join(l.errs...))
	}
	t.Logf("load: %d token calls, the slowest took %v", l.calls.Load(), time.Duration(l.slowest.Load()).Round(time.Millisecond))
	return l.calls.Load()
}

// Redis dies under load and comes back empty. Token calls must keep
// succeeding throughout (the Adapter fails open), and once the server is
// back a token bought by one instance must be served to another from Redis
// again within about a second.
func TestFaultRedisKilledMidLoad(t *testing.T) {
	t.Parallel()
	srv := testserver.Redis(t)
	rdb := newClient(t, fastOptions(srv.Addr()))
	store := redisstore.New(rdb, redisstore.WithPrefix(freshPrefix()))
	f := newFarm(t, store, 500*time.Millisecond)
	instances := []*msalcache.Adapter{f.instance(), f.instance(), f.instance()}
	a, b := f.instance(), f.instance()
	if ok, err := f.shared(a, b); err != nil || !ok {
		t.Fatalf("tokens not shared with Redis up: %v, %v", ok, err)
	}

	l := f.startLoad(instances, 4, tenantNames("kill", 8))
	l.waitCalls(t, 0, 20)

	// A user signed in just before the crash stays served by the instance
	// that holds the sign-in, through the crash. The instance keeps what
	// MSAL holds only while it remembers the client (the Adapter forgets a
	// client idle for 3 s, and then a failed load empties MSAL's cache, as
	// any miss does), so the sign-in and the silent call stay close
	// together: on a loaded machine the waits below take longer than that.
	alice := f.entra.AddUser("contoso", "alice@contoso.example", "pw")
	web, err := f.client(a, "contoso")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := web.AcquireTokenByAuthCode(context.Background(), f.entra.AuthCode("contoso", alice.Username),
		farmRedirect, []string{userScope}); err != nil {
		t.Fatal(err)
	}
	srv.Kill()
	killed := l.calls.Load()
	errsBefore := sumStats(instances...).StoreErrors
	acct, err := web.Account(context.Background(), alice.HomeAccountID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := web.AcquireTokenSilent(context.Background(), []string{userScope}, confidential.WithSilentAccount(acct)); err != nil {
		t.Fatalf("silent call of a signed-in user with Redis down: %v", err)
	}
	l.waitCalls(t, killed, 20)
	// Let go-redis reach the state the recovery below starts from: after
	// PoolSize failed dials it fails new connections at once and redials
	// in the background. Each store error past the first PoolSize (which
	// may have been spent on the dead pooled connections) made at least
	// one failed dial, so 2×PoolSize errors get there, however slow the
	// machine.
	poolSize := uint64(rdb.Options().PoolSize)
	wait.Within(t, 10*time.Second, "the instances to absorb 2×PoolSize store errors with Redis down", func() bool {
		return sumStats(instances...).StoreErrors-errsBefore >= 2*poolSize
	})
	down := l.calls.Load() - killed
	downStats := sumStats(instances...)

	start := time.Now()
	srv.Restart(t)
	restarted := time.Now()
	recovered := f.waitShared(a, b, 10*time.Second)
	calls := l.stop(t)
	recovery := recovered.Sub(restarted)
	t.Logf("%d token calls, %d of them with Redis down, none failed; store errors absorbed: %d, exports given up: %d",
		calls, down, downStats.StoreErrors-errsBefore, downStats.ExportFailures)
	t.Logf("restart took %v; tokens shared again %v after the server answered",
		restarted.Sub(start).Round(time.Millisecond), recovery.Round(time.Millisecond))
	if downStats.StoreErrors == errsBefore || downStats.ExportFailures == 0 {
		t.Fatalf("the instances saw no store failure while Redis was down: %+v", downStats)
	}
	// After PoolSize failed dials, go-redis fails new connections at once
	// and redials in the background only once a second: recovery takes up
	// to a second (about 1.2 s measured). The limit adds slack for the
	// probes' own token calls on a loaded 2-core machine under -race, and
	// still catches a client that never redials.
	if recovery > 4*time.Second {
		t.Fatalf("tokens shared again only %v after Redis came back, want < 4 s", recovery)
	}

	// The load is stopped: the token request counts are exact again. An
	// app token and a user's sign-in made after the restart are served to
	// other instances from Redis.
	tok := f.mustAppToken(a, "after-restart")
	f.servedFromStore("after-restart", tok)
	bob := f.entra.AddUser("contoso", "bob@contoso.example", "pw")
	if _, err := web.AcquireTokenByAuthCode(context.Background(), f.entra.AuthCode("contoso", bob.Username),
		farmRedirect, []string{userScope}); err != nil {
		t.Fatal(err)
	}
	other, err := f.client(f.instance(), "contoso")
	if err != nil {
		t.Fatal(err)
	}
	before := f.entra.TokenRequests()
	acct, err = other.Account(context.Background(), bob.HomeAccountID)
	if err != nil || acct.HomeAccountID != bob.HomeAccountID {
		t.Fatalf("another instance does not find bob's sign-in after the restart: %v", err)
	}
	ar, err := other.AcquireTokenSilent(context.Background(), []string{userScope}, confidential.WithSilentAccount(acct))
	if err != nil {
		t.Fatalf("another instance cannot serve bob after the restart: %v", err)
	}
	if c, err := entratest.ParseToken(ar.AccessToken); err != nil || c.ObjectID != bob.ObjectID {
		t.Fatalf("bob got a token of %q (%v)", c.Username, err)
	}
	if n := f.entra.TokenRequests() - before; n != 0 {
		t.Fatalf("serving bob on another instance took %d token requests", n)
	}
}

// A token call finds the server hung (SIGSTOP: connections are accepted,
// nothing is answered). With no deadline on the caller's context, the
// Adapter's timeout bounds each hook call MSAL makes, so the call succeeds
// in a small multiple of that timeout rather than in go-redis's 3 s read
// timeout.
func TestFaultFrozenServer(t *testing.T) {
	t.Parallel()
	inBothContextModes(t, testFrozenServer)
}

// inBothContextModes runs test in parallel subtests, with go-redis clients
// built without and with ContextTimeoutEnabled: the store takes a
// different path for each (see the package documentation).
func inBothContextModes(t *testing.T, test func(t *testing.T, ctxTimeout bool)) {
	for _, ctxTimeout := range []bool{false, true} {
		t.Run(fmt.Sprintf("ContextTimeoutEnabled=%v", ctxTimeout), func(t *testing.T) {
			t.Parallel()
			test(t, ctxTimeout)
		})
	}
}

func testFrozenServer(t *testing.T, ctxTimeout bool) {
	const timeout = 200 * time.Millisecond
	srv := testserver.Redis(t)
	// go-redis's default timeouts (3 s reads), far above the Adapter's.
	c := newClient(t, &redis.Options{Addr: srv.Addr(), ContextTimeoutEnabled: ctxTimeout})
	f := newFarm(t, redisstore.New(c, redisstore.WithPrefix(freshPrefix())), timeout)
	a, b := f.instance(), f.instance()
	if ok, err := f.shared(a, b); err != nil || !ok {
		t.Fatalf("tokens not shared with Redis up: %v, %v", ok, err)
	}
	alice := f.entra.AddUser("contoso", "alice@contoso.example", "pw")
	// The assertion is on the hook calls, which the Adapter bounds, not on
	// the token calls, which add MSAL's and the emulator's CPU time (TLS
	// under -race): that is what a loaded machine stretches.
	var slowest maxDuration
	var hooks atomic.Int64
	observe := func(bool) func(time.Duration) { hooks.Add(1); return slowest.observe }
	ha, hb := timedHook{a, observe}, timedHook{b, observe}

	srv.Freeze()
	thawed := false
	defer func() {
		if !thawed {
			srv.Thaw()
		}
	}()
	// A hook call unbounded by the Adapter would take go-redis's 3 s read
	// timeout; one bounded takes the timeout plus scheduling, which the
	// slack covers on a loaded 2-core machine under -race.
	hookLimit := timeout + 1500*time.Millisecond
	bounded := func(what string, call func() error) {
		t.Helper()
		start := time.Now()
		if err := call(); err != nil {
			t.Fatalf("%s with Redis frozen: %v", what, err)
		}
		t.Logf("%s: %v", what, time.Since(start).Round(time.Millisecond))
	}
	for _, tenant := range tenantNames("frozen", 3) {
		bounded("app token for "+tenant, func() error { _, err := f.appToken(ha, tenant); return err })
	}
	web, err := f.client(hb, "contoso")
	if err != nil {
		t.Fatal(err)
	}
	bounded("sign-in by auth code", func() error {
		_, err := web.AcquireTokenByAuthCode(context.Background(), f.entra.AuthCode("contoso", alice.Username),
			farmRedirect, []string{userScope})
		return err
	})
	bounded("silent call", func() error {
		acct, err := web.Account(context.Background(), alice.HomeAccountID)
		if err != nil {
			return err
		}
		_, err = web.AcquireTokenSilent(context.Background(), []string{userScope}, confidential.WithSilentAccount(acct))
		return err
	})
	t.Logf("%d hook calls with Redis frozen, the slowest took %v (limit %v)", hooks.Load(), slowest.get().Round(time.Millisecond), hookLimit)
	if slowest.get() > hookLimit {
		t.Fatalf("a hook call took %v with a %v adapter timeout: the hung server leaked through", slowest.get(), timeout)
	}
	if s := sumStats(a, b); s.StoreErrors == 0 || s.ExportFailures == 0 {
		t.Fatalf("the frozen server's timeouts were not counted: %+v", s)
	}

	srv.Thaw()
	thawed = true
	start := time.Now()
	f.waitShared(a, b, 5*time.Second)
	t.Logf("tokens shared again %v after Thaw", time.Since(start).Round(time.Millisecond))
}

// The Sentinel master is failed over while instances request tokens. No
// token call may fail, and no write acknowledged after the failover
// completed may be lost.
//
// Redis replicates asynchronously and this store does not issue WAIT, so a
// failover can lose writes that the old master acknowledged: those that had
// not reached the replica when it was promoted, and those the old master
// accepted after the promotion until the clients heard of the switch (the
// sentinels announce it only once the promoted replica reports its new
// role, about a second later); the old master drops them all when it
// resynchronizes as a replica. The Adapter counted them as stored; a later
// instance just refetches those tokens. The test reports how many of the
// writes acknowledged during the failover were lost (most of them, in
// practice), and asserts on the writes acknowledged after Failover
// returned: they went to the new master, and every one must be there.
func TestFaultSentinelFailoverUnderLoad(t *testing.T) {
	t.Parallel()
	setup := testserver.RedisSentinel(t)
	c := redis.NewFailoverClient(&redis.FailoverOptions{
		MasterName:      setup.MasterName(),
		SentinelAddrs:   setup.SentinelAddrs(),
		MaxRetries:      faultRetries,
		MinRetryBackoff: 5 * time.Millisecond,
		MaxRetryBackoff: 50 * time.Millisecond,
		DialTimeout:     faultIOTimeout,
		ReadTimeout:     faultIOTimeout,
		WriteTimeout:    faultIOTimeout,
	})
	t.Cleanup(func() { c.Close() })
	f := newFarm(t, redisstore.New(c, redisstore.WithPrefix(freshPrefix())), 500*time.Millisecond)
	instances := []*msalcache.Adapter{f.instance(), f.instance(), f.instance()}
	if ok, err := f.shared(instances[0], instances[1]); err != nil || !ok {
		t.Fatalf("tokens not shared before the failover: %v, %v", ok, err)
	}

	l := f.startLoad(instances, 4, tenantNames("failover", 8))
	l.waitCalls(t, 0, 20)
	// Meanwhile a writer buys tokens for tenants of its own, each through
	// an instance of its own, so that the instance's Stats tell whether
	// that very write was acknowledged.
	var (
		mu             sync.Mutex
		duringAcked    []ackedWrite
		writerFailures int
	)
	stopWriter := make(chan struct{})
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		for i := 0; ; i++ {
			select {
			case <-stopWriter:
				return
			default:
			}
			w, acked, err := f.ackedWrite(fmt.Sprintf("during-failover-%d", i))
			mu.Lock()
			if err != nil {
				writerFailures++
			} else if acked {
				duringAcked = append(duringAcked, w)
			}
			mu.Unlock()
			time.Sleep(5 * time.Millisecond)
		}
	}()

	oldMaster := setup.Master().Addr()
	before := l.calls.Load()
	start := time.Now()
	setup.Failover(t)
	took := time.Since(start)
	close(stopWriter)
	<-writerDone
	during := l.calls.Load() - before
	if setup.Master().Addr() == oldMaster {
		t.Fatal("the master did not change")
	}
	duringStats := sumStats(instances...)

	var afterAcked []ackedWrite
	for i := range 12 {
		w, acked, err := f.ackedWrite(fmt.Sprintf("after-failover-%d", i))
		if err != nil {
			t.Fatalf("token call after the failover: %v", err)
		}
		if acked {
			afterAcked = append(afterAcked, w)
		}
	}
	calls := l.stop(t)
	if writerFailures != 0 {
		t.Fatalf("%d token calls of the writer failed during the failover", writerFailures)
	}
	t.Logf("failover took %v; %d token calls during it, %d in all, none failed; store errors absorbed: %d, exports given up: %d",
		took.Round(time.Millisecond), during, calls, duringStats.StoreErrors, duringStats.ExportFailures)
	if during == 0 || len(duringAcked) == 0 {
		t.Fatal("no token call completed during the failover: the test proved nothing")
	}

	// What Redis lost of the writes acknowledged during the failover: not
	// asserted (see above), only reported.
	lost := 0
	for _, w := range duringAcked {
		if f.mustAppToken(f.instance(), w.tenant) != w.token {
			lost++
		}
	}
	t.Logf("writes acknowledged during the failover: %d, lost by Redis: %d; acknowledged after it: %d of 12",
		len(duringAcked), lost, len(afterAcked))
	if len(afterAcked) < 6 {
		t.Fatalf("only %d of 12 writes acknowledged after the failover completed", len(afterAcked))
	}
	for _, w := range afterAcked {
		f.servedFromStore(w.tenant, w.token)
	}
}

// ackedWrite is a token bought by one instance, and whether the instance
// stored it.
type ackedWrite struct {
	tenant, token string
}

// ackedWrite buys tenant's app token on an instance of its own and reports
// whether that instance's Export stored it (acknowledged by Redis).
func (f *farm) ackedWrite(tenant string) (ackedWrite, bool, error) {
	a := f.instance()
	tok, err := f.appToken(a, tenant)
	if err != nil {
		return ackedWrite{}, false, err
	}
	s := a.Stats()
	return ackedWrite{tenant, tok}, s.Writes > 0 && s.ExportFailures == 0, nil
}

// Redis Cluster: a slot moves to another master under load, then a master
// is killed and restarted under load. Token calls never fail; the moved
// partition is served from its new node, and once the restarted node is
// back (empty: no persistence, no replica) tokens are shared again.
func TestFaultCluster(t *testing.T) {
	t.Parallel()
	cl := testserver.RedisCluster(t, 3)
	c := redis.NewClusterClient(&redis.ClusterOptions{
		Addrs:           cl.Addrs(),
		MaxRetries:      faultRetries,
		MinRetryBackoff: 5 * time.Millisecond,
		MaxRetryBackoff: 50 * time.Millisecond,
		DialTimeout:     faultIOTimeout,
		ReadTimeout:     faultIOTimeout,
		WriteTimeout:    faultIOTimeout,
		// ClusterOptions has no DialerRetries: set it on each node's client.
		NewClient: func(o *redis.Options) *redis.Client {
			o.DialerRetries, o.DialerRetryTimeout = 1, 10*time.Millisecond
			return redis.NewClient(o)
		},
	})
	t.Cleanup(func() { c.Close() })
	prefix := freshPrefix()
	f := newFarm(t, redisstore.New(c, redisstore.WithPrefix(prefix)), 500*time.Millisecond)
	instances := []*msalcache.Adapter{f.instance(), f.instance(), f.instance()}

	// slotOf returns the cluster slot of the key holding tenant's app
	// partition.
	slotOf := func(tenant string) int {
		t.Helper()
		key := prefix + instances[0].StoreKey(farmClientID+"_"+tenant+"_AppTokenCache")
		slot, err := c.ClusterKeySlot(context.Background(), key).Result()
		if err != nil {
			t.Fatal(err)
		}
		return int(slot)
	}
	// onNode returns a tenant whose partition lives on node.
	onNode := func(name string, node int) string {
		t.Helper()
		for i := range 100 {
			tenant := fmt.Sprintf("%s-%d", name, i)
			if cl.SlotOwner(t, slotOf(tenant)) == node {
				return tenant
			}
		}
		t.Fatalf("no tenant of 100 lands on node %d", node)
		return ""
	}

	t.Run("SlotMigration", func(t *testing.T) {
		const tenant = "migrating"
		tok := f.mustAppToken(instances[0], tenant)
		slot := slotOf(tenant)
		from := cl.SlotOwner(t, slot)
		to := (from + 1) % 3
		l := f.startLoad(instances, 4, append(tenantNames("migration", 7), tenant))
		l.waitCalls(t, 0, 20)
		before := l.calls.Load()
		cl.MigrateSlot(t, slot, from, to)
		l.waitCalls(t, before, 20)
		calls := l.stop(t)
		if got := cl.SlotOwner(t, slot); got != to {
			t.Fatalf("slot %d is on node %d after the migration, want %d", slot, got, to)
		}
		t.Logf("slot %d moved from node %d to node %d during %d token calls, none failed; %+v",
			slot, from, to, calls, sumStats(instances...))
		// The partition is served from its new node, without a token
		// request: the very token stored before the move, unless a store
		// error during the move made some instance refetch it.
		want := tok
		if sumStats(instances...).StoreErrors != 0 {
			want = "" // a failed load refetched: the partition may hold a newer token
		}
		f.servedFromStore(tenant, want)
	})

	t.Run("NodeRestart", func(t *testing.T) {
		const node = 1
		tenant := onNode("restart", node)
		f.mustAppToken(instances[0], tenant)
		errsBefore := sumStats(instances...).StoreErrors
		l := f.startLoad(instances, 4, append(tenantNames("restart-load", 7), tenant))
		l.waitCalls(t, 0, 20)
		cl.Node(node).Kill()
		killedAt := time.Now()
		killed := l.calls.Load()
		l.waitCalls(t, killed, 20)
		down := l.calls.Load() - killed
		if sumStats(instances...).StoreErrors == errsBefore {
			t.Fatal("no store error while a master was down: the test proved nothing")
		}
		downFor := time.Since(killedAt)
		restartAt := time.Now()
		cl.Node(node).Restart(t)
		cl.WaitHealthy(t)
		healthy := time.Now()
		// A tenant whose partition lives on the restarted node.
		a, b := f.instance(), f.instance()
		deadline := healthy.Add(5 * time.Second)
		for i := 0; ; i++ {
			probe := onNode(fmt.Sprintf("restart-probe-%d", i), node)
			ta := f.mustAppToken(a, probe)
			if tb := f.mustAppToken(b, probe); tb == ta {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("tokens on the restarted node not shared 5 s after the cluster was healthy")
			}
			time.Sleep(10 * time.Millisecond)
		}
		recovery := time.Since(healthy)
		calls := l.stop(t)
		t.Logf("%d token calls, %d with node %d down (%v), none failed; restart and rejoin took %v; shared again on that node %v after the cluster was healthy",
			calls, down, node, downFor.Round(time.Millisecond), healthy.Sub(restartAt).Round(time.Millisecond), recovery.Round(time.Millisecond))
		// The node came back empty: the partition written before the
		// kill may be a miss, but the call succeeds and is stored again.
		tok := f.mustAppToken(f.instance(), tenant)
		f.servedFromStore(tenant, tok)
	})
}
