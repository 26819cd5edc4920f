package protect_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/memstore"
	"github.com/msalcache/msalcache/protect"
)

type events struct {
	mu sync.Mutex
	l  []observe.Event
}

func (e *events) Observe(_ context.Context, ev observe.Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.l = append(e.l, ev)
}

func (e *events) take() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for _, ev := range e.l {
		out = append(out, fmt.Sprintf("%v/%v/%v/%s", ev.Op, ev.Outcome, ev.Reason, ev.Store))
	}
	e.l = nil
	return out
}

// Ring B hears of a rotation made by ring A when it meets a blob under A's
// new key (a reload that finds it) and when it seals under that key (a
// rotation); a blob under a key no record holds is a reload that fails.
func TestObserverSeesRotationsAndReloads(t *testing.T) {
	ctx := context.Background()
	clock := newFakeClock()
	store := memstore.New()
	defer store.Close()
	seen := &events{}
	a := newRing(t, store, clock.Now)
	b := newRing(t, store, clock.Now, protect.WithObserver(seen))
	mustProtect(t, b, "plain", "aad")
	if got := seen.take(); len(got) != 0 {
		t.Fatalf("events %v for the first key, want none", got)
	}
	if err := a.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	blob := mustProtect(t, a, "plain", "aad")
	if _, err := b.Unprotect(ctx, blob, []byte("aad")); err != nil {
		t.Fatal(err)
	}
	mustProtect(t, b, "plain", "aad")
	mustProtect(t, b, "plain", "aad")
	want := fmt.Sprint([]string{"key_reload/ok//memory", "rotation/ok//memory"})
	if got := fmt.Sprint(seen.take()); got != want {
		t.Fatalf("events %s, want %s", got, want)
	}

	clock.Add(protect.DefaultReloadInterval)
	forged := append([]byte(nil), blob...)
	forged[10] ^= 0xff // another key id
	if _, err := b.Unprotect(ctx, forged, []byte("aad")); err == nil {
		t.Fatal("a blob under an unknown key opened")
	}
	if got, want := fmt.Sprint(seen.take()), fmt.Sprint([]string{"key_reload/error/decrypt/memory"}); got != want {
		t.Fatalf("events %s, want %s", got, want)
	}
	if _, err := protect.NewKeyRing(ctx, store, testKEK(t, "kek-1", 7), protect.WithObserver(nil)); err == nil {
		t.Fatal("WithObserver(nil) accepted")
	}
}
