package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/msalcache/msalcache/driver"
	"github.com/msalcache/msalcache/internal/testserver"
	"github.com/msalcache/msalcache/internal/wait"
	"github.com/msalcache/msalcache/redisstore"
	"github.com/redis/go-redis/v9"
)

// watchLimit bounds every wait for a notification. Delivery takes
// milliseconds; the limit is for a loaded 2-core machine under -race, and
// for the health check (a stalled connection is noticed within about 2 s).
const watchLimit = 15 * time.Second

// recorder collects what a Watch callback is told.
type recorder struct {
	mu      sync.Mutex
	changes []driver.Change
	at      []time.Time
	notify  chan struct{}
}

func newRecorder() *recorder { return &recorder{notify: make(chan struct{}, 1)} }

func (r *recorder) fn(ch driver.Change) {
	r.mu.Lock()
	r.changes = append(r.changes, ch)
	r.at = append(r.at, time.Now())
	r.mu.Unlock()
	select {
	case r.notify <- struct{}{}:
	default:
	}
}

// snapshot returns what was recorded so far.
func (r *recorder) snapshot() ([]driver.Change, []time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.changes), slices.Clone(r.at)
}

// waitFrom waits until a change at index from or later satisfies match,
// and returns its index, or fails the test after watchLimit.
func (r *recorder) waitFrom(t *testing.T, from int, what string, match func(driver.Change) bool) int {
	t.Helper()
	deadline := time.NewTimer(watchLimit)
	defer deadline.Stop()
	for {
		changes, _ := r.snapshot()
		for i := from; i < len(changes); i++ {
			if match(changes[i]) {
				return i
			}
		}
		select {
		case <-r.notify:
		case <-deadline.C:
			t.Fatalf("waited %v for %s; the watch reported %s", watchLimit, what, describe(changes[min(from, len(changes)):]))
		}
	}
}

// when returns when change i was recorded.
func (r *recorder) when(i int) time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.at[i]
}

// len returns how many changes were recorded.
func (r *recorder) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.changes)
}

func isKind(k driver.ChangeKind) func(driver.Change) bool {
	return func(ch driver.Change) bool { return ch.Kind == k }
}

func isKey(key string, v driver.Version) func(driver.Change) bool {
	return func(ch driver.Change) bool {
		return ch.Kind == driver.ChangeKey && ch.Key == key && ch.Version == v
	}
}

func describe(changes []driver.Change) string {
	if len(changes) == 0 {
		return "nothing"
	}
	var s []string
	for _, ch := range changes {
		switch ch.Kind {
		case driver.ChangeWatchUp:
			s = append(s, "up")
		case driver.ChangeWatchDown:
			s = append(s, "down")
		default:
			s = append(s, fmt.Sprintf("%s@%x", ch.Key, uint64(ch.Version)))
		}
	}
	if len(s) > 20 {
		s = append(s[:10], fmt.Sprintf("... %d more ...", len(s)-20), s[len(s)-10])
	}
	return fmt.Sprint(s)
}

// watch starts a watch of s recorded by a new recorder, stopped when the
// test ends, and waits for it to come up.
func watch(t *testing.T, s *redisstore.Store) (*recorder, func()) {
	t.Helper()
	r := newRecorder()
	stop, err := s.Watch(context.Background(), r.fn)
	if err != nil {
		t.Fatalf("Watch = %v", err)
	}
	t.Cleanup(stop)
	if i := r.waitFrom(t, 0, "the watch to come up", isKind(driver.ChangeWatchUp)); i != 0 {
		changes, _ := r.snapshot()
		t.Fatalf("the first change reported was not ChangeWatchUp: %s", describe(changes))
	}
	return r, stop
}

// deployment is a way to reach one Redis deployment with as many clients
// as a test needs.
type deployment struct {
	name      string
	newClient func(t testing.TB) redis.UniversalClient
	// kill cuts every pubsub connection of the deployment.
	kill func(t *testing.T, c redis.UniversalClient)
	// server is the single node's server, nil for other deployments.
	server *testserver.RedisServer
}

func singleDeployment(t *testing.T) deployment {
	srv := testserver.Redis(t)
	return deployment{
		name: "single",
		newClient: func(t testing.TB) redis.UniversalClient {
			return newClient(t, &redis.Options{Addr: srv.Addr()})
		},
		kill:   killPubSub,
		server: srv,
	}
}

func clusterDeployment(t *testing.T, cl *testserver.RedisClusterServer) deployment {
	return deployment{
		name:      "cluster",
		newClient: func(t testing.TB) redis.UniversalClient { return newClusterClient(t, cl) },
		kill:      killPubSub,
	}
}

func sentinelDeployment(setup *testserver.SentinelSetup) deployment {
	return deployment{
		name:      "sentinel",
		newClient: func(t testing.TB) redis.UniversalClient { return newFailoverClient(t, setup) },
		kill:      killPubSub,
	}
}

