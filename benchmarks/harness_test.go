package benchmarks

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestMain prints the comparison table after go test's own output when a
// benchmark ran, and nothing more otherwise (plain go test ./...).
func TestMain(m *testing.M) {
	code := m.Run()
	if t := renderTable(recorded()); t != "" {
		fmt.Print("\n" + t)
	}
	if t := renderUsers(); t != "" {
		fmt.Print("\n" + t)
	}
	os.Exit(code)
}

// result is one benchmark's last invocation: the one with the final b.N,
// whose figures go test prints.
type result struct {
	name          string // b.Name(), e.g. "BenchmarkSilent/redis/naive"
	n             int
	nsPerOp       float64
	bytesPerOp    float64
	allocsPerOp   float64
	p50, p99      float64 // ns
	tokenRequests int     // -1: no MSAL client involved
	// counted calls had their outcome checked, and failed of them failed;
	// only the concurrent benchmarks count, since elsewhere any failure
	// ends the run.
	counted, failed int
}

var (
	resultsMu sync.Mutex
	results   = map[string]*result{}
	order     []string // names in the order they first ran
)

func record(r *result) {
	resultsMu.Lock()
	defer resultsMu.Unlock()
	if _, ok := results[r.name]; !ok {
		order = append(order, r.name)
	}
	results[r.name] = r
}

func recorded() []*result {
	resultsMu.Lock()
	defer resultsMu.Unlock()
	out := make([]*result, 0, len(order))
	for _, name := range order {
		out = append(out, results[name])
	}
	return out
}

// measure runs op b.N times with the timer on, timing each call on its own
// for the percentiles, and returns the invocation's figures. It costs one
// monotonic clock read and a histogram increment per op, tens of
// nanoseconds: noise next to any round trip, visible only on memstore's
// raw read. The histogram is allocated before the timer starts, so
// allocs/op counts op alone.
func measure(b *testing.B, op func() error) *result {
	b.Helper()
	h := new(histogram)
	var before, after runtime.MemStats
	b.ReportAllocs()
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	start := time.Now()
	var prev time.Duration
	for range b.N {
		if err := op(); err != nil {
			b.Fatal(err)
		}
		now := time.Since(start)
		h.record(now - prev)
		prev = now
	}
	b.StopTimer()
	runtime.ReadMemStats(&after)
	return reported(b, figures(b.Name(), b.N, b.Elapsed(), b.N, &before, &after, h))
}

// figures is the result named name of an invocation of n ops that took
// spent in all, whose allocations were counted over runs ops between
// before and after, and whose latencies h holds.
func figures(name string, n int, spent time.Duration, runs int, before, after *runtime.MemStats, h *histogram) *result {
	return &result{
		name:          name,
		n:             n,
		nsPerOp:       float64(spent.Nanoseconds()) / float64(n),
		bytesPerOp:    float64(after.TotalAlloc-before.TotalAlloc) / float64(runs),
		allocsPerOp:   float64(after.Mallocs-before.Mallocs) / float64(runs),
		p50:           h.quantile(0.50),
		p99:           h.quantile(0.99),
		tokenRequests: -1,
	}
}

// reported adds r's percentiles to go test's line of b.
func reported(b *testing.B, r *result) *result {
	b.ReportMetric(r.p50, "p50-ns")
	b.ReportMetric(r.p99, "p99-ns")
	return r
}

// measureParallel is measure for b.RunParallel with perCPU goroutines per
// GOMAXPROCS, each timing its own calls of the op newOp returns to it
// (state of its own, such as a key, lives in that closure). time/op is
// then the wall time of the run divided by the calls (the inverse of the
// throughput, as go test reports it), while p50 and p99 are the latencies
// of single calls, which are longer by about the number of goroutines per
// CPU. An op may count failures itself; an error it returns fails the
// benchmark.
func measureParallel(b *testing.B, perCPU int, newOp func() func() error) *result {
	b.Helper()
	// One histogram per goroutine, allocated before the timer starts so
	// that allocs/op counts op alone, and merged at the end, so that
	// recording stays free of locks.
	hs := make([]histogram, perCPU*runtime.GOMAXPROCS(0))
	var next atomic.Int64
	var before, after runtime.MemStats
	b.ReportAllocs()
	b.SetParallelism(perCPU)
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		h := &hs[next.Add(1)-1]
		op := newOp()
		start := time.Now()
		var prev time.Duration
		for pb.Next() {
			if err := op(); err != nil {
				b.Error(err)
				return
			}
			now := time.Since(start)
			h.record(now - prev)
			prev = now
		}
	})
	b.StopTimer()
	runtime.ReadMemStats(&after)
	for i := 1; i < len(hs); i++ {
		hs[0].add(&hs[i])
	}
	return reported(b, figures(b.Name(), b.N, b.Elapsed(), b.N, &before, &after, &hs[0]))
}

// interleaved is one of the calls measureInterleaved takes turns with;
// name becomes the case of its row and must hold no "/" or space.
type interleaved struct {
	name string
	op   func() error
}

