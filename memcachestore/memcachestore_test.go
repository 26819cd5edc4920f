package memcachestore_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/conformance"
	"github.com/msalcache/msalcache/internal/testserver"
	"github.com/msalcache/msalcache/memcachestore"
)

const (
	// testTimeout is the gomemcache Timeout of the clients of tests that
	// expect the servers to answer: generous, so that a loaded CI machine
	// does not turn a slow answer into a failure.
	testTimeout = 5 * time.Second
	// faultTimeout is the Timeout of the clients of fault tests, which wait
	// for it on every call to a server that does not answer.
	faultTimeout = time.Second
	// hangBound is how long a call to an unreachable server may take before
	// a fault test calls it a hang: well above faultTimeout (a dial plus
	// one or two exchanges), far below a stuck call.
	hangBound = 8 * time.Second
)

var caps = conformance.Capabilities{
	MaxValueSize:   memcachestore.DefaultMaxValueSize,
	TTLResolution:  time.Second,
	Volatile:       true,
	PutRaw:         memcachestore.PutRaw,
	CorruptRecords: memcachestore.CorruptRecords,
}

func newClient(t testing.TB, addrs ...string) *memcache.Client {
	t.Helper()
	return newClientTimeout(t, testTimeout, addrs...)
}

func newClientTimeout(t testing.TB, timeout time.Duration, addrs ...string) *memcache.Client {
	t.Helper()
	c := memcache.New(addrs...)
	c.Timeout = timeout
	c.MaxIdleConns = 16
	t.Cleanup(func() { c.Close() })
	return c
}

var prefixSeq atomic.Int64

// uniquePrefix gives each store its own key space on a shared server, so
// that every conformance subtest starts empty.
func uniquePrefix(base string) string {
	return fmt.Sprintf("%st%d:", base, prefixSeq.Add(1))
}

func TestConformance(t *testing.T) {
	t.Parallel()
	srv := testserver.Memcached(t)
	c := newClient(t, srv.Addr())
	conformance.RunStoreTests(t, func(t *testing.T) driver.Store {
		return memcachestore.New(c, memcachestore.WithPrefix(uniquePrefix("msalcache:")))
	}, caps)
}

// TestConformanceSharded runs the suite over two servers, so that keys of
// one store land on both and crc32 sharding is exercised.
func TestConformanceSharded(t *testing.T) {
	t.Parallel()
	a, b := testserver.Memcached(t), testserver.Memcached(t)
	c := newClient(t, a.Addr(), b.Addr())
	conformance.RunStoreTests(t, func(t *testing.T) driver.Store {
		return memcachestore.New(c, memcachestore.WithPrefix(uniquePrefix("msalcache:")))
	}, caps)
}

// TestConformanceLongPrefix runs the suite with a prefix so long that every
// 200-byte key of the suite must be shortened to fit in 250 bytes.
func TestConformanceLongPrefix(t *testing.T) {
	t.Parallel()
	srv := testserver.Memcached(t)
	c := newClient(t, srv.Addr())
	conformance.RunStoreTests(t, func(t *testing.T) driver.Store {
		p := uniquePrefix(strings.Repeat("p", 140))
		return memcachestore.New(c, memcachestore.WithPrefix(p))
	}, caps)
}

