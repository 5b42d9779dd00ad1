package stats

import (
	"fmt"
	"math"
	"reflect"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// clock is a fake clock the tests move by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// t0 is a whole second, so that the buckets are easy to name.
var t0 = time.Unix(1_700_000_000, 0)

func newMaster(t testing.TB) (*Master, *clock) {
	t.Helper()
	c := &clock{t: t0}
	return NewMaster(c.Now), c
}

func points(vs ...float64) []Point {
	out := make([]Point, len(vs))
	for i, v := range vs {
		out[i] = Point{T: t0.Unix() + int64(i), V: v}
	}
	return out
}

func equalPoints(t *testing.T, what string, got, want []Point) {
	t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("%s:\n got %v\nwant %v", what, got, want)
	}
}

func TestSeriesPerSecond(t *testing.T) {
	m, c := newMaster(t)
	m.Tick()
	if got := m.Series(SeriesSubmitted); len(got) != 0 {
		t.Fatalf("before the first second closed: %v", got)
	}

	m.Submitted("echo", 3) // second 0
	m.SetTasks(3, 0, 0)
	c.Add(time.Second)
	m.Tick()
	m.Submitted("echo", 5) // second 1
	m.Dispatched("echo", 4)
	m.Finished("echo", Done, time.Millisecond)
	m.Finished("echo", Failed, time.Millisecond)
	m.SetTasks(4, 4, 0)
	c.Add(500 * time.Millisecond)
	m.Tick() // same second: nothing closes
	m.Submitted("echo", 1)
	c.Add(2500 * time.Millisecond) // now second 4: 2 and 3 saw nothing
	m.Tick()

	equalPoints(t, "submitted", m.Series(SeriesSubmitted), points(3, 6, 0, 0))
	equalPoints(t, "dispatched", m.Series(SeriesDispatched), points(0, 4, 0, 0))
	equalPoints(t, "done", m.Series(SeriesDone), points(0, 1, 0, 0))
	equalPoints(t, "failed", m.Series(SeriesFailed), points(0, 1, 0, 0))
	equalPoints(t, "canceled", m.Series(SeriesCanceled), points(0, 0, 0, 0))
	equalPoints(t, "pending (a gauge holds through a gap)", m.Series(SeriesPending), points(3, 4, 4, 4))
	equalPoints(t, "since second 1", m.Since(SeriesSubmitted, t0.Add(1500*time.Millisecond)), points(3, 6, 0, 0)[2:])

	// Reads close the seconds that passed. Without a Tick in second 5, what
	// was recorded then still counts for the open second, 4.
	c.Add(time.Second)
	m.Submitted("echo", 2)
	c.Add(time.Second)
	got := m.Since(SeriesSubmitted, t0.Add(3*time.Second))
	equalPoints(t, "read advances", got, points(3, 6, 0, 0, 2, 0)[4:])

	if m.Series("nope") != nil {
		t.Error("unknown series: not nil")
	}
	for _, name := range SeriesNames() {
		if m.Series(name) == nil {
			t.Errorf("series %q: nil", name)
		}
	}
}

func TestSeriesLatency(t *testing.T) {
	m, c := newMaster(t)
	for range 98 {
		m.Finished("echo", Done, time.Millisecond)
	}
	m.Finished("echo", Failed, time.Second)
	m.Finished("echo", Failed, time.Second)
	m.Finished("echo", Canceled, time.Hour) // not a latency
	c.Add(time.Second)
	m.Tick()
	mean, p99 := m.Series(SeriesLatencyMean), m.Series(SeriesLatencyP99)
	if len(mean) != 1 || len(p99) != 1 {
		t.Fatalf("mean %v, p99 %v: want one point each", mean, p99)
	}
	if want := (98*0.001 + 2) / 100; math.Abs(mean[0].V-want) > 1e-9 {
		t.Errorf("mean = %v, want %v", mean[0].V, want)
	}
	if v := p99[0].V; v < 1 || v > 1.25 {
		t.Errorf("p99 = %v, want within 25%% above 1s", v)
	}
	c.Add(time.Second)
	if got := m.Series(SeriesLatencyP99); got[1].V != 0 {
		t.Errorf("a second with no tasks: p99 = %v, want 0", got[1].V)
	}
}

