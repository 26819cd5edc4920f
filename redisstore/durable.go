package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/internal/netstore"
	"github.com/msalcache/msalcache/internal/record"
	"github.com/redis/go-redis/v9"
)

// replicaWaitAuto is the default of WithReplicaWait: wait for one replica
// where the master reports any, and not at all where it reports none.
const replicaWaitAuto = -1

// DefaultReplicaWaitTimeout bounds SaveDurable's wait for replicas when its
// ctx has no deadline.
const DefaultReplicaWaitTimeout = time.Second

// replicaInfoTTL is how long SaveDurable trusts a master's count of
// connected replicas (INFO replication) before asking again: long enough
// that a burst of sign-outs asks once, short enough that a replica added
// or lost (a failover) is noticed within seconds.
const replicaInfoTTL = 5 * time.Second

// WithReplicaWait sets how many replicas SaveDurable waits for (Redis WAIT)
// before it reports a write as durable. 0 turns the wait off: SaveDurable
// is then Save. n > 0 waits for n replicas whatever the master reports, so
// a missing replica makes every SaveDurable wait until its deadline and
// return driver.ErrNotReplicated. Without the option, SaveDurable waits
// for one replica where the master reports connected replicas (INFO
// replication, asked again every 5 s at most) and does not wait where it
// reports none (a single node: WAIT would only time out).
func WithReplicaWait(n int) Option {
	return func(c *config) error {
		if n < 0 {
			return fmt.Errorf("WithReplicaWait(%d): pass the number of replicas to wait for, 0 to turn the wait off, or omit the option to wait for one replica where the master has any", n)
		}
		c.replicaWait = n
		return nil
	}
}

// replicaCache remembers each master's count of connected replicas.
type replicaCache struct {
	mu sync.Mutex
	m  map[*redis.Client]replicaCount
}

type replicaCount struct {
	n  int
	at time.Time
}

func (c *replicaCache) get(node *redis.Client, now time.Time) (int, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[node]
	if !ok || now.Sub(e.at) >= replicaInfoTTL || now.Before(e.at) {
		return 0, false
	}
	return e.n, true
}

func (c *replicaCache) put(node *redis.Client, n int, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[*redis.Client]replicaCount)
	}
	c.m[node] = replicaCount{n: n, at: now}
}

func (c *replicaCache) forget(node *redis.Client) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, node)
}

