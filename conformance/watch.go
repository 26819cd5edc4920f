package conformance

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/msalcache/msalcache"
)

// watchBound is how long a change may take to reach a watcher, and a
// broken watch to be reported and to recover. Redis delivers in a few
// milliseconds on loopback; the bound is for a loaded 2-core machine under
// the race detector, and a watcher that misses it is as good as deaf to an
// L1 that trusts what it holds until told otherwise.
const watchBound = 5 * time.Second

// watchEvent is one call of a watcher's fn, and when it came.
type watchEvent struct {
	c  driver.Change
	at time.Time
}

// watchLog records what a watcher's fn is told, so that a test waits for a
// change to arrive instead of sleeping and hoping it did.
type watchLog struct {
	mu     sync.Mutex
	events []watchEvent
	// notify holds a token when an event arrived since a wait last
	// looked, so that a waiter never misses one between its scan and its
	// select.
	notify chan struct{}
}

func newWatchLog() *watchLog {
	return &watchLog{notify: make(chan struct{}, 1)}
}

func (l *watchLog) record(c driver.Change) {
	l.mu.Lock()
	l.events = append(l.events, watchEvent{c: c, at: time.Now()})
	l.mu.Unlock()
	select {
	case l.notify <- struct{}{}:
	default:
	}
}

// len is the index the next event will get: a mark to wait from.
func (l *watchLog) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.events)
}

// since returns the events from index from on.
func (l *watchLog) since(from int) []watchEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	if from >= len(l.events) {
		return nil
	}
	return append([]watchEvent(nil), l.events[from:]...)
}

// wait returns the first event at index from or later that pred accepts,
// and its index, waiting for it until deadline.
func (l *watchLog) wait(from int, deadline time.Time, pred func(driver.Change) bool) (int, watchEvent, bool) {
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	scan := func() (int, watchEvent, bool) {
		l.mu.Lock()
		defer l.mu.Unlock()
		for i := from; i < len(l.events); i++ {
			if pred(l.events[i].c) {
				return i, l.events[i], true
			}
		}
		from = max(from, len(l.events))
		return 0, watchEvent{}, false
	}
	for {
		if i, ev, ok := scan(); ok {
			return i, ev, true
		}
		select {
		case <-l.notify:
		case <-timer.C:
			return scan()
		}
	}
}

// isKind accepts the changes of kind k.
func isKind(k driver.ChangeKind) func(driver.Change) bool {
	return func(c driver.Change) bool { return c.Kind == k }
}

// ofKey accepts the ChangeKey changes of key.
func ofKey(key string) func(driver.Change) bool {
	return func(c driver.Change) bool { return c.Kind == driver.ChangeKey && c.Key == key }
}

// kindName names k in failure messages.
func kindName(k driver.ChangeKind) string {
	switch k {
	case driver.ChangeKey:
		return "ChangeKey"
	case driver.ChangeWatchUp:
		return "ChangeWatchUp"
	case driver.ChangeWatchDown:
		return "ChangeWatchDown"
	}
	return fmt.Sprintf("ChangeKind(%d)", k)
}

// describeChange prints c for a failure message.
func describeChange(c driver.Change) string {
	if c.Kind != driver.ChangeKey {
		return kindName(c.Kind)
	}
	return fmt.Sprintf("ChangeKey %q version %d", c.Key, c.Version)
}

// describeEvents prints what a watcher was told, at most the first 10.
func describeEvents(evs []watchEvent) string {
	if len(evs) == 0 {
		return "nothing"
	}
	var parts []string
	for i, ev := range evs {
		if i == 10 {
			parts = append(parts, fmt.Sprintf("and %d more", len(evs)-10))
			break
		}
		parts = append(parts, describeChange(ev.c))
	}
	return strings.Join(parts, ", ")
}
