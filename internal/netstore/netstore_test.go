package netstore

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"

	"github.com/msalcache/msalcache"
)

func TestNewVersionNeverZero(t *testing.T) {
	seen := map[driver.Version]bool{}
	for range 10000 {
		v := NewVersion()
		if v == driver.NoVersion || seen[v] {
			t.Fatalf("NewVersion returned %#x twice or zero", v)
		}
		seen[v] = true
	}
}

// timeoutError is what a dialer or a socket returns on a timeout of its
// own, without os.ErrDeadlineExceeded in its chain.
type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

var _ net.Error = timeoutError{}

func TestIsTimeout(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{os.ErrDeadlineExceeded, true},
		{&net.OpError{Op: "read", Err: os.ErrDeadlineExceeded}, true},
		{fmt.Errorf("dial: %w", timeoutError{}), true},
		{&net.OpError{Op: "dial", Err: errors.New("connection refused")}, false},
		{context.DeadlineExceeded, true}, // it is a net.Error too; Wrap keeps ctx errors as they are before it looks at kind
		{errors.New("boom"), false},
	} {
		if got := IsTimeout(tc.err); got != tc.want {
			t.Errorf("IsTimeout(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

func TestWrap(t *testing.T) {
	ctx := context.Background()
	done, cancel := context.WithCancel(ctx)
	cancel()
	cause := errors.New("boom")
	for _, tc := range []struct {
		name    string
		ctx     context.Context
		err     error
		kind    error
		is      []error
		isNot   []error
		message string
	}{
		{"miss", ctx, cause, driver.ErrNotFound, []error{driver.ErrNotFound}, []error{cause}, "s: op: msalcache: not found"},
		{"miss after ctx ended", done, cause, driver.ErrNotFound, []error{driver.ErrNotFound}, []error{context.Canceled}, "s: op: msalcache: not found"},
		{"ctx ended", done, cause, nil, []error{context.Canceled, cause}, nil, "s: op: context canceled: boom"},
		{"ctx ended, kind lost to it", done, cause, driver.ErrClosed, []error{context.Canceled, cause}, []error{driver.ErrClosed}, "s: op: context canceled: boom"},
		{"ctx error returned", done, context.Canceled, nil, []error{context.Canceled}, nil, "s: op: context canceled"},
		{"ctx error of another ctx", ctx, context.DeadlineExceeded, nil, []error{context.DeadlineExceeded}, nil, "s: op: context deadline exceeded"},
		{"timeout", ctx, cause, context.DeadlineExceeded, []error{context.DeadlineExceeded, cause}, nil, "s: op: context deadline exceeded: boom"},
		{"sentinel", ctx, cause, driver.ErrTooLarge, []error{driver.ErrTooLarge, cause}, nil, "s: op: msalcache: value too large: boom"},
		{"plain", ctx, cause, nil, []error{cause}, []error{driver.ErrNotFound}, "s: op: boom"},
	} {
		err := Wrap(tc.ctx, "s: op", tc.err, tc.kind)
		for _, want := range tc.is {
			if !errors.Is(err, want) {
				t.Errorf("%s: %v does not wrap %v", tc.name, err, want)
			}
		}
		for _, not := range tc.isNot {
			if errors.Is(err, not) {
				t.Errorf("%s: %v wraps %v", tc.name, err, not)
			}
		}
		if err.Error() != tc.message || !strings.HasPrefix(err.Error(), "s: op: ") {
			t.Errorf("%s: message %q, want %q", tc.name, err, tc.message)
		}
	}
}
