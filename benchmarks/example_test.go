package benchmarks

import "fmt"

// Example shows how the table printed after a benchmark run reads: each
// time is divided by the naive accessor's on the same store and by the
// silent call of a client with no external cache. The figures here are
// made up; run the benchmarks for real ones.
func Example() {
	fmt.Print(renderTable([]*result{
		{name: "BenchmarkSilent/floor", nsPerOp: 4500, p50: 3800, p99: 10_000, bytesPerOp: 2400, allocsPerOp: 21, tokenRequests: 1},
		{name: "BenchmarkSilent/redis/raw", nsPerOp: 21_000, p50: 18_000, p99: 75_000, bytesPerOp: 5048, allocsPerOp: 6, tokenRequests: -1},
		{name: "BenchmarkSilent/redis/naive", nsPerOp: 90_000, p50: 80_000, p99: 300_000, bytesPerOp: 27_000, allocsPerOp: 600, tokenRequests: 1},
		{name: "BenchmarkSilent/redis/adapter-plain", nsPerOp: 36_000, p50: 34_000, p99: 80_000, bytesPerOp: 6600, allocsPerOp: 43, tokenRequests: 1},
	}))
	// Output:
	// | path | store | case | time/op | p50 | p99 | B/op | allocs/op | token requests | vs naive | vs floor |
	// |---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|
	// | silent | — | floor | 4.50 µs | 3.80 µs | 10.0 µs | 2400 | 21 | 1 | — | 1.00× |
	// | silent | redis | raw | 21.0 µs | 18.0 µs | 75.0 µs | 5048 | 6 | — | 0.23× | 4.67× |
	// | silent | redis | naive | 90.0 µs | 80.0 µs | 300 µs | 27000 | 600 | 1 | 1.00× | 20.00× |
	// | silent | redis | adapter-plain | 36.0 µs | 34.0 µs | 80.0 µs | 6600 | 43 | 1 | 0.40× | 8.00× |
}