// measureInterleaved runs every op once per iteration, in turn, b.N
// times, and returns one result per op, named b.Name()+"/"+name. Separate
// benchmarks of calls that differ by a few microseconds run seconds apart,
// and on a machine whose load drifts that drift is larger than the
// difference; taking turns in one loop exposes every op to the same load.
// go test's own line reports the sum of all ops as ns/op, and each op's
// mean as <name>-ns.
//
// Allocations cannot be told apart within one loop, so after the timed
// loop each op runs alone, up to 1000 times, between two reads of the
// allocator's counters.
func measureInterleaved(b *testing.B, ops []interleaved) []*result {
	b.Helper()
	hs := make([]histogram, len(ops))
	spent := make([]time.Duration, len(ops))
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	var prev time.Duration
	for range b.N {
		for i, o := range ops {
			if err := o.op(); err != nil {
				b.Fatalf("%s: %v", o.name, err)
			}
			now := time.Since(start)
			hs[i].record(now - prev)
			spent[i] += now - prev
			prev = now
		}
	}
	b.StopTimer()
	rs := make([]*result, len(ops))
	runs := min(b.N, 1000)
	for i, o := range ops {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for range runs {
			if err := o.op(); err != nil {
				b.Fatalf("%s: %v", o.name, err)
			}
		}
		runtime.ReadMemStats(&after)
		rs[i] = figures(b.Name()+"/"+o.name, b.N, spent[i], runs, &before, &after, &hs[i])
		b.ReportMetric(rs[i].nsPerOp, o.name+"-ns")
	}
	return rs
}

// row is one line of the table, split out of a benchmark name.
type row struct {
	*result
	path, store, kase string
}

// splitName turns "BenchmarkSilent/redis/naive" into ("silent", "redis",
// "naive") and "BenchmarkSilent/floor" into ("silent", "", "floor").
func splitName(name string) (path, store, kase string) {
	parts := strings.Split(name, "/")
	path = strings.ToLower(strings.TrimPrefix(parts[0], "Benchmark"))
	switch len(parts) {
	case 1:
	case 2:
		kase = parts[1]
	default:
		store, kase = parts[1], strings.Join(parts[2:], "/")
	}
	return path, store, kase
}

// renderTable lays the results out as one markdown table, in the order the
// benchmarks ran, with each row's time/op divided by that of the naive
// accessor on the same store and path, and by its floor: the floor row of
// the same store and path when there is one (MSAL-Go with no external
// cache, measured beside that store's rows), else the path's own (a row
// "floor" without a store) or, on a path without one, the raw call of the
// same store and path. It returns ""
// when nothing ran.
func renderTable(rs []*result) string {
	if len(rs) == 0 {
		return ""
	}
	rows := make([]row, len(rs))
	naive := map[[2]string]float64{}
	raw := map[[2]string]float64{}
	floor := map[string]float64{}
	storeFloor := map[[2]string]float64{} // a floor measured beside a store's rows
	for i, r := range rs {
		p, s, k := splitName(r.name)
		rows[i] = row{r, p, s, k}
		switch {
		case k == "naive":
			naive[[2]string{p, s}] = r.nsPerOp
		case k == "raw" || p == "users" && k == "1":
			// A users row compares with one user of its own pattern.
			raw[[2]string{p, s}] = r.nsPerOp
		case k == "floor" && s == "":
			floor[p] = r.nsPerOp
		case k == "floor":
			storeFloor[[2]string{p, s}] = r.nsPerOp
		}
	}
	var sb strings.Builder
	sb.WriteString("| path | store | case | time/op | p50 | p99 | B/op | allocs/op | token requests | failed calls | vs naive | vs floor |\n")
	sb.WriteString("|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	for _, r := range rows {
		store := r.store
		if store == "" {
			store = "—"
		}
		tokens := "—"
		if r.tokenRequests >= 0 {
			tokens = fmt.Sprint(r.tokenRequests)
		}
		failed := "—"
		if r.counted > 0 {
			failed = fmt.Sprintf("%.1f%%", 100*float64(r.failed)/float64(r.counted))
		}
		base, ok := storeFloor[[2]string{r.path, r.store}]
		if !ok {
			base, ok = floor[r.path]
		}
		if !ok {
			base = raw[[2]string{r.path, r.store}]
		}
		fmt.Fprintf(&sb, "| %s | %s | %s | %s | %s | %s | %.0f | %.0f | %s | %s | %s | %s |\n",
			r.path, store, r.kase,
			formatNs(r.nsPerOp), formatNs(r.p50), formatNs(r.p99),
			r.bytesPerOp, r.allocsPerOp, tokens, failed,
			ratio(r.nsPerOp, naive[[2]string{r.path, r.store}]), ratio(r.nsPerOp, base))
	}
	return sb.String()
}

func ratio(v, base float64) string {
	if base <= 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f×", v/base)
}

// formatNs prints a duration with three significant digits.
func formatNs(ns float64) string {
	switch {
	case ns >= 1e9:
		return trim3(ns/1e9) + " s"
	case ns >= 1e6:
		return trim3(ns/1e6) + " ms"
	case ns >= 1e3:
		return trim3(ns/1e3) + " µs"
	default:
		return trim3(ns) + " ns"
	}
}

func trim3(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}