func TestLongKeysStayDistinct(t *testing.T) {
	t.Parallel()
	srv := testserver.Memcached(t)
	c := newClient(t, srv.Addr())
	ctx := context.Background()
	s := memcachestore.New(c, memcachestore.WithPrefix(strings.Repeat("x", memcachestore.MaxPrefixLen)))
	defer s.Close()
	base := strings.Repeat("k", 200)
	keys := []string{base, base[:199] + "a", "a" + base[1:], base[:120]}
	versions := map[string]driver.Version{}
	for _, k := range keys {
		v, err := s.Save(ctx, k, []byte("value of "+k), driver.NoVersion, 0)
		if err != nil {
			t.Fatalf("Save of a %d-byte key under a %d-byte prefix: %v", len(k), memcachestore.MaxPrefixLen, err)
		}
		versions[k] = v
	}
	for _, k := range keys {
		b, v, err := s.Load(ctx, k)
		if err != nil || string(b) != "value of "+k || v != versions[k] {
			t.Fatalf("Load of a shortened key returned %q, %d, %v; keys that differ only past the cut must not share an item", b, v, err)
		}
	}
	if err := s.Delete(ctx, keys[0]); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Load(ctx, keys[0]); !errors.Is(err, driver.ErrNotFound) {
		t.Fatalf("Load after Delete of a shortened key returned %v, want ErrNotFound", err)
	}
	if _, _, err := s.Load(ctx, keys[1]); err != nil {
		t.Fatalf("Delete of one shortened key removed another: %v", err)
	}
}

func TestInvalidKeysFailBeforeTheNetwork(t *testing.T) {
	t.Parallel()
	// No server listens on this client's address: an error that is not
	// ErrInvalidKey would mean the store went to the network.
	c := memcache.New("127.0.0.1:1")
	ctx := context.Background()
	secret := "user with space"

	s := memcachestore.New(c)
	_, err := s.Save(ctx, secret, []byte("x"), driver.NoVersion, 0)
	if !errors.Is(err, memcachestore.ErrInvalidKey) {
		t.Fatalf("Save with a space in the key returned %v, want ErrInvalidKey", err)
	}
	if strings.Contains(err.Error(), secret) {
		t.Fatalf("the error %q names the key; keys hold partition keys and stay out of errors", err)
	}
	for _, k := range []string{"tab\tkey", "nl\nkey", "del\x7fkey", "nul\x00"} {
		if _, _, err := s.Load(ctx, k); !errors.Is(err, memcachestore.ErrInvalidKey) {
			t.Errorf("Load(%q) returned %v, want ErrInvalidKey", k, err)
		}
		if err := s.Delete(ctx, k); !errors.Is(err, memcachestore.ErrInvalidKey) {
			t.Errorf("Delete(%q) returned %v, want ErrInvalidKey", k, err)
		}
	}
	if _, _, err := memcachestore.New(c, memcachestore.WithPrefix("")).Load(ctx, ""); !errors.Is(err, memcachestore.ErrInvalidKey) {
		t.Errorf("Load of an empty key with an empty prefix returned %v, want ErrInvalidKey", err)
	}

	for _, p := range []string{"my app:", "tab\t", strings.Repeat("p", memcachestore.MaxPrefixLen+1)} {
		bad := memcachestore.New(c, memcachestore.WithPrefix(p))
		if _, _, err := bad.Load(ctx, "k"); !errors.Is(err, memcachestore.ErrInvalidKey) {
			t.Errorf("Load with prefix %q returned %v, want ErrInvalidKey", p, err)
		}
		if _, err := bad.Save(ctx, "k", nil, driver.NoVersion, 0); !errors.Is(err, memcachestore.ErrInvalidKey) {
			t.Errorf("Save with prefix %q returned %v, want ErrInvalidKey", p, err)
		}
		if err := bad.Ping(ctx); !errors.Is(err, memcachestore.ErrInvalidKey) {
			t.Errorf("Ping with prefix %q returned %v, want ErrInvalidKey", p, err)
		}
	}

	var nilStore = memcachestore.New(nil)
	if _, _, err := nilStore.Load(ctx, "k"); err == nil {
		t.Error("Load on a store with a nil client succeeded")
	}
}

