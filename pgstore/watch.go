package pgstore

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/msalcache/msalcache"
)

// Health checks of the listening connection: a connection that drops is
// seen at once (the read fails); one that stalls answers no ping, and the
// watch goes down within watchInterval+watchTimeout.
const (
	watchInterval = 500 * time.Millisecond
	watchTimeout  = 1500 * time.Millisecond
	watchRetryMax = time.Second
)

// watchHub is a Store's single listening connection and the callbacks it
// feeds.
type watchHub struct {
	// mu is held while callbacks run, so that stop, by taking it, waits
	// for a callback in progress and no callback starts after it.
	mu     sync.Mutex
	fns    map[uint64]func(driver.Change)
	nextID uint64
	run    *listenRun
	up     bool
	closed bool

	// interval and timeout default to watchInterval and watchTimeout;
	// tests shorten them.
	interval, timeout time.Duration

	// pidMu guards pid, the backend pid of the current listening
	// connection (0: none), which tests use to cut it.
	pidMu sync.Mutex
	pid   uint32
}

// listenRun is one life of the watch, from the first Watch to the stop of
// the last one (or Close).
type listenRun struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// Watch implements driver.Watcher. Every Save and Delete notifies, in
// its own transaction, on the channel "<table>_changes" with the key and
// its new version; the first Watch of a Store LISTENs on a connection of
// its own, taken out of the pool, and every Watch of the Store shares it
// until the last stop (or Close). fn is told ChangeWatchUp once LISTEN
// is in effect, and ChangeWatchDown as soon as the connection fails or
// leaves a ping unanswered for watchTimeout (a stalled connection is
// detected within about 2 s): PostgreSQL keeps no notification for a
// listener that is not connected, so the Adapter's L1 must forget what it
// holds. The store then reconnects, retrying every second at most, and
// reports ChangeWatchUp again once it listens.
//
// fn runs on the watch's goroutine, one call at a time, and once, with
// ChangeWatchUp, inside Watch when the watch is already up. It must be
// quick and must not call the Store or the stop function. ctx bounds the
// Watch call only (which does no I/O). stop waits for a callback in
// progress; none starts after it returns.
func (s *Store) Watch(ctx context.Context, fn func(driver.Change)) (stop func(), err error) {
	if err := s.start(ctx, "watch"); err != nil {
		return nil, err
	}
	if fn == nil {
		return nil, errors.New("pgstore: watch: nil callback")
	}
	h := &s.watch
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil, fmt.Errorf("pgstore: watch: %w", driver.ErrClosed)
	}
	if h.fns == nil {
		h.fns = make(map[uint64]func(driver.Change))
	}
	h.nextID++
	id := h.nextID
	h.fns[id] = fn
	if h.run == nil {
		rctx, cancel := context.WithCancel(context.Background())
		r := &listenRun{cancel: cancel, done: make(chan struct{})}
		h.run, h.up = r, false
		go func() {
			defer close(r.done)
			s.listenLoop(rctx, r)
		}()
	} else if h.up {
		fn(driver.Change{Kind: driver.ChangeWatchUp})
	}
	h.mu.Unlock()

	var once sync.Once
	return func() {
		once.Do(func() {
			h.mu.Lock()
			delete(h.fns, id)
			var r *listenRun
			if len(h.fns) == 0 {
				r, h.run, h.up = h.run, nil, false
			}
			h.mu.Unlock()
			if r != nil {
				r.cancel()
				<-r.done
			}
		})
	}, nil
}

// closeWatch ends the watch for good, telling the watchers that changes
// are no longer reported.
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
	h.run, h.up, h.fns = nil, false, nil
	h.mu.Unlock()
	if r != nil {
		r.cancel()
		<-r.done
	}
}

// emit delivers ch to every watcher, if r is still the running watch. Up
// and Down are delivered only when they change the state.
func (h *watchHub) emit(r *listenRun, ch driver.Change) {
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

func (h *watchHub) setPID(pid uint32) {
	h.pidMu.Lock()
	h.pid = pid
	h.pidMu.Unlock()
}

// listenLoop keeps r's LISTEN up until r is halted.
func (s *Store) listenLoop(ctx context.Context, r *listenRun) {
	delay := time.Duration(0)
	for {
		wasUp, _ := s.listenOnce(ctx, r)
		s.watch.emit(r, driver.Change{Kind: driver.ChangeWatchDown})
		if ctx.Err() != nil {
			return
		}
		switch {
		case wasUp:
			delay = 0
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

// listenOnce takes a connection out of the pool, LISTENs on it, and reads
// notifications until it fails. It reports whether it came up.
func (s *Store) listenOnce(ctx context.Context, r *listenRun) (wasUp bool, err error) {
	interval, timeout := s.watch.timing()
	actx, cancel := context.WithTimeout(ctx, timeout)
	pc, err := s.pool.Acquire(actx)
	cancel()
	if err != nil {
		return false, err
	}
	// Hijacked, the connection leaves the pool for good: it is ours to
	// close, and no query of the store ever lands on it.
	conn := pc.Hijack()
	defer func() {
		s.watch.setPID(0)
		cctx, cancel := context.WithTimeout(context.Background(), timeout)
		_ = conn.Close(cctx)
		cancel()
	}()
	lctx, cancel := context.WithTimeout(ctx, timeout)
	_, err = conn.Exec(lctx, "LISTEN "+pgx.Identifier{s.channel}.Sanitize())
	cancel()
	if err != nil {
		return false, err
	}
	s.watch.setPID(conn.PgConn().PID())
	s.watch.emit(r, driver.Change{Kind: driver.ChangeWatchUp})

	for {
		wctx, cancel := context.WithTimeout(ctx, interval)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		if ctx.Err() != nil {
			return true, ctx.Err()
		}
		if err == nil {
			if n.Channel != s.channel {
				continue
			}
			if ch, ok := parseChange(n.Payload); ok {
				s.watch.emit(r, ch)
			} else {
				// Not this store's format (another program notified on
				// the channel): some key changed, which one is unknown.
				s.watch.emit(r, driver.Change{Kind: driver.ChangeWatchDown})
				s.watch.emit(r, driver.Change{Kind: driver.ChangeWatchUp})
			}
			continue
		}
		if conn.IsClosed() || !pgconn.Timeout(err) {
			return true, err
		}
		// A quiet interval: check that the connection still answers.
		pctx, cancel := context.WithTimeout(ctx, timeout)
		err = conn.PgConn().Ping(pctx)
		cancel()
		if err != nil {
			return true, err
		}
	}
}
