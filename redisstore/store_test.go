package redisstore_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/internal/testserver"
	"github.com/msalcache/msalcache/redisstore"
	"github.com/redis/go-redis/v9"
)

// newClient returns a client for addr, closed when the test ends.
func newClient(t testing.TB, o *redis.Options) *redis.Client {
	t.Helper()
	c := redis.NewClient(o)
	t.Cleanup(func() { c.Close() })
	return c
}

// newSingle starts a redis-server and returns it, a default client and a
// store on it.
func newSingle(t *testing.T, sopts ...testserver.RedisOption) (*testserver.RedisServer, *redis.Client, *redisstore.Store) {
	t.Helper()
	srv := testserver.Redis(t, sopts...)
	c := newClient(t, &redis.Options{Addr: srv.Addr()})
	s := redisstore.New(c)
	t.Cleanup(func() { s.Close() })
	return srv, c, s
}

// commandCalls returns how many times the server has executed cmd.
func commandCalls(t *testing.T, c *redis.Client, cmd string) int {
	t.Helper()
	info, err := c.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(info, "\n") {
		if rest, ok := strings.CutPrefix(line, "cmdstat_"+cmd+":calls="); ok {
			n, _, _ := strings.Cut(rest, ",")
			calls, err := strconv.Atoi(n)
			if err != nil {
				t.Fatalf("commandstats line %q: %v", line, err)
			}
			return calls
		}
	}
	return 0
}

func TestKeysArePrefixedAndExpire(t *testing.T) {
	ctx := context.Background()
	_, c, _ := newSingle(t)
	s := redisstore.New(c, redisstore.WithPrefix("app1:"))
	if _, err := s.Save(ctx, "k", []byte("v"), driver.NoVersion, time.Hour); err != nil {
		t.Fatal(err)
	}
	if n := c.Exists(ctx, "app1:k").Val(); n != 1 {
		t.Fatalf("key app1:k does not exist (EXISTS = %d)", n)
	}
	if ttl := c.PTTL(ctx, "app1:k").Val(); ttl <= 59*time.Minute {
		t.Fatalf("PTTL = %v, want about 1h", ttl)
	}
	// Another prefix does not see it.
	other := redisstore.New(c)
	if _, _, err := other.Load(ctx, "k"); !errors.Is(err, driver.ErrNotFound) {
		t.Fatalf("Load under the default prefix = %v, want ErrNotFound", err)
	}
}

