package stats

import (
	"math"
	"slices"
	"sync/atomic"
)

// Buckets, as upper bounds in base units. Task latency runs from
// milliseconds (echo) to hours (a long job waiting in a queue); a commit
// from tens of microseconds to a slow disk's second; a commit holds from one
// change to the store's batch limit.
var (
	latencyBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 1800}
	commitBuckets  = doubling(50e-6, 16) // seconds: 50 µs .. 1.6 s
	opsBuckets     = doubling(1, 14)     // changes: 1 .. 8192
)

// doubling returns n bounds from first, each twice the one before.
func doubling(first float64, n int) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = first
		first *= 2
	}
	return out
}

// histogram counts observations in fixed buckets with two atomic operations
// and no lock. A value v falls in the first bucket whose bound is >= v, as
// in a Prometheus histogram's le buckets, or above every bound.
type histogram struct {
	bounds []float64       // ascending; shared by every histogram of one kind of value
	n      []atomic.Uint64 // per bucket, not cumulative; the last is above every bound
	sum    atomic.Uint64   // float64 bits
}

func newHistogram(bounds []float64) *histogram {
	return &histogram{bounds: bounds, n: make([]atomic.Uint64, len(bounds)+1)}
}

func (h *histogram) observe(v float64) {
	i := 0
	for i < len(h.bounds) && v > h.bounds[i] { // a scan: few bounds, and most values fall in the first ones
		i++
	}
	h.n[i].Add(1)
	for {
		old := h.sum.Load()
		if h.sum.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+v)) {
			return
		}
	}
}

// Histogram is a histogram read at one moment, in the shape Prometheus
// exposes: cumulative counts of the values at or below each bound.
type Histogram struct {
	Bounds     []float64 // upper bounds in base units (seconds, changes), ascending
	Cumulative []uint64  // Cumulative[i] counts the values <= Bounds[i]
	Count      uint64    // every value observed: the +Inf bucket
	Sum        float64   // of the values, in base units
}

// read returns the histogram's counts. Count is the sum of the buckets read,
// so that it is never below the last cumulative count even while values are
// being observed; Sum may be a value ahead or behind.
func (h *histogram) read() Histogram {
	out := Histogram{
		Bounds:     slices.Clone(h.bounds),
		Cumulative: make([]uint64, len(h.bounds)),
		Sum:        math.Float64frombits(h.sum.Load()),
	}
	for i := range h.n {
		out.Count += h.n[i].Load()
		if i < len(h.bounds) {
			out.Cumulative[i] = out.Count
		}
	}
	return out
}

// total returns the number of values observed and their sum, without
// allocating.
func (h *histogram) total() (n uint64, sum float64) {
	for i := range h.n {
		n += h.n[i].Load()
	}
	return n, math.Float64frombits(h.sum.Load())
}

// add adds the counts of o, which has the same bounds.
func (h *Histogram) add(o Histogram) {
	for i := range h.Cumulative {
		h.Cumulative[i] += o.Cumulative[i]
	}
	h.Count += o.Count
	h.Sum += o.Sum
}