func TestLatencyBuckets(t *testing.T) {
	prev := -1
	for us := uint64(0); us < 1<<34; us = us*9/8 + 1 {
		i := latIndex(us)
		if i < prev {
			t.Fatalf("latIndex(%d) = %d < %d: not monotone", us, i, prev)
		}
		prev = i
		if us < 1<<33 {
			if up := latUpper(i); up <= us || float64(up) > 1.25*float64(us)+1 {
				t.Fatalf("latUpper(latIndex(%d)) = %d: not within (v, 1.25v+1]", us, up)
			}
		} else if i != latBuckets-1 {
			t.Fatalf("latIndex(%d) = %d, want the last bucket", us, i)
		}
	}
}

func TestSeriesWraparound(t *testing.T) {
	m, c := newMaster(t)
	const extra = 10
	for i := range Window + extra {
		m.Dispatched("echo", i)
		c.Add(time.Second)
		m.Tick()
	}
	got := m.Series(SeriesDispatched)
	if len(got) != Window {
		t.Fatalf("%d points, want %d", len(got), Window)
	}
	for j, p := range got {
		i := j + extra
		if p.T != t0.Unix()+int64(i) || p.V != float64(i) {
			t.Fatalf("point %d = %+v, want {%d %d}", j, p, t0.Unix()+int64(i), i)
		}
	}

	// A gap longer than the window leaves only zeros.
	m.Dispatched("echo", 1)
	c.Add(2 * time.Hour)
	m.Tick()
	got = m.Series(SeriesDispatched)
	if len(got) != Window {
		t.Fatalf("after the gap: %d points, want %d", len(got), Window)
	}
	for _, p := range got {
		if p.V != 0 {
			t.Fatalf("after the gap: %+v, want zeros", p)
		}
	}
	if last := got[len(got)-1].T; last != c.Now().Unix()-1 {
		t.Errorf("last point at %d, want %d", last, c.Now().Unix()-1)
	}
}

func TestClockBackwards(t *testing.T) {
	m, c := newMaster(t)
	m.Submitted("echo", 1)
	c.Add(2 * time.Second)
	m.Tick()
	c.Add(-5 * time.Second)
	m.Submitted("echo", 1)
	m.Tick() // ignored
	c.Add(4 * time.Second)
	m.Tick() // second 1 again: still ignored
	c.Add(2 * time.Second)
	m.Tick()
	equalPoints(t, "submitted", m.Series(SeriesSubmitted), points(1, 0, 1))
}

// slaveRow returns the export row of slave label name.
func slaveRow(m *Master, name string) (SlaveRow, bool) {
	for _, r := range m.Export().Slaves {
		if r.Slave == name {
			return r, true
		}
	}
	return SlaveRow{}, false
}

func TestSlaveLingersThenGoes(t *testing.T) {
	m, c := newMaster(t)
	s := m.SlaveSeen("box", 2)
	// Two slots, each busy half the time: busy fraction 0.5, one result a second.
	for range 600 {
		s.Result(true, time.Second)
		c.Add(time.Second)
		m.Tick()
	}
	got := m.Slaves()
	if len(got) != 1 {
		t.Fatalf("slaves = %+v", got)
	}
	if g := got[0]; g.Name != "box" || g.Sessions != 1 || g.Slots != 2 || g.Done != 600 ||
		g.MeanTaskTime != time.Second || math.Abs(g.BusyFraction-0.5) > 0.01 || math.Abs(g.Throughput-1) > 0.02 {
		t.Errorf("summary = %+v", g)
	}

	s.Gone()
	s.Gone() // idempotent
	c.Add(Linger / 2)
	m.Tick()
	if r, ok := slaveRow(m, "box"); !ok || r.Sessions != 0 {
		t.Errorf("lingering: sessions = %v, %v; want 0, present", r.Sessions, ok)
	}
	s2 := m.SlaveSeen("box", 3) // comes back: same row, one reconnect
	s2.Result(false, 0)
	r, _ := slaveRow(m, "box")
	if r.Reconnects != 1 {
		t.Errorf("reconnects = %v, want 1", r.Reconnects)
	}
	if r.Done != 600 {
		t.Errorf("done after reconnect = %v, want 600", r.Done)
	}
	if r.Slots != 3 {
		t.Errorf("slots = %v, want 3", r.Slots)
	}

	s2.Gone()
	c.Add(Linger)
	m.Tick()
	if rows := m.Export().Slaves; len(rows) != 0 {
		t.Errorf("export after Linger = %+v", rows)
	}
	if got := m.Slaves(); len(got) != 0 {
		t.Errorf("slaves after Linger = %+v", got)
	}
}

