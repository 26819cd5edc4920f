package redisstore

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/internal/netstore"
	"github.com/redis/go-redis/v9"
)

// channelPrefix starts the name of the channel a Store publishes its
// changes on; the Store's prefix follows, so that stores sharing a database
// under different prefixes hear only their own keys, and an empty prefix
// still gets a channel no other program is likely to use.
const channelPrefix = "msalcache:changes:"

// Health checks of the subscription. A connection that drops is seen at
// once (the read fails); one that stalls (a frozen server, a half-open TCP
// connection, a node cut off) answers no PING, and the watch goes down
// within watchInterval+watchTimeout, 2 s by default.
const (
	// watchInterval is how often the subscription PINGs its connection
	// and, on a client that is not a ClusterClient, checks that the master
	// has not changed.
	watchInterval = 500 * time.Millisecond
	// watchTimeout bounds the answer to a PING, the confirmation of a
	// SUBSCRIBE and each master check: generous, so that a loaded machine
	// does not flap, short enough to be the "couple of seconds" a reader
	// of the package documentation is promised.
	watchTimeout = 1500 * time.Millisecond
	// watchRetryMax bounds the wait between two attempts to subscribe
	// while the watch is down.
	watchRetryMax = time.Second
)

// watchHub is a Store's single watch and the callbacks it feeds.
type watchHub struct {
	// mu is held while callbacks run, so that stop, by taking it, waits
	// for a callback in progress and no callback starts after it.
	mu     sync.Mutex
	fns    map[uint64]func(driver.Change)
	nextID uint64
	run    *subRun // the running subscription, nil while nobody watches
	up     bool    // run reported ChangeWatchUp last
	denied error   // run reported ChangeWatchDenied: it ended for good
	closed bool

	// interval and timeout default to watchInterval and watchTimeout;
	// tests shorten them.
	interval, timeout time.Duration
}

// subRun is one life of the watch, from the first Watch to the stop of
// the last one (or Close); on Cluster, also one life of the subscription
// on one master (see watchCluster).
type subRun struct {
	cancel context.CancelFunc
	done   chan struct{}

	mu sync.Mutex
	ps *redis.PubSub // the current connection's, closed by halt to end a blocked read; nil on Cluster's whole-watch run
}

// halt ends r: its goroutine returns promptly, and returns before anything
// it emits is delivered (emit checks that r is still the hub's run).
func (r *subRun) halt() {
	r.cancel()
	r.mu.Lock()
	if r.ps != nil {
		_ = r.ps.Close()
	}
	r.mu.Unlock()
	<-r.done
}

// setPubSub records ps as r's current subscription. It reports false, and
// closes ps, when r was halted meanwhile.
func (r *subRun) setPubSub(ctx context.Context, ps *redis.PubSub) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ctx.Err() != nil {
		_ = ps.Close()
		return false
	}
	r.ps = ps
	return true
}

var errWatchRing = errors.New("a *redis.Ring cannot be watched: its shards do not share published messages, so one subscription would miss the changes of every other shard; use the L1 without a watch only with a client of another kind")

