package jsonrpc

import (
	"sync"
	"time"
)

// throughputWindow is the span Stats.Summary's throughput covers.
const throughputWindow = time.Minute

// sampleEvery bounds how often the sampler keeps a sample, hence its
// memory: about throughputWindow/sampleEvery samples.
const sampleEvery = time.Second

// counts are the master's monotonic counters the sampler differentiates.
type counts struct {
	finished, submitted, dispatched uint64
}

type sample struct {
	at time.Time
	c  counts
}

// sampler turns the master's counters since start into rates over the
// last minute. It samples lazily, when Stats.Summary is called, so it needs
// no goroutine: the base of a rate is the youngest sample at least a
// window old. The master's start, when every counter was zero, is always
// such a base, so until a minute after start the rate is exact since
// start; later it covers a window of at least a minute, exactly a minute
// (to within sampleEvery) when Stats.Summary is called at least every
// second or so, as a dashboard does, and longer when calls are sparse.
type sampler struct {
	mu      sync.Mutex
	samples []sample // oldest first
}

// observe records c at now and returns the base sample to differentiate
// against. start is when the master started.
func (s *sampler) observe(now, start time.Time, c counts) sample {
	s.mu.Lock()
	defer s.mu.Unlock()
	base := sample{at: start}
	drop := 0
	for i, sm := range s.samples {
		if now.Sub(sm.at) < throughputWindow {
			break
		}
		if sm.at.After(base.at) {
			base = sm
		}
		drop = i // samples before the base are no longer needed
	}
	s.samples = s.samples[drop:]
	if n := len(s.samples); n == 0 || now.Sub(s.samples[n-1].at) >= sampleEvery {
		s.samples = append(s.samples, sample{at: now, c: c})
	}
	return base
}

// rates differentiates c at now against base.
func rates(base sample, now time.Time, c counts) Throughput {
	window := max(now.Sub(base.at), 0)
	t := Throughput{WindowMS: window.Milliseconds()}
	delta := func(a, b uint64) uint64 {
		if a < b { // counters are monotonic; never report a negative rate
			return 0
		}
		return a - b
	}
	t.Finished = delta(c.finished, base.c.finished)
	if secs := window.Seconds(); secs > 0 {
		t.FinishedPerSec = float64(t.Finished) / secs
		t.SubmittedPerSec = float64(delta(c.submitted, base.c.submitted)) / secs
		t.DispatchedPerSec = float64(delta(c.dispatched, base.c.dispatched)) / secs
	}
	return t
}
