package redisstore

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/internal/record"
	"github.com/msalcache/msalcache/internal/testserver"
	"github.com/redis/go-redis/v9"
)

func newInternalStore(t *testing.T) *Store {
	t.Helper()
	srv := testserver.Redis(t)
	c := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { c.Close() })
	return New(c)
}

func rec(v driver.Version, data string) []byte {
	return record.Encode(v, []byte(data))
}

// TestCASScriptIdempotent runs the same compare-and-set twice, as go-redis
// does when the reply of the first attempt is lost: the second attempt must
// recognise its own write instead of reporting a conflict.
func TestCASScriptIdempotent(t *testing.T) {
	ctx := context.Background()
	s := newInternalStore(t)
	k := s.prefix + "idem"

	// Create, twice.
	rec1 := rec(0x1111, "first")
	for i, want := range []int64{casWritten, casAlready} {
		got, err := s.cas(ctx, k, driver.NoVersion, rec1, time.Minute)
		if err != nil || got != want {
			t.Fatalf("create attempt %d = %d, %v; want %d", i+1, got, err, want)
		}
	}
	// Update from 0x1111 to 0x2222, twice.
	rec2 := rec(0x2222, "second")
	for i, want := range []int64{casWritten, casAlready} {
		got, err := s.cas(ctx, k, 0x1111, rec2, time.Minute)
		if err != nil || got != want {
			t.Fatalf("update attempt %d = %d, %v; want %d", i+1, got, err, want)
		}
	}
	b, v, err := s.Load(ctx, "idem")
	if err != nil || v != 0x2222 || string(b) != "second" {
		t.Fatalf("Load = %q, %#x, %v; want second, 0x2222", b, v, err)
	}
	// Another writer that also read 0x1111 still loses, and so does a create.
	if got, err := s.cas(ctx, k, 0x1111, rec(0x3333, "third"), time.Minute); err != nil || got != casConflict {
		t.Fatalf("stale update = %d, %v; want conflict", got, err)
	}
	if got, err := s.cas(ctx, k, driver.NoVersion, rec(0x4444, "fourth"), time.Minute); err != nil || got != casConflict {
		t.Fatalf("create over existing = %d, %v; want conflict", got, err)
	}
	// An update of an absent key is a conflict.
	if got, err := s.cas(ctx, s.prefix+"absent", 0x1111, rec(0x5555, "x"), time.Minute); err != nil || got != casConflict {
		t.Fatalf("update of absent key = %d, %v; want conflict", got, err)
	}
	// The retried write keeps its TTL (the first attempt set it).
	if ttl := s.c.PTTL(ctx, k).Val(); ttl <= 0 || ttl > time.Minute {
		t.Fatalf("PTTL = %v, want in (0, 1m]", ttl)
	}
}

// TestCASScriptReplacesCorrupt retries a create over a corrupt value, as
// go-redis does when the reply is lost: the first attempt replaces it, the
// retry recognises its own write, and a versioned write never replaces it.
func TestCASScriptReplacesCorrupt(t *testing.T) {
	ctx := context.Background()
	s := newInternalStore(t)
	for name, raw := range map[string]string{
		"empty": "", "short": "abc", "zero": "\x00\x00\x00\x00\x00\x00\x00\x00", "zero+value": "\x00\x00\x00\x00\x00\x00\x00\x00{}",
	} {
		k := s.prefix + "corrupt-" + name
		if err := s.c.Set(ctx, k, raw, 0).Err(); err != nil {
			t.Fatal(err)
		}
		if got, err := s.cas(ctx, k, 0x1111, rec(0x2222, "x"), time.Minute); err != nil || got != casConflict {
			t.Fatalf("%s: versioned write = %d, %v; want a conflict", name, got, err)
		}
		if got := s.c.Get(ctx, k).Val(); got != raw {
			t.Fatalf("%s: a conflicting write changed the value to %q", name, got)
		}
		r := rec(0x3333, "repaired")
		for i, want := range []int64{casWritten, casAlready} {
			if got, err := s.cas(ctx, k, driver.NoVersion, r, time.Minute); err != nil || got != want {
				t.Fatalf("%s: create attempt %d = %d, %v; want %d", name, i+1, got, err, want)
			}
		}
		// Once repaired, the record is live: another create loses.
		if got, err := s.cas(ctx, k, driver.NoVersion, rec(0x4444, "late"), time.Minute); err != nil || got != casConflict {
			t.Fatalf("%s: create over the repaired record = %d, %v; want a conflict", name, got, err)
		}
	}
	// A key of another type: replaced by a create, also when retried.
	k := s.prefix + "corrupt-hash"
	if err := s.c.HSet(ctx, k, "f", "v").Err(); err != nil {
		t.Fatal(err)
	}
	r := rec(0x5555, "repaired")
	for i, want := range []int64{casWritten, casAlready} {
		if got, err := s.cas(ctx, k, driver.NoVersion, r, time.Minute); err != nil || got != want {
			t.Fatalf("hash: create attempt %d = %d, %v; want %d", i+1, got, err, want)
		}
	}
}