// TestServerRefusesLargeItem sends an item larger than the server's -I: the
// server's SERVER_ERROR, which gomemcache returns as plain text, must come
// back as ErrTooLarge, and the store must keep working.
func TestServerRefusesLargeItem(t *testing.T) {
	t.Parallel()
	srv := testserver.Memcached(t, testserver.MemcachedArgs("-I", "1m"))
	c := newClient(t, srv.Addr())
	s := memcachestore.New(c, memcachestore.WithMaxValueSize(2<<20))
	defer s.Close()
	ctx := context.Background()
	big := bytes.Repeat([]byte{0xab}, 3<<19) // 1.5 MiB: under the store's limit, over the server's

	_, err := s.Save(ctx, "big", big, driver.NoVersion, 0)
	if !errors.Is(err, driver.ErrTooLarge) {
		t.Fatalf("Save of 1.5 MiB to a server with -I 1m returned %v, want ErrTooLarge", err)
	}
	v, err := s.Save(ctx, "big", []byte("small"), driver.NoVersion, 0)
	if err != nil {
		t.Fatalf("Save after the server refused an item: %v", err)
	}
	if _, err := s.Save(ctx, "big", big, v, 0); !errors.Is(err, driver.ErrTooLarge) {
		t.Fatalf("compare-and-set Save of 1.5 MiB returned %v, want ErrTooLarge", err)
	}
	b, got, err := s.Load(ctx, "big")
	if err != nil || string(b) != "small" || got != v {
		t.Fatalf("Load after a refused update = %q, %d, %v; want the earlier value", b, got, err)
	}
}

// serverTTL asks the memcached server at addr, with the meta command "mg
// <key> t", how many seconds item ikey has left: -1 for no expiry, found
// false when the item is absent. gomemcache has no meta commands, so it
// speaks the text protocol itself.
func serverTTL(t *testing.T, addr, ikey string) (secs int, found bool) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, testTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(testTimeout)); err != nil {
		t.Fatal(err)
	}
	if _, err := fmt.Fprintf(conn, "mg %s t\r\n", ikey); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		t.Fatalf("mg %s: %v", ikey, err)
	}
	line = strings.TrimSpace(line)
	if line == "EN" {
		return 0, false
	}
	ttl, ok := strings.CutPrefix(line, "HD t")
	if !ok {
		t.Fatalf("mg %s t answered %q, want HD t<seconds> or EN", ikey, line)
	}
	secs, err = strconv.Atoi(ttl)
	if err != nil {
		t.Fatalf("mg %s t answered %q: %v", ikey, line, err)
	}
	return secs, true
}

// TestLongTTL saves with TTLs over 30 days, which memcached reads as Unix
// times: sent as relative seconds they would land in 1970 and the key
// would be gone at once. It reads back the TTL the server holds (meta
// "mg t") instead of sleeping: the remaining seconds must match the TTL
// asked for, less the time the test took, so a loaded machine cannot make
// it fail.
func TestLongTTL(t *testing.T) {
	t.Parallel()
	srv := testserver.Memcached(t)
	s := memcachestore.New(newClient(t, srv.Addr()))
	defer s.Close()
	ctx := context.Background()
	check := func(key string, ttl, want time.Duration) {
		t.Helper()
		start := time.Now()
		if _, err := s.Save(ctx, key, []byte("x"), driver.NoVersion, ttl); err != nil {
			t.Fatal(err)
		}
		left, found := serverTTL(t, srv.Addr(), memcachestore.DefaultPrefix+key)
		// The server's clock ticks once a second, and the test may have
		// been descheduled for a while: allow a tick plus what elapsed.
		slack := 1 + int(time.Since(start).Seconds()+0.999)
		secs := int(want / time.Second)
		switch {
		case !found && slack >= secs:
			t.Logf("the key saved with ttl %v is gone after %v; too slow to check", ttl, time.Since(start))
		case !found:
			t.Errorf("the key saved with ttl %v is gone after %v: the server read a TTL that expired at once", ttl, time.Since(start))
		case left == -1:
			t.Errorf("the server holds the key saved with ttl %v without expiry", ttl)
		// Over 30 days the store sends an absolute time, which the server
		// counts down from its clock: a tick behind ours, it may report
		// one second more.
		case left > secs+1 || left < secs-slack:
			t.Errorf("the server holds the key saved with ttl %v for %ds more, want %d (less at most %ds)", ttl, left, secs, slack)
		}
		if found {
			if _, _, err := s.Load(ctx, key); err != nil {
				t.Errorf("Load of a key saved with ttl %v returned %v", ttl, err)
			}
		}
	}
	for _, ttl := range []time.Duration{30 * 24 * time.Hour, 31 * 24 * time.Hour, 365 * 24 * time.Hour} {
		check("ttl-"+ttl.String(), ttl, ttl)
	}
	// The shortest TTL must not make a key that is gone at the next tick:
	// it is rounded up to 2s.
	check("ttl-1ms", time.Millisecond, 2*time.Second)
	check("ttl-1.5s", 1500*time.Millisecond, 2*time.Second)
	check("ttl-2.1s", 2100*time.Millisecond, 3*time.Second)
	// No TTL: the server holds the key without expiry.
	if _, err := s.Save(ctx, "no-ttl", []byte("x"), driver.NoVersion, 0); err != nil {
		t.Fatal(err)
	}
	if left, found := serverTTL(t, srv.Addr(), memcachestore.DefaultPrefix+"no-ttl"); !found || left != -1 {
		t.Errorf("a key saved with ttl 0 has %ds left (found %v), want no expiry (-1)", left, found)
	}
}

