package benchmarks

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
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
	n := float64(b.N)
	r := &result{
		name:          b.Name(),
		n:             b.N,
		nsPerOp:       float64(b.Elapsed().Nanoseconds()) / n,
		bytesPerOp:    float64(after.TotalAlloc-before.TotalAlloc) / n,
		allocsPerOp:   float64(after.Mallocs-before.Mallocs) / n,
		p50:           h.quantile(0.50),
		p99:           h.quantile(0.99),
		tokenRequests: -1,
	}
	b.ReportMetric(r.p50, "p50-ns")
	b.ReportMetric(r.p99, "p99-ns")
	return r
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
// accessor on the same store and path, and by the floor of its path.
// It returns "" when nothing ran.
func renderTable(rs []*result) string {
	if len(rs) == 0 {
		return ""
	}
	rows := make([]row, len(rs))
	naive := map[[2]string]float64{}
	floor := map[string]float64{}
	for i, r := range rs {
		p, s, k := splitName(r.name)
		rows[i] = row{r, p, s, k}
		switch {
		case k == "naive":
			naive[[2]string{p, s}] = r.nsPerOp
		case k == "floor" && s == "":
			floor[p] = r.nsPerOp
		}
	}
	var sb strings.Builder
	sb.WriteString("| path | store | case | time/op | p50 | p99 | B/op | allocs/op | token requests | vs naive | vs floor |\n")
	sb.WriteString("|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	for _, r := range rows {
		store := r.store
		if store == "" {
			store = "—"
		}
		tokens := "—"
		if r.tokenRequests >= 0 {
			tokens = fmt.Sprint(r.tokenRequests)
		}
		fmt.Fprintf(&sb, "| %s | %s | %s | %s | %s | %s | %.0f | %.0f | %s | %s | %s |\n",
			r.path, store, r.kase,
			formatNs(r.nsPerOp), formatNs(r.p50), formatNs(r.p99),
			r.bytesPerOp, r.allocsPerOp, tokens,
			ratio(r.nsPerOp, naive[[2]string{r.path, r.store}]), ratio(r.nsPerOp, floor[r.path]))
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
