package benchmarks

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/cache"
	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/entratest"
)

// userCounts are the populations of BenchmarkUsers, each signed in on top
// of the one before.
var userCounts = userCountsFromEnv([]int{1, 100, 1000, 10000})

// Shape of BenchmarkUsers: usersGoroutines make the calls of a case at
// once; the cases take turns in usersRounds blocks each.
const (
	usersGoroutines = 16
	usersRounds     = 5
)

// countingTransport counts every HTTP request an MSAL client sends: token
// requests, instance discovery, OpenID metadata.
type countingTransport struct {
	n    atomic.Int64
	next http.RoundTripper
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.next.RoundTrip(r)
}

// usersCase is one pattern of BenchmarkUsers.
type usersCase struct {
	name  string
	pop   *[]entratest.User // the users it serves
	inRow int               // calls per user picked
	// leaves reports that the case leaves work behind it that would be
	// charged to the next block: the runs wait for it to go (settle).
	leaves bool
	// call makes one silent call for u and returns the token.
	call func(ctx context.Context, u entratest.User) (string, error)

	calls, failed, wrong, http int64
	cpu, wall                  time.Duration
	heap                       int64 // largest live-heap growth over one block
	h                          histogram
}

// usersRow is one line of the users table.
type usersRow struct {
	n                       int
	name                    string
	cpuPerCall, wallPerCall float64 // ns
	p50, p99                float64 // ns
	httpPerCall             float64
	calls, failed, wrong    int64
	heap                    int64
	setupHeap               int64 // -1: not measured
}

var (
	usersMu   sync.Mutex
	usersRows []usersRow
)

