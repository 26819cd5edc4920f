package testserver

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
)

// clusterSlots is the number of hash slots of a Redis Cluster.
const clusterSlots = 16384

// clusterTimeout bounds waiting for a cluster to agree on its state.
const clusterTimeout = 30 * time.Second

// RedisClusterServer is a Redis Cluster of masters without replicas,
// started by RedisCluster. Its nodes are stopped when the test ends.
type RedisClusterServer struct {
	nodes []*RedisServer
}

// RedisCluster starts a Redis Cluster of the given number of masters (3 in
// tests, at least 1) and no replicas, and returns once every node reports
// cluster_state:ok with all 16384 slots assigned and knows every other node.
//
// Each node is a redis-server as started by Redis, plus
//
//	--cluster-enabled yes --cluster-config-file nodes.conf
//	--cluster-node-timeout 2000 --cluster-port B
//	--repl-diskless-sync-delay 0
//
// (B, the cluster bus port, is picked free like the client port, rather than
// being port+10000, which may not exist; a replica a test adds, or a node
// that comes back as the replica of the one that took its slots over, would
// otherwise wait 5 s for its full sync, in case more replicas come). The cluster is then formed
// directly over RESP, as redis-cli --cluster create would: node i gets the
// i-th of masters equal contiguous slot ranges (node 0 has slot 0, the last
// node has slot 16383), a distinct config epoch, and is met by node 0.
func RedisCluster(t testing.TB, masters int) *RedisClusterServer {
	t.Helper()
	if masters < 1 {
		t.Fatalf("testserver: RedisCluster needs at least 1 master, not %d", masters)
	}
	c := &RedisClusterServer{}
	extra := func(ports []int) []string {
		return []string{
			"--cluster-enabled", "yes",
			"--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", "2000",
			"--cluster-port", strconv.Itoa(ports[1]),
			"--repl-diskless-sync-delay", "0",
		}
	}
	for range masters {
		c.nodes = append(c.nodes, startRedis(t, redisConfig{}, 2, extra))
	}
	for i, n := range c.nodes {
		lo := i * clusterSlots / masters
		hi := (i+1)*clusterSlots/masters - 1
		if _, err := redisDo(n.Addr(), "", "CLUSTER", "SET-CONFIG-EPOCH", strconv.Itoa(i+1)); err != nil {
			t.Fatalf("testserver: cluster node %d: CLUSTER SET-CONFIG-EPOCH: %v", i, err)
		}
		if _, err := redisDo(n.Addr(), "", "CLUSTER", "ADDSLOTSRANGE", strconv.Itoa(lo), strconv.Itoa(hi)); err != nil {
			t.Fatalf("testserver: cluster node %d: CLUSTER ADDSLOTSRANGE %d %d: %v", i, lo, hi, err)
		}
	}
	for i, n := range c.nodes[1:] {
		if _, err := redisDo(c.nodes[0].Addr(), "", "CLUSTER", "MEET", "127.0.0.1",
			strconv.Itoa(n.port(0)), strconv.Itoa(n.port(1))); err != nil {
			t.Fatalf("testserver: CLUSTER MEET node %d: %v", i+1, err)
		}
	}
	c.WaitHealthy(t)
	return c
}

// Addrs returns the "127.0.0.1:port" of every node, in node order.
func (c *RedisClusterServer) Addrs() []string {
	addrs := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		addrs[i] = n.Addr()
	}
	return addrs
}

// Node returns node i (0-based), for example to Kill, Freeze or Restart it.
// A restarted node keeps its nodes.conf and rejoins the cluster; call
// WaitHealthy to wait until the cluster has noticed.
func (c *RedisClusterServer) Node(i int) *RedisServer { return c.nodes[i] }