// Watch implements driver.Watcher, so that an Adapter with
// msalcache.WithL1 drops what it keeps in memory as soon as another
// instance writes or deletes it. Every successful Save and every Delete
// publishes the key and its new version, from the same script as the
// write, on a channel named after the store's prefix ("msalcache:changes:"
// and the prefix); the message is the store's key, a space and the
// version in hexadecimal ("0" for a delete). Keys are the Adapter's hashes,
// never a partition key in clear, and no token data is published.
//
// The first Watch subscribes, on a connection of its own (on Cluster, one
// per master: see below); every Watch of the Store shares that
// subscription, which ends when the last stop is called (or at Close). fn
// is told ChangeWatchUp once Redis confirmed the subscription, and
// ChangeWatchDown as soon as the connection fails, a PING goes unanswered
// for watchTimeout (a stalled connection is detected within about 2 s),
// or, on a Sentinel (or any non-Cluster) client, the master's run_id
// changes (a failover: the old master may miss what the new one publishes
// until it resynchronises). The store then subscribes again, retrying
// every second at most, and reports ChangeWatchUp when Redis confirms.
//
// On a *redis.ClusterClient the store subscribes on every master, so that
// each message is heard from the node whose script published it: classic
// PUBLISH reaches the other nodes too, through the cluster bus, but with a
// tail (1 message in 100 arrived about 40 ms late). It looks the masters
// up every watchInterval and as soon as a subscription fails, subscribes
// on new ones (a promoted replica, a node given slots) and drops the
// subscriptions on nodes that are no longer masters. ChangeWatchUp means
// that every master's subscription is confirmed (and, after a failure,
// that none failed for 250 ms: what cuts one connection often cuts the
// others milliseconds later), and ChangeWatchDown comes as soon as one is
// not: a master failing, or a new master, flushes the L1 until the watch
// is whole again; a slot moving between masters does not. Every master relays every message: the later copies of a save are
// dropped, so that each saved version is reported once, but those of a
// delete are not (a second delete of the key looks the same), and can
// only make an L1 drop an entry. The look-up is go-redis's
// ClusterClient.ForEachMaster, which reloads the client's map of the slots:
// as a side effect, a client with a watch follows a failover within
// watchInterval, where go-redis alone waits for a MOVED or its
// ClusterStateReloadInterval (60 s by default).
//
// Classic PUBLISH was chosen over keyspace notifications (which need
// CONFIG SET and lost most messages on Cluster with one subscription) and
// over client-side caching (standalone only, and blind to an instance's
// own overwritten writes).
//
// A watch that Redis refuses for lack of permission (NOPERM: an ACL user
// without +subscribe, or without the store's channel) is not retried: fn
// is told ChangeWatchDenied once, with an error wrapping
// driver.ErrWatchDenied that names the channel and the ACL SETUSER to
// run, and so is every later Watch while one still runs. An Adapter then
// warns once and works without its L1.
//
// fn runs on the watch's goroutine, one call at a time, and once,
// with ChangeWatchUp, inside Watch when the subscription is already up. It
// must be quick and must not call the Store or the stop function. ctx
// bounds the Watch call only (which does no I/O); the watch lasts until
// stop. stop waits for a callback in progress and no callback starts
// after it returns. A Store built on a *redis.Ring cannot be watched.
func (s *Store) Watch(ctx context.Context, fn func(driver.Change)) (stop func(), err error) {
	if err := s.start(ctx, "watch"); err != nil {
		return nil, err
	}
	if fn == nil {
		return nil, errors.New("redisstore: watch: nil callback")
	}
	if _, ok := s.c.(*redis.Ring); ok {
		return nil, fmt.Errorf("redisstore: watch: %w", errWatchRing)
	}
	h := &s.watch
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil, fmt.Errorf("redisstore: watch: %w", driver.ErrClosed)
	}
	if h.fns == nil {
		h.fns = make(map[uint64]func(driver.Change))
	}
	h.nextID++
	id := h.nextID
	h.fns[id] = fn
	if h.run == nil {
		rctx, cancel := context.WithCancel(context.Background())
		r := &subRun{cancel: cancel, done: make(chan struct{})}
		h.run, h.up = r, false
		if cc, ok := s.c.(*redis.ClusterClient); ok {
			go s.watchCluster(rctx, r, cc)
		} else {
			go func() {
				defer close(r.done)
				s.subscribeLoop(rctx, r, subTarget{c: s.c, checkMaster: true, emit: func(ch driver.Change) { s.watch.emit(r, ch) }})
			}()
		}
	} else if h.up {
		fn(driver.Change{Kind: driver.ChangeWatchUp})
	} else if h.denied != nil {
		fn(driver.Change{Kind: driver.ChangeWatchDenied, Err: h.denied})
	}
	h.mu.Unlock()

	var once sync.Once
	return func() {
		once.Do(func() {
			h.mu.Lock()
			delete(h.fns, id)
			var r *subRun
			if len(h.fns) == 0 {
				r, h.run, h.up, h.denied = h.run, nil, false, nil
			}
			h.mu.Unlock()
			if r != nil {
				r.halt()
			}
		})
	}, nil
}

// closeWatch ends the subscription for good, telling the watchers that
// changes are no longer reported.
func (s *Store) closeWatch() {
	h := &s.watch
	h.mu.Lock()
	h.closed = true
	if h.up {
		for _, fn := range h.fns {
			fn(driver.Change{Kind: driver.ChangeWatchDown})
		}
	}
	r := h.run
	h.run, h.up, h.fns, h.denied = nil, false, nil, nil
	h.mu.Unlock()
	if r != nil {
		r.halt()
	}
}

// emit delivers ch to every watcher, if r is still the running
// subscription. Up and Down are delivered only when they change the state,
// so that every watcher hears Up first and never two Downs in a row.
func (h *watchHub) emit(r *subRun, ch driver.Change) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.run != r {
		return
	}
	switch ch.Kind {
	case driver.ChangeWatchUp:
		if h.up {
			return
		}
		h.up = true
	case driver.ChangeWatchDown:
		if !h.up {
			return
		}
		h.up = false
	case driver.ChangeWatchDenied:
		if h.denied != nil {
			return
		}
		h.up, h.denied = false, ch.Err
	default:
		if !h.up {
			return
		}
	}
	for _, fn := range h.fns {
		fn(ch)
	}
}