// BenchmarkUsers measures how a silent call scales with the users an
// instance serves, pattern by pattern: 1, 100, 1,000 and 10,000 users
// signed in (on top of one another, before the timer), their calls in
// uniform rotation from 16 goroutines. Cases (Redis with the L1,
// encrypted, except msal-alone):
//
//   - msal-alone: one confidential client with no external cache holding
//     every user in its own memory (MSAL-Go's default options);
//   - shared: one confidential client with WithCache(adapter), shared by
//     every goroutine (MSAL-Go's default options);
//   - per-request: a new confidential client per call, with
//     WithInstanceDiscovery(false) (with the default, each new client makes
//     one instance-discovery request);
//   - per-request-defaults: the same with MSAL-Go's default options;
//   - pool: a msalcache.ClientPool of the default size (4 per GOMAXPROCS,
//     at least 8), clients built with MSAL-Go's default options;
//     pool-size4 and pool-size16 the same with WithPoolSize(4) and (16);
//   - pool-4-in-a-row: the pool, four calls in a row for each user picked.
//   - pool-postgres: the pool of the default size on PostgreSQL (pgstore
//     with the L1, encrypted), with users of its own.
//
// The cases take turns in blocks (usersRounds per case), so that the
// machine's drift reaches each alike. Each block counts CPU time of the
// process (getrusage), wall time, every HTTP request MSAL sends (through a
// counting transport), failed calls, calls that returned another user's
// token, and the live heap after a GC at its end less that at its start.
// b.N is the calls per case; run it with -benchtime Nx.
func BenchmarkUsers(b *testing.B) {
	be := openRedis(b)
	srv := entratest.NewServer()
	b.Cleanup(srv.Close)
	ct := &countingTransport{next: srv.Client().Transport}
	hc := &http.Client{Transport: ct}
	ns := fmt.Sprintf("users%d", namespaces.Add(1))
	adapter := func() *msalcache.Adapter {
		return newAdapter(b, be.store, be.ring, msalcache.WithL1(msalcache.L1Options{}), msalcache.WithNamespace(ns))
	}
	// Every case has an Adapter, and so an L1, of its own: an L1 shared by
	// two cases would have the first of them in a round revalidate (a
	// store round trip) every entry older than MaxStale for the others.
	aShared, aPer := adapter(), adapter()
	// The pool on PostgreSQL (pgstore) beside Redis, with its own users.
	pg := openPostgres(b)
	pgAdapter := func() *msalcache.Adapter {
		return newAdapter(b, pg.store, pg.ring, msalcache.WithL1(msalcache.L1Options{}), msalcache.WithNamespace(ns))
	}
	aPerPG, aPoolPG := pgAdapter(), pgAdapter()
	build := func(acc cache.ExportReplace, defaults bool) (confidential.Client, error) {
		cred, err := confidential.NewCredFromSecret("secret")
		if err != nil {
			return confidential.Client{}, err
		}
		opts := []confidential.Option{confidential.WithHTTPClient(hc)}
		if !defaults {
			opts = append(opts, confidential.WithInstanceDiscovery(false))
		}
		if acc != nil {
			opts = append(opts, confidential.WithCache(acc))
		}
		return confidential.New(srv.Authority("contoso"), "bench-client", cred, opts...)
	}
	msalAlone, err := build(nil, true)
	if err != nil {
		b.Fatal(err)
	}
	sharedClient, err := build(aShared, true)
	if err != nil {
		b.Fatal(err)
	}
	newPool := func(opts ...msalcache.PoolOption) *msalcache.ClientPool {
		p, err := msalcache.NewClientPool(adapter(), func(c cache.ExportReplace) (confidential.Client, error) { return build(c, true) }, opts...)
		if err != nil {
			b.Fatal(err)
		}
		return p
	}
	// The pool's default size, as NewClientPool computes it.
	defaultSize := max(8, 4*runtime.GOMAXPROCS(0))
	pool, poolRow := newPool(), newPool()
	pool4, pool16 := newPool(msalcache.WithPoolSize(4)), newPool(msalcache.WithPoolSize(16))
	poolPG, err := msalcache.NewClientPool(aPoolPG, func(c cache.ExportReplace) (confidential.Client, error) { return build(c, true) })
	if err != nil {
		b.Fatal(err)
	}

	silent := func(c confidential.Client, ctx context.Context, u entratest.User) (string, error) {
		acct, err := c.Account(ctx, u.HomeAccountID)
		if err != nil {
			return "", err
		}
		ar, err := c.AcquireTokenSilent(ctx, silentScopes, confidential.WithSilentAccount(acct))
		return ar.AccessToken, err
	}
	viaPool := func(p *msalcache.ClientPool) func(ctx context.Context, u entratest.User) (string, error) {
		return func(ctx context.Context, u entratest.User) (string, error) {
			ar, err := p.AcquireTokenSilent(ctx, u.HomeAccountID, silentScopes)
			return ar.AccessToken, err
		}
	}
	var aloneUsers, stored, storedPG []entratest.User
	cases := []*usersCase{
		{name: "msal-alone", pop: &aloneUsers, inRow: 1, call: func(ctx context.Context, u entratest.User) (string, error) {
			return silent(msalAlone, ctx, u)
		}},
		{name: "shared", pop: &stored, inRow: 1, leaves: true, call: func(ctx context.Context, u entratest.User) (string, error) {
			return silent(sharedClient, ctx, u)
		}},
		{name: "pool", pop: &stored, inRow: 1, call: viaPool(pool)},
		{name: "pool-size4", pop: &stored, inRow: 1, call: viaPool(pool4)},
		{name: "pool-size16", pop: &stored, inRow: 1, call: viaPool(pool16)},
		{name: "pool-4-in-a-row", pop: &stored, inRow: 4, call: viaPool(poolRow)},
		{name: "pool-postgres", pop: &storedPG, inRow: 1, call: viaPool(poolPG)},
		{name: "per-request", pop: &stored, inRow: 1, leaves: true, call: func(ctx context.Context, u entratest.User) (string, error) {
			c, err := build(aPer, false)
			if err != nil {
				return "", err
			}
			return silent(c, ctx, u)
		}},
		{name: "per-request-defaults", pop: &stored, inRow: 1, leaves: true, call: func(ctx context.Context, u entratest.User) (string, error) {
			c, err := build(aPer, true)
			if err != nil {
				return "", err
			}
			return silent(c, ctx, u)
		}},
	}
	setup := map[string]int64{}
	for _, n := range userCounts {
		aloneUsers = append(aloneUsers, signInMany(b, srv, func() (confidential.Client, error) { return msalAlone, nil }, n-len(aloneUsers))...)
		stored = append(stored, signInMany(b, srv, func() (confidential.Client, error) { return build(aPer, false) }, n-len(stored))...)
		storedPG = append(storedPG, signInMany(b, srv, func() (confidential.Client, error) { return build(aPerPG, false) }, n-len(storedPG))...)
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			ctx := context.Background()
			// Warm-up: every client of each pool built and its authority
			// resolved (the heap that takes is the pool's own), then every
			// case once per user (the first 2,000 at 10,000).
			if _, ok := setup["pool"]; !ok {
				h0 := liveHeap()
				warmPool(b, pool, min(defaultSize, usersGoroutines), stored[0])
				h1 := liveHeap()
				warmPool(b, pool4, 4, stored[0])
				h2 := liveHeap()
				warmPool(b, pool16, 16, stored[0])
				warmPool(b, poolRow, min(defaultSize, usersGoroutines), stored[0])
				warmPool(b, poolPG, min(defaultSize, usersGoroutines), storedPG[0])
				setup["pool"], setup["pool-size4"], setup["pool-size16"] = h1-h0, h2-h1, liveHeap()-h2
			}
			for _, c := range cases {
				c.calls, c.failed, c.wrong, c.http, c.cpu, c.wall, c.heap, c.h = 0, 0, 0, 0, 0, 0, 0, histogram{}
				pop := *c.pop
				for i := 0; i < len(pop) && i < 2000; i++ {
					if _, err := c.call(ctx, pop[i]); err != nil {
						b.Fatalf("%s warm-up: %v", c.name, err)
					}
				}
			}
			perBlock := max(1, b.N/usersRounds)
			b.ResetTimer()
			settle() // after the warm-up
			for range usersRounds {
				for _, c := range cases {
					runUsersBlock(c, perBlock, ct)
					if c.leaves {
						settle()
					}
				}
			}
			b.StopTimer()
			for _, c := range cases {
				b.ReportMetric(float64(c.cpu.Nanoseconds())/float64(c.calls), c.name+"-cpu-ns")
				if c.wrong > 0 {
					b.Errorf("%s: %d calls returned another user's token", c.name, c.wrong)
				}
			}
			recordUsers(n, cases, setup)
		})
	}
}

