package stats

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// Window is how many one-second buckets each series keeps: one hour.
const Window = 3600

// Names of the in-memory series, for [Master.Series] and [Master.Since].
// Counts are per second; latencies are in seconds; the rest are gauges
// sampled when the second closes.
const (
	SeriesSubmitted   = "submitted"    // tasks accepted
	SeriesDispatched  = "dispatched"   // tasks sent to slaves
	SeriesDone        = "done"         // tasks finished successfully
	SeriesFailed      = "failed"       // tasks finished as failed
	SeriesCanceled    = "canceled"     // tasks canceled
	SeriesLatencyMean = "latency_mean" // mean submit-to-final time of done and failed tasks, seconds
	SeriesLatencyP99  = "latency_p99"  // their 99th percentile, seconds (bucket upper bound, at most 25% high)
	SeriesCommitOps   = "commit_ops"   // store changes committed
	SeriesPending     = "pending"      // tasks waiting, sampled
	SeriesRunning     = "running"      // tasks on slaves, sampled
	SeriesSlaves      = "slaves"       // slave connections, sampled
	SeriesApps        = "apps"         // application connections, sampled
)

// seriesNames lists the series in storage order.
var seriesNames = [...]string{
	SeriesSubmitted, SeriesDispatched, SeriesDone, SeriesFailed, SeriesCanceled,
	SeriesLatencyMean, SeriesLatencyP99, SeriesCommitOps,
	SeriesPending, SeriesRunning, SeriesSlaves, SeriesApps,
}

const (
	sSubmitted = iota
	sDispatched
	sDone
	sFailed
	sCanceled
	sLatencyMean
	sLatencyP99
	sCommitOps
	sPending
	sRunning
	sSlaves
	sApps
	numSeries
)

// SeriesNames returns the names [Master.Series] knows, in a fixed order.
func SeriesNames() []string { return append([]string(nil), seriesNames[:]...) }

func seriesIndex(name string) int {
	for i, n := range seriesNames {
		if n == name {
			return i
		}
	}
	return -1
}

// Point is one second of one series.
type Point struct {
	T int64   `json:"t"` // Unix seconds: the second this value covers
	V float64 `json:"v"`
}

// latBuckets is the size of the per-second latency histogram: values in
// microseconds, four buckets per power of two, up to 2^33 µs (2.4 h).
const latBuckets = 128

// latHist is a cheap histogram drained once per second. Recording is two
// atomic adds.
type latHist struct {
	sumMicros atomic.Uint64
	b         [latBuckets]atomic.Uint64
}

// latIndex maps microseconds to a bucket: exact below 4, then four
// buckets per power of two.
func latIndex(us uint64) int {
	if us < 4 {
		return int(us)
	}
	e := bits.Len64(us) - 1 // us in [2^e, 2^(e+1))
	i := (e-1)*4 + int((us>>(e-2))&3)
	if i >= latBuckets {
		return latBuckets - 1
	}
	return i
}

// latUpper is the exclusive upper bound, in microseconds, of bucket i.
func latUpper(i int) uint64 {
	if i < 4 {
		return uint64(i) + 1
	}
	e, sub := i/4+1, uint64(i%4)
	return (5 + sub) << (e - 2)
}

func (h *latHist) observe(d time.Duration) {
	us := uint64(0)
	if d > 0 {
		us = uint64(d / time.Microsecond)
	}
	h.sumMicros.Add(us)
	h.b[latIndex(us)].Add(1)
}

// drain empties the histogram and returns the mean and the 99th percentile
// in seconds, zero when nothing was observed.
func (h *latHist) drain() (mean, p99 float64) {
	var counts [latBuckets]uint64
	var n uint64
	for i := range h.b {
		counts[i] = h.b[i].Swap(0)
		n += counts[i]
	}
	sum := h.sumMicros.Swap(0)
	if n == 0 {
		return 0, 0
	}
	target := uint64(math.Ceil(0.99 * float64(n)))
	var cum uint64
	for i, c := range counts {
		cum += c
		if cum >= target {
			p99 = float64(latUpper(i)) / 1e6
			break
		}
	}
	return float64(sum) / float64(n) / 1e6, p99
}

// ring holds Window seconds of every series. Guarded by Master.mu.
type ring struct {
	first int64 // the first second with data
	vals  [numSeries][Window]float64
}

func slot(sec int64) int {
	return int(((sec % Window) + Window) % Window)
}

// points returns the points of series i for the seconds after since and up
// to last, within the window.
func (r *ring) points(i int, since, last int64) []Point {
	lo := max(r.first, last-Window+1, since+1)
	if lo > last {
		return []Point{}
	}
	out := make([]Point, 0, last-lo+1)
	for s := lo; s <= last; s++ {
		out = append(out, Point{T: s, V: r.vals[i][slot(s)]})
	}
	return out
}

// RecentSeconds is how many closed seconds [SlaveSummary.Recent] and
// [AppSummary.Recent] hold: enough for a sparkline, small enough to keep for
// every slave and application.
const RecentSeconds = 60

// recent holds one count per second of the last RecentSeconds seconds of one
// slave name or application, indexed by recentSlot. Guarded by Master.mu.
type recent [RecentSeconds]float64

func recentSlot(sec int64) int {
	return int(((sec % RecentSeconds) + RecentSeconds) % RecentSeconds)
}

// close stores v as the count of second open, the one being closed, and
// zero for the seconds skipped before sec, the one now open. Writing open
// first lets a gap longer than the window zero it too.
func (r *recent) close(open, sec int64, v float64) {
	r[recentSlot(open)] = v
	for s := max(open+1, sec-RecentSeconds); s < sec; s++ {
		r[recentSlot(s)] = 0
	}
}

// appendTo appends the counts of the RecentSeconds seconds up to last,
// oldest first.
func (r *recent) appendTo(dst []float64, last int64) []float64 {
	for s := last - RecentSeconds + 1; s <= last; s++ {
		dst = append(dst, r[recentSlot(s)])
	}
	return dst
}
