package main

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/msalcache/msalcache/examples/surveys/internal/surveys"
)

// cancelOnURL stops the program once it printed the URL to open.
type cancelOnURL struct {
	mu     sync.Mutex
	b      strings.Builder
	cancel context.CancelFunc
}

func (w *cancelOnURL) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.b.Write(p)
	if strings.Contains(w.b.String(), "\nOpen http://127.0.0.1:") {
		w.cancel()
	}
	return len(p), nil
}

// go run ./examples/surveys says where tokens live and prints one URL.
func TestRunPrintsURL(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out := &cancelOnURL{cancel: cancel}
	if err := run(ctx, out, surveys.Config{Addr: "127.0.0.1:0"}); err != nil {
		t.Fatal(err)
	}
	got := out.b.String()
	for _, want := range []string{"Tokens: embedded store (bbolt) at ", "\nOpen http://127.0.0.1:"} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	if ctx.Err() == context.DeadlineExceeded {
		t.Error("run did not print the URL in time")
	}
}