// warmPool holds size clients of p at once, so that each is built, and
// makes a silent call on each, so that each has resolved its authority.
func warmPool(b *testing.B, p *msalcache.ClientPool, size int, u entratest.User) {
	var wg, held sync.WaitGroup
	held.Add(size)
	errs := make(chan error, size)
	for range size {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- p.Do(context.Background(), "", func(ctx context.Context, c confidential.Client) error {
				held.Done()
				held.Wait()
				acct, err := c.Account(ctx, u.HomeAccountID)
				if err == nil {
					_, err = c.AcquireTokenSilent(ctx, silentScopes, confidential.WithSilentAccount(acct))
				}
				return err
			})
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			b.Fatal(err)
		}
	}
}

// runUsersBlock makes calls calls of case c from usersGoroutines
// goroutines and adds what they cost to c.
func runUsersBlock(c *usersCase, calls int, ct *countingTransport) {
	pop := *c.pop
	ctx := context.Background()
	heap0 := liveHeap()
	http0 := ct.n.Load()
	var next atomic.Int64
	var made, failed, wrong atomic.Int64
	hs := make([]histogram, usersGoroutines)
	cpu0 := cpuTime()
	start := time.Now()
	var wg sync.WaitGroup
	for g := range usersGoroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h := &hs[g]
			for {
				i := next.Add(int64(c.inRow)) - int64(c.inRow)
				if i >= int64(calls) {
					return
				}
				u := pop[(i/int64(c.inRow))%int64(len(pop))]
				for range c.inRow {
					t0 := time.Now()
					tok, err := c.call(ctx, u)
					h.record(time.Since(t0))
					made.Add(1)
					switch {
					case err != nil:
						failed.Add(1)
					default:
						if claims, _ := entratest.ParseToken(tok); claims.ObjectID != u.ObjectID {
							wrong.Add(1)
						}
					}
				}
			}
		}()
	}
	wg.Wait()
	c.wall += time.Since(start)
	c.cpu += cpuTime() - cpu0
	c.http += ct.n.Load() - http0
	for i := range hs {
		c.h.add(&hs[i])
	}
	c.calls += made.Load()
	c.failed += failed.Load()
	c.wrong += wrong.Load()
	if d := liveHeap() - heap0; d > c.heap {
		c.heap = d
	}
}