// TestForeignItem checks that an item some other program left under the
// prefix (other flags: raw bytes planted by the conformance suite cannot
// have them) reads as corrupt and is replaced by a create, instead of
// wedging the key until it expires.
func TestForeignItem(t *testing.T) {
	t.Parallel()
	srv := testserver.Memcached(t)
	c := newClient(t, srv.Addr())
	s := memcachestore.New(c)
	defer s.Close()
	ctx := context.Background()
	if err := c.Set(&memcache.Item{Key: memcachestore.DefaultPrefix + "k", Value: []byte("not ours at all, secret")}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Load(ctx, "k"); !errors.Is(err, driver.ErrCorrupt) || strings.Contains(err.Error(), "secret") {
		t.Fatalf("Load of a foreign item returned %v, want ErrCorrupt without the item's bytes", err)
	}
	if _, err := s.Save(ctx, "k", []byte("x"), 12345, 0); !errors.Is(err, driver.ErrConflict) {
		t.Fatalf("Save with a made-up version over a foreign item returned %v, want ErrConflict", err)
	}
	v, err := s.Save(ctx, "k", []byte("ours"), driver.NoVersion, 0)
	if err != nil {
		t.Fatalf("Save with NoVersion over a foreign item: %v", err)
	}
	b, got, err := s.Load(ctx, "k")
	if err != nil || string(b) != "ours" || got != v {
		t.Fatalf("Load = %q, %d, %v; want the value that replaced the foreign item", b, got, err)
	}
}

// TestRestartForgetsAndVersionsStayUnique restarts the server: its keys are
// gone, and a version read before the restart must not match the key
// written after it (memcached's own CAS counter starts again at 1, so using
// it as the version would let the stale writer win).
func TestRestartForgetsAndVersionsStayUnique(t *testing.T) {
	t.Parallel()
	srv := testserver.Memcached(t)
	s := memcachestore.New(newClient(t, srv.Addr()))
	defer s.Close()
	ctx := context.Background()
	old, err := s.Save(ctx, "k", []byte("before"), driver.NoVersion, 0)
	if err != nil {
		t.Fatal(err)
	}
	srv.Restart(t)
	var lerr error
	for range 3 { // the first call may hit a pooled connection to the old process
		if _, _, lerr = s.Load(ctx, "k"); errors.Is(lerr, driver.ErrNotFound) {
			break
		}
	}
	if !errors.Is(lerr, driver.ErrNotFound) {
		t.Fatalf("Load after a restart returned %v, want ErrNotFound", lerr)
	}
	if _, err := s.Save(ctx, "k", []byte("after"), driver.NoVersion, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Save(ctx, "k", []byte("stale"), old, 0); !errors.Is(err, driver.ErrConflict) {
		t.Fatalf("Save with the version from before the restart returned %v, want ErrConflict", err)
	}
}

// TestEviction fills a 2 MiB server with 100 KiB values: the early keys are
// evicted long before their TTL, and Load must report them as ErrNotFound,
// never as another error, while the keys still there read back intact.
func TestEviction(t *testing.T) {
	t.Parallel()
	srv := testserver.Memcached(t, testserver.MemcachedArgs("-m", "2"))
	s := memcachestore.New(newClient(t, srv.Addr()))
	defer s.Close()
	ctx := context.Background()
	const n = 100
	value := func(i int) []byte { return bytes.Repeat([]byte{byte(i)}, 100<<10) }
	versions := make([]driver.Version, n)
	for i := range n {
		v, err := s.Save(ctx, fmt.Sprint("evict-", i), value(i), driver.NoVersion, time.Hour)
		if err != nil {
			t.Fatalf("Save %d of %d: %v", i, n, err)
		}
		versions[i] = v
	}
	evicted := 0
	for i := range n {
		b, v, err := s.Load(ctx, fmt.Sprint("evict-", i))
		switch {
		case errors.Is(err, driver.ErrNotFound):
			evicted++
		case err != nil:
			t.Fatalf("Load of key %d returned %v; an evicted key must read as ErrNotFound", i, err)
		case v != versions[i] || !bytes.Equal(b, value(i)):
			t.Fatalf("Load of key %d returned version %d and %d bytes, want version %d and its value", i, v, len(b), versions[i])
		}
	}
	if evicted == 0 {
		t.Fatalf("no key of %d×100 KiB was evicted from a 2 MiB server; the test did not test eviction", n)
	}
	if _, _, err := s.Load(ctx, fmt.Sprint("evict-", n-1)); err != nil {
		t.Fatalf("the last key written was evicted too: %v", err)
	}
	// A writer holding the version of an evicted key loses, like for an
	// expired one.
	if _, err := s.Save(ctx, "evict-0", []byte("x"), versions[0], 0); !errors.Is(err, driver.ErrConflict) {
		t.Fatalf("Save with the version of an evicted key returned %v, want ErrConflict", err)
	}
	t.Logf("%d of %d keys evicted", evicted, n)
}

// keysOn sorts keys by the server gomemcache puts them on.
func keysOn(t *testing.T, prefix string, addrs []string, n int) map[string][]string {
	t.Helper()
	var sl memcache.ServerList
	if err := sl.SetServers(addrs...); err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for i := range n {
		k := fmt.Sprint("key-", i)
		a, err := sl.PickServer(prefix + k)
		if err != nil {
			t.Fatal(err)
		}
		out[a.String()] = append(out[a.String()], k)
	}
	for _, a := range addrs {
		if len(out[a]) == 0 {
			t.Fatalf("no key of %d lands on %s", n, a)
		}
	}
	return out
}

// timed runs fn and fails the test if it took longer than hangBound. It
// logs how long fn took, so the latency of a failing server shows in -v.
func timed(t *testing.T, what string, fn func() error) error {
	t.Helper()
	start := time.Now()
	err := fn()
	d := time.Since(start)
	if d > hangBound {
		t.Errorf("%s took %v with a client Timeout of %v", what, d, faultTimeout)
	}
	t.Logf("%s: %v after %v", what, err, d.Round(time.Millisecond))
	return err
}

// TestOneServerDown kills one of two servers: calls for its keys fail
// promptly (the Adapter treats that as a miss), calls for the other
// server's keys carry on.
func TestOneServerDown(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"killed", "frozen"} {
		t.Run(mode, func(t *testing.T) {
			live, dead := testserver.Memcached(t), testserver.Memcached(t)
			addrs := []string{live.Addr(), dead.Addr()}
			s := memcachestore.New(newClientTimeout(t, faultTimeout, addrs...))
			defer s.Close()
			ctx := context.Background()
			byServer := keysOn(t, memcachestore.DefaultPrefix, addrs, 8)
			versions := map[string]driver.Version{}
			for _, keys := range byServer {
				for _, k := range keys {
					v, err := s.Save(ctx, k, []byte(k), driver.NoVersion, 0)
					if err != nil {
						t.Fatal(err)
					}
					versions[k] = v
				}
			}
			if mode == "killed" {
				dead.Kill()
			} else {
				dead.Freeze()
				defer dead.Thaw()
			}
			for _, k := range byServer[dead.Addr()][:min(2, len(byServer[dead.Addr()]))] {
				err := timed(t, "Load of a key on the "+mode+" server", func() error {
					_, _, err := s.Load(ctx, k)
					return err
				})
				if err == nil || errors.Is(err, driver.ErrNotFound) {
					t.Fatalf("Load of a key on the %s server returned %v, want a backend error", mode, err)
				}
				if mode == "frozen" && !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("Load from a server that does not answer returned %v, want it to wrap context.DeadlineExceeded", err)
				}
				err = timed(t, "Save of a key on the "+mode+" server", func() error {
					_, err := s.Save(ctx, k, []byte("new"), versions[k], 0)
					return err
				})
				if err == nil || errors.Is(err, driver.ErrConflict) {
					t.Fatalf("Save of a key on the %s server returned %v, want a backend error", mode, err)
				}
			}
			for _, k := range byServer[live.Addr()] {
				b, v, err := s.Load(ctx, k)
				if err != nil || string(b) != k || v != versions[k] {
					t.Fatalf("Load of a key on the live server = %q, %d, %v", b, v, err)
				}
				if _, err := s.Save(ctx, k, []byte("new"), v, 0); err != nil {
					t.Fatalf("Save of a key on the live server: %v", err)
				}
			}
			if err := timed(t, "Ping", func() error { return s.Ping(ctx) }); err == nil {
				t.Error("Ping succeeded with one of the two servers down")
			}
		})
	}
}

