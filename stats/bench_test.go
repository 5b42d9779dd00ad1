package stats

import (
	"testing"
	"time"
)

// The hot-path calls. Each must report 0 allocs/op.

func benchMaster(b *testing.B) (*Master, *Slave, *App) {
	m, _ := newMaster(b)
	for _, k := range []string{"echo", "sleep", "fail", "sha256", "mandelbrot"} {
		m.Submitted(k, 1)
	}
	s, a := m.SlaveSeen("box-1", 4), m.App("render")
	b.ReportAllocs()
	b.ResetTimer()
	return m, s, a
}

func BenchmarkSubmitted(b *testing.B) {
	m, _, _ := benchMaster(b)
	for b.Loop() {
		m.Submitted("echo", 1)
	}
}

func BenchmarkDispatched(b *testing.B) {
	m, _, _ := benchMaster(b)
	for b.Loop() {
		m.Dispatched("sha256", 1)
	}
}

func BenchmarkFinished(b *testing.B) {
	m, _, _ := benchMaster(b)
	for b.Loop() {
		m.Finished("echo", Done, 3*time.Millisecond)
	}
}

func BenchmarkCommit(b *testing.B) {
	m, _, _ := benchMaster(b)
	for b.Loop() {
		m.Commit(64, 2*time.Millisecond)
	}
}

func BenchmarkSetQueue(b *testing.B) {
	m, _, _ := benchMaster(b)
	for b.Loop() {
		m.SetQueue("echo", 42)
	}
}

func BenchmarkSlaveResult(b *testing.B) {
	_, s, _ := benchMaster(b)
	for b.Loop() {
		s.Result(true, 3*time.Millisecond)
	}
}

func BenchmarkAppFinished(b *testing.B) {
	_, _, a := benchMaster(b)
	for b.Loop() {
		a.Finished(Done, 3*time.Millisecond)
	}
}

// BenchmarkTickSameSecond is the master's 20 ms timer calling Tick.
func BenchmarkTickSameSecond(b *testing.B) {
	m, _, _ := benchMaster(b)
	for b.Loop() {
		m.Tick()
	}
}

// BenchmarkFinishedParallel is the worst case: every core recording at once
// on the same counters (the master calls under one lock, so it cannot).
func BenchmarkFinishedParallel(b *testing.B) {
	m, _, _ := benchMaster(b)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.Finished("echo", Done, 3*time.Millisecond)
		}
	})
}