// cpuTime returns the CPU time (user and system) the process used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// liveHeap returns the heap in use after a garbage collection.
func liveHeap() int64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// recordUsers keeps the rows of one population for the users table.
func recordUsers(n int, cases []*usersCase, setup map[string]int64) {
	usersMu.Lock()
	defer usersMu.Unlock()
	// go test runs a benchmark with b.N = 1 before the b.N asked for:
	// keep the last run of each population.
	usersRows = slices.DeleteFunc(usersRows, func(r usersRow) bool { return r.n == n })
	for _, c := range cases {
		r := usersRow{n: n, name: c.name, calls: c.calls, failed: c.failed, wrong: c.wrong, heap: c.heap, setupHeap: -1}
		if c.calls > 0 {
			r.cpuPerCall = float64(c.cpu.Nanoseconds()) / float64(c.calls)
			r.wallPerCall = float64(c.wall.Nanoseconds()) / float64(c.calls)
			r.httpPerCall = float64(c.http) / float64(c.calls)
		}
		r.p50, r.p99 = c.h.quantile(0.5), c.h.quantile(0.99)
		if h, ok := setup[c.name]; ok {
			r.setupHeap = h
		}
		usersRows = append(usersRows, r)
	}
}

// renderUsers lays BenchmarkUsers' rows out as one markdown table, "" when
// it did not run.
func renderUsers() string {
	usersMu.Lock()
	defer usersMu.Unlock()
	if len(usersRows) == 0 {
		return ""
	}
	cpu := map[[2]any]float64{}
	for _, r := range usersRows {
		cpu[[2]any{r.n, r.name}] = r.cpuPerCall
	}
	var sb strings.Builder
	sb.WriteString("| users | case | CPU/call | wall/call | p50 | p99 | HTTP/call | failed | wrong | Δheap/block | pool heap | vs per-request | vs msal-alone | vs pool 1 user |\n")
	sb.WriteString("|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	for _, r := range usersRows {
		setup := "—"
		if r.setupHeap >= 0 {
			setup = formatBytes(r.setupHeap)
		}
		fmt.Fprintf(&sb, "| %d | %s | %s | %s | %s | %s | %.3f | %d of %d | %d | %s | %s | %s | %s | %s |\n",
			r.n, r.name, formatNs(r.cpuPerCall), formatNs(r.wallPerCall), formatNs(r.p50), formatNs(r.p99),
			r.httpPerCall, r.failed, r.calls, r.wrong, formatBytes(r.heap), setup,
			ratio(r.cpuPerCall, cpu[[2]any{r.n, "per-request"}]),
			ratio(r.cpuPerCall, cpu[[2]any{r.n, "msal-alone"}]),
			ratio(r.cpuPerCall, cpu[[2]any{1, "pool"}]))
	}
	return sb.String()
}

func formatBytes(n int64) string {
	switch {
	case n >= 1<<20 || n <= -1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10 || n <= -1<<10:
		return fmt.Sprintf("%.0f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// userCountsFromEnv returns the user counts BenchmarkUsers runs, def
// unless MSALCACHE_BENCH_USERS lists others ("100,1000"), for a quicker
// look at one row; the published table uses def.
func userCountsFromEnv(def []int) []int {
	v := os.Getenv("MSALCACHE_BENCH_USERS")
	if v == "" {
		return def
	}
	var out []int
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			panic(fmt.Sprintf("MSALCACHE_BENCH_USERS=%q: want a comma-separated list of user counts", v))
		}
		out = append(out, n)
	}
	return out
}

// settle waits until what a case that leaves work behind has gone, so that
// the next block is not charged for it: the client-per-request cases'
// Adapter tracks each of the thousands of clients a block builds for 3 s
// after its last call (its idle sweep), and the shared client's Adapter
// what it lent, a heap that every GC cycle of the next block would mark
// (the pool that followed the shared client measured 1.6x what the same
// pool measured after another pool). A benchmark's settle, not a timing
// bet: the wait is that sweep's fixed delay, then a GC.
func settle() {
	time.Sleep(4 * time.Second)
	runtime.GC()
}