// WaitHealthy waits until every node answers and reports cluster_state:ok,
// all 16384 slots assigned and ok, and knows exactly the cluster's nodes, all
// connected. It fails the test after 30 s.
func (c *RedisClusterServer) WaitHealthy(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(clusterTimeout)
	for {
		err := c.healthy()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("testserver: cluster not healthy after %v: %v", clusterTimeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c *RedisClusterServer) healthy() error {
	want := strconv.Itoa(clusterSlots)
	for i, n := range c.nodes {
		info, err := redisInfo(n.Addr(), "", "CLUSTER", "INFO")
		if err != nil {
			return fmt.Errorf("node %d: %w", i, err)
		}
		if info["cluster_state"] != "ok" || info["cluster_slots_assigned"] != want || info["cluster_slots_ok"] != want {
			return fmt.Errorf("node %d: cluster_state:%s cluster_slots_assigned:%s cluster_slots_ok:%s",
				i, info["cluster_state"], info["cluster_slots_assigned"], info["cluster_slots_ok"])
		}
		nodes, err := redisString(n.Addr(), "", "CLUSTER", "NODES")
		if err != nil {
			return fmt.Errorf("node %d: %w", i, err)
		}
		lines := clusterNodeLines(nodes)
		if len(lines) != len(c.nodes) {
			return fmt.Errorf("node %d knows %d nodes, want %d", i, len(lines), len(c.nodes))
		}
		for _, l := range lines {
			if l.flags["handshake"] || l.flags["fail"] || l.flags["fail?"] || l.flags["noaddr"] || !l.connected {
				return fmt.Errorf("node %d sees %s", i, l.raw)
			}
		}
	}
	return nil
}

// clusterNode is one line of CLUSTER NODES.
type clusterNode struct {
	id        string
	addr      string // ip:port, without @busport
	flags     map[string]bool
	connected bool
	slots     [][2]int // owned ranges; migrating/importing markers left out
	raw       string
}

func clusterNodeLines(s string) []clusterNode {
	var out []clusterNode
	for _, line := range strings.Split(s, "\n") {
		f := strings.Fields(line)
		if len(f) < 8 {
			continue
		}
		n := clusterNode{id: f[0], flags: map[string]bool{}, connected: f[7] == "connected", raw: line}
		n.addr, _, _ = strings.Cut(f[1], "@")
		for _, fl := range strings.Split(f[2], ",") {
			n.flags[fl] = true
		}
		for _, r := range f[8:] {
			if strings.HasPrefix(r, "[") {
				continue
			}
			lo, hi, isRange := strings.Cut(r, "-")
			a, err1 := strconv.Atoi(lo)
			b := a
			var err2 error
			if isRange {
				b, err2 = strconv.Atoi(hi)
			}
			if err1 == nil && err2 == nil {
				n.slots = append(n.slots, [2]int{a, b})
			}
		}
		out = append(out, n)
	}
	return out
}

// slotOwnerID returns the id of the node owning slot in a CLUSTER NODES
// reply, or "".
func slotOwnerID(nodes []clusterNode, slot int) string {
	for _, n := range nodes {
		for _, r := range n.slots {
			if slot >= r[0] && slot <= r[1] {
				return n.id
			}
		}
	}
	return ""
}

// SlotOwner returns the index of the node owning slot, as seen by the first
// node that answers. Before any MigrateSlot, node i owns the slots from
// i*16384/masters to (i+1)*16384/masters-1 (integer division).
func (c *RedisClusterServer) SlotOwner(t testing.TB, slot int) int {
	t.Helper()
	owner, err := c.slotOwner(slot)
	if err != nil {
		t.Fatalf("testserver: owner of slot %d: %v", slot, err)
	}
	return owner
}

func (c *RedisClusterServer) slotOwner(slot int) (int, error) {
	var lastErr error = errors.New("no node")
	for _, n := range c.nodes {
		s, err := redisString(n.Addr(), "", "CLUSTER", "NODES")
		if err != nil {
			lastErr = err
			continue
		}
		id := slotOwnerID(clusterNodeLines(s), slot)
		for i, m := range c.nodes {
			if mid, err := redisString(m.Addr(), "", "CLUSTER", "MYID"); err == nil && mid == id {
				return i, nil
			}
		}
		return -1, fmt.Errorf("slot %d is owned by %q, not a running node of the cluster", slot, id)
	}
	return -1, lastErr
}

// MigrateSlot moves slot, with its keys, from node from to node to, the way
// redis-cli --cluster reshard does: CLUSTER SETSLOT IMPORTING on the target,
// MIGRATING on the source, MIGRATE of every key in batches, then SETSLOT
// NODE on the target, the source, and every other node. Clients that still
// send the slot's keys to the source get MOVED (ASK while keys move) and
// must follow. from must own slot, and all nodes must be running:
// MigrateSlot waits until the cluster is healthy again.
func (c *RedisClusterServer) MigrateSlot(t testing.TB, slot, from, to int) {
	t.Helper()
	if err := c.migrateSlot(slot, from, to); err != nil {
		t.Fatalf("testserver: migrate slot %d from node %d to node %d: %v", slot, from, to, err)
	}
	c.WaitHealthy(t)
}

func (c *RedisClusterServer) migrateSlot(slot, from, to int) error {
	if slot < 0 || slot >= clusterSlots {
		return fmt.Errorf("no such slot")
	}
	if from == to {
		return fmt.Errorf("source and target are the same node")
	}
	src, dst := c.nodes[from].Addr(), c.nodes[to].Addr()
	srcID, err := redisString(src, "", "CLUSTER", "MYID")
	if err != nil {
		return fmt.Errorf("source: %w", err)
	}
	dstID, err := redisString(dst, "", "CLUSTER", "MYID")
	if err != nil {
		return fmt.Errorf("target: %w", err)
	}
	nodes, err := redisString(src, "", "CLUSTER", "NODES")
	if err != nil {
		return fmt.Errorf("source: %w", err)
	}
	if owner := slotOwnerID(clusterNodeLines(nodes), slot); owner != srcID {
		return fmt.Errorf("source node %d (%s) does not own the slot (owner: %q)", from, srcID, owner)
	}
	s := strconv.Itoa(slot)
	if _, err := redisDo(dst, "", "CLUSTER", "SETSLOT", s, "IMPORTING", srcID); err != nil {
		return fmt.Errorf("SETSLOT IMPORTING: %w", err)
	}
	if _, err := redisDo(src, "", "CLUSTER", "SETSLOT", s, "MIGRATING", dstID); err != nil {
		return fmt.Errorf("SETSLOT MIGRATING: %w", err)
	}
	conn, err := dialRedis(src, "")
	if err != nil {
		return err
	}
	defer conn.close()
	conn.timeout = 15 * time.Second // MIGRATE of a batch may take a while
	for {
		v, err := conn.do("CLUSTER", "GETKEYSINSLOT", s, "100")
		if err != nil {
			return fmt.Errorf("GETKEYSINSLOT: %w", err)
		}
		keys, _ := v.([]any)
		if len(keys) == 0 {
			break
		}
		args := []string{"MIGRATE", "127.0.0.1", strconv.Itoa(c.nodes[to].port(0)), "", "0", "5000", "REPLACE", "KEYS"}
		for _, k := range keys {
			ks, _ := k.(string)
			args = append(args, ks)
		}
		if _, err := conn.do(args...); err != nil {
			return fmt.Errorf("MIGRATE: %w", err)
		}
	}
	if _, err := redisDo(dst, "", "CLUSTER", "SETSLOT", s, "NODE", dstID); err != nil {
		return fmt.Errorf("SETSLOT NODE on target: %w", err)
	}
	if _, err := redisDo(src, "", "CLUSTER", "SETSLOT", s, "NODE", dstID); err != nil {
		return fmt.Errorf("SETSLOT NODE on source: %w", err)
	}
	for i, n := range c.nodes {
		if i != from && i != to && n.running() {
			// Best effort: the target's bumped epoch reaches them by gossip anyway.
			_, _ = redisDo(n.Addr(), "", "CLUSTER", "SETSLOT", s, "NODE", dstID)
		}
	}
	return nil
}
