package testserver

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/msalcache/msalcache/internal/wait"
)

const (
	sentinelMasterName = "mymaster"
	sentinelCount      = 3
	sentinelTimeout    = 30 * time.Second
)

// SentinelSetup is a Redis master, one replica and three sentinels
// monitoring them (quorum 2), started by RedisSentinel. Everything is
// stopped when the test ends.
type SentinelSetup struct {
	master, replica *RedisServer
	sentinels       []*RedisServer
}

// RedisSentinel starts a master, a replica of it and three sentinels, and
// returns once the replica is in sync and every sentinel sees the master,
// the replica and the two other sentinels.
//
// The data nodes run as started by Redis, plus --repl-diskless-sync-delay 0
// (a full sync would otherwise wait 5 s for more replicas), from a
// redis.conf that the sentinels rewrite on failover (so a restarted node
// keeps its new role).
// Each sentinel runs `redis-server sentinel.conf --sentinel` with
//
//	sentinel resolve-hostnames no
//	sentinel monitor mymaster 127.0.0.1 <master port> 2
//	sentinel down-after-milliseconds mymaster 1000
//	sentinel failover-timeout mymaster 5000
//	sentinel parallel-syncs mymaster 1
//
// Clients connect through MasterName and SentinelAddrs, e.g. with go-redis'
// NewFailoverClient.
func RedisSentinel(t testing.TB) *SentinelSetup {
	t.Helper()
	s := &SentinelSetup{}
	// A full sync waits repl-diskless-sync-delay (5 s by default) for more
	// replicas to come; there is only one.
	fast := []string{"--repl-diskless-sync-delay", "0"}
	s.master = startRedis(t, redisConfig{args: fast}, 1, nil)
	s.replica = startRedis(t, redisConfig{args: fast, conf: fmt.Sprintf("replicaof 127.0.0.1 %d\n", s.master.port(0))}, 1, nil)
	wait.Err(t, sentinelTimeout, "replica in sync", func() error {
		return replicaOf(s.replica.Addr(), s.master.port(0))
	})

	// The sentinels start after the replica is in sync, so their first INFO
	// of the master already lists it (they poll only every 10 s).
	conf := fmt.Sprintf(`sentinel resolve-hostnames no
sentinel monitor %[1]s 127.0.0.1 %[2]d 2
sentinel down-after-milliseconds %[1]s 1000
sentinel failover-timeout %[1]s 5000
sentinel parallel-syncs %[1]s 1
`, sentinelMasterName, s.master.port(0))
	bin := lookBinary(t, "redis-server")
	for range sentinelCount {
		r := &RedisServer{}
		var confPath string
		args := func(ports []int) []string {
			return append(redisArgs(confPath, ports[0], r.dir), "--sentinel")
		}
		r.server = newServer(t, "redis-sentinel", bin, 1, args, probeRedis(""))
		confPath = filepath.Join(r.dir, "sentinel.conf")
		if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
			t.Fatalf("testserver: write %s: %v", confPath, err)
		}
		r.launch(t)
		s.sentinels = append(s.sentinels, r)
	}
	wait.Err(t, sentinelTimeout, "sentinels see master, replica and each other", s.settled)
	return s
}

// MasterName returns the name the sentinels monitor the master under,
// "mymaster".
func (s *SentinelSetup) MasterName() string { return sentinelMasterName }

// SentinelAddrs returns the "127.0.0.1:port" of the three sentinels.
func (s *SentinelSetup) SentinelAddrs() []string {
	addrs := make([]string, len(s.sentinels))
	for i, r := range s.sentinels {
		addrs[i] = r.Addr()
	}
	return addrs
}

// Master returns the current master: the one started as master, or after
// Failover the former replica.
func (s *SentinelSetup) Master() *RedisServer { return s.master }

// Replica returns the current replica: the one started as replica, or after
// Failover the former master.
func (s *SentinelSetup) Replica() *RedisServer { return s.replica }

// Sentinel returns sentinel i (0, 1 or 2), for example to Kill it.
func (s *SentinelSetup) Sentinel(i int) *RedisServer { return s.sentinels[i] }

