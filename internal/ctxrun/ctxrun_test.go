package ctxrun

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestDoReturnsWhenContextEnds(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	err := Do(ctx, func() error { <-release; return nil })
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Do with a blocked fn = %v, want DeadlineExceeded", err)
	}
}

func TestDoKeepsTheOutcome(t *testing.T) {
	boom := errors.New("boom")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := Do(ctx, func() error { return boom }); err != boom {
		t.Fatalf("Do = %v, want fn's error", err)
	}
	if err := Do(context.Background(), func() error { return nil }); err != nil {
		t.Fatalf("Do without a deadline = %v", err)
	}
}
