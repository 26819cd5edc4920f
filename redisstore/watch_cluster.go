package redisstore

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/msalcache/msalcache"
	"github.com/redis/go-redis/v9"
)

// On a Redis Cluster, a classic PUBLISH reaches the subscribers of the node
// that runs it at once, and every other node through the cluster bus, whose
// delivery has a tail: about 1 message in 100 arrived some 40 ms late with
// one subscription. So the watch of a ClusterClient holds one subscription
// on every master (every node that owns slots, where the scripts run),
// and each message is heard first from the node that published it, again
// later from every other master.
//
// A coordinator goroutine (watchCluster) owns the subscriptions: it starts
// one per master of the latest topology, drops those of nodes that no
// longer are masters, and reports ChangeWatchUp only while every master's
// subscription is confirmed and none failed in the last upSettle. A
// second goroutine (discover) finds the masters, every watch interval and
// at once after any subscription fails, so that a failover, a new master
// or a master that lost its slots is seen within an interval. Each
// subscription runs subscribeLoop, the loop of a single node's watch, with
// its PINGs and its retries, and passes what it hears to the coordinator,
// which alone calls the hub.

// minRediscover is the least time between two topology look-ups, so that
// subscriptions failing one after another cost one look-up, not a burst.
const minRediscover = 50 * time.Millisecond

// upSettle is how long no subscription may have failed before the watch
// reports ChangeWatchUp again. What cuts one connection often cuts the
// others a few milliseconds apart (a network fault, CLIENT KILL on every
// node, a restart of the farm's Redis); a subscription that came back
// before its siblings' failures were seen would report up between two
// downs, and the writes between them would be lost to a watcher that
// trusted the first up.
const upSettle = 250 * time.Millisecond

// The saved versions reported are remembered for seenFor to 2*seenFor, to
// drop the later copies of their messages (see clusterWatch.firstCopy):
// the cluster bus relays a copy within milliseconds, its tail was 50 ms.
// maxSeen bounds the memory (about 100 bytes a version) of a store
// written faster than maxSeen per seenFor: past it the memory is renewed
// early, which shortens how long a version is remembered but never drops
// a first copy.
const (
	seenFor = time.Second
	maxSeen = 1 << 15
)

// clusterWatch is the state of watchCluster's goroutine, which alone
// touches it.
type clusterWatch struct {
	s   *Store
	c   *redis.ClusterClient
	run *subRun // the hub's run, which this watch is

	events chan nodeEvent // from the masters' subscriptions
	found  chan topology  // from discover
	kick   chan bool      // asks discover to look now; true: and to check that c is open

	subs     map[string]*nodeSub // by address, one per master of the latest topology
	known    bool                // a topology was found
	up       bool                // ChangeWatchUp was reported last
	lastFail time.Time           // when a subscription last failed
	settle   *time.Timer         // calls report again once upSettle has passed

	// seen and seenBefore remember the saved versions reported lately;
	// every seenFor seenBefore is dropped and seen takes its place.
	seen, seenBefore map[changeID]struct{}
}

// nodeSub is the subscription on one master.
type nodeSub struct {
	addr   string
	client *redis.Client
	run    *subRun
	up     bool // its subscription is confirmed
	ended  bool // its loop returned: its client was closed (see lookup)
}

// nodeEvent is what a master's subscription tells the coordinator: a
// Change, or that its loop ended.
type nodeEvent struct {
	sub   *nodeSub
	ch    driver.Change
	ended bool
}

// topology is what discover found: the masters by address, or that the
// client was closed. err is a failed look-up: the masters are unknown.
type topology struct {
	masters map[string]*redis.Client
	closed  bool
	err     error
}

// changeID names one saved version of one key.
type changeID struct {
	key string
	v   driver.Version
}

// watchCluster keeps a subscription on every master of c until r is
// halted or c is closed, and is r's goroutine.
func (s *Store) watchCluster(ctx context.Context, r *subRun, c *redis.ClusterClient) {
	defer close(r.done)
	w := &clusterWatch{
		s: s, c: c, run: r,
		events:     make(chan nodeEvent, 64),
		found:      make(chan topology),
		kick:       make(chan bool, 1),
		subs:       make(map[string]*nodeSub),
		seen:       make(map[changeID]struct{}),
		seenBefore: make(map[changeID]struct{}),
		settle:     time.NewTimer(time.Hour),
	}
	w.settle.Stop()
	defer w.settle.Stop()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		w.discover(ctx)
	}()
	defer func() {
		for _, n := range w.subs {
			n.run.halt()
		}
		wg.Wait()
	}()
	forget := time.NewTicker(seenFor)
	defer forget.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case t := <-w.found:
			if t.closed {
				w.emit(driver.Change{Kind: driver.ChangeWatchDown})
				return
			}
			if t.err == nil {
				w.update(ctx, t.masters)
			}
		case ev := <-w.events:
			if ev.ch.Kind == driver.ChangeWatchDenied && w.subs[ev.sub.addr] == ev.sub {
				// A master refused the subscription for lack of
				// permission: the others would too, and a watch that
				// misses one master's changes is no watch. Tell, and
				// stop (discover ends with ctx).
				w.emit(ev.ch)
				w.run.cancel()
				return
			}
			w.handle(ev)
		case <-forget.C:
			w.renewSeen()
		case <-w.settle.C:
			w.report()
		}
	}
}

