package benchmarks

import (
	"math/bits"
	"time"
)

// histogram counts latencies in log-linear buckets: exact below 256 ns,
// then 128 buckets per power of two, so a percentile read from it is off
// by less than 0.8%. Recording is a few instructions and no allocation,
// and its size does not grow with b.N, which for a fast raw read can
// reach tens of millions.
type histogram struct {
	counts [histBuckets]uint64
	n      uint64
}

const (
	histSubBits = 8
	histSub     = 1 << histSubBits
	histHalf    = histSub / 2
	histBuckets = histSub + (64-histSubBits)*histHalf
)

func (h *histogram) record(d time.Duration) {
	h.counts[bucketOf(uint64(max(d, 0)))]++
	h.n++
}

// add merges o into h, so that goroutines can each record into their own
// histogram without a lock.
func (h *histogram) add(o *histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
}

func bucketOf(v uint64) int {
	if v < histSub {
		return int(v)
	}
	shift := bits.Len64(v) - histSubBits // ≥ 1
	top := v >> shift                    // in [histHalf, histSub)
	return histSub + (shift-1)*histHalf + int(top-histHalf)
}

// bucketMid is the middle of bucket i: the value a percentile reports.
func bucketMid(i int) float64 {
	if i < histSub {
		return float64(i)
	}
	shift := (i-histSub)/histHalf + 1
	top := uint64((i-histSub)%histHalf + histHalf)
	lo := top << shift
	return float64(lo) + float64(uint64(1)<<shift)/2
}

// quantile returns the q-quantile (0 < q ≤ 1) in nanoseconds: the
// smallest bucket holding at least ⌈q·n⌉ of the recorded values.
func (h *histogram) quantile(q float64) float64 {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q*float64(h.n) + 0.999999)
	rank = min(max(rank, 1), h.n)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return bucketMid(i)
		}
	}
	return bucketMid(histBuckets - 1)
}