// TestAllServersDown checks that a store whose servers are all gone fails
// every call promptly instead of hanging.
func TestAllServersDown(t *testing.T) {
	t.Parallel()
	a, b := testserver.Memcached(t), testserver.Memcached(t)
	s := memcachestore.New(newClientTimeout(t, faultTimeout, a.Addr(), b.Addr()))
	defer s.Close()
	ctx := context.Background()
	if _, err := s.Save(ctx, "k", []byte("v"), driver.NoVersion, 0); err != nil {
		t.Fatal(err)
	}
	byServer := keysOn(t, memcachestore.DefaultPrefix, []string{a.Addr(), b.Addr()}, 8)
	a.Kill()
	b.Freeze()
	defer b.Thaw()
	for _, k := range []string{byServer[a.Addr()][0], byServer[b.Addr()][0]} {
		if err := timed(t, "Load", func() error { _, _, err := s.Load(ctx, k); return err }); err == nil || errors.Is(err, driver.ErrNotFound) {
			t.Fatalf("Load with every server down returned %v, want a backend error", err)
		}
		if err := timed(t, "Save", func() error { _, err := s.Save(ctx, k, []byte("v"), driver.NoVersion, 0); return err }); err == nil {
			t.Fatal("Save with every server down succeeded")
		}
		if err := timed(t, "Delete", func() error { return s.Delete(ctx, k) }); err == nil {
			t.Fatal("Delete with every server down succeeded")
		}
	}
	if err := timed(t, "Ping", func() error { return s.Ping(ctx) }); err == nil {
		t.Fatal("Ping with every server down succeeded")
	}
}

