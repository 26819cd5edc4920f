// Package wait polls a condition with a deadline, for tests that must hold
// on a loaded machine: they wait for what they need instead of sleeping a
// fixed time.
package wait

import (
	"testing"
	"time"
)

// Default is how long For waits when the test has no shorter deadline.
const Default = 20 * time.Second

// For polls cond every millisecond until it holds, and fails the test
// (naming what) if it does not within Default or the test's deadline.
func For(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(Default)
	if d, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		if dl, ok := d.Deadline(); ok && dl.Add(-time.Second).Before(deadline) {
			deadline = dl.Add(-time.Second)
		}
	}
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, Default)
		}
		time.Sleep(time.Millisecond)
	}
}