// emit passes ch to the hub, which drops what r may no longer report.
func (w *clusterWatch) emit(ch driver.Change) { w.s.watch.emit(w.run, ch) }

// update brings the subscriptions in line with masters: a subscription
// for each, none for any other node.
func (w *clusterWatch) update(ctx context.Context, masters map[string]*redis.Client) {
	w.known = true
	for addr, n := range w.subs {
		// A node that is no longer a master, or one whose client go-redis
		// replaced (it forgot the node, then met it again).
		if masters[addr] != n.client {
			n.run.halt()
			delete(w.subs, addr)
		}
	}
	for addr, client := range masters {
		if n := w.subs[addr]; n == nil || n.ended {
			w.subscribe(ctx, addr, client)
		}
	}
	w.report()
}

// subscribe starts the subscription on the master at addr.
func (w *clusterWatch) subscribe(ctx context.Context, addr string, client *redis.Client) {
	nctx, cancel := context.WithCancel(ctx)
	n := &nodeSub{addr: addr, client: client, run: &subRun{cancel: cancel, done: make(chan struct{})}}
	w.subs[addr] = n
	send := func(ev nodeEvent) {
		select {
		case w.events <- ev:
		case <-nctx.Done():
		}
	}
	go func() {
		defer close(n.run.done)
		w.s.subscribeLoop(nctx, n.run, subTarget{c: client, emit: func(ch driver.Change) {
			send(nodeEvent{sub: n, ch: ch})
		}})
		if nctx.Err() == nil {
			send(nodeEvent{sub: n, ended: true})
		}
	}()
}

// handle takes in what a master's subscription reported.
func (w *clusterWatch) handle(ev nodeEvent) {
	n := ev.sub
	if w.subs[n.addr] != n {
		return // from a subscription dropped since
	}
	switch {
	case ev.ended:
		n.up, n.ended = false, true
		w.lastFail = time.Now()
		w.report()
		w.lookAgain(true)
	case ev.ch.Kind == driver.ChangeWatchUp:
		n.up = true
		w.report()
	case ev.ch.Kind == driver.ChangeWatchDown:
		n.up = false
		w.lastFail = time.Now()
		w.report()
		w.lookAgain(false)
	case w.up && w.firstCopy(ev.ch):
		// While down, nothing is reported, and nothing is remembered: a
		// later copy, heard once up, is the first the watchers get.
		w.emit(ev.ch)
	}
}

// report tells the hub whether every master's subscription is confirmed:
// ChangeWatchUp only then, and once none has failed for upSettle,
// ChangeWatchDown as soon as one is not.
func (w *clusterWatch) report() {
	up := w.known && len(w.subs) > 0
	for _, n := range w.subs {
		up = up && n.up
	}
	if up {
		if wait := upSettle - time.Since(w.lastFail); wait > 0 {
			w.settle.Reset(wait)
			return
		}
	}
	if up != w.up {
		w.up = up
		if up {
			w.emit(driver.Change{Kind: driver.ChangeWatchUp})
		} else {
			w.emit(driver.Change{Kind: driver.ChangeWatchDown})
		}
	}
}

// lookAgain asks discover for a look-up now, and, with checkClosed, to
// check that the client is still open. Requests not yet taken merge.
func (w *clusterWatch) lookAgain(checkClosed bool) {
	for {
		select {
		case w.kick <- checkClosed:
			return
		case pending := <-w.kick:
			checkClosed = checkClosed || pending
		}
	}
}

// firstCopy reports whether ch is the first copy heard of its message:
// every master relays every message, so each comes once from each. The
// later copies of a save are dropped: one arriving after the key's next
// save would report an older version as the latest, and an L1 filling
// from a read of that older version would keep it, stale, until the next
// copy came. A delete reports no version, so a second delete of the key
// cannot be told from a copy of the first; its copies pass, and can only
// make an L1 drop an entry.
func (w *clusterWatch) firstCopy(ch driver.Change) bool {
	if ch.Version == driver.NoVersion {
		return true
	}
	id := changeID{ch.Key, ch.Version}
	if _, ok := w.seen[id]; ok {
		return false
	}
	if _, ok := w.seenBefore[id]; ok {
		return false
	}
	if len(w.seen) >= maxSeen {
		w.renewSeen()
	}
	w.seen[id] = struct{}{}
	return true
}

