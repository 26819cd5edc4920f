// Package wait polls a condition with a deadline, for tests that must hold
// on a loaded machine: they wait for what they need instead of sleeping a
// fixed time.
package wait

import (
	"errors"
	"testing"
	"time"
)

// Default is how long For waits when the test has no shorter deadline.
const Default = 20 * time.Second

// maxPause is the longest pause between two checks: the first checks come
// a millisecond apart, so that a condition that holds soon is seen soon,
// and the pause doubles up to maxPause, so that a check that is a round
// trip to a server does not load a machine the other tests share.
const maxPause = 20 * time.Millisecond

// errFalse is what Within reports for a condition that never held.
var errFalse = errors.New("condition false")

// For polls cond until it holds, and fails the test (naming what) if it
// does not within Default or the test's deadline.
func For(t testing.TB, what string, cond func() bool) {
	t.Helper()
	Within(t, Default, what, cond)
}

// Within is For with limit in place of Default: for a test whose limit is
// part of what it asserts (the breaker closes within 10 s), or that must
// leave time for what comes after the wait.
func Within(t testing.TB, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	Err(t, limit, what, func() error {
		if cond() {
			return nil
		}
		return errFalse
	})
}

// Err polls check until it returns nil, and fails the test if it does not
// within limit (or the test's deadline), with check's last error, which
// says what was seen instead.
func Err(t testing.TB, limit time.Duration, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(limit)
	if d, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		// A second before the test's deadline: failing here names what was
		// awaited, where the test binary's panic at the deadline does not.
		if dl, ok := d.Deadline(); ok && dl.Add(-time.Second).Before(deadline) {
			deadline = dl.Add(-time.Second)
		}
	}
	pause := time.Millisecond
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			if err == errFalse {
				t.Fatalf("%s: not within %v", what, limit)
			} else {
				t.Fatalf("%s: not within %v: %v", what, limit, err)
			}
			return // Fatalf returns when t only records the failure
		}
		time.Sleep(pause)
		pause = min(2*pause, maxPause)
	}
}