func TestAppLingersThenGoes(t *testing.T) {
	m, c := newMaster(t)
	a := m.App("render")
	a.Pushed(4)
	a.InFlight(2)
	a.Finished(Done, 100*time.Millisecond)
	a.Finished(Failed, 300*time.Millisecond)
	if m.App("render") != a {
		t.Fatal("App returned a second handle for one name")
	}
	want := AppSummary{Name: "render", Pushed: 4, InFlight: 2, Done: 1, Failed: 1, MeanLatency: 200 * time.Millisecond,
		Recent: make([]float64, RecentSeconds)}
	if got := m.Apps(); len(got) != 1 || !reflect.DeepEqual(got[0], want) {
		t.Errorf("apps = %+v, want [%+v]", got, want)
	}

	a.Gone()
	c.Add(Linger - time.Second)
	m.Tick()
	if rows := m.Export().Apps; len(rows) != 1 || rows[0].App != "render" || rows[0].Pushed != 4 {
		t.Errorf("before Linger: export %+v, want render's row", rows)
	}
	c.Add(time.Second)
	m.Tick()
	if rows := m.Export().Apps; len(rows) != 0 {
		t.Errorf("row still there after Linger: %+v", rows)
	}
	if got := m.Apps(); len(got) != 0 {
		t.Errorf("apps after Linger = %+v", got)
	}
}

func TestKindsAreBounded(t *testing.T) {
	m, _ := newMaster(t)
	m.Submitted("bad\xff", 1) // invalid UTF-8 gets a valid label
	for i := range MaxKinds + 5 {
		m.Submitted(fmt.Sprintf("k%d", i), 1)
	}
	rows := m.Export().Kinds
	if len(rows) != MaxKinds+1 {
		t.Errorf("%d kind rows, want %d", len(rows), MaxKinds+1)
	}
	for _, r := range rows {
		if !utf8.ValidString(r.Kind) {
			t.Errorf("kind label %q: not UTF-8", r.Kind)
		}
		if r.Kind == OtherKind && r.Submitted != 6 {
			t.Errorf("%s = %v, want 6", OtherKind, r.Submitted)
		}
	}
	if got := m.Totals().Submitted; got != MaxKinds+6 {
		t.Errorf("Totals.Submitted = %d, want %d", got, MaxKinds+6)
	}
}

// TestConcurrent records from many goroutines while ticking and reading;
// run with -race. Every count lands in exactly one second.
func TestConcurrent(t *testing.T) {
	m, c := newMaster(t)
	const workers, n = 8, 2000
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			s := m.SlaveSeen(fmt.Sprintf("s%d", w%3), 1)
			a := m.App("app")
			for i := range n {
				kind := fmt.Sprintf("k%d", i%4)
				m.Submitted(kind, 1)
				m.Dispatched(kind, 1)
				m.Finished(kind, Done, time.Millisecond)
				s.Result(true, time.Millisecond)
				a.Finished(Done, time.Millisecond)
			}
			s.Gone()
		})
	}
	done := make(chan struct{})
	var ticker sync.WaitGroup
	ticker.Go(func() {
		for {
			select {
			case <-done:
				return
			default:
			}
			c.Add(100 * time.Millisecond)
			m.Tick()
			m.Slaves()
			m.Apps()
			m.Series(SeriesDone)
			m.Export()
		}
	})
	wg.Wait()
	close(done)
	ticker.Wait()
	c.Add(time.Second)
	var sum float64
	for _, p := range m.Series(SeriesDone) {
		sum += p.V
	}
	if sum != workers*n {
		t.Errorf("done series sums to %v, want %d", sum, workers*n)
	}
	var total uint64
	for _, r := range m.Export().Kinds {
		total += r.Finished[Done]
	}
	if total != workers*n {
		t.Errorf("exported done = %v, want %d", total, workers*n)
	}
}

