// Package faultnet injects faults on the wire for the tests: a Dialer
// whose connections add latency, black-hole traffic (the peer accepted and
// never answers), or reset in the middle of a reply, switched at run time.
// Clients take it where they dial (go-redis's Options.Dialer, gomemcache's
// Client.DialContext), so the fault sits between a real client and a real
// server, in process and without a proxy or a dependency.
//
// Bandwidth limits what reads deliver, and a close delay holds back the
// end of a stream the server closed (toxiproxy's slow_close): the client
// sees the connection open, and silent, for that long.
//
// A connection that has written a SUBSCRIBE is a subscription: Pubsub
// faults hit only those, so a test can cut a store's invalidation channel
// while its data path works.
package faultnet

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Mode is the fault a Wire applies.
type Mode int

// The faults.
const (
	// Pass forwards everything.
	Pass Mode = iota
	// Latency delays every read by Delay plus up to Jitter.
	Latency
	// BlackHole accepts writes and never answers: reads wait for their
	// deadline (or forever), as with a server that accepted the
	// connection and hung.
	BlackHole
	// Reset cuts every connection at its next read, after handing over
	// part of what the server sent: a reply broken in the middle.
	Reset
	// Bandwidth delivers reads at SetBandwidth's bytes per second.
	Bandwidth
)

// Wire is the switch between clients and a server. The zero value passes
// everything.
type Wire struct {
	mode       atomic.Int32
	pubsub     atomic.Bool // the mode applies to subscriptions only
	delay      atomic.Int64
	jitter     atomic.Int64
	rate       atomic.Int64 // bytes per second, for Bandwidth
	closeDelay atomic.Int64

	mu    sync.Mutex
	conns []*conn
}

// Set switches the fault of every connection, open or to come; onlyPubsub
// limits it to subscriptions.
func (w *Wire) Set(m Mode, onlyPubsub bool) {
	w.pubsub.Store(onlyPubsub)
	w.mode.Store(int32(m))
	w.mu.Lock()
	for _, c := range w.conns {
		c.wake()
	}
	w.mu.Unlock()
}

// SetLatency sets the delay and jitter of Latency.
func (w *Wire) SetLatency(delay, jitter time.Duration) {
	w.delay.Store(int64(delay))
	w.jitter.Store(int64(jitter))
}

// SetBandwidth sets the rate of Bandwidth, in bytes per second.
func (w *Wire) SetBandwidth(bytesPerSecond int) { w.rate.Store(int64(bytesPerSecond)) }

// SetCloseDelay holds back, whatever the mode, the end of a stream the
// server closed by d: a read that meets it waits d, or its deadline, first.
func (w *Wire) SetCloseDelay(d time.Duration) { w.closeDelay.Store(int64(d)) }

// DialContext dials the real server and wraps the connection.
func (w *Wire) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	c := &conn{Conn: nc, w: w, changed: make(chan struct{})}
	w.mu.Lock()
	w.conns = append(w.conns, c)
	w.mu.Unlock()
	return c, nil
}

type conn struct {
	net.Conn
	w      *Wire
	pubsub atomic.Bool

	mu       sync.Mutex
	deadline time.Time
	changed  chan struct{} // closed when the mode or the deadline changes
	closed   bool
}

func (c *conn) wake() {
	c.mu.Lock()
	close(c.changed)
	c.changed = make(chan struct{})
	c.mu.Unlock()
}

func (c *conn) mode() Mode {
	if c.w.pubsub.Load() && !c.pubsub.Load() {
		return Pass
	}
	return Mode(c.w.mode.Load())
}

func (c *conn) Write(b []byte) (int, error) {
	if bytes.Contains(bytes.ToUpper(b), []byte("SUBSCRIBE")) {
		c.pubsub.Store(true)
	}
	if c.mode() == BlackHole {
		return len(b), nil // into the void
	}
	return c.Conn.Write(b)
}

// errTimeout is what a read past its deadline returns, as net does.
var errTimeout = os.ErrDeadlineExceeded

func (c *conn) Read(b []byte) (int, error) {
	for {
		switch c.mode() {
		case Latency:
			d := time.Duration(c.w.delay.Load())
			if j := c.w.jitter.Load(); j > 0 {
				d += time.Duration(rand.Int64N(j))
			}
			time.Sleep(d)
			return c.Conn.Read(b)
		case Bandwidth:
			rate := max(c.w.rate.Load(), 1)
			chunk := max(int(rate/100), 1) // what 10 ms carries
			n, err := c.Conn.Read(b[:min(len(b), chunk)])
			time.Sleep(time.Duration(int64(n) * int64(time.Second) / rate))
			return n, err
		case Reset:
			n, err := c.Conn.Read(b[:max(len(b)/2, 1)])
			_ = c.Conn.Close()
			if err != nil {
				return n, err
			}
			if n > 1 {
				n /= 2 // half a reply, then the cut
			}
			return n, syscall.ECONNRESET
		case BlackHole:
			c.mu.Lock()
			if c.closed {
				c.mu.Unlock()
				return 0, net.ErrClosed
			}
			deadline, changed := c.deadline, c.changed
			c.mu.Unlock()
			if deadline.IsZero() {
				<-changed // the mode, the deadline or Close changed
				continue
			}
			d := time.Until(deadline)
			if d <= 0 {
				return 0, errTimeout
			}
			t := time.NewTimer(d)
			select {
			case <-t.C:
				return 0, errTimeout
			case <-changed:
				t.Stop()
			}
		default:
			n, err := c.Conn.Read(b)
			if c.mode() == BlackHole {
				// The hole opened while this read waited: what came
				// through is lost, as it would be in the network.
				continue
			}
			if errors.Is(err, io.EOF) {
				return n, c.lateEOF()
			}
			return n, err
		}
	}
}

// lateEOF returns the end of the stream once the close delay has passed,
// or a timeout at the read deadline if that comes first.
func (c *conn) lateEOF() error {
	d := time.Duration(c.w.closeDelay.Load())
	if d <= 0 {
		return io.EOF
	}
	c.mu.Lock()
	deadline := c.deadline
	c.mu.Unlock()
	if !deadline.IsZero() && time.Until(deadline) < d {
		time.Sleep(max(time.Until(deadline), 0))
		return errTimeout
	}
	time.Sleep(d)
	return io.EOF
}

func (c *conn) SetDeadline(t time.Time) error {
	c.setDeadline(t)
	return c.Conn.SetDeadline(t)
}

func (c *conn) SetReadDeadline(t time.Time) error {
	c.setDeadline(t)
	return c.Conn.SetReadDeadline(t)
}

func (c *conn) setDeadline(t time.Time) {
	c.mu.Lock()
	c.deadline = t
	close(c.changed)
	c.changed = make(chan struct{})
	c.mu.Unlock()
}

func (c *conn) Close() error {
	c.mu.Lock()
	if !c.closed {
		c.closed = true
		close(c.changed)
		c.changed = make(chan struct{})
	}
	c.mu.Unlock()
	err := c.Conn.Close()
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}