// storeGoroutines counts the goroutines started by Store.run for a call,
// and how many of them are still inside gomemcache (a network call).
func storeGoroutines() (all, busy int) {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	for _, g := range strings.Split(string(buf), "\n\n") {
		// Store calls run on goroutines started by ctxrun.Do.
		if strings.Contains(g, "ctxrun.Do.func") && strings.Contains(g, "memcachestore.") {
			all++
			if strings.Contains(g, "gomemcache/memcache.") {
				busy++
			}
		}
	}
	return all, busy
}

// TestCanceledCallsDoNotLeak cancels calls to a server that does not
// answer: they return at once with the ctx's error, the goroutines they
// leave behind end within the client's Timeout, and Close waits for them.
func TestCanceledCallsDoNotLeak(t *testing.T) {
	// Not parallel: it counts the store goroutines of the whole process.
	srv := testserver.Memcached(t)
	s := memcachestore.New(newClientTimeout(t, faultTimeout, srv.Addr()))
	ctx := context.Background()
	v, err := s.Save(ctx, "k", []byte("v"), driver.NoVersion, 0)
	if err != nil {
		t.Fatal(err)
	}
	srv.Freeze()
	defer srv.Thaw()

	run := func() {
		t.Helper()
		const calls = 20
		var wg sync.WaitGroup
		errs := make(chan error, 3*calls)
		for i := range calls {
			wg.Add(1)
			go func() {
				defer wg.Done()
				// Canceled, not a deadline: the store wraps its own
				// network timeouts with DeadlineExceeded, so Canceled
				// proves the call returned because of ctx.
				ctx, cancel := context.WithCancel(ctx)
				timer := time.AfterFunc(30*time.Millisecond, cancel)
				defer timer.Stop()
				var err error
				switch i % 3 {
				case 0:
					_, _, err = s.Load(ctx, "k")
				case 1:
					_, err = s.Save(ctx, "k", []byte("w"), v, 0)
				default:
					err = s.Delete(ctx, "k")
				}
				if !errors.Is(err, context.Canceled) {
					errs <- fmt.Errorf("call %d returned %v, want context.Canceled", i, err)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	}

	// Abandoned goroutines stay in gomemcache until the client's Timeout,
	// counted from their start. On a machine so loaded that the round took
	// longer than that, they may rightly be gone: the check that the calls
	// ran on goroutines of their own then proves nothing either way.
	busyCheck := func(round string, start time.Time) {
		t.Helper()
		_, busy := storeGoroutines()
		switch {
		case busy > 0:
		case time.Since(start) < faultTimeout:
			t.Fatalf("no store goroutine is in gomemcache after the %s round of canceled calls to a frozen server: the calls did not run on goroutines of their own, so the test proves nothing", round)
		default:
			t.Logf("the %s round took %v, longer than the client's Timeout: too slow to see the abandoned calls in gomemcache", round, time.Since(start))
		}
	}
	start := time.Now()
	run()
	busyCheck("first", start)
	// Abandoned calls end within the client's Timeout (a Save may make two
	// round trips, each a dial and an exchange).
	bound := 4*faultTimeout + 2*time.Second
	deadline := time.Now().Add(bound)
	for {
		all, _ := storeGoroutines()
		if all == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d store goroutines remain %v after the calls were canceled; abandoned calls leak", all, bound)
		}
		time.Sleep(10 * time.Millisecond)
	}

	// Close waits for abandoned calls: once it returns, none is still in
	// gomemcache (a goroutine may still be returning from run after it
	// signalled that it is done).
	start = time.Now()
	run()
	busyCheck("second", start)
	if err := timed(t, "Close", s.Close); err != nil {
		t.Fatal(err)
	}
	if _, busy := storeGoroutines(); busy > 0 {
		buf := make([]byte, 1<<16)
		t.Fatalf("%d store goroutines are still in gomemcache after Close returned:\n%s", busy, buf[:runtime.Stack(buf, true)])
	}
}
