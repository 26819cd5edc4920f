package benchmarks

import "fmt"

// Example shows how the table printed after a benchmark run reads: each
// time is divided by the naive accessor's on the same store and path, and
// by the floor: the silent call of a client with no external cache on
// the paths that have one, the store's raw call on the others. The
// figures here are made up; run the benchmarks for real ones.
func Example() {
	fmt.Print(renderTable([]*result{
		{name: "BenchmarkSilent/floor", nsPerOp: 4500, p50: 3800, p99: 10_000, bytesPerOp: 2400, allocsPerOp: 21, tokenRequests: 1},
		{name: "BenchmarkSilent/redis/raw", nsPerOp: 21_000, p50: 18_000, p99: 75_000, bytesPerOp: 5048, allocsPerOp: 6, tokenRequests: -1},
		{name: "BenchmarkSilent/redis/naive", nsPerOp: 90_000, p50: 80_000, p99: 300_000, bytesPerOp: 27_000, allocsPerOp: 600, tokenRequests: 1},
		{name: "BenchmarkSilent/redis/adapter-plain", nsPerOp: 36_000, p50: 34_000, p99: 80_000, bytesPerOp: 6600, allocsPerOp: 43, tokenRequests: 1},
		{name: "BenchmarkSharedClient/redis/naive", nsPerOp: 50_000, p50: 700_000, p99: 2_000_000, bytesPerOp: 28_000, allocsPerOp: 620, tokenRequests: 8, counted: 20_000, failed: 9000},
		{name: "BenchmarkSharedClient/redis/adapter-plain", nsPerOp: 20_000, p50: 300_000, p99: 900_000, bytesPerOp: 7000, allocsPerOp: 50, tokenRequests: 8, counted: 50_000},
		{name: "BenchmarkLoad/redis/raw", nsPerOp: 20_000, p50: 19_000, p99: 60_000, bytesPerOp: 5048, allocsPerOp: 6, tokenRequests: -1},
		{name: "BenchmarkLoad/redis/ctx=deadline", nsPerOp: 29_000, p50: 27_000, p99: 80_000, bytesPerOp: 5700, allocsPerOp: 13, tokenRequests: -1},
	}))
	// Output:
	// | path | store | case | time/op | p50 | p99 | B/op | allocs/op | token requests | failed calls | vs naive | vs floor |
	// |---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|
	// | silent | — | floor | 4.50 µs | 3.80 µs | 10.0 µs | 2400 | 21 | 1 | — | — | 1.00× |
	// | silent | redis | raw | 21.0 µs | 18.0 µs | 75.0 µs | 5048 | 6 | — | — | 0.23× | 4.67× |
	// | silent | redis | naive | 90.0 µs | 80.0 µs | 300 µs | 27000 | 600 | 1 | — | 1.00× | 20.00× |
	// | silent | redis | adapter-plain | 36.0 µs | 34.0 µs | 80.0 µs | 6600 | 43 | 1 | — | 0.40× | 8.00× |
	// | sharedclient | redis | naive | 50.0 µs | 700 µs | 2.00 ms | 28000 | 620 | 8 | 45.0% | 1.00× | — |
	// | sharedclient | redis | adapter-plain | 20.0 µs | 300 µs | 900 µs | 7000 | 50 | 8 | 0.0% | 0.40× | — |
	// | load | redis | raw | 20.0 µs | 19.0 µs | 60.0 µs | 5048 | 6 | — | — | — | 1.00× |
	// | load | redis | ctx=deadline | 29.0 µs | 27.0 µs | 80.0 µs | 5700 | 13 | — | — | — | 1.45× |
}