// Failover makes the sentinels promote the replica: it sends SENTINEL
// FAILOVER mymaster to a running sentinel and waits until every running
// sentinel reports the replica as master, the replica runs as master, and
// the old master, if running, is a replica of it in sync. Then Master and
// Replica swap. It fails the test after 30 s.
//
// Sentinels reconfigure a former master that is still up only 10-20 s after
// the promotion; once they report the new master, Failover sends the old
// master the same REPLICAOF (and CONFIG REWRITE) itself, so that a failover
// takes about 2 s. Clients that follow the sentinels see no difference.
func (s *SentinelSetup) Failover(t testing.TB) {
	t.Helper()
	oldMaster, newMaster := s.master, s.replica
	wait.Err(t, sentinelTimeout, "SENTINEL FAILOVER accepted", func() error {
		var err error
		for _, r := range s.sentinels {
			if !r.running() {
				continue
			}
			if _, err = redisDo(r.Addr(), "", "SENTINEL", "FAILOVER", sentinelMasterName); err == nil {
				return nil
			}
		}
		return err // e.g. NOGOODSLAVE while a sentinel still learns the replica
	})
	newPort := newMaster.port(0)
	wait.Err(t, sentinelTimeout, "failover done", func() error {
		for i, r := range s.sentinels {
			if !r.running() {
				continue
			}
			if got, err := s.masterAddr(r); err != nil {
				return fmt.Errorf("sentinel %d: %w", i, err)
			} else if got != newMaster.Addr() {
				return fmt.Errorf("sentinel %d reports master %s, want %s", i, got, newMaster.Addr())
			}
		}
		info, err := redisInfo(newMaster.Addr(), newMaster.password, "INFO", "replication")
		if err != nil {
			return fmt.Errorf("new master: %w", err)
		}
		if info["role"] != "master" {
			return fmt.Errorf("new master has role %s", info["role"])
		}
		if oldMaster.running() {
			if err := replicaOf(oldMaster.Addr(), newPort); err != nil {
				demote(oldMaster, newPort)
				return fmt.Errorf("old master: %w", err)
			}
		}
		return nil
	})
	s.master, s.replica = newMaster, oldMaster
}

// demote makes a former master, still running as master, a replica of the
// new master on port, as the sentinels would: they poll it only every 10 s
// and wait 8 s after it reported its role, so the failover would take 10-20 s
// longer. Harmless if the sentinels did it already.
func demote(r *RedisServer, port int) {
	info, err := redisInfo(r.Addr(), r.password, "INFO", "replication")
	if err != nil || info["role"] != "master" {
		return
	}
	if _, err := redisDo(r.Addr(), r.password, "REPLICAOF", "127.0.0.1", strconv.Itoa(port)); err == nil {
		_, _ = redisDo(r.Addr(), r.password, "CONFIG", "REWRITE")
	}
}

// masterAddr asks sentinel r where the master is.
func (s *SentinelSetup) masterAddr(r *RedisServer) (string, error) {
	v, err := redisDo(r.Addr(), "", "SENTINEL", "GET-MASTER-ADDR-BY-NAME", sentinelMasterName)
	if err != nil {
		return "", err
	}
	a, ok := v.([]any)
	if !ok || len(a) != 2 {
		return "", fmt.Errorf("GET-MASTER-ADDR-BY-NAME: unexpected reply %#v", v)
	}
	host, _ := a[0].(string)
	port, _ := a[1].(string)
	return host + ":" + port, nil
}

// settled checks that every sentinel knows the master, sees the replica up
// and the other sentinels.
func (s *SentinelSetup) settled() error {
	for i, r := range s.sentinels {
		if got, err := s.masterAddr(r); err != nil {
			return fmt.Errorf("sentinel %d: %w", i, err)
		} else if got != s.master.Addr() {
			return fmt.Errorf("sentinel %d reports master %s, want %s", i, got, s.master.Addr())
		}
		v, err := redisDo(r.Addr(), "", "SENTINEL", "REPLICAS", sentinelMasterName)
		if err != nil {
			return fmt.Errorf("sentinel %d: SENTINEL REPLICAS: %w", i, err)
		}
		replicas, err := redisMaps(v)
		if err != nil {
			return fmt.Errorf("sentinel %d: SENTINEL REPLICAS: %w", i, err)
		}
		if n := countUp(replicas); n != 1 {
			return fmt.Errorf("sentinel %d sees %d replicas up, want 1: %v", i, n, replicas)
		}
		v, err = redisDo(r.Addr(), "", "SENTINEL", "SENTINELS", sentinelMasterName)
		if err != nil {
			return fmt.Errorf("sentinel %d: SENTINEL SENTINELS: %w", i, err)
		}
		others, err := redisMaps(v)
		if err != nil {
			return fmt.Errorf("sentinel %d: SENTINEL SENTINELS: %w", i, err)
		}
		if n := countUp(others); n != sentinelCount-1 {
			return fmt.Errorf("sentinel %d sees %d other sentinels up, want %d", i, n, sentinelCount-1)
		}
	}
	return nil
}

// countUp counts the instances whose flags say neither down nor
// disconnected.
func countUp(instances []map[string]string) int {
	n := 0
	for _, m := range instances {
		f := m["flags"]
		if !strings.Contains(f, "s_down") && !strings.Contains(f, "o_down") && !strings.Contains(f, "disconnected") {
			n++
		}
	}
	return n
}

// replicaOf checks that the server at addr is a replica of 127.0.0.1:port
// with its link up.
func replicaOf(addr string, port int) error {
	info, err := redisInfo(addr, "", "INFO", "replication")
	if err != nil {
		return err
	}
	if info["role"] != "slave" || info["master_port"] != strconv.Itoa(port) || info["master_link_status"] != "up" {
		return fmt.Errorf("%s: role:%s master_port:%s master_link_status:%s, want a replica of port %d with link up",
			addr, info["role"], info["master_port"], info["master_link_status"], port)
	}
	return nil
}