func (h *watchHub) timing() (interval, timeout time.Duration) {
	interval, timeout = watchInterval, watchTimeout
	if h.interval > 0 {
		interval = h.interval
	}
	if h.timeout > 0 {
		timeout = h.timeout
	}
	return interval, timeout
}

// subTarget is what one subscription loop subscribes on and reports to.
type subTarget struct {
	// c opens the subscription's connection: the Store's client, or on
	// Cluster one master's (see watchCluster).
	c redis.UniversalClient
	// checkMaster compares the master's run_id around the SUBSCRIBE and
	// at every health check: a client that talks to one master (single
	// node, Sentinel) has no other way to see a failover that left the
	// connection open. On Cluster the topology polls do that job.
	checkMaster bool
	// emit is told ChangeWatchUp once the subscription is confirmed,
	// every message, and ChangeWatchDown when it ends.
	emit func(driver.Change)
}

// subscribeLoop keeps r's subscription up until r is halted, or until
// t.c is closed.
func (s *Store) subscribeLoop(ctx context.Context, r *subRun, t subTarget) {
	delay := time.Duration(0)
	for {
		wasUp, err := s.subscribeOnce(ctx, r, t)
		t.emit(driver.Change{Kind: driver.ChangeWatchDown})
		if ctx.Err() != nil || errors.Is(err, redis.ErrClosed) {
			return // halted, or the client was closed: nothing to retry
		}
		if err := s.watchDenied(err); err != nil {
			// A permission does not come back by retrying: say so
			// once, and stop (see driver.ErrWatchDenied).
			t.emit(driver.Change{Kind: driver.ChangeWatchDenied, Err: err})
			return
		}
		switch {
		case wasUp:
			delay = 0 // a connection that was up and failed: try again at once
		case delay == 0:
			delay = 50 * time.Millisecond
		default:
			delay = min(2*delay, watchRetryMax)
		}
		if delay > 0 {
			// Jitter, so that a farm that lost its server together does
			// not reconnect in lockstep.
			d := delay/2 + rand.N(delay/2+1)
			select {
			case <-ctx.Done():
				return
			case <-time.After(d):
			}
		}
	}
}

// subscribeOnce subscribes once on t.c and reads the subscription until it
// fails, telling t.emit what it hears. It reports whether the subscription
// came up, and why it ended.
func (s *Store) subscribeOnce(ctx context.Context, r *subRun, t subTarget) (wasUp bool, err error) {
	interval, timeout := s.watch.timing()
	ps := t.c.Subscribe(ctx) // no channel yet: no I/O
	if !r.setPubSub(ctx, ps) {
		return false, ctx.Err()
	}
	defer ps.Close()

	// On a client that talks to one master, the master's identity taken
	// before and after the subscription must agree: else a failover raced
	// the dial, and the subscription may sit on the old master.
	checkMaster := t.checkMaster
	var master string
	if checkMaster {
		master, err = s.masterID(ctx, t.c, timeout)
		if err != nil {
			var rerr redis.Error
			if !errors.As(err, &rerr) {
				return false, err
			}
			checkMaster = false // INFO refused (ACL): rely on the PINGs
		}
	}
	if err := ps.Subscribe(ctx, s.channel); err != nil {
		return false, err
	}
	deadline := time.Now().Add(timeout)
	for confirmed := false; !confirmed; {
		wait := time.Until(deadline)
		if wait <= 0 {
			return false, errors.New("redisstore: watch: SUBSCRIBE not confirmed in time")
		}
		msg, err := ps.ReceiveTimeout(ctx, wait)
		if err != nil {
			return false, err
		}
		if m, ok := msg.(*redis.Subscription); ok && m.Kind == "subscribe" && m.Channel == s.channel {
			confirmed = true
		}
	}
	if checkMaster {
		again, err := s.masterID(ctx, t.c, timeout)
		if err != nil || again != master {
			return false, fmt.Errorf("redisstore: watch: the master changed while subscribing: %v", err)
		}
	}
	t.emit(driver.Change{Kind: driver.ChangeWatchUp})

	next := time.Now().Add(interval)
	var pingSent time.Time // zero: no PING outstanding
	for {
		wake := next
		if !pingSent.IsZero() && pingSent.Add(timeout).Before(wake) {
			wake = pingSent.Add(timeout)
		}
		// At least a millisecond: a timeout of 0 would mean none.
		msg, err := ps.ReceiveTimeout(ctx, max(time.Until(wake), time.Millisecond))
		if err != nil && !netstore.IsTimeout(err) {
			return true, err
		}
		switch m := msg.(type) {
		case *redis.Message:
			if m.Channel != s.channel {
				break
			}
			if ch, ok := parseChange(m.Payload); ok {
				t.emit(ch)
			} else {
				// Not a message of this store's format (another
				// program, another version of this package): some key
				// changed, which one is unknown, so forget everything.
				t.emit(driver.Change{Kind: driver.ChangeWatchDown})
				t.emit(driver.Change{Kind: driver.ChangeWatchUp})
			}
		case *redis.Pong:
			pingSent = time.Time{}
		case *redis.Subscription:
			if m.Kind != "subscribe" {
				return true, fmt.Errorf("redisstore: watch: unexpected %s", m.Kind)
			}
		}
		now := time.Now()
		if !pingSent.IsZero() && now.Sub(pingSent) >= timeout {
			return true, errors.New("redisstore: watch: PING unanswered: the connection stalled")
		}
		if now.Before(next) {
			continue
		}
		next = now.Add(interval)
		if pingSent.IsZero() {
			if err := ps.Ping(ctx, "msalcache"); err != nil {
				return true, err
			}
			pingSent = now
		}
		if checkMaster {
			// An error here (the master unreachable for a moment) is
			// left to the PINGs; a different run_id is a failover.
			if id, err := s.masterID(ctx, t.c, timeout); err == nil && id != master {
				return true, errors.New("redisstore: watch: the master changed (failover)")
			}
		}
	}
}

