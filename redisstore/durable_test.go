package redisstore_test

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/msalcache/msalcache/driver"
	"github.com/msalcache/msalcache/internal/testserver"
	"github.com/msalcache/msalcache/internal/wait"
	"github.com/msalcache/msalcache/redisstore"
	"github.com/redis/go-redis/v9"
)

// replicated starts a master and one replica of it, and returns once the
// replica is in sync and the master counts it.
func replicated(t *testing.T) (master, replica *testserver.RedisServer) {
	t.Helper()
	// A full sync would wait 5 s for more replicas.
	master = testserver.Redis(t, testserver.RedisArgs("--repl-diskless-sync-delay", "0"))
	host, port, err := net.SplitHostPort(master.Addr())
	if err != nil {
		t.Fatal(err)
	}
	replica = testserver.Redis(t, testserver.RedisArgs("--replicaof", host, port))
	waitInfo(t, replica.Addr(), "master_link_status", "up")
	waitInfo(t, master.Addr(), "connected_slaves", "1")
	return master, replica
}

// infoField reads one field of INFO on the server at addr.
func infoField(t *testing.T, addr, field string) string {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	info, err := c.Info(context.Background(), "all").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func waitInfo(t *testing.T, addr, field, want string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for infoField(t, addr, field) != want {
		if time.Now().After(deadline) {
			t.Fatalf("%s: INFO %s is %q, want %q", addr, field, infoField(t, addr, field), want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waits counts the WAIT commands the server at addr has run.
func waits(t *testing.T, addr string) int {
	t.Helper()
	v := infoField(t, addr, "cmdstat_wait") // calls=N,usec=...
	if v == "" {
		return 0
	}
	calls, _, _ := strings.Cut(strings.TrimPrefix(v, "calls="), ",")
	n, err := strconv.Atoi(calls)
	if err != nil {
		t.Fatalf("cmdstat_wait %q: %v", v, err)
	}
	return n
}

// SaveDurable returns once the replica holds the write: a read of the
// replica right after it finds the new record, version and all.
func TestSaveDurableConfirmedByReplica(t *testing.T) {
	t.Parallel()
	master, replica := replicated(t)
	s := redisstore.New(newClient(t, &redis.Options{Addr: master.Addr()}))
	onReplica := redisstore.New(newClient(t, &redis.Options{Addr: replica.Addr()}))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	var v driver.Version
	for i := range 20 {
		var err error
		val := []byte("removal " + strconv.Itoa(i))
		if v, err = s.SaveDurable(ctx, "k", val, v, time.Hour); err != nil {
			t.Fatalf("SaveDurable %d: %v", i, err)
		}
		got, gv, err := onReplica.Load(ctx, "k")
		if err != nil || gv != v || string(got) != string(val) {
			t.Fatalf("the replica, right after SaveDurable %d returned: %q %x %v; want %q %x", i, got, gv, err, val, v)
		}
	}
	if n := waits(t, master.Addr()); n != 20 {
		t.Fatalf("the master ran %d WAITs for 20 SaveDurable, want 20", n)
	}

	// A compare-and-set that loses writes nothing and says so.
	if _, err := s.SaveDurable(ctx, "k", []byte("stale"), driver.NoVersion, 0); !errors.Is(err, driver.ErrConflict) {
		t.Fatalf("SaveDurable with a stale version: %v, want ErrConflict", err)
	}
}

// With the replica frozen (it keeps its connection but acknowledges
// nothing), SaveDurable writes on the master and returns the version with
// ErrNotReplicated before ctx's deadline; once the replica is back, it
// confirms again.
func TestSaveDurableReplicaPaused(t *testing.T) {
	t.Parallel()
	master, replica := replicated(t)
	s := redisstore.New(newClient(t, &redis.Options{Addr: master.Addr()}))
	bg := context.Background()

	replica.Freeze()
	thawed := false
	defer func() {
		if !thawed {
			replica.Thaw()
		}
	}()
	const budget = 2 * time.Second
	ctx, cancel := context.WithTimeout(bg, budget)
	start := time.Now()
	v, err := s.SaveDurable(ctx, "k", []byte("removal"), driver.NoVersion, time.Hour)
	took := time.Since(start)
	cancel()
	if !errors.Is(err, driver.ErrNotReplicated) {
		t.Fatalf("SaveDurable with the replica frozen: %v, want ErrNotReplicated", err)
	}
	if errors.Is(err, context.DeadlineExceeded) || took > budget {
		t.Fatalf("SaveDurable took %v (%v), past its deadline of %v", took, err, budget)
	}
	t.Logf("unconfirmed after %v of a %v deadline: %v", took.Round(time.Millisecond), budget, err)
	got, gv, err := s.Load(bg, "k")
	if err != nil || gv != v || string(got) != "removal" {
		t.Fatalf("the master after an unconfirmed SaveDurable: %q %x %v; want the write, version %x", got, gv, err, v)
	}

	replica.Thaw()
	thawed = true
	ctx, cancel = context.WithTimeout(bg, 10*time.Second)
	defer cancel()
	if _, err := s.SaveDurable(ctx, "k", []byte("again"), v, time.Hour); err != nil {
		t.Fatalf("SaveDurable after the replica came back: %v", err)
	}
}

// A master that lost the replica it had (on Sentinel, the old master once
// its replica is promoted) is not a single node: the default wait, which
// skips WAIT where the master reports no replica, still reports the write
// as not replicated (issue 20: the soak's removals written on the old
// master during a failover returned as durable, and were lost).
func TestSaveDurableReplicaLost(t *testing.T) {
	t.Parallel()
	master, replica := replicated(t)
	s := redisstore.New(newClient(t, &redis.Options{Addr: master.Addr()}))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	v, err := s.SaveDurable(ctx, "k", []byte("removal"), driver.NoVersion, time.Hour)
	if err != nil {
		t.Fatalf("SaveDurable with the replica: %v", err)
	}
	replica.Kill()
	wait.For(t, "the master reports no replica", func() bool { return infoField(t, master.Addr(), "connected_slaves") == "0" })
	// The first call may still trust the count it cached (WAIT then
	// times out, and the count is asked again); the next asks.
	for i := range 2 {
		wctx, wcancel := context.WithTimeout(ctx, 2*time.Second)
		v, err = s.SaveDurable(wctx, "k", []byte("removal "+strconv.Itoa(i)), v, time.Hour)
		wcancel()
		if !errors.Is(err, driver.ErrNotReplicated) {
			t.Fatalf("SaveDurable %d with the replica lost: %v, want ErrNotReplicated", i, err)
		}
	}
	before := waits(t, master.Addr())
	start := time.Now()
	if _, err = s.SaveDurable(ctx, "k", []byte("removal 2"), v, time.Hour); !errors.Is(err, driver.ErrNotReplicated) {
		t.Fatalf("SaveDurable with the replica lost: %v, want ErrNotReplicated", err)
	}
	if n := waits(t, master.Addr()); n != before {
		t.Fatalf("the master ran %d WAITs for a call that knew it had no replica, want none (took %v)", n-before, time.Since(start))
	}
}

// With no replica, the default does not wait (a WAIT would only time out):
// SaveDurable returns long before its deadline, and the server ran no
// WAIT. WithReplicaWait(0) turns the wait off even with a replica;
// WithReplicaWait(n) waits for n whatever the master reports.
func TestSaveDurableWaitsOnlyWhereAsked(t *testing.T) {
	t.Parallel()
	bg := context.Background()
	t.Run("no replica", func(t *testing.T) {
		t.Parallel()
		srv := testserver.Redis(t)
		s := redisstore.New(newClient(t, &redis.Options{Addr: srv.Addr()}))
		ctx, cancel := context.WithTimeout(bg, 30*time.Second)
		defer cancel()
		start := time.Now()
		var v driver.Version
		for range 3 {
			var err error
			if v, err = s.SaveDurable(ctx, "k", []byte("x"), v, 0); err != nil {
				t.Fatal(err)
			}
		}
		if took := time.Since(start); took > 10*time.Second {
			t.Fatalf("3 SaveDurable on a server without replicas took %v", took)
		}
		if n := waits(t, srv.Addr()); n != 0 {
			t.Fatalf("a server without replicas ran %d WAITs", n)
		}
		// Asked for a replica that is not there, it waits and says so.
		// Its connection is made first, and the deadline leaves the write
		// time to reach WAIT: under -race, with the package's parallel
		// tests around, dialling and the script took all of 300 ms once,
		// and the deadline ran out before the WAIT could.
		c1 := newClient(t, &redis.Options{Addr: srv.Addr()})
		if err := c1.Ping(bg).Err(); err != nil {
			t.Fatal(err)
		}
		s1 := redisstore.New(c1, redisstore.WithReplicaWait(1))
		ctx, cancel = context.WithTimeout(bg, time.Second)
		defer cancel()
		if _, err := s1.SaveDurable(ctx, "k", []byte("y"), v, 0); !errors.Is(err, driver.ErrNotReplicated) {
			t.Fatalf("WithReplicaWait(1) without a replica: %v, want ErrNotReplicated", err)
		}

		// A Ring waits on the key's shard, like a Client.
		ring := redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"one": srv.Addr()}})
		t.Cleanup(func() { ring.Close() })
		before := waits(t, srv.Addr())
		rctx, rcancel := context.WithTimeout(bg, 10*time.Second)
		defer rcancel()
		rv, err := redisstore.New(ring).SaveDurable(rctx, "r", []byte("x"), driver.NoVersion, 0)
		if err != nil {
			t.Fatal(err)
		}
		if n := waits(t, srv.Addr()) - before; n != 0 {
			t.Fatalf("a Ring on a server without replicas ran %d WAITs", n)
		}
		rctx1, rcancel1 := context.WithTimeout(bg, 500*time.Millisecond)
		defer rcancel1()
		if _, err := redisstore.New(ring, redisstore.WithReplicaWait(1)).SaveDurable(rctx1, "r", []byte("y"), rv, 0); !errors.Is(err, driver.ErrNotReplicated) {
			t.Fatalf("WithReplicaWait(1) on a Ring without a replica: %v, want ErrNotReplicated", err)
		}
		if n := waits(t, srv.Addr()) - before; n != 1 {
			t.Fatalf("the Ring's shard ran %d WAITs, want 1", n)
		}
	})
	t.Run("off and more than there are", func(t *testing.T) {
		t.Parallel()
		master, _ := replicated(t)
		off := redisstore.New(newClient(t, &redis.Options{Addr: master.Addr()}), redisstore.WithReplicaWait(0))
		ctx, cancel := context.WithTimeout(bg, 10*time.Second)
		defer cancel()
		v, err := off.SaveDurable(ctx, "k", []byte("x"), driver.NoVersion, 0)
		if err != nil {
			t.Fatal(err)
		}
		if n := waits(t, master.Addr()); n != 0 {
			t.Fatalf("WithReplicaWait(0) ran %d WAITs", n)
		}
		two := redisstore.New(newClient(t, &redis.Options{Addr: master.Addr()}), redisstore.WithReplicaWait(2))
		ctx2, cancel2 := context.WithTimeout(bg, 500*time.Millisecond)
		defer cancel2()
		if _, err := two.SaveDurable(ctx2, "k", []byte("y"), v, 0); !errors.Is(err, driver.ErrNotReplicated) || !strings.Contains(err.Error(), "of 2 replicas") {
			t.Fatalf("WithReplicaWait(2) with one replica: %v, want ErrNotReplicated", err)
		}
	})
	t.Run("invalid", func(t *testing.T) {
		s := redisstore.New(newClient(t, &redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1}), redisstore.WithReplicaWait(-1))
		_, err := s.SaveDurable(bg, "k", nil, driver.NoVersion, 0)
		if err == nil || !strings.Contains(err.Error(), "WithReplicaWait(-1): pass the number of replicas") {
			t.Fatalf("WithReplicaWait(-1): %v", err)
		}
	})
}

// On Cluster the write and its WAIT go to the master that owns the key's
// slot: on a cluster without replicas the default does not wait, and
// WithReplicaWait(1) makes that master, and no other node, run the WAIT.
func TestSaveDurableCluster(t *testing.T) {
	t.Parallel()
	cl := testserver.RedisCluster(t, 3)
	// A ReadTimeout of 1 s bounds each WAIT (waitBudget) to 0.9 s, well
	// inside the calls' deadlines below, however loaded the machine.
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cl.Addrs(), ReadTimeout: time.Second})
	t.Cleanup(func() { cc.Close() })
	bg := context.Background()
	ctx, cancel := context.WithTimeout(bg, 10*time.Second)
	defer cancel()

	s := redisstore.New(cc)
	for _, key := range []string{"a", "b", "c", "d"} {
		if _, err := s.SaveDurable(ctx, key, []byte("x"), driver.NoVersion, 0); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 {
		if n := waits(t, cl.Node(i).Addr()); n != 0 {
			t.Fatalf("node %d ran %d WAITs on a cluster without replicas", i, n)
		}
	}

	s1 := redisstore.New(cc, redisstore.WithReplicaWait(1))
	for _, key := range []string{"a", "b"} {
		slot, err := cc.ClusterKeySlot(ctx, redisstore.DefaultPrefix+key).Result()
		if err != nil {
			t.Fatal(err)
		}
		owner := cl.SlotOwner(t, int(slot))
		before := waits(t, cl.Node(owner).Addr())
		// The WAIT is pipelined after the compare-and-set, so a conflict
		// waits too (the read timeout bounds it); the deadline leaves room
		// for a loaded machine (4 parallel tests).
		wctx, wcancel := context.WithTimeout(bg, 5*time.Second)
		_, err = s1.SaveDurable(wctx, key, []byte("y"), driver.NoVersion, 0)
		wcancel()
		if !errors.Is(err, driver.ErrConflict) {
			t.Fatalf("SaveDurable over an existing key: %v, want ErrConflict", err)
		}
		_, cur, err := s.Load(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		wctx, wcancel = context.WithTimeout(bg, 3*time.Second)
		v, err := s1.SaveDurable(wctx, key, []byte("y"), cur, 0)
		wcancel()
		if !errors.Is(err, driver.ErrNotReplicated) || v == driver.NoVersion {
			t.Fatalf("WithReplicaWait(1) on a cluster without replicas: %x %v, want a version and ErrNotReplicated", v, err)
		}
		if got, _, err := s.Load(ctx, key); err != nil || string(got) != "y" {
			t.Fatalf("after an unconfirmed SaveDurable: %q %v, want the write", got, err)
		}
		if after := waits(t, cl.Node(owner).Addr()); after != before+2 {
			t.Fatalf("the slot's master (node %d) ran %d WAITs for 2 SaveDurable, want 2", owner, after-before)
		}
	}
}

// Through Sentinel, SaveDurable writes on the current master and waits for
// its replica.
func TestSaveDurableSentinel(t *testing.T) {
	t.Parallel()
	st := testserver.RedisSentinel(t)
	c := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: st.MasterName(), SentinelAddrs: st.SentinelAddrs()})
	t.Cleanup(func() { c.Close() })
	s := redisstore.New(c)
	onReplica := redisstore.New(newClient(t, &redis.Options{Addr: st.Replica().Addr()}))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	v, err := s.SaveDurable(ctx, "k", []byte("removal"), driver.NoVersion, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	got, gv, err := onReplica.Load(ctx, "k")
	if err != nil || gv != v || string(got) != "removal" {
		t.Fatalf("the replica right after SaveDurable: %q %x %v", got, gv, err)
	}
	if n := waits(t, st.Master().Addr()); n != 1 {
		t.Fatalf("the master ran %d WAITs, want 1", n)
	}

	// After a failover the client follows the new master, and the wait
	// its new replica, the old master.
	st.Failover(t)
	onReplica = redisstore.New(newClient(t, &redis.Options{Addr: st.Replica().Addr()}))
	deadline := time.Now().Add(10 * time.Second)
	for {
		wctx, wcancel := context.WithTimeout(context.Background(), 2*time.Second)
		v, err = s.SaveDurable(wctx, "k", []byte("after failover"), v, time.Hour)
		wcancel()
		if err == nil {
			break
		}
		// The client may still be on its way to the new master (the old
		// one refuses writes as a replica), or the version it read was
		// the old master's: read again.
		if time.Now().After(deadline) {
			t.Fatalf("SaveDurable after the failover: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
		if _, v, err = s.Load(ctx, "k"); err != nil {
			v = driver.NoVersion
		}
	}
	got, gv, err = onReplica.Load(ctx, "k")
	if err != nil || gv != v || string(got) != "after failover" {
		t.Fatalf("the new replica right after SaveDurable: %q %x %v", got, gv, err)
	}
}