// renewSeen forgets the versions of the interval before the last one:
// their copies, relayed within milliseconds, have arrived long since.
func (w *clusterWatch) renewSeen() {
	w.seenBefore, w.seen = w.seen, w.seenBefore
	clear(w.seen)
}

// discover finds the masters, every watch interval and when the
// coordinator asks, and sends what it found to the coordinator, until ctx
// is done or the client is closed.
func (w *clusterWatch) discover(ctx context.Context) {
	interval, _ := w.s.watch.timing()
	checkClosed := false
	for {
		last := time.Now()
		t := w.lookup(ctx, checkClosed)
		select {
		case w.found <- t:
		case <-ctx.Done():
			return
		}
		if t.closed {
			return
		}
		wait := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			wait.Stop()
			return
		case <-wait.C:
			checkClosed = false
		case checkClosed = <-w.kick:
			wait.Stop()
			if gap := minRediscover - time.Since(last); gap > 0 {
				select {
				case <-ctx.Done():
					return
				case <-time.After(gap):
				}
			}
		}
	}
}

// lookup asks the cluster for its masters that own slots: go-redis's
// client for the master of each range of slots CLUSTER SHARDS (Redis 7.0
// on, Valkey) names; a shard without slots, such as the failed master a
// replica replaced, names none.
// ForEachMaster reloads go-redis's map of the slots (from any node that
// answers; when none does it keeps the map it had, and the masters' PINGs
// tell whether they are still there), but is not the list: since v9.24 it
// also hands out masters without slots and failed ones, such as a dead
// master its replica replaced, whose subscription would never come up.
// MasterForKey on a key of each range gives go-redis's own client for its
// owner, with the options and hooks of c, whatever addresses go-redis
// rewrote; an owner go-redis knows is down fails the look-up (the masters
// are unknown until a replica takes over). Store.run returns as soon as
// ctx is done, so that a halt does not wait for a read from a frozen node.
func (w *clusterWatch) lookup(ctx context.Context, checkClosed bool) topology {
	_, timeout := w.s.watch.timing()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if checkClosed {
		// A master's subscription found its client closed: go-redis
		// closes a node's client when c is closed (ForEachMaster would
		// still hand out the closed clients), or a minute after the node
		// left its map. A closed c fails this without I/O.
		err := w.s.run(ctx, func(ctx context.Context) error { return w.c.Ping(ctx).Err() })
		if errors.Is(err, redis.ErrClosed) {
			return topology{closed: true}
		}
	}
	masters := make(map[string]*redis.Client)
	err := w.s.run(ctx, func(ctx context.Context) error {
		// The reload of go-redis's map; the nodes it hands out are not kept.
		if err := w.c.ForEachMaster(ctx, func(context.Context, *redis.Client) error { return nil }); err != nil {
			return err
		}
		shards, err := w.c.ClusterShards(ctx).Result()
		if err != nil {
			return err
		}
		for _, sh := range shards {
			for _, r := range sh.Slots {
				n, err := w.c.MasterForKey(ctx, keyForSlot(int(r.Start)))
				if err != nil {
					return err
				}
				masters[n.Options().Addr] = n
			}
		}
		return nil
	})
	switch {
	case errors.Is(err, redis.ErrClosed):
		return topology{closed: true}
	case err != nil:
		return topology{err: err}
	}
	return topology{masters: masters}
}

// keyForSlot returns a key of the given slot, for MasterForKey: the first
// of "0", "1", ... whose slot it is (some 16384 tries), remembered in
// slotKeys, since a cluster's ranges rarely move. A slot out of range gets
// one of slot 0.
func keyForSlot(slot int) string {
	if slot < 0 || slot >= clusterSlots {
		slot = 0
	}
	slotKeys.mu.Lock()
	defer slotKeys.mu.Unlock()
	if k, ok := slotKeys.m[slot]; ok {
		return k
	}
	for n := 0; ; n++ {
		k := strconv.Itoa(n)
		if keySlot(k) == slot {
			if slotKeys.m == nil {
				slotKeys.m = make(map[int]string)
			}
			slotKeys.m[slot] = k
			return k
		}
	}
}

// slotKeys holds the keys keyForSlot found, at most one per slot (a few
// hundred kilobytes at worst), for every Store of the process: a look-up
// abandoned at its deadline may still be finding one while the next runs.
var slotKeys struct {
	mu sync.Mutex
	m  map[int]string
}

// clusterSlots is the number of hash slots of a Redis Cluster.
const clusterSlots = 16384

// keySlot is the hash slot of key, as Redis Cluster computes it: CRC-16
// (XMODEM) of the key, or of its hash tag (what lies between the first
// "{" and the next "}", if not empty), modulo 16384. go-redis keeps its
// own in an internal package.
func keySlot(key string) int {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	var crc uint16
	for i := 0; i < len(key); i++ {
		crc ^= uint16(key[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return int(crc) % clusterSlots
}