// masterID returns the run_id of the server c sends commands to, which
// changes when a failover promotes another server (or the server
// restarts).
func (s *Store) masterID(ctx context.Context, c redis.UniversalClient, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var info string
	err := s.run(ctx, func(ctx context.Context) error {
		var err error
		info, err = c.Info(ctx, "server").Result()
		return err
	})
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(info, "\n") {
		if id, ok := strings.CutPrefix(line, "run_id:"); ok {
			return strings.TrimSpace(id), nil
		}
	}
	return "", errors.New("redisstore: watch: INFO server has no run_id")
}

// watchDenied returns the error of a watch that Redis refused for lack of
// permission (an ACL without +subscribe, or without the store's channel:
// NOPERM), wrapping driver.ErrWatchDenied and naming the fix; nil for
// any other error.
func (s *Store) watchDenied(err error) error {
	var rerr redis.Error
	if err == nil || !errors.As(err, &rerr) || !strings.HasPrefix(rerr.Error(), "NOPERM") {
		return nil
	}
	return fmt.Errorf("redisstore: watch: %w: the Redis user may not subscribe to channel %q, where the store announces every write (%v). "+
		"Grant it the command and the channel (ACL SETUSER <user> +subscribe &%s*) and restart; until then the L1 is off", driver.ErrWatchDenied, s.channel, err, channelPrefix)
}

// publishDenied returns the error of a Save or Delete (op) that Redis
// refused because the user's ACL does not cover the store's channel (Redis
// 7 gives new ACL users no channel at all), naming the fix; nil for any
// other error. Nothing was written: the scripts publish before they write.
func (s *Store) publishDenied(op string, err error) error {
	// Redis 7.0 answers "ERR The user executing the script can't publish
	// to the channel mentioned in the command"; later versions NOPERM;
	// Valkey 8 "ERR ACL failure in script: No permissions to access a
	// channel".
	var rerr redis.Error
	if !errors.As(err, &rerr) {
		return nil
	}
	msg := rerr.Error()
	if !strings.Contains(msg, "channel") ||
		!strings.HasPrefix(msg, "NOPERM") && !strings.Contains(msg, "publish") && !strings.Contains(msg, "No permissions to access a channel") {
		return nil
	}
	return fmt.Errorf("redisstore: %s: the Redis user may not publish on channel %q, where every write is announced to the store's watchers; nothing was written. Grant it the channel (ACL SETUSER <user> &%s*): %w", op, s.channel, channelPrefix, err)
}

// changeMessage is what Save and Delete publish for key at version v
// (NoVersion for a delete): the key, a space, the version in hexadecimal.
// It is built in one allocation, as it is on every write's path.
func changeMessage(key string, v driver.Version) []byte {
	b := make([]byte, 0, len(key)+1+16)
	b = append(b, key...)
	b = append(b, ' ')
	return strconv.AppendUint(b, uint64(v), 16)
}

// parseChange reads a changeMessage.
func parseChange(msg string) (driver.Change, bool) {
	i := strings.LastIndexByte(msg, ' ')
	if i <= 0 || i == len(msg)-1 || len(msg)-i-1 > 16 {
		return driver.Change{}, false
	}
	v, err := strconv.ParseUint(msg[i+1:], 16, 64)
	if err != nil {
		return driver.Change{}, false
	}
	return driver.Change{Kind: driver.ChangeKey, Key: msg[:i], Version: driver.Version(v)}, true
}

// The capabilities an Adapter looks for.
var (
	_ driver.Watcher   = (*Store)(nil)
	_ driver.Versioner = (*Store)(nil)
	_ driver.Lister    = (*Store)(nil)
	_ driver.Pinger    = (*Store)(nil)
)
