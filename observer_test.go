package msalcache

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/cache"
)

// recorder is an Observer that keeps every Event.
type recorder struct {
	mu     sync.Mutex
	events []observe.Event
}

func (r *recorder) Observe(_ context.Context, e observe.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

func (r *recorder) take() []observe.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.events
	r.events = nil
	return out
}

// An Observer hears one Event per operation with its outcome, timed; the
// same Events, counted by Stats' own code, give exactly what Stats reports:
// Stats is one Observer among others.
func TestObserverSeesEveryOperation(t *testing.T) {
	rec := &recorder{}
	farm := &StatsCounter{} // as a program counting several Adapters would
	a := newTestAdapter(t, newMapStore(), WithObserver(rec), WithObserver(farm))
	type step struct {
		do      func() error
		op      observe.Op
		outcome observe.Outcome
		reused  bool
	}
	c := &target{}
	other := &target{}
	alice := cache.ReplaceHints{PartitionKey: "alice"}
	steps := []step{
		{func() error { return a.Replace(ctx, c, alice) }, observe.OpReplace, observe.OutcomeMiss, false},
		{func() error {
			c.data = []byte(aliceCache)
			return a.Export(ctx, c, cache.ExportHints{PartitionKey: "alice"})
		}, observe.OpExport, observe.OutcomeWritten, false},
		{func() error { return a.Replace(ctx, c, alice) }, observe.OpReplace, observe.OutcomeHit, true},
		{func() error { return a.Export(ctx, c, cache.ExportHints{PartitionKey: "alice"}) }, observe.OpExport, observe.OutcomeSkipped, false},
		{func() error { return a.Replace(ctx, other, alice) }, observe.OpReplace, observe.OutcomeHit, false},
		{func() error { return a.Remove(ctx, "alice") }, observe.OpRemove, observe.OutcomeDeleted, false},
	}
	var all []observe.Event
	for i, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		got := rec.take()
		if len(got) != 1 {
			t.Fatalf("step %d: %d events, want 1: %+v", i, len(got), got)
		}
		e := got[0]
		if e.Op != s.op || e.Outcome != s.outcome || e.Reused != s.reused {
			t.Errorf("step %d: %v %v reused=%v, want %v %v reused=%v", i, e.Op, e.Outcome, e.Reused, s.op, s.outcome, s.reused)
		}
		if e.Start.IsZero() || e.Duration < 0 {
			t.Errorf("step %d: not timed: start %v, duration %v", i, e.Start, e.Duration)
		}
		all = append(all, e)
	}
	if all[1].Bytes != len(aliceCache) || all[4].Bytes != len(aliceCache) {
		t.Errorf("bytes written %d and read %d, want %d", all[1].Bytes, all[4].Bytes, len(aliceCache))
	}
	// Nothing in an Event names the user or carries stored data.
	if s := fmt.Sprintf("%+v", all); strings.Contains(s, "alice") || strings.Contains(s, "RT-A") {
		t.Fatalf("events carry a partition key or a token: %s", s)
	}
	counted := &Adapter{}
	for i := range all {
		counted.stats.count(&all[i])
	}
	want, got := a.Stats(), counted.Stats()
	if want != got || farm.Stats() != want {
		t.Fatalf("Stats %+v, the events counted %+v, a StatsCounter given to WithObserver %+v", want, got, farm.Stats())
	}
}

// A store that fails shows in the Event as an error of kind "store", with
// the failed calls counted, while the token call does not fail.
func TestObserverStoreFailure(t *testing.T) {
	rec := &recorder{}
	s := &downStore{mapStore: newMapStore()}
	a := newTestAdapter(t, s, WithBreaker(BreakerOptions{Disabled: true}), WithObserver(rec))
	signInWhileDown(t, a, s)
	got := rec.take()
	if len(got) != 2 {
		t.Fatalf("%d events, want 2", len(got))
	}
	if e := got[0]; e.Op != observe.OpReplace || e.Outcome != observe.OutcomeError || e.Reason != observe.ReasonStore || e.StoreErrors != 1 {
		t.Errorf("replace: %+v", e)
	}
	if e := got[1]; e.Op != observe.OpExport || e.Outcome != observe.OutcomeError || e.Reason != observe.ReasonStore || e.StoreErrors != a.cfg.exportAttempts {
		t.Errorf("export: %+v", e)
	}
	if st := a.Stats(); st.StoreErrors != uint64(1+a.cfg.exportAttempts) || st.ExportFailures != 1 {
		t.Errorf("stats: %d store errors, %d export failures; want %d and 1", st.StoreErrors, st.ExportFailures, 1+a.cfg.exportAttempts)
	}
}

// Without an Observer, Events are counted but not timed: no clock is read.
func TestObserverAbsentReadsNoClock(t *testing.T) {
	a := newTestAdapter(t, newMapStore())
	e := a.begin(observe.OpReplace)
	if !e.Start.IsZero() {
		t.Fatal("an Adapter without Observer timed an Event")
	}
	if _, err := New(newMapStore(), WithPlaintext(), WithObserver(nil)); err == nil {
		t.Fatal("WithObserver(nil) accepted")
	}
}

// Several Observers are each told, in order.
func TestObserversFanOut(t *testing.T) {
	var order []int
	one := observe.Func(func(context.Context, observe.Event) { order = append(order, 1) })
	two := observe.Func(func(context.Context, observe.Event) { order = append(order, 2) })
	a := newTestAdapter(t, newMapStore(), WithObserver(one), WithObserver(two))
	if err := a.Replace(ctx, &target{}, cache.ReplaceHints{PartitionKey: "alice"}); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(order) != "[1 2]" {
		t.Fatalf("observers called %v, want [1 2]", order)
	}
}

// The names are what metrics and traces use; they must not change.
func TestEventNames(t *testing.T) {
	for _, c := range []struct{ got, want string }{
		{observe.OpReplace.String(), "replace"}, {observe.OpKeyReload.String(), "key_reload"}, {observe.Op(0).String(), "unknown"},
		{observe.OutcomeL1Hit.String(), "l1_hit"}, {observe.OutcomeError.String(), "error"}, {observe.Outcome(200).String(), "unknown"},
		{observe.ReasonNone.String(), ""}, {observe.ReasonUnknownShape.String(), "unknown_shape"}, {observe.Reason(200).String(), "unknown"},
	} {
		if c.got != c.want {
			t.Errorf("name %q, want %q", c.got, c.want)
		}
	}
}