func TestCASScriptTTL(t *testing.T) {
	ctx := context.Background()
	s := newInternalStore(t)
	if _, err := s.Save(ctx, "persistent", []byte("x"), driver.NoVersion, 0); err != nil {
		t.Fatal(err)
	}
	if ttl := s.c.PTTL(ctx, s.prefix+"persistent").Val(); ttl != -1 {
		t.Fatalf("ttl 0: PTTL = %v, want -1 (no expiry)", ttl)
	}
	v, err := s.Save(ctx, "expiring", []byte("x"), driver.NoVersion, 90*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if ttl := s.c.PTTL(ctx, s.prefix+"expiring").Val(); ttl <= 80*time.Second || ttl > 90*time.Second {
		t.Fatalf("ttl 90s: PTTL = %v", ttl)
	}
	// An update with ttl 0 makes the key persistent again.
	if _, err := s.Save(ctx, "expiring", []byte("y"), v, 0); err != nil {
		t.Fatal(err)
	}
	if ttl := s.c.PTTL(ctx, s.prefix+"expiring").Val(); ttl != -1 {
		t.Fatalf("after update with ttl 0: PTTL = %v, want -1", ttl)
	}
}

func TestTTLArg(t *testing.T) {
	for _, tc := range []struct {
		ttl  time.Duration
		want string
	}{
		{0, "0"},
		{-time.Second, "0"},
		{time.Nanosecond, "1"},
		{time.Millisecond, "1"},
		{1500 * time.Microsecond, "2"},
		{90 * 24 * time.Hour, "7776000000"},
	} {
		if got := ttlArg(tc.ttl); got != tc.want {
			t.Errorf("ttlArg(%v) = %s, want %s", tc.ttl, got, tc.want)
		}
	}
}

func TestGlobEscape(t *testing.T) {
	for in, want := range map[string]string{
		"msalcache:":  "msalcache:",
		`a*b?c[d]e\f`: `a\*b\?c\[d\]e\\f`,
		"\xff*":       "\xff\\*",
	} {
		if got := globEscape(in); got != want {
			t.Errorf("globEscape(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestWrapNeverLosesSentinels(t *testing.T) {
	s := New(nil)
	ctx := context.Background()
	if err := s.wrap(ctx, "load", redis.Nil); !errors.Is(err, driver.ErrNotFound) {
		t.Errorf("redis.Nil -> %v, want ErrNotFound", err)
	}
	if err := s.wrap(ctx, "load", redis.ErrClosed); !errors.Is(err, driver.ErrClosed) || !errors.Is(err, redis.ErrClosed) {
		t.Errorf("redis.ErrClosed -> %v, want both ErrClosed", err)
	}
	if err := s.wrap(ctx, "load", redis.ErrPoolTimeout); !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, redis.ErrPoolTimeout) {
		t.Errorf("pool timeout -> %v, want DeadlineExceeded and the cause", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	cause := errors.New("boom")
	if err := s.wrap(cctx, "save", cause); !errors.Is(err, context.Canceled) || !errors.Is(err, cause) {
		t.Errorf("canceled ctx -> %v, want Canceled and the cause", err)
	}
}

func TestContextTimeoutEnabledDetected(t *testing.T) {
	for name, tc := range map[string]struct {
		c    redis.UniversalClient
		want bool
	}{
		"client":          {redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}), false},
		"client/enabled":  {redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", ContextTimeoutEnabled: true}), true},
		"cluster/enabled": {redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{"127.0.0.1:1"}, ContextTimeoutEnabled: true}), true},
		"failover/enabled": {redis.NewFailoverClient(&redis.FailoverOptions{
			MasterName: "m", SentinelAddrs: []string{"127.0.0.1:1"}, ContextTimeoutEnabled: true}), true},
		"universal/enabled": {redis.NewUniversalClient(&redis.UniversalOptions{
			Addrs: []string{"127.0.0.1:1", "127.0.0.1:2"}, ContextTimeoutEnabled: true}), true},
		"ring/enabled": {redis.NewRing(&redis.RingOptions{
			Addrs: map[string]string{"a": "127.0.0.1:1"}, ContextTimeoutEnabled: true}), true},
	} {
		if got := New(tc.c).ctxAware; got != tc.want {
			t.Errorf("%s: ctxAware = %v, want %v", name, got, tc.want)
		}
		tc.c.Close()
	}
}

// TestChangeMessage: what Save and Delete publish reads back as the change
// it announces, and nothing else parses as one.
func TestChangeMessage(t *testing.T) {
	for _, tc := range []struct {
		key string
		v   driver.Version
	}{
		{"k", 1}, {"tc/ns/AbC-_.:/9", 0xffffffffffffffff}, {"deleted", driver.NoVersion}, {"x", 0x10},
	} {
		msg := changeMessage(tc.key, tc.v)
		got, ok := parseChange(string(msg))
		if want := (driver.Change{Kind: driver.ChangeKey, Key: tc.key, Version: tc.v}); !ok || got != want {
			t.Errorf("parseChange(%q) = %+v, %v; want %+v", msg, got, ok, want)
		}
	}
	for _, bad := range []string{"", "k", "k ", " 1", "k 1g", "k +1", "k -1", "k 0x1", "k 10000000000000000", "k 1_0"} {
		if got, ok := parseChange(bad); ok {
			t.Errorf("parseChange(%q) = %+v, want a refusal", bad, got)
		}
	}
}

// TestKeySlot checks the Cluster's hash slot against the server's own
// CLUSTER KEYSLOT, hash tags included, and that keyForSlot finds a key of
// every slot among the first few hundred thousand numbers, so that its
// search always ends.
func TestKeySlot(t *testing.T) {
	ctx := context.Background()
	cl := testserver.RedisCluster(t, 3)
	c := redis.NewClient(&redis.Options{Addr: cl.Node(0).Addr()})
	t.Cleanup(func() { c.Close() })
	for _, k := range []string{"", "0", "a", "msalcache/keyring/v1", "foo{bar}baz", "{}x", "x{}{y}", "{a}{b}", "ünïcödé", "123456789"} {
		want, err := c.ClusterKeySlot(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		if got := keySlot(k); got != int(want) {
			t.Errorf("keySlot(%q) = %d, the server says %d", k, got, want)
		}
	}
	covered, n := 0, 0
	seen := make([]bool, clusterSlots)
	for ; covered < clusterSlots && n < 1_000_000; n++ {
		if s := keySlot(strconv.Itoa(n)); !seen[s] {
			seen[s], covered = true, covered+1
		}
	}
	if covered < clusterSlots {
		t.Fatalf("the first %d numbers name %d slots of %d", n, covered, clusterSlots)
	}
	for _, slot := range []int{0, 1, 5460, 5461, 10922, 10923, 16383, -1, 16384} {
		k := keyForSlot(slot)
		want := slot
		if slot < 0 || slot >= clusterSlots {
			want = 0
		}
		if got := keySlot(k); got != want {
			t.Errorf("keyForSlot(%d) = %q, of slot %d", slot, k, got)
		}
	}
}

// serverError is an error reply as go-redis returns it (redis.Error).
type serverError string

func (e serverError) Error() string { return string(e) }
func (serverError) RedisError()     {}

// TestPublishDeniedMessages: the refusals of PUBLISH in a script, as
// Redis 7.0, later Redis and Valkey 8 word them, get the ACL hint; other
// errors, channel or not, pass unchanged. TestPublishDeniedByACL runs
// the real refusal on whichever server the suite runs on.
func TestPublishDeniedMessages(t *testing.T) {
	s := New(redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}))
	t.Cleanup(func() { s.c.Close() })
	for _, msg := range []string{
		"ERR The user executing the script can't publish to the channel mentioned in the command script: 1234, on @user_script:1.",
		"NOPERM User app has no permissions to access the 'msalcache:changes:x' channel",
		"ERR ACL failure in script: No permissions to access a channel script: 1234, on @user_script:1.",
	} {
		err := s.publishDenied("save", serverError(msg))
		if err == nil || !strings.Contains(err.Error(), "ACL SETUSER <user> &"+channelPrefix+"*") || !errors.Is(err, serverError(msg)) {
			t.Errorf("publishDenied(%q) = %v, want the ACL hint wrapping the reply", msg, err)
		}
	}
	for _, err := range []error{
		serverError("NOPERM User app has no permissions to run the 'eval' command"),
		serverError("ERR ACL failure in script: No permissions to access a key"),
		serverError("WRONGTYPE Operation against a key holding the wrong kind of value"),
		errors.New("dial tcp: no permissions to access a channel"),
	} {
		if got := s.publishDenied("save", err); got != nil {
			t.Errorf("publishDenied(%q) = %v, want nil", err, got)
		}
	}
}