// SaveDurable implements driver.DurableSaver: it is Save, followed, on
// the same connection, by WAIT for replicas to acknowledge the write, so
// that a failover right after it cannot lose it. The compare-and-set
// script and WAIT go in one pipeline to the master that owns the key (on a
// ClusterClient the slot's master, MasterForKey; on a Ring the key's
// shard; otherwise the client itself, which on Sentinel is the current
// master): WAIT counts the replicas that hold every write made on its own
// connection, so only then does it vouch for this write.
//
// How many replicas it waits for is WithReplicaWait's; by default one,
// where the master reports any. The wait ends, at the latest, a tenth
// (at least 150 ms) before ctx's deadline (DefaultReplicaWaitTimeout without one), and before
// the client's ReadTimeout, which go-redis applies to a pipeline's replies.
// When fewer replicas than asked confirmed in that time, the write stands
// on the master and SaveDurable returns its version with an error wrapping
// driver.ErrNotReplicated; an unanswered WAIT also invalidates the
// cached count of replicas. A compare-and-set that loses returns
// driver.ErrConflict, and any other error is Save's. When go-redis
// retried the pipeline after a network error and the script found its own
// earlier attempt in place, WAIT on the new connection proves nothing, and
// SaveDurable reports ErrNotReplicated too.
//
// On Cluster, a slot that moves between the look-up and the write fails the
// call with Redis's MOVED or ASK error (nothing was written) and refreshes
// the client's map of the slots, so that a retry finds the new master. A
// user whose ACL refuses INFO makes the default (no WithReplicaWait) count
// no replicas, and so not wait: grant INFO, or set WithReplicaWait(1).
func (s *Store) SaveDurable(ctx context.Context, key string, value []byte, ifVersion driver.Version, ttl time.Duration) (driver.Version, error) {
	if err := s.start(ctx, "save durable"); err != nil {
		return driver.NoVersion, err
	}
	if s.replicaWait == 0 {
		return s.Save(ctx, key, value, ifVersion, ttl)
	}
	if len(value) > s.maxValue {
		return driver.NoVersion, fmt.Errorf("redisstore: save durable: %d bytes, limit %d: %w", len(value), s.maxValue, driver.ErrTooLarge)
	}
	k := s.prefix + key
	var node *redis.Client
	want := s.replicaWait
	err := s.run(ctx, func(ctx context.Context) error {
		var err error
		if node, err = s.masterFor(ctx, k); err != nil || node == nil {
			return err
		}
		if want == replicaWaitAuto {
			n, err := s.connectedReplicas(ctx, node)
			if err != nil {
				return err
			}
			want = min(n, 1)
		}
		return nil
	})
	if err != nil {
		return driver.NoVersion, s.wrap(ctx, "save durable", err)
	}
	if node == nil || want == 0 {
		// No replica to wait for, or a client whose masters this store
		// cannot reach one by one (not a Client, ClusterClient or Ring).
		v, err := s.Save(ctx, key, value, ifVersion, ttl)
		if err == nil && node == nil && want > 0 {
			err = fmt.Errorf("redisstore: save durable: a %T cannot WAIT on the connection that wrote: %w", s.c, driver.ErrNotReplicated)
		}
		return v, err
	}

	v := netstore.NewVersion()
	rec := record.Encode(v, value)
	wait := waitBudget(ctx, node)
	var casCmd *redis.Cmd
	var waitCmd *redis.IntCmd
	err = s.run(ctx, func(ctx context.Context) error {
		// Pipelined runs both on one connection; its error is the first
		// command's that failed, which the replies below tell apart.
		_, _ = node.Pipelined(ctx, func(p redis.Pipeliner) error {
			casCmd = casScript.Eval(ctx, p, []string{k}, s.casArgs(k, ifVersion, rec, ttl)...)
			waitCmd = redis.NewIntCmd(ctx, "wait", want, wait.Milliseconds())
			_ = p.Process(ctx, waitCmd)
			return nil
		})
		return casCmd.Err()
	})
	if err != nil {
		if cc, ok := s.c.(*redis.ClusterClient); ok && (redis.HasErrorPrefix(err, "MOVED") || redis.HasErrorPrefix(err, "ASK")) {
			cc.ReloadState(context.WithoutCancel(ctx))
		}
		if perr := s.publishDenied("save durable", err); perr != nil {
			return driver.NoVersion, perr
		}
		return driver.NoVersion, s.wrap(ctx, "save durable", err)
	}
	res, err := casCmd.Int64()
	if err != nil {
		return driver.NoVersion, s.wrap(ctx, "save durable", err)
	}
	switch res {
	case casConflict:
		return driver.NoVersion, fmt.Errorf("redisstore: save durable: %w", driver.ErrConflict)
	case casAlready:
		return v, fmt.Errorf("redisstore: save durable: written by an attempt that go-redis retried on another connection, whose WAIT cannot vouch for it: %w", driver.ErrNotReplicated)
	}
	acked, err := waitCmd.Result()
	if err != nil {
		s.replica.forget(node)
		return v, fmt.Errorf("redisstore: save durable: written, but WAIT failed (%w): %w", err, driver.ErrNotReplicated)
	}
	if acked < int64(want) {
		s.replica.forget(node)
		return v, fmt.Errorf("redisstore: save durable: written, but %d of %d replicas confirmed it within %v: %w", acked, want, wait, driver.ErrNotReplicated)
	}
	return v, nil
}

// masterFor returns the client of the master that owns the full redis key
// k, or nil for a client of a kind the store cannot split by node.
func (s *Store) masterFor(ctx context.Context, k string) (*redis.Client, error) {
	switch c := s.c.(type) {
	case *redis.Client:
		return c, nil
	case *redis.ClusterClient:
		return c.MasterForKey(ctx, k)
	case *redis.Ring:
		return c.GetShardClientForKey(k)
	}
	return nil, nil
}

// connectedReplicas returns the number of replicas connected to node, from
// a cache refreshed every replicaInfoTTL. A refused INFO (an ACL) counts
// none.
func (s *Store) connectedReplicas(ctx context.Context, node *redis.Client) (int, error) {
	now := time.Now()
	if n, ok := s.replica.get(node, now); ok {
		return n, nil
	}
	info, err := node.Info(ctx, "replication").Result()
	var rerr redis.Error
	switch {
	case errors.As(err, &rerr):
		info = "" // refused: count none
	case err != nil:
		return 0, err
	}
	n := 0
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(line, "connected_slaves:"); ok {
			n, _ = strconv.Atoi(strings.TrimSpace(v))
			break
		}
	}
	s.replica.put(node, n, now)
	return n, nil
}

// waitBudget is WAIT's timeout for a call bounded by ctx on node: what is
// left of ctx's deadline (DefaultReplicaWaitTimeout without one), at most
// node's ReadTimeout (which go-redis puts on a pipeline's replies), less
// room for the reply: a tenth, at least 150 ms, since Redis checks the
// timeouts of blocked clients on its event loop, which may wake only every
// 100 ms (hz 10), and the reply must still cross a loaded machine; half of
// a budget under 300 ms. Never 0, which WAIT reads as forever.
func waitBudget(ctx context.Context, node *redis.Client) time.Duration {
	budget := DefaultReplicaWaitTimeout
	if dl, ok := ctx.Deadline(); ok {
		budget = time.Until(dl)
	}
	if rt := node.Options().ReadTimeout; rt > 0 && rt < budget {
		budget = rt
	}
	wait := budget - max(budget/10, 150*time.Millisecond)
	if budget < 300*time.Millisecond {
		wait = budget / 2
	}
	return max(wait, time.Millisecond)
}

var _ driver.DurableSaver = (*Store)(nil)
