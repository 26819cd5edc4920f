package wait

import (
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// fatalTB records a Fatalf instead of ending the test, so that a failing
// wait can be checked.
type fatalTB struct {
	testing.TB
	msg string
}

func (f *fatalTB) Helper() {}

func (f *fatalTB) Fatalf(format string, args ...any) { f.msg = fmt.Sprintf(format, args...) }

func TestForReturnsOnceTheConditionHolds(t *testing.T) {
	var n atomic.Int32
	For(t, "third check", func() bool { return n.Add(1) >= 3 })
	if got := n.Load(); got != 3 {
		t.Fatalf("checked %d times, want 3", got)
	}
}

func TestErrFailsWithTheLastError(t *testing.T) {
	f := &fatalTB{TB: t}
	Err(f, 10*time.Millisecond, "never", func() error { return errors.New("still 7") })
	if !strings.Contains(f.msg, "still 7") {
		t.Fatalf("failure %q does not carry the check's last error", f.msg)
	}
}

func TestWithinFailsAfterItsLimit(t *testing.T) {
	f := &fatalTB{TB: t}
	start := time.Now()
	Within(f, 30*time.Millisecond, "never", func() bool { return false })
	if f.msg == "" {
		t.Fatal("a condition that never held did not fail the wait")
	}
	if took := time.Since(start); took < 30*time.Millisecond {
		t.Fatalf("failed after %v, before its limit of 30ms", took)
	}
}