// killPubSub runs CLIENT KILL TYPE pubsub on every node c reaches: on
// Cluster every node, else the server c sends commands to.
func killPubSub(t *testing.T, c redis.UniversalClient) {
	t.Helper()
	ctx := context.Background()
	kill := func(ctx context.Context, c *redis.Client) error {
		return c.ClientKillByFilter(ctx, "TYPE", "pubsub").Err()
	}
	var err error
	if cc, ok := c.(*redis.ClusterClient); ok {
		err = cc.ForEachShard(ctx, kill)
	} else {
		err = c.ClientKillByFilter(ctx, "TYPE", "pubsub").Err()
	}
	if err != nil {
		t.Fatalf("CLIENT KILL TYPE pubsub: %v", err)
	}
}

// handles returns two stores on the same data, each on a client of its
// own, as two instances of an application have.
func (d deployment) handles(t *testing.T) (a, b *redisstore.Store) {
	prefix := freshPrefix()
	a = redisstore.New(d.newClient(t), redisstore.WithPrefix(prefix))
	b = redisstore.New(d.newClient(t), redisstore.WithPrefix(prefix))
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// runWatchTests checks, on one deployment, that the writes and deletes of
// one handle reach the other's watcher, all of them and quickly, and that
// a cut subscription is reported and recovers.
func runWatchTests(t *testing.T, d deployment) {
	t.Run("Delivery", func(t *testing.T) { testWatchDelivery(t, d) })
	t.Run("ClientKill", func(t *testing.T) { testWatchClientKill(t, d) })
	t.Run("AdaptersShareThroughL1", func(t *testing.T) { testAdaptersShareThroughL1(t, d) })
}

// watchMessages is how many writes the delivery test times.
const watchMessages = 300

func testWatchDelivery(t *testing.T, d deployment) {
	ctx := context.Background()
	a, b := d.handles(t)
	rec, _ := watch(t, a)

	// A write and a delete through b, each announced with its version.
	v, err := b.Save(ctx, "k", []byte("v1"), driver.NoVersion, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	i := rec.waitFrom(t, 0, "the Save of k", isKey("k", v))
	if err := b.Delete(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	i = rec.waitFrom(t, i+1, "the Delete of k", isKey("k", driver.NoVersion))

	// A conflicting Save writes nothing and announces nothing; a write
	// through a reaches its own watcher too.
	if _, err := b.Save(ctx, "k", []byte("stale"), v, time.Minute); !errors.Is(err, driver.ErrConflict) {
		t.Fatalf("stale Save = %v, want ErrConflict", err)
	}
	v2, err := a.Save(ctx, "k", []byte("v2"), driver.NoVersion, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	j := rec.waitFrom(t, i+1, "a's own Save of k", isKey("k", v2))
	if changes, _ := rec.snapshot(); slices.ContainsFunc(changes[i+1:j], notCopyOfDelete) {
		t.Fatalf("between the Delete and a's Save the watch reported %s; the conflicting Save must announce nothing", describe(changes[i+1:j]))
	}

	// watchMessages writes in a row: every one arrives, once, and soon. On
	// Cluster the keys live on three masters, each watched on its own
	// subscription: only the order of one key's changes is kept.
	start := rec.len()
	sent := make(map[string]time.Time, watchMessages)
	versions := make(map[string]driver.Version, watchMessages)
	for n := range watchMessages {
		k := fmt.Sprintf("d%d", n)
		sent[k] = time.Now()
		versions[k], err = b.Save(ctx, k, []byte("v"), driver.NoVersion, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
	}
	var delays []time.Duration
	deadline := time.Now().Add(watchLimit)
	for next := start; len(delays) < watchMessages; {
		changes, at := rec.snapshot()
		for ; next < len(changes); next++ {
			ch := changes[next]
			if isCopyOfDelete(ch) {
				continue // a late copy of the Delete of k
			}
			if ch.Kind != driver.ChangeKey || ch.Version != versions[ch.Key] {
				t.Fatalf("the watch reported %s during the timed writes", describe(changes[next:next+1]))
			}
			delays = append(delays, at[next].Sub(sent[ch.Key]))
			delete(versions, ch.Key)
		}
		if len(delays) < watchMessages {
			if time.Now().After(deadline) {
				t.Fatalf("after %v, %d of %d writes were announced", watchLimit, len(delays), watchMessages)
			}
			select {
			case <-rec.notify:
			case <-time.After(time.Until(deadline)):
			}
		}
	}
	slices.Sort(delays)
	pct := func(p int) time.Duration { return delays[(len(delays)-1)*p/100].Round(10 * time.Microsecond) }
	t.Logf("%s: %d of %d writes announced, delay from the start of Save to the callback: p50 %v, p90 %v, p99 %v, max %v",
		d.name, len(delays), watchMessages, pct(50), pct(90), pct(99), pct(100))
}

// isCopyOfDelete reports whether ch reports the Delete of k that
// testWatchDelivery makes: on Cluster every master relays every message,
// and the store passes the later copies of a delete (it cannot tell them
// from a second delete of the key; they can only make an L1 drop an
// entry), so such a copy may come at any time shortly after.
func isCopyOfDelete(ch driver.Change) bool {
	return isKey("k", driver.NoVersion)(ch)
}

// notCopyOfDelete is the opposite of isCopyOfDelete.
func notCopyOfDelete(ch driver.Change) bool { return !isCopyOfDelete(ch) }

func testWatchClientKill(t *testing.T, d deployment) {
	ctx := context.Background()
	a, b := d.handles(t)
	rec, _ := watch(t, a)
	from := rec.len()
	start := time.Now()
	d.kill(t, d.newClient(t))
	i := rec.waitFrom(t, from, "ChangeWatchDown after CLIENT KILL TYPE pubsub", isKind(driver.ChangeWatchDown))
	down := time.Since(start)
	j := rec.waitFrom(t, i+1, "ChangeWatchUp after the kill", isKind(driver.ChangeWatchUp))
	t.Logf("%s: down %v after the kill, up again %v after it", d.name, down.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	if changes, _ := rec.snapshot(); j != i+1 {
		t.Fatalf("between down and up the watch reported %s", describe(changes[i+1:j]))
	}
	// Up means subscribed: the next change arrives.
	v, err := b.Save(ctx, "after-kill", []byte("v"), driver.NoVersion, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	rec.waitFrom(t, j+1, "a change after the watch recovered", isKey("after-kill", v))
}

func TestWatchSingle(t *testing.T) {
	runWatchTests(t, singleDeployment(t))
}

func TestWatchCluster(t *testing.T) {
	t.Parallel()
	cl := testserver.RedisCluster(t, 3)
	d := clusterDeployment(t, cl)
	runWatchTests(t, d)
	// A slot moving between masters changes no master: the watch stays
	// up, with its subscriptions, and hears writes to the moved slot from
	// its new owner.
	t.Run("SlotMigration", func(t *testing.T) {
		ctx := context.Background()
		a, b := d.handles(t)
		rec, _ := watch(t, a)
		const k = "moving"
		v, err := b.Save(ctx, k, []byte("v1"), driver.NoVersion, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		i := rec.waitFrom(t, 0, "the write before the migration", isKey(k, v))
		c := d.newClient(t).(*redis.ClusterClient)
		slot64, err := c.ClusterKeySlot(ctx, redisstore.Prefix(b)+k).Result()
		if err != nil {
			t.Fatal(err)
		}
		slot := int(slot64)
		from := cl.SlotOwner(t, slot)
		cl.MigrateSlot(t, slot, from, (from+1)%3)
		if got := cl.SlotOwner(t, slot); got == from {
			t.Fatalf("slot %d still on node %d", slot, from)
		}
		v2, err := b.Save(ctx, k, []byte("v2"), v, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		j := rec.waitFrom(t, i+1, "the write after the migration", isKey(k, v2))
		if changes, _ := rec.snapshot(); j != i+1 {
			t.Fatalf("across the migration the watch reported %s", describe(changes[i+1:j+1]))
		}
	})
}

// clusterLimit bounds what a test waits for a Redis Cluster to do: notice
// that a master died (cluster-node-timeout is 2 s), elect its replica,
// resynchronise a node that came back. On loopback each takes a few
// seconds; the rest is slack for a loaded machine.
const clusterLimit = 30 * time.Second

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// addClusterReplica starts a node with the options testserver.RedisCluster
// gives its own, joins it to cl as a replica of cl's node master, and
// returns once every node of cl knows it as such and it has synchronised.
// cl.WaitHealthy no longer applies afterwards: it expects cl's own nodes
// only.
func addClusterReplica(t *testing.T, cl *testserver.RedisClusterServer, master int) *testserver.RedisServer {
	t.Helper()
	ctx := context.Background()
	bus := strconv.Itoa(freePort(t))
	r := testserver.Redis(t, testserver.RedisArgs(
		"--cluster-enabled", "yes",
		"--cluster-config-file", "nodes.conf",
		"--cluster-node-timeout", "2000",
		"--cluster-port", bus,
		// Node 0, back as this node's replica after the failover, syncs
		// at once instead of 5 s later.
		"--repl-diskless-sync-delay", "0",
	))
	rc := newClient(t, &redis.Options{Addr: r.Addr()})
	m := newClient(t, &redis.Options{Addr: cl.Node(master).Addr()})
	host, port, _ := net.SplitHostPort(r.Addr())
	if err := m.Do(ctx, "CLUSTER", "MEET", host, port, bus).Err(); err != nil {
		t.Fatalf("CLUSTER MEET: %v", err)
	}
	masterID, err := m.ClusterMyID(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	id, err := rc.ClusterMyID(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	// The new node knows the master once the handshake is done.
	wait.Err(t, clusterLimit, "the new node to replicate the master", func() error {
		return rc.ClusterReplicate(ctx, masterID).Err()
	})
	wait.Err(t, clusterLimit, "every node to know the replica", func() error {
		if err := replicaOf(ctx, rc, id, masterID); err != nil {
			return fmt.Errorf("the replica itself: %w", err)
		}
		for i := range 3 {
			if err := replicaOf(ctx, newClient(t, &redis.Options{Addr: cl.Node(i).Addr()}), id, masterID); err != nil {
				return fmt.Errorf("node %d: %w", i, err)
			}
		}
		return linkUp(ctx, rc)
	})
	return r
}

// replicaOf checks that c's node sees node id as a connected replica of
// masterID.
func replicaOf(ctx context.Context, c *redis.Client, id, masterID string) error {
	nodes, err := c.ClusterNodes(ctx).Result()
	if err != nil {
		return err
	}
	for _, line := range strings.Split(nodes, "\n") {
		f := strings.Fields(line)
		if len(f) >= 8 && f[0] == id {
			if !strings.Contains(f[2], "slave") || f[3] != masterID || f[7] != "connected" {
				return fmt.Errorf("sees %s", line)
			}
			return nil
		}
	}
	return fmt.Errorf("does not know node %s", id)
}

// linkUp checks that c's node is a replica whose link to its master is up.
func linkUp(ctx context.Context, c *redis.Client) error {
	info, err := c.Info(ctx, "replication").Result()
	if err != nil {
		return err
	}
	if !strings.Contains(info, "role:slave") || !strings.Contains(info, "master_link_status:up") {
		return fmt.Errorf("INFO replication: %s", strings.Join(strings.Fields(info), " "))
	}
	return nil
}

// isMaster checks that c's node is a master that owns slots.
func isMaster(ctx context.Context, c *redis.Client) error {
	nodes, err := c.ClusterNodes(ctx).Result()
	if err != nil {
		return err
	}
	for _, line := range strings.Split(nodes, "\n") {
		if f := strings.Fields(line); len(f) >= 8 && strings.Contains(f[2], "myself") {
			if !strings.Contains(f[2], "master") || len(f) < 9 {
				return fmt.Errorf("sees itself as %s", line)
			}
			return nil
		}
	}
	return errors.New("no myself line in CLUSTER NODES")
}

// keyOnNode returns the first key stem0, stem1, ... of the store s whose
// slot was, when cl formed, node node's: of 3 masters, node i started with
// the slots from i*16384/3 to (i+1)*16384/3-1. c is any live node.
func keyOnNode(t *testing.T, c *redis.Client, s *redisstore.Store, node int, stem string) string {
	t.Helper()
	lo, hi := node*16384/3, (node+1)*16384/3-1
	for n := 0; ; n++ {
		k := fmt.Sprintf("%s%d", stem, n)
		slot, err := c.ClusterKeySlot(context.Background(), redisstore.Prefix(s)+k).Result()
		if err != nil {
			t.Fatal(err)
		}
		if int(slot) >= lo && int(slot) <= hi {
			return k
		}
	}
}

// saveEventually saves key through s, on a cluster client, until that
// client has found the key's master. After a failover go-redis keeps
// sending to the dead master: it reloads its map of the slots on MOVED,
// or every ClusterStateReloadInterval (60 s by default), not when a node
// cannot be reached. A Store whose watch runs has its client's map
// reloaded at every topology poll; s has none, so it is asked.
func saveEventually(t *testing.T, s *redisstore.Store, key string) driver.Version {
	t.Helper()
	ctx := context.Background()
	var v driver.Version
	wait.Err(t, watchLimit, "a Save of "+key+" to succeed", func() error {
		var err error
		v, err = s.Save(ctx, key, []byte("v"), driver.NoVersion, time.Minute)
		if err != nil {
			redisstore.Client(s).(*redis.ClusterClient).ReloadState(ctx)
		}
		return err
	})
	return v
}

// TestWatchClusterFailover: the watch of a ClusterClient subscribes on
// every master, so that each change is heard from the node that published
// it, never only through the cluster bus (whose delivery has a 40 ms tail),
// and it follows the masters. Node 0 gets a replica; the watch hears a
// change written on each master, each saved version once although every
// master relays it. Node 0 is killed: the watch goes down at once and stays
// down while a master has no subscription; the replica is elected, and
// the watch comes up with a subscription on it and hears what is written
// there. Node 0 comes back as a replica and takes its slots back by a
// manual failover, which breaks no connection: the watch notices the new
// master within a poll, goes down and up, subscribes on node 0 and drops
// its subscription on the demoted node.
//
// It runs alone, not in parallel: a master's automatic failover needs the
// other masters to agree within the cluster's node timeout, which CI's
// parallel load once delayed past 30 s.
func TestWatchClusterFailover(t *testing.T) {
	ctx := context.Background()
	cl := testserver.RedisCluster(t, 3)
	replica := addClusterReplica(t, cl, 0)
	nodeClient := func(r *testserver.RedisServer) *redis.Client {
		return newClient(t, &redis.Options{Addr: r.Addr(), MaxRetries: -1})
	}
	n0, n1, rc := nodeClient(cl.Node(0)), nodeClient(cl.Node(1)), nodeClient(replica)
	d := clusterDeployment(t, cl)
	a, b := d.handles(t)
	rec, _ := watch(t, a)
	channel := redisstore.Channel(a)

	// One subscription per master, none on the replica.
	for i := range 3 {
		if n := numSub(t, nodeClient(cl.Node(i)), channel); n != 1 {
			t.Fatalf("master %d has %d subscribers of the channel, want 1", i, n)
		}
	}
	if n := numSub(t, rc, channel); n != 0 {
		t.Fatalf("the replica has %d subscribers of the channel, want 0", n)
	}
	saved := map[driver.Version]bool{}
	for i := range 3 {
		k := keyOnNode(t, n1, b, i, fmt.Sprintf("on%d-", i))
		v := saveEventually(t, b, k)
		saved[v] = true
		rec.waitFrom(t, 0, fmt.Sprintf("the change written on master %d", i), isKey(k, v))
	}

	// Node 0 dies: its subscription breaks at once, and the watch cannot
	// come up before the replica took over.
	from := rec.len()
	killed := time.Now()
	cl.Node(0).Kill()
	i := rec.waitFrom(t, from, "down after master 0 was killed", isKind(driver.ChangeWatchDown))
	down := time.Since(killed)
	wait.Err(t, clusterLimit, "the replica to be elected", func() error { return isMaster(ctx, rc) })
	elected := time.Since(killed)
	j := rec.waitFrom(t, i+1, "up after the failover", isKind(driver.ChangeWatchUp))
	up := time.Since(killed)
	if changes, _ := rec.snapshot(); j != i+1 {
		t.Fatalf("between down and up the watch reported %s", describe(changes[i+1:j]))
	}
	if n := numSub(t, rc, channel); n != 1 {
		t.Fatalf("up again, with %d subscribers of the channel on the new master, want 1", n)
	}
	t.Logf("master killed: watch down after %v, replica elected after %v, watch up after %v",
		down.Round(time.Millisecond), elected.Round(time.Millisecond), up.Round(time.Millisecond))
	k := keyOnNode(t, n1, b, 0, "promoted-")
	v := saveEventually(t, b, k)
	saved[v] = true
	rec.waitFrom(t, j+1, "a change written on the promoted replica", isKey(k, v))

	// Node 0 comes back empty, as a replica of its successor, and takes
	// its slots back: the demoted node keeps its connections.
	cl.Node(0).Restart(t)
	wait.Err(t, clusterLimit, "node 0 to resynchronise as a replica", func() error { return linkUp(ctx, n0) })
	from = rec.len()
	start := time.Now()
	var asked time.Time
	wait.Err(t, clusterLimit, "node 0 to be master again", func() error {
		err := isMaster(ctx, n0)
		// A manual failover that did not complete within its 5 s
		// (cluster-node-timeout*2.5) is given up: ask again.
		if err != nil && time.Since(asked) > 6*time.Second {
			if ferr := n0.ClusterFailover(ctx).Err(); ferr != nil {
				return fmt.Errorf("CLUSTER FAILOVER: %w", ferr)
			}
			asked = time.Now()
		}
		return err
	})
	i = rec.waitFrom(t, from, "down after the manual failover", isKind(driver.ChangeWatchDown))
	j = rec.waitFrom(t, i+1, "up after the manual failover", isKind(driver.ChangeWatchUp))
	t.Logf("manual failover: watch down after %v, up %v after it began", rec.when(i).Sub(start).Round(time.Millisecond), rec.when(j).Sub(start).Round(time.Millisecond))
	if n := numSub(t, n0, channel); n != 1 {
		t.Fatalf("up again, with %d subscribers of the channel on node 0, master again, want 1", n)
	}
	waitNumSub(t, rc, channel, 0) // the demoted node's subscription is dropped
	k = keyOnNode(t, n1, b, 0, "back-")
	v = saveEventually(t, b, k)
	saved[v] = true
	rec.waitFrom(t, j+1, "a change written on node 0, master again", isKey(k, v))

	// Every master relayed every save; each was reported once.
	changes, _ := rec.snapshot()
	reported := map[driver.Version]int{}
	for _, ch := range changes {
		if ch.Kind == driver.ChangeKey && saved[ch.Version] {
			reported[ch.Version]++
		}
	}
	for v, n := range reported {
		if n != 1 {
			t.Errorf("version %x was reported %d times, want once", uint64(v), n)
		}
	}
}

// TestWatchClusterClientClosed: closing the ClusterClient under a watch
// ends it, as it ends the watch of any other client: the watcher is told
// down, and the subscriptions on the masters are gone.
func TestWatchClusterClientClosed(t *testing.T) {
	t.Parallel()
	cl := testserver.RedisCluster(t, 3)
	c := newClusterClient(t, cl)
	s := redisstore.New(c)
	rec, _ := watch(t, s)
	channel := redisstore.Channel(s)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	rec.waitFrom(t, 1, "down after the client was closed", isKind(driver.ChangeWatchDown))
	for i := range 3 {
		waitNumSub(t, newClient(t, &redis.Options{Addr: cl.Node(i).Addr()}), channel, 0)
	}
	if changes, _ := rec.snapshot(); len(changes) != 2 {
		t.Fatalf("the watcher was told %s, want up, down", describe(changes))
	}
}

// TestWatchStalledConnection freezes the server (SIGSTOP): the
// subscription's connection stays open but nothing answers, which only the
// health check can notice. The watch must go down within about 2 s, and
// come up again once the server is thawed.
func TestWatchStalledConnection(t *testing.T) {
	d := singleDeployment(t)
	srv := d.server
	a, b := d.handles(t)
	rec, _ := watch(t, a)
	from := rec.len()
	start := time.Now()
	srv.Freeze()
	thawed := false
	defer func() {
		if !thawed {
			srv.Thaw()
		}
	}()
	i := rec.waitFrom(t, from, "ChangeWatchDown with the server frozen", isKind(driver.ChangeWatchDown))
	down := time.Since(start)
	// watchInterval+watchTimeout is 2 s; the rest is slack for a loaded
	// machine. A watch that never noticed would wait for watchLimit.
	if down > 5*time.Second {
		t.Errorf("a stalled subscription was reported down after %v; the health check promises about 2 s", down)
	}
	srv.Thaw()
	thawed = true
	thaw := time.Now()
	j := rec.waitFrom(t, i+1, "ChangeWatchUp after the thaw", isKind(driver.ChangeWatchUp))
	t.Logf("down %v after the freeze; up %v after the thaw", down.Round(time.Millisecond), time.Since(thaw).Round(time.Millisecond))
	v, err := b.Save(context.Background(), "after-thaw", []byte("v"), driver.NoVersion, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	rec.waitFrom(t, j+1, "a change after the thaw", isKey("after-thaw", v))
}

// numSub returns how many subscribers the channel has on the server c
// talks to.
func numSub(t *testing.T, c redis.UniversalClient, channel string) int64 {
	t.Helper()
	n, err := c.PubSubNumSub(context.Background(), channel).Result()
	if err != nil {
		t.Fatal(err)
	}
	return n[channel]
}

// waitNumSub polls numSub until it is want.
func waitNumSub(t *testing.T, c redis.UniversalClient, channel string, want int64) {
	t.Helper()
	deadline := time.Now().Add(watchLimit)
	for {
		got := numSub(t, c, channel)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("PUBSUB NUMSUB %s = %d after %v, want %d", channel, got, watchLimit, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestWatchOneSubscriptionPerStore: every Watch of a Store shares one
// subscription, each is told everything (a late one starts with
// ChangeWatchUp at once), stop waits for the callback in progress, the last
// stop unsubscribes, and a Watch after that subscribes again.
func TestWatchOneSubscriptionPerStore(t *testing.T) {
	ctx := context.Background()
	d := singleDeployment(t)
	a, b := d.handles(t)
	c := d.newClient(t)
	ch := redisstore.Channel(a)
	if n := numSub(t, c, ch); n != 0 {
		t.Fatalf("%d subscribers before any Watch: the subscription must start lazily", n)
	}
	r1, stop1 := watch(t, a)
	r2 := newRecorder()
	stop2, err := a.Watch(ctx, r2.fn)
	if err != nil {
		t.Fatal(err)
	}
	// Already up: the second watcher is told so before Watch returns.
	if changes, _ := r2.snapshot(); len(changes) != 1 || changes[0].Kind != driver.ChangeWatchUp {
		t.Fatalf("a Watch on a store whose subscription is up was told %s before it returned, want up", describe(changes))
	}
	if n := numSub(t, c, ch); n != 1 {
		t.Fatalf("two Watches on one Store: %d subscribers, want 1", n)
	}
	v, err := b.Save(ctx, "k", []byte("v"), driver.NoVersion, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	r1.waitFrom(t, 0, "the change on watcher 1", isKey("k", v))
	r2.waitFrom(t, 0, "the change on watcher 2", isKey("k", v))

	// A callback in progress holds up stop; none runs after it returns.
	entered, release := make(chan struct{}), make(chan struct{})
	var mu sync.Mutex
	stopped, lateCalls := false, 0
	blocking := true
	stop3, err := a.Watch(ctx, func(ch driver.Change) {
		mu.Lock()
		if stopped {
			lateCalls++
		}
		block := blocking && ch.Kind == driver.ChangeKey
		blocking = blocking && !block
		mu.Unlock()
		if block {
			close(entered)
			<-release
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Save(ctx, "k2", []byte("v"), driver.NoVersion, time.Minute); err != nil {
		t.Fatal(err)
	}
	<-entered
	stopDone := make(chan struct{})
	go func() {
		stop3()
		mu.Lock()
		stopped = true
		mu.Unlock()
		close(stopDone)
	}()
	select {
	case <-stopDone:
		t.Fatal("stop returned while its callback was still running")
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	<-stopDone
	for n := range 20 {
		if _, err := b.Save(ctx, fmt.Sprintf("late%d", n), []byte("v"), driver.NoVersion, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	r1.waitFrom(t, 0, "the last late write", func(ch driver.Change) bool { return ch.Key == "late19" })
	redisstore.WatchBarrier(a)
	mu.Lock()
	if lateCalls != 0 {
		t.Errorf("a stopped watcher was called %d times after stop returned", lateCalls)
	}
	mu.Unlock()

	// Stopping twice is harmless; the last stop unsubscribes.
	stop1()
	stop1()
	if n := numSub(t, c, ch); n != 1 {
		t.Fatalf("one Watch left: %d subscribers, want 1", n)
	}
	stop2()
	waitNumSub(t, c, ch, 0)
	n := r2.len()
	if _, err := b.Save(ctx, "k3", []byte("v"), driver.NoVersion, time.Minute); err != nil {
		t.Fatal(err)
	}
	// And a new Watch subscribes afresh.
	r4, _ := watch(t, a)
	if got := r2.len(); got != n {
		t.Fatalf("a stopped watcher was told %d more changes", got-n)
	}
	v5, err := b.Save(ctx, "k5", []byte("v"), driver.NoVersion, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	r4.waitFrom(t, 0, "a change on the renewed subscription", isKey("k5", v5))
}

// testWatchFailover fails the Sentinel master over under a watch. The
// subscription sits on the old master, which stays up as a replica, so no
// connection breaks: the store must notice the new master (its run_id),
// report the watch down, subscribe on the new master and report it up, and
// then hear what is written there.
func testWatchFailover(t *testing.T, setup *testserver.SentinelSetup) {
	ctx := context.Background()
	d := sentinelDeployment(setup)
	a, b := d.handles(t)
	rec, _ := watch(t, a)
	before := setup.Master()
	if n := numSub(t, newClient(t, &redis.Options{Addr: before.Addr()}), redisstore.Channel(a)); n != 1 {
		t.Fatalf("the master has %d subscribers of the channel, want 1", n)
	}
	from := rec.len()
	start := time.Now()
	setup.Failover(t)
	done := time.Now()
	i := rec.waitFrom(t, from, "ChangeWatchDown across the failover", isKind(driver.ChangeWatchDown))
	downAt := time.Since(start)
	j := rec.waitFrom(t, i+1, "ChangeWatchUp after the failover", isKind(driver.ChangeWatchUp))
	t.Logf("failover took %v; watch down %v and up %v after it began",
		done.Sub(start).Round(time.Millisecond), downAt.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	if n := numSub(t, newClient(t, &redis.Options{Addr: setup.Master().Addr()}), redisstore.Channel(a)); n != 1 {
		t.Fatalf("after the watch came up again, the new master has %d subscribers of the channel, want 1", n)
	}
	// b's client may still be learning the new master (a write to the
	// demoted one fails READONLY).
	deadline := time.Now().Add(watchLimit)
	for {
		v, err := b.Save(ctx, "after-failover", []byte("v"), driver.NoVersion, time.Minute)
		if err == nil {
			rec.waitFrom(t, j+1, "a change written on the new master", isKey("after-failover", v))
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Save after the failover = %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestWatchClose: Close tells the watchers that changes are no longer
// reported, unsubscribes, and a Watch after it fails with ErrClosed.
func TestWatchClose(t *testing.T) {
	d := singleDeployment(t)
	a, _ := d.handles(t)
	c := d.newClient(t)
	rec, stop := watch(t, a)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if changes, _ := rec.snapshot(); len(changes) != 2 || changes[1].Kind != driver.ChangeWatchDown {
		t.Fatalf("after Close the watcher was told %s, want up, down", describe(changes))
	}
	waitNumSub(t, c, redisstore.Channel(a), 0)
	stop() // harmless after Close
	if _, err := a.Watch(context.Background(), rec.fn); !errors.Is(err, driver.ErrClosed) {
		t.Fatalf("Watch after Close = %v, want ErrClosed", err)
	}
}

// TestWatchRefusals: a Ring cannot be watched (its shards do not share
// messages), and a nil callback or a done ctx is refused.
func TestWatchRefusals(t *testing.T) {
	ring := redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"a": "127.0.0.1:1"}})
	defer ring.Close()
	if _, err := redisstore.New(ring).Watch(context.Background(), func(driver.Change) {}); err == nil || !strings.Contains(err.Error(), "Ring") {
		t.Errorf("Watch on a Ring = %v, want an error naming the Ring", err)
	}
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer c.Close()
	s := redisstore.New(c)
	if _, err := s.Watch(context.Background(), nil); err == nil {
		t.Error("Watch with a nil callback succeeded")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Watch(ctx, func(driver.Change) {}); !errors.Is(err, context.Canceled) {
		t.Errorf("Watch with a cancelled ctx = %v, want Canceled", err)
	}
}

// TestWatchForeignMessage: a message on the channel that is not of this
// store's format names no key this store can trust, so the watch reports
// down and up, which flushes an L1, and goes on.
func TestWatchForeignMessage(t *testing.T) {
	ctx := context.Background()
	d := singleDeployment(t)
	a, b := d.handles(t)
	c := d.newClient(t)
	rec, _ := watch(t, a)
	for _, msg := range []string{"nospace", "key nothex", "key ", " 1", "key 12345678901234567"} {
		from := rec.len()
		if err := c.Publish(ctx, redisstore.Channel(a), msg).Err(); err != nil {
			t.Fatal(err)
		}
		i := rec.waitFrom(t, from, fmt.Sprintf("down after %q", msg), isKind(driver.ChangeWatchDown))
		if i != from {
			changes, _ := rec.snapshot()
			t.Fatalf("%q was reported as %s", msg, describe(changes[from:]))
		}
		rec.waitFrom(t, i+1, fmt.Sprintf("up after %q", msg), isKind(driver.ChangeWatchUp))
	}
	v, err := b.Save(ctx, "k", []byte("v"), driver.NoVersion, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	rec.waitFrom(t, 0, "a change after the foreign messages", isKey("k", v))
}

// TestExampleWatch runs what ExampleStore_Watch does against a real
// server.
func TestExampleWatch(t *testing.T) {
	d := singleDeployment(t)
	a, b := d.handles(t)
	got, err := watchOtherInstance(context.Background(), a, b)
	if want := []string{"watch up", "key example written", "key example deleted"}; err != nil || !slices.Equal(got, want) {
		t.Fatalf("watchOtherInstance = %q, %v; want %q", got, err, want)
	}
}

// TestWatchServerRestart kills the server under a watch: the watch goes
// down at once, keeps trying while nothing listens, and comes up once the
// server is back (empty: the L1 must not trust anything from before).
func TestWatchServerRestart(t *testing.T) {
	d := singleDeployment(t)
	a, b := d.handles(t)
	rec, _ := watch(t, a)
	from := rec.len()
	start := time.Now()
	d.server.Kill()
	i := rec.waitFrom(t, from, "ChangeWatchDown after the kill", isKind(driver.ChangeWatchDown))
	down := time.Since(start)
	d.server.Restart(t)
	restarted := time.Now()
	j := rec.waitFrom(t, i+1, "ChangeWatchUp after the restart", isKind(driver.ChangeWatchUp))
	t.Logf("down %v after the kill; up %v after the server answered again", down.Round(time.Millisecond), time.Since(restarted).Round(time.Millisecond))
	v, err := b.Save(context.Background(), "after-restart", []byte("v"), driver.NoVersion, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	rec.waitFrom(t, j+1, "a change after the restart", isKey("after-restart", v))
}

// TestWatchConcurrentStartStop starts and stops watches from several
// goroutines while another handle writes, under the race detector: no
// callback runs after its stop returned, and each watcher that came up
// saw ChangeWatchUp first.
func TestWatchConcurrentStartStop(t *testing.T) {
	ctx := context.Background()
	d := singleDeployment(t)
	a, b := d.handles(t)
	writing, wrote := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(wrote)
		for n := 0; ; n++ {
			select {
			case <-writing:
				return
			default:
			}
			if _, err := b.Save(ctx, fmt.Sprintf("w%d", n%50), []byte("v"), driver.NoVersion, time.Minute); err != nil && !errors.Is(err, driver.ErrConflict) {
				t.Error(err)
				return
			}
		}
	}()
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 10 {
				var mu sync.Mutex
				var seen []driver.Change
				stopped := false
				stop, err := a.Watch(ctx, func(ch driver.Change) {
					mu.Lock()
					defer mu.Unlock()
					if stopped {
						t.Errorf("goroutine %d watch %d: called after stop returned", g, i)
					}
					seen = append(seen, ch)
				})
				if err != nil {
					t.Error(err)
					return
				}
				time.Sleep(time.Duration(i) * time.Millisecond)
				stop()
				mu.Lock()
				stopped = true
				if len(seen) > 0 && seen[0].Kind != driver.ChangeWatchUp {
					t.Errorf("goroutine %d watch %d: first change %s, want up", g, i, describe(seen[:1]))
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(writing)
	<-wrote
	// Every watch stopped: the subscription ended.
	waitNumSub(t, d.newClient(t), redisstore.Channel(a), 0)
}