// TestHotPathDoesNotAllocate keeps the benchmarks' promise in every test run.
func TestHotPathDoesNotAllocate(t *testing.T) {
	m, _ := newMaster(t)
	s, a := m.SlaveSeen("box-1", 4), m.App("render")
	// AllocsPerRun calls each once before counting: that first call sees
	// the kind.
	for name, f := range map[string]func(){
		"Submitted":      func() { m.Submitted("echo", 1) },
		"Dispatched":     func() { m.Dispatched("echo", 1) },
		"Finished":       func() { m.Finished("echo", Done, time.Millisecond) },
		"Commit":         func() { m.Commit(8, time.Millisecond) },
		"SetQueue":       func() { m.SetQueue("echo", 3) },
		"SetTasks":       func() { m.SetTasks(1, 2, 3) },
		"SetConnections": func() { m.SetConnections(1, 2) },
		"Slave.Result":   func() { s.Result(true, time.Millisecond) },
		"App.Pushed":     func() { a.Pushed(1) },
		"App.Finished":   func() { a.Finished(Done, time.Millisecond) },
		"Tick same sec":  func() { m.Tick() },
	} {
		if n := testing.AllocsPerRun(1000, f); n != 0 {
			t.Errorf("%s: %v allocs per call, want 0", name, n)
		}
	}
}

// Totals and App.Counts are the master's numbers for Stats and the
// Stats.Summary RPC: every recording counts once, whatever the kind,
// including kinds past MaxKinds.
func TestTotalsAndAppCounts(t *testing.T) {
	m, _ := newMaster(t)
	a := m.App("totals")
	m.Submitted("a", 3)
	m.Submitted("b", 2)
	for i := range MaxKinds + 5 {
		m.Submitted(fmt.Sprintf("k%d", i), 1)
	}
	a.Pushed(5)
	m.Dispatched("a", 4)
	m.Retried("a")
	m.Requeued("b", 2)
	m.LateResult()
	for _, st := range []State{Done, Done, Failed, Canceled} {
		m.Finished("a", st, time.Millisecond)
		a.Finished(st, time.Millisecond)
	}
	want := Totals{Submitted: 5 + MaxKinds + 5, Dispatched: 4, Done: 2, Failed: 1, Canceled: 1, Retried: 1, Requeued: 2, Late: 1}
	if got := m.Totals(); got != want {
		t.Fatalf("Totals = %+v, want %+v", got, want)
	}
	if p, d, f, c := a.Counts(); p != 5 || d != 2 || f != 1 || c != 1 {
		t.Fatalf("App.Counts = %d %d %d %d, want 5 2 1 1", p, d, f, c)
	}
}

// SetQueues sums the kinds counted under OtherKind instead of letting the
// last one win, and sets a kind absent from the sample to 0.
func TestSetQueuesSumsOtherAndClearsGone(t *testing.T) {
	m, _ := newMaster(t)
	for i := range MaxKinds + 3 {
		m.Submitted(fmt.Sprintf("k%d", i), 1)
	}
	m.SetQueues(func(add func(string, int)) {
		add("k0", 4)
		for i := MaxKinds; i < MaxKinds+3; i++ {
			add(fmt.Sprintf("k%d", i), 10)
		}
	})
	queued := func() map[string]int64 {
		out := map[string]int64{}
		for _, r := range m.Export().Kinds {
			if r.Queued != 0 {
				out[r.Kind] = r.Queued
			}
		}
		return out
	}
	if got := queued(); len(got) != 2 || got["k0"] != 4 || got[OtherKind] != 30 {
		t.Fatalf("queued = %v, want k0 4 and %s 30", got, OtherKind)
	}
	m.SetQueues(func(add func(string, int)) { add("k1", 1) })
	if got := queued(); len(got) != 1 || got["k1"] != 1 {
		t.Fatalf("queued = %v, want k1 1 alone", got)
	}
}

// Remove drops an application's numbers at once, without the linger.
func TestAppRemove(t *testing.T) {
	m, _ := newMaster(t)
	a := m.App("flood")
	a.Pushed(3)
	a.Remove()
	if rows := m.Export().Apps; len(rows) != 0 {
		t.Fatalf("rows after Remove: %+v", rows)
	}
	if b := m.App("flood"); b == a {
		t.Fatal("App returned the removed handle")
	}
}