func TestDeleteThenCreateNeverReusesAVersion(t *testing.T) {
	ctx := context.Background()
	_, _, s := newSingle(t)
	seen := map[driver.Version]bool{}
	var stale []driver.Version
	for range 50 {
		v, err := s.Save(ctx, "aba", []byte("x"), driver.NoVersion, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if seen[v] {
			t.Fatalf("version %#x handed out twice across delete/create", v)
		}
		seen[v] = true
		stale = append(stale, v)
		if err := s.Delete(ctx, "aba"); err != nil {
			t.Fatal(err)
		}
	}
	cur, err := s.Save(ctx, "aba", []byte("fresh"), driver.NoVersion, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range stale {
		if _, err := s.Save(ctx, "aba", []byte("stale writer"), v, time.Minute); !errors.Is(err, driver.ErrConflict) {
			t.Fatalf("Save with the version of a deleted incarnation = %v, want ErrConflict", err)
		}
	}
	if b, v, err := s.Load(ctx, "aba"); err != nil || v != cur || string(b) != "fresh" {
		t.Fatalf("Load = %q, %#x, %v; want fresh, %#x", b, v, err, cur)
	}
}

// TestRetriedSaveSucceeds makes go-redis really retry a compare-and-set
// whose reply timed out (the server is frozen, then thawed: every attempt
// runs), and checks that the Save reports success with the version that is
// stored, instead of a conflict against its own first attempt.
func TestRetriedSaveSucceeds(t *testing.T) {
	ctx := context.Background()
	srv := testserver.Redis(t)
	admin := newClient(t, &redis.Options{Addr: srv.Addr()})
	c := newClient(t, &redis.Options{
		Addr:            srv.Addr(),
		ReadTimeout:     100 * time.Millisecond,
		WriteTimeout:    100 * time.Millisecond,
		MaxRetries:      10,
		MinRetryBackoff: 10 * time.Millisecond,
		MaxRetryBackoff: 20 * time.Millisecond,
		PoolSize:        8,
	})
	s := redisstore.New(c)
	v0, err := s.Save(ctx, "retry", []byte("v0"), driver.NoVersion, time.Minute) // also loads the script
	if err != nil {
		t.Fatal(err)
	}
	// go-redis retries a timed-out command on another pooled connection, but
	// does not retry when a fresh connection's handshake times out: open
	// enough connections now, while the server answers.
	warmPool(t, c, 8)
	before := commandCalls(t, admin, "evalsha")

	srv.Freeze()
	type result struct {
		v   driver.Version
		err error
	}
	done := make(chan result, 1)
	go func() {
		v, err := s.Save(ctx, "retry", []byte("v1"), v0, time.Minute)
		done <- result{v, err}
	}()
	// Thaw once two attempts have timed out (go-redis drops each timed-out
	// connection as stale), not after a fixed sleep that a loaded machine
	// may spend before the first attempt even starts. Six pooled
	// connections are left for the retries that follow.
	deadline := time.Now().Add(10 * time.Second)
	for c.PoolStats().StaleConns < 2 {
		if time.Now().After(deadline) {
			srv.Thaw()
			t.Fatalf("go-redis did not retry the Save within 10s against a frozen server: %+v", *c.PoolStats())
		}
		time.Sleep(5 * time.Millisecond)
	}
	srv.Thaw()
	res := <-done
	if res.err != nil {
		t.Fatalf("retried Save = %v, want success", res.err)
	}
	if runs := commandCalls(t, admin, "evalsha") - before; runs < 2 {
		t.Fatalf("the script ran %d times; the test needs go-redis to retry (>= 2)", runs)
	}
	b, v, err := s.Load(ctx, "retry")
	if err != nil || v != res.v || string(b) != "v1" {
		t.Fatalf("Load = %q, %#x, %v; want v1, %#x", b, v, err, res.v)
	}
	if _, err := s.Save(ctx, "retry", []byte("v2"), res.v, time.Minute); err != nil {
		t.Fatalf("Save with the returned version = %v", err)
	}
}

// warmPool leaves n idle connections in c's pool: n sticky connections
// each answer a PING and then go back to the pool.
func warmPool(t *testing.T, c *redis.Client, n int) {
	t.Helper()
	ctx := context.Background()
	var conns []*redis.Conn
	for range n {
		cn := c.Conn()
		if err := cn.Ping(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		conns = append(conns, cn)
	}
	for _, cn := range conns {
		cn.Close()
	}
	if idle := c.PoolStats().IdleConns; idle < uint32(n) {
		t.Fatalf("only %d idle connections after warming %d", idle, n)
	}
}

func TestVersionsSurviveRestart(t *testing.T) {
	ctx := context.Background()
	srv, c, s := newSingle(t, testserver.RedisArgs("--appendonly", "yes"))
	v, err := s.Save(ctx, "durable", []byte("ring"), driver.NoVersion, 0)
	if err != nil {
		t.Fatal(err)
	}
	srv.Restart(t)
	b, got, err := loadEventually(ctx, t, s, "durable", 3*time.Second)
	if err != nil || got != v || string(b) != "ring" {
		t.Fatalf("after restart Load = %q, %#x, %v; want ring, %#x", b, got, err, v)
	}
	if _, err := s.Save(ctx, "durable", []byte("ring2"), v, 0); err != nil {
		t.Fatalf("CAS with the pre-restart version = %v", err)
	}
	// The restarted server had forgotten the script: EVALSHA got NOSCRIPT
	// and the store fell back to EVAL, which loaded it again.
	if n := commandCalls(t, c, "eval"); n != 1 {
		t.Fatalf("EVAL ran %d times after the restart, want 1 (the NOSCRIPT fallback)", n)
	}
	if _, err := s.Save(ctx, "durable", []byte("ring3"), driver.NoVersion, 0); !errors.Is(err, driver.ErrConflict) {
		t.Fatalf("create over the restored key = %v, want ErrConflict", err)
	}
	if n := commandCalls(t, c, "eval"); n != 1 {
		t.Fatalf("EVAL ran %d times, want the script cached after the first fallback", n)
	}
}

// loadEventually retries Load until it succeeds or d passes: the client's
// pooled connections died with the server and are replaced lazily.
func loadEventually(ctx context.Context, t *testing.T, s driver.Store, key string, d time.Duration) ([]byte, driver.Version, error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		b, v, err := s.Load(ctx, key)
		if err == nil || errors.Is(err, driver.ErrNotFound) || time.Now().After(deadline) {
			return b, v, err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestFrozenServerHonoursDeadline checks that a deadline shorter than the
// client's ReadTimeout (3 s by default) ends the call on time, with an error
// that is context.DeadlineExceeded rather than a bare network timeout.
//
// It runs with a default client (the store watches ctx on a goroutine) and
// with a ContextTimeoutEnabled one (go-redis puts the deadline on the
// socket; a cancellation still goes through the goroutine).
func TestFrozenServerHonoursDeadline(t *testing.T) {
	for _, ctxTimeout := range []bool{false, true} {
		t.Run("ContextTimeoutEnabled="+strconv.FormatBool(ctxTimeout), func(t *testing.T) {
			testFrozenServerHonoursDeadline(t, ctxTimeout)
		})
	}
}

func testFrozenServerHonoursDeadline(t *testing.T, ctxTimeout bool) {
	srv := testserver.Redis(t)
	c := newClient(t, &redis.Options{Addr: srv.Addr(), ContextTimeoutEnabled: ctxTimeout})
	s := redisstore.New(c)
	ctx := context.Background()
	v, err := s.Save(ctx, "k", []byte("v"), driver.NoVersion, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	srv.Freeze()
	thawed := false
	defer func() {
		if !thawed {
			srv.Thaw()
		}
	}()
	calls := map[string]func(context.Context) error{
		"Load": func(ctx context.Context) error { _, _, err := s.Load(ctx, "k"); return err },
		"Save": func(ctx context.Context) error {
			_, err := s.Save(ctx, "k", []byte("w"), v, time.Minute)
			return err
		},
		"Delete": func(ctx context.Context) error { return s.Delete(ctx, "k") },
		"Ping":   func(ctx context.Context) error { return s.Ping(ctx) },
		"List": func(ctx context.Context) error {
			return s.List(ctx, "", func(string) error { return nil })
		},
	}
	var wg sync.WaitGroup
	for name, call := range calls {
		wg.Add(2)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
			defer cancel()
			start := time.Now()
			err := call(ctx)
			if el := time.Since(start); el > time.Second {
				t.Errorf("%s with a 200ms deadline took %v", name, el)
			}
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("%s = %v, want context.DeadlineExceeded", name, err)
			}
		}()
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithCancel(ctx)
			time.AfterFunc(100*time.Millisecond, cancel)
			start := time.Now()
			err := call(ctx)
			if el := time.Since(start); el > time.Second {
				t.Errorf("%s cancelled after 100ms took %v", name, el)
			}
			if !errors.Is(err, context.Canceled) {
				t.Errorf("%s = %v, want context.Canceled", name, err)
			}
		}()
	}
	wg.Wait()
	srv.Thaw()
	thawed = true
	// The Save and Delete sent to the frozen server may have run after the
	// thaw; whatever happened, the store answers again.
	if _, _, err := s.Load(ctx, "k"); err != nil && !errors.Is(err, driver.ErrNotFound) {
		t.Fatalf("Load after thaw = %v", err)
	}
}

// TestNetworkTimeoutIsDeadlineExceeded covers a client whose own
// ReadTimeout fires before the caller's ctx: the error still says
// DeadlineExceeded, and keeps the network error as its cause.
func TestNetworkTimeoutIsDeadlineExceeded(t *testing.T) {
	srv := testserver.Redis(t)
	c := newClient(t, &redis.Options{Addr: srv.Addr(), ReadTimeout: 100 * time.Millisecond, MaxRetries: -1})
	s := redisstore.New(c)
	ctx := context.Background()
	if err := s.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	srv.Freeze()
	defer srv.Thaw()
	start := time.Now()
	_, _, err := s.Load(ctx, "k")
	if el := time.Since(start); el > time.Second {
		t.Errorf("Load took %v with a 100ms ReadTimeout", el)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Load = %v, want context.DeadlineExceeded", err)
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("Load = %v, want the net.Error kept as cause", err)
	}
}

// TestServerKilledAndRestarted kills Redis while a client keeps loading:
// calls fail (they do not hang) while it is down, and succeed again soon
// after it is back.
func TestServerKilledAndRestarted(t *testing.T) {
	srv, _, s := newSingle(t, testserver.RedisArgs("--appendonly", "yes", "--appendfsync", "always"))
	ctx := context.Background()
	v, err := s.Save(ctx, "k", []byte("v"), driver.NoVersion, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	type counts struct{ ok, failed int }
	loaderDone := make(chan counts)
	served := make(chan struct{}) // closed at the loader's first success
	go func() {                   // a busy reader, as an application under load would be
		var n counts
		for {
			select {
			case <-stop:
				loaderDone <- n
				return
			default:
			}
			ctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
			if _, _, err := s.Load(ctx, "k"); err == nil {
				if n.ok == 0 {
					close(served)
				}
				n.ok++
			} else {
				n.failed++
			}
			cancel()
		}
	}()
	// Kill once the loader has been served, rather than after a sleep that
	// a loaded machine may spend before the loader runs at all.
	<-served
	srv.Kill()
	// Without a deadline, a call gives up after go-redis's own retries
	// (default options: 4 attempts of 5 dials 100ms apart, about 2 s); with
	// one, at the deadline.
	for _, d := range []time.Duration{0, 300 * time.Millisecond} {
		for _, name := range []string{"Load", "Save", "Delete"} {
			ctx, cancel := ctx, context.CancelFunc(func() {})
			if d > 0 {
				ctx, cancel = context.WithTimeout(ctx, d)
			}
			start := time.Now()
			var err error
			switch name {
			case "Load":
				_, _, err = s.Load(ctx, "k")
			case "Save":
				_, err = s.Save(ctx, "k", []byte("w"), v, time.Hour)
			case "Delete":
				err = s.Delete(ctx, "other")
			}
			el := time.Since(start)
			cancel()
			if err == nil || errors.Is(err, driver.ErrNotFound) || errors.Is(err, driver.ErrConflict) {
				t.Fatalf("%s on a dead server = %v, want a connection error", name, err)
			}
			// With a deadline, well under the 2 s of go-redis's own
			// retries, with room for a loaded machine.
			limit := 4 * time.Second
			if d > 0 {
				limit = d + time.Second
			}
			if el > limit {
				t.Fatalf("%s on a dead server (deadline %v) took %v", name, d, el)
			}
		}
	}
	srv.Restart(t)
	restarted := time.Now()
	b, got, err := loadEventually(ctx, t, s, "k", 5*time.Second)
	if err != nil || got != v || string(b) != "v" {
		t.Fatalf("Load after restart = %q, %#x, %v", b, got, err)
	}
	// go-redis probes a pool that failed PoolSize dials once a second:
	// four of its probes, not one, so that a loaded machine does not fail.
	if el := time.Since(restarted); el > 4*time.Second {
		t.Fatalf("store served again only %v after the restart", el)
	}
	t.Logf("served again %v after restart", time.Since(restarted).Round(time.Millisecond))
	close(stop)
	if n := <-loaderDone; n.ok == 0 || n.failed == 0 {
		t.Fatalf("the background loader saw %d successes and %d failures; want both", n.ok, n.failed)
	} else {
		t.Logf("background loader: %d loads served, %d failed while the server was down", n.ok, n.failed)
	}
}

func TestTooLargeFailsBeforeTheNetwork(t *testing.T) {
	// Nothing listens on this address: ErrTooLarge must come first.
	c := newClient(t, &redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
	s := redisstore.New(c, redisstore.WithMaxValueSize(16))
	if got := s.MaxValueSize(); got != 16 {
		t.Fatalf("MaxValueSize = %d", got)
	}
	_, err := s.Save(context.Background(), "k", make([]byte, 17), driver.NoVersion, time.Minute)
	if !errors.Is(err, driver.ErrTooLarge) {
		t.Fatalf("Save of 17 bytes = %v, want ErrTooLarge", err)
	}
	if got := redisstore.New(c).MaxValueSize(); got != redisstore.DefaultMaxValueSize {
		t.Fatalf("default MaxValueSize = %d", got)
	}
	// A limit above what Redis can hold is refused, not clamped (see
	// TestInvalidOptionFailsEveryCall); the largest it can hold is taken.
	if got := redisstore.New(c, redisstore.WithMaxValueSize(redisstore.MaxValueSize)).MaxValueSize(); got != redisstore.MaxValueSize {
		t.Fatalf("MaxValueSize at the Redis limit = %d, want %d", got, redisstore.MaxValueSize)
	}
}

// TestMalformedRecord plants values this store did not write, including
// keys of other Redis types, which the conformance suite's raw bytes
// cannot produce: each is corrupt (Load says so without quoting it), a
// versioned Save conflicts without touching it, a create replaces it.
func TestMalformedRecord(t *testing.T) {
	ctx := context.Background()
	_, c, s := newSingle(t)
	plant := map[string]func(k string) error{
		"short": func(k string) error { return c.Set(ctx, k, "abc", 0).Err() },
		"zero":  func(k string) error { return c.Set(ctx, k, "\x00\x00\x00\x00\x00\x00\x00\x00secret", 0).Err() },
		"hash":  func(k string) error { return c.HSet(ctx, k, "f", "secret").Err() },
		"list":  func(k string) error { return c.RPush(ctx, k, "secret").Err() },
		"set":   func(k string) error { return c.SAdd(ctx, k, "secret").Err() },
		"stream": func(k string) error {
			return c.XAdd(ctx, &redis.XAddArgs{Stream: k, Values: []string{"f", "secret"}}).Err()
		},
	}
	for name, put := range plant {
		k := "foreign-" + name
		if err := put(redisstore.DefaultPrefix + k); err != nil {
			t.Fatal(err)
		}
		typ := c.Type(ctx, redisstore.DefaultPrefix+k).Val()
		_, _, err := s.Load(ctx, k)
		if !errors.Is(err, driver.ErrCorrupt) {
			t.Fatalf("Load of a %s (%s) = %v, want ErrCorrupt", name, typ, err)
		}
		if strings.Contains(err.Error(), "secret") || strings.Contains(err.Error(), k) {
			t.Fatalf("Load's error %q quotes the value or names the key", err)
		}
		if _, err := s.Save(ctx, k, []byte("x"), 0x1234, time.Minute); !errors.Is(err, driver.ErrConflict) {
			t.Fatalf("versioned Save over a %s = %v, want ErrConflict", name, err)
		}
		if got := c.Type(ctx, redisstore.DefaultPrefix+k).Val(); got != typ {
			t.Fatalf("a conflicting Save changed the %s's type to %s", typ, got)
		}
		v, err := s.Save(ctx, k, []byte("x"), driver.NoVersion, time.Minute)
		if err != nil {
			t.Fatalf("create over a %s = %v, want it replaced", name, err)
		}
		if b, got, err := s.Load(ctx, k); err != nil || got != v || string(b) != "x" {
			t.Fatalf("Load after replacing a %s = %q, %#x, %v; want x, %#x", name, b, got, err, v)
		}
		if ttl := c.PTTL(ctx, redisstore.DefaultPrefix+k).Val(); ttl <= 0 {
			t.Fatalf("the record that replaced a %s has PTTL %v, want the Save's TTL", name, ttl)
		}
	}
}

func TestCloseLeavesTheClientOpen(t *testing.T) {
	ctx := context.Background()
	_, c, _ := newSingle(t)
	s := redisstore.New(c)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
	if _, _, err := s.Load(ctx, "k"); !errors.Is(err, driver.ErrClosed) {
		t.Fatalf("Load after Close = %v, want ErrClosed", err)
	}
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("client after store Close: %v", err)
	}

	owned := redisstore.New(c, redisstore.WithCloseClient())
	if err := owned.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Ping(ctx).Err(); !errors.Is(err, redis.ErrClosed) {
		t.Fatalf("client after Close WithCloseClient: Ping = %v, want redis.ErrClosed", err)
	}
	// A store over a closed client reports ErrClosed too.
	if _, _, err := redisstore.New(c).Load(ctx, "k"); !errors.Is(err, driver.ErrClosed) {
		t.Fatalf("Load over a closed client = %v, want ErrClosed", err)
	}
}

func TestNilClientDoesNotPanic(t *testing.T) {
	s := redisstore.New(nil, nil)
	ctx := context.Background()
	if _, _, err := s.Load(ctx, "k"); err == nil {
		t.Error("Load succeeded")
	}
	if _, err := s.Save(ctx, "k", nil, 0, 0); err == nil {
		t.Error("Save succeeded")
	}
	if err := s.Delete(ctx, "k"); err == nil {
		t.Error("Delete succeeded")
	}
	if err := s.List(ctx, "", func(string) error { return nil }); err == nil {
		t.Error("List succeeded")
	}
	if err := s.Ping(ctx); err == nil {
		t.Error("Ping succeeded")
	}
	if err := s.Close(); err != nil {
		t.Error(err)
	}
}

func TestListPrefixWithGlobCharacters(t *testing.T) {
	ctx := context.Background()
	_, c, _ := newSingle(t)
	s := redisstore.New(c, redisstore.WithPrefix("a*["))
	other := redisstore.New(c, redisstore.WithPrefix("ab["))
	for _, k := range []string{"x1", "x2", "y1"} {
		if _, err := s.Save(ctx, k, []byte("v"), driver.NoVersion, time.Minute); err != nil {
			t.Fatal(err)
		}
		if _, err := other.Save(ctx, k+"-other", []byte("v"), driver.NoVersion, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	got := listAll(t, s, "x")
	if want := []string{"x1", "x2"}; !slices.Equal(got, want) {
		t.Fatalf("List(x) = %v, want %v", got, want)
	}
	if got := listAll(t, s, ""); len(got) != 3 {
		t.Fatalf("List() = %v, want 3 keys of this prefix only", got)
	}
	stop := errors.New("stop")
	n := 0
	err := s.List(ctx, "", func(string) error { n++; return stop })
	if !errors.Is(err, stop) || n != 1 {
		t.Fatalf("List stopping at the first key: err %v after %d calls", err, n)
	}
}

func listAll(t *testing.T, s driver.Lister, prefix string) []string {
	t.Helper()
	var keys []string
	if err := s.List(context.Background(), prefix, func(k string) error {
		keys = append(keys, k)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	slices.Sort(keys)
	return keys
}

func TestLoadReturnsACopy(t *testing.T) {
	ctx := context.Background()
	_, _, s := newSingle(t)
	val := bytes.Repeat([]byte("abc"), 100)
	if _, err := s.Save(ctx, "k", val, driver.NoVersion, time.Minute); err != nil {
		t.Fatal(err)
	}
	val[0] = 'X' // the store must not have kept the caller's slice
	b1, _, err := s.Load(ctx, "k")
	if err != nil || b1[0] != 'a' {
		t.Fatalf("Load = %q..., %v", b1[:3], err)
	}
	b1[1] = 'Y'
	b2, _, err := s.Load(ctx, "k")
	if err != nil || !bytes.Equal(b2, bytes.Repeat([]byte("abc"), 100)) {
		t.Fatalf("second Load saw the first caller's change: %q..., %v", b2[:3], err)
	}
}

// TestPublishDeniedByACL: a Redis 7 ACL user is given no pub/sub channel
// unless granted one. Every write publishes, so such a user's Save and
// Delete must fail, write nothing, and say what to grant.
func TestPublishDeniedByACL(t *testing.T) {
	ctx := context.Background()
	srv, admin, _ := newSingle(t)
	if err := admin.Do(ctx, "ACL", "SETUSER", "app", "on", ">pw", "resetchannels", "~*", "+@all").Err(); err != nil {
		t.Fatal(err)
	}
	c := newClient(t, &redis.Options{Addr: srv.Addr(), Username: "app", Password: "pw"})
	s := redisstore.New(c)
	ref := redisstore.New(admin)
	v, err := ref.Save(ctx, "k", []byte("v1"), driver.NoVersion, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Save(ctx, "k", []byte("v2"), v, time.Minute); err == nil || !strings.Contains(err.Error(), "ACL SETUSER <user> &msalcache:changes:*") {
		t.Fatalf("Save without the channel = %v, want an error naming the grant", err)
	}
	if err := s.Delete(ctx, "k"); err == nil || !strings.Contains(err.Error(), "&msalcache:changes:*") {
		t.Fatalf("Delete without the channel = %v, want an error naming the grant", err)
	}
	if b, got, err := ref.Load(ctx, "k"); err != nil || got != v || string(b) != "v1" {
		t.Fatalf("after the refused calls the key holds %q, %#x, %v; want v1, %#x untouched", b, got, err, v)
	}
	// Granted the channels the error names, the same user writes.
	if err := admin.Do(ctx, "ACL", "SETUSER", "app", "&msalcache:changes:*").Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Save(ctx, "k", []byte("v2"), v, time.Minute); err != nil {
		t.Fatalf("Save with the channel granted = %v", err)
	}
	if err := s.Delete(ctx, "k"); err != nil {
		t.Fatalf("Delete with the channel granted = %v", err)
	}
}
