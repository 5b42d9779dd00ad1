package stats

import (
	"math"
	"slices"
	"testing"
	"time"
)

// set puts the clock at d after t0.
func (c *clock) set(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t0.Add(d)
}

// sec is d seconds after t0, for reading the scripts below.
func sec(d float64) time.Duration { return time.Duration(d * float64(time.Second)) }

// recentEnding is a Recent whose last seconds are tail and the rest zero.
func recentEnding(tail ...float64) []float64 {
	out := make([]float64, RecentSeconds)
	copy(out[RecentSeconds-len(tail):], tail)
	return out
}

func slaveByName(t *testing.T, ss []SlaveSummary, name string) SlaveSummary {
	t.Helper()
	for _, s := range ss {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no slave %q in %d summaries", name, len(ss))
	return SlaveSummary{}
}

func checkRecent(t *testing.T, what string, got, want []float64) {
	t.Helper()
	if len(got) != RecentSeconds {
		t.Errorf("%s: Recent has %d seconds, want %d", what, len(got), RecentSeconds)
	}
	if !slices.Equal(got, want) {
		t.Errorf("%s: Recent ends\n got %v\nwant %v", what, tailOf(got), tailOf(want))
	}
}

func tailOf(v []float64) []float64 { return v[max(len(v)-8, 0):] }

func checkTime(t *testing.T, what string, got time.Time, want time.Duration) {
	t.Helper()
	if !got.Equal(t0.Add(want)) {
		t.Errorf("%s = t0%+v, want t0%+v", what, got.Sub(t0), want)
	}
}

func TestSlaveRecentAndLastSeen(t *testing.T) {
	m, c := newMaster(t)
	c.set(sec(10)) // the master ticks every 20 ms: second 10 is open
	m.Tick()
	c.set(sec(10.25))
	box := m.SlaveSeen("box", 2)   // three results in second 10, none in 11, five in 12, then goes
	busy := m.SlaveSeen("busy", 1) // one result in second 12, stays
	m.SlaveSeen("idle", 1)         // never returns a result
	two := m.SlaveSeen("two", 1)   // two sessions; this one goes, the other stays
	m.SlaveSeen("two", 1)
	for _, ok := range []bool{true, true, false} {
		box.Result(ok, time.Millisecond)
	}
	c.set(sec(11))
	m.Tick()
	c.set(sec(11.5))
	two.Gone()
	c.set(sec(12))
	m.Tick()
	for i := range 5 {
		box.Result(i%2 == 0, time.Millisecond)
	}
	busy.Result(true, time.Millisecond)
	c.set(sec(12.5))
	box.Gone()
	c.set(sec(13)) // the read closes second 12

	got := m.Slaves()
	b := slaveByName(t, got, "box")
	checkRecent(t, "box", b.Recent, recentEnding(3, 0, 5))
	checkTime(t, "box LastSeen (its last session went after its last result)", b.LastSeen, sec(12.5))
	checkTime(t, "box Gone", b.Gone, sec(12.5))
	if b.Done != 5 || b.Failed != 3 {
		t.Errorf("box done, failed = %d, %d; want 5, 3", b.Done, b.Failed)
	}
	bu := slaveByName(t, got, "busy")
	checkRecent(t, "busy", bu.Recent, recentEnding(0, 0, 1))
	checkTime(t, "busy LastSeen (start of the second of its result)", bu.LastSeen, sec(12))
	i := slaveByName(t, got, "idle")
	checkRecent(t, "idle", i.Recent, recentEnding())
	checkTime(t, "idle LastSeen (when its session was seen)", i.LastSeen, sec(10.25))
	checkTime(t, "two LastSeen (a session went, not the last)", slaveByName(t, got, "two").LastSeen, sec(10.25))

	// The summaries share one buffer; a caller appending to one Recent must
	// not write into the next.
	for _, s := range got {
		if cap(s.Recent) != len(s.Recent) {
			t.Errorf("%s: Recent has room for %d more", s.Name, cap(s.Recent)-len(s.Recent))
		}
	}

	// Results wait for the next Tick: three seconds pass before a read, and
	// they count for the second they were recorded in, 13, not the one
	// that closed them.
	busy.Result(true, 0)
	busy.Result(false, 0)
	c.set(sec(16))
	got = m.Slaves()
	bu = slaveByName(t, got, "busy")
	checkRecent(t, "busy after a gap", bu.Recent, recentEnding(0, 0, 1, 2, 0, 0))
	checkTime(t, "busy LastSeen after a gap", bu.LastSeen, sec(13))
	checkRecent(t, "box after a gap", slaveByName(t, got, "box").Recent, recentEnding(3, 0, 5, 0, 0, 0))

	// Coming back is a sign of life too, and clears Gone.
	c.set(sec(16.5))
	box = m.SlaveSeen("box", 2)
	defer box.Gone()
	b = slaveByName(t, m.Slaves(), "box")
	checkTime(t, "box LastSeen after coming back", b.LastSeen, sec(16.5))
	if !b.Gone.IsZero() {
		t.Errorf("box Gone = %v after coming back, want zero", b.Gone)
	}
}

// TestRecentWraps runs longer than the window: Recent holds exactly the
// last RecentSeconds seconds, and a gap longer than that leaves zeros.
func TestRecentWraps(t *testing.T) {
	m, c := newMaster(t)
	s := m.SlaveSeen("box", 1)
	defer s.Gone()
	a := m.App("render")
	const n = 2*RecentSeconds + 17
	if (n-1)%7 == 0 {
		t.Fatal("the script needs results in its last second")
	}
	var want []float64
	for i := range n {
		k := i % 7
		for range k {
			s.Result(true, 0)
			a.Finished(State(i%int(numStates)), 0)
		}
		want = append(want, float64(k))
		c.Add(time.Second)
		m.Tick()
	}
	want = want[n-RecentSeconds:]
	checkRecent(t, "slave", m.Slaves()[0].Recent, want)
	checkRecent(t, "app", m.Apps()[0].Recent, want)
	checkTime(t, "LastSeen", m.Slaves()[0].LastSeen, sec(n-1)) // (n-1)%7 != 0: the last second had results

	// Second n has results, then nobody ticks for longer than the window:
	// they have left it by the time the second closes.
	s.Result(true, 0)
	a.Finished(Done, 0)
	c.Add(time.Duration(RecentSeconds+5) * time.Second)
	checkRecent(t, "slave after a long gap", m.Slaves()[0].Recent, recentEnding())
	checkRecent(t, "app after a long gap", m.Apps()[0].Recent, recentEnding())
	checkTime(t, "LastSeen after a long gap", m.Slaves()[0].LastSeen, sec(n))
}

func TestAppThroughputAndRecent(t *testing.T) {
	m, c := newMaster(t)
	a := m.App("render")
	m.App("idle")
	a.Pushed(20) // pushing is not finishing

	// Second 0: six finished, in every state.
	a.Finished(Done, time.Millisecond)
	a.Finished(Done, time.Millisecond)
	a.Finished(Failed, time.Millisecond)
	a.Finished(Canceled, 0)
	a.Finished(Canceled, 0)
	a.Finished(Canceled, 0)
	c.set(sec(1))
	m.Tick()
	// Second 1: none.
	c.set(sec(2))
	m.Tick()
	// Second 2: four; then nobody ticks until a read in second 5, so the
	// four are spread over the three seconds closed at once.
	for range 4 {
		a.Finished(Done, time.Millisecond)
	}
	c.set(sec(5))

	// The one-minute moving average, written in closed form rather than as
	// the update the code runs: r ← r·e^(−dt/60) + rate·(1−e^(−dt/60)).
	d1, d3 := math.Exp(-1.0/60), math.Exp(-3.0/60)
	r := 6 * (1 - d1)       // second 0 closed
	r *= d1                 // second 1: nothing
	r = r*d3 + 4.0/3*(1-d3) // seconds 2..4, closed together
	got := m.Apps()
	if len(got) != 2 || got[0].Name != "idle" || got[1].Name != "render" {
		t.Fatalf("apps = %+v", got)
	}
	g := got[1]
	if math.Abs(g.Throughput-r) > 1e-12 {
		t.Errorf("Throughput = %.17g, want %.17g", g.Throughput, r)
	}
	checkRecent(t, "render", g.Recent, recentEnding(6, 0, 4, 0, 0))
	if g.Done != 6 || g.Failed != 1 || g.Canceled != 3 || g.Pushed != 20 {
		t.Errorf("render = %+v", g)
	}
	if idle := got[0]; idle.Throughput != 0 {
		t.Errorf("idle Throughput = %v, want 0", idle.Throughput)
	}
	checkRecent(t, "idle", got[0].Recent, recentEnding())
	for _, g := range got { // they share one buffer: an append must not reach the next
		if cap(g.Recent) != len(g.Recent) {
			t.Errorf("%s: Recent has room for %d more", g.Name, cap(g.Recent)-len(g.Recent))
		}
	}

	// Ten minutes at two a second: the average forgets where it started.
	for range 600 {
		a.Finished(Done, 0)
		a.Finished(Failed, 0)
		c.Add(time.Second)
		m.Tick()
	}
	want := 2 + (r-2)*math.Exp(-10)
	if g := m.Apps()[1]; math.Abs(g.Throughput-want) > 1e-12 {
		t.Errorf("after 600 s at 2/s: Throughput = %.17g, want %.17g", g.Throughput, want)
	}

	// A gone app keeps its numbers while it lingers; nothing finishing
	// decays the average.
	a.Gone()
	c.Add(time.Minute)
	want *= math.Exp(-1)
	if g := m.Apps()[1]; math.Abs(g.Throughput-want) > 1e-12 || !slices.Equal(g.Recent, recentEnding()) {
		t.Errorf("a minute after Gone: Throughput = %.17g, want %.17g; Recent ends %v", g.Throughput, want, tailOf(g.Recent))
	}
}

// Rates count every event of the window once, the open second's too, and
// the window never reaches back before the start.
func TestRates(t *testing.T) {
	m, clk := newMaster(t)
	m.Submitted("k", 10)
	m.Dispatched("k", 4)
	m.Finished("k", Done, time.Millisecond)
	m.Finished("k", Failed, time.Millisecond)
	clk.Add(500 * time.Millisecond)
	r := m.Rates(time.Minute)
	if r.Submitted != 10 || r.Dispatched != 4 || r.Finished != 2 || r.Failed != 1 || r.Window != 500*time.Millisecond {
		t.Fatalf("in the first second: %+v", r)
	}
	if got := r.PerSecond(r.Submitted); got != 20 {
		t.Fatalf("%v submitted per second", got)
	}
	clk.Add(30 * time.Second)
	m.Finished("k", Canceled, 0)
	if r := m.Rates(time.Minute); r.Finished != 3 || r.Window != 30500*time.Millisecond {
		t.Fatalf("after 30 s: %+v", r)
	}
	// Two minutes on, the first events have left the window. (The
	// master's duty ticks every few milliseconds: an event is dated by the
	// second open when it was recorded.)
	clk.Add(2 * time.Minute)
	m.Tick()
	m.Submitted("k", 1)
	r = m.Rates(time.Minute)
	if r.Submitted != 1 || r.Finished != 0 || r.Window < 59*time.Second || r.Window > time.Minute {
		t.Fatalf("two minutes on: %+v", r)
	}
}
