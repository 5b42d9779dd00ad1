package stats

import (
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
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

func newMaster(t testing.TB) (*Master, *prometheus.Registry, *clock) {
	t.Helper()
	c := &clock{t: t0}
	reg := prometheus.NewRegistry()
	m, err := NewMaster(reg, c.Now)
	if err != nil {
		t.Fatal(err)
	}
	return m, reg, c
}

// scrape fetches /metrics through Handler and parses the text format.
func scrape(t *testing.T, reg *prometheus.Registry) map[string]*dto.MetricFamily {
	t.Helper()
	srv := httptest.NewServer(Handler(reg))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return mfs
}

// value returns the value of the metric of family name with exactly labels
// (name=value pairs), the sample count for a histogram, and whether it was
// found.
func value(mfs map[string]*dto.MetricFamily, name string, labels ...string) (float64, bool) {
	mf := mfs[name]
	if mf == nil {
		return 0, false
	}
	want := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
next:
	for _, m := range mf.GetMetric() {
		if len(m.GetLabel()) != len(want) {
			continue
		}
		for _, l := range m.GetLabel() {
			if v, ok := want[l.GetName()]; !ok || v != l.GetValue() {
				continue next
			}
		}
		switch mf.GetType() {
		case dto.MetricType_COUNTER:
			return m.GetCounter().GetValue(), true
		case dto.MetricType_GAUGE:
			return m.GetGauge().GetValue(), true
		case dto.MetricType_HISTOGRAM:
			return float64(m.GetHistogram().GetSampleCount()), true
		}
	}
	return 0, false
}

func histSum(mfs map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	for _, m := range mfs[name].GetMetric() {
		ok := true
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, l := range m.GetLabel() {
				found = found || (l.GetName() == labels[i] && l.GetValue() == labels[i+1])
			}
			ok = ok && found
		}
		if ok {
			return m.GetHistogram().GetSampleSum()
		}
	}
	return math.NaN()
}

// recordAll records at least one of everything.
func recordAll(m *Master) (*Slave, *App) {
	m.Submitted("echo", 5)
	m.Submitted("sleep", 2)
	m.Dispatched("echo", 3)
	m.Finished("echo", Done, 10*time.Millisecond)
	m.Finished("echo", Done, 30*time.Millisecond)
	m.Finished("echo", Failed, 2*time.Second)
	m.Finished("sleep", Canceled, time.Hour)
	m.Retried("echo")
	m.Requeued("echo", 2)
	m.LateResult()
	m.Commit(4, 2*time.Millisecond)
	m.Commit(1, time.Millisecond)
	m.SetQueue("sleep", 7)
	m.SetTasks(9, 3, 1)
	m.SetConnections(1, 1)
	m.SetStoreSize(1 << 20)
	s := m.SlaveSeen("box-1", 4)
	s.Result(true, 250*time.Millisecond)
	s.Result(false, 750*time.Millisecond)
	a := m.App("render")
	a.Pushed(5)
	a.InFlight(3)
	a.Finished(Done, 10*time.Millisecond)
	a.Finished(Failed, 30*time.Millisecond)
	a.Finished(Canceled, time.Hour)
	return s, a
}

func TestScrapeMatchesRecorded(t *testing.T) {
	m, reg, _ := newMaster(t)
	recordAll(m)
	mfs := scrape(t, reg)

	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"anthill_tasks_submitted_total", []string{"kind", "echo"}, 5},
		{"anthill_tasks_submitted_total", []string{"kind", "sleep"}, 2},
		{"anthill_tasks_dispatched_total", []string{"kind", "echo"}, 3},
		{"anthill_tasks_finished_total", []string{"kind", "echo", "state", "done"}, 2},
		{"anthill_tasks_finished_total", []string{"kind", "echo", "state", "failed"}, 1},
		{"anthill_tasks_finished_total", []string{"kind", "echo", "state", "canceled"}, 0},
		{"anthill_tasks_finished_total", []string{"kind", "sleep", "state", "canceled"}, 1},
		{"anthill_task_latency_seconds", []string{"kind", "echo"}, 3},  // observations
		{"anthill_task_latency_seconds", []string{"kind", "sleep"}, 0}, // canceled: not observed
		{"anthill_tasks_retried_total", []string{"kind", "echo"}, 1},
		{"anthill_tasks_requeued_total", []string{"kind", "echo"}, 2},
		{"anthill_late_results_total", nil, 1},
		{"anthill_store_commit_ops", nil, 2},
		{"anthill_store_commit_duration_seconds", nil, 2},
		{"anthill_queued_tasks", []string{"kind", "sleep"}, 7},
		{"anthill_tasks", []string{"state", "pending"}, 9},
		{"anthill_tasks", []string{"state", "running"}, 3},
		{"anthill_tasks", []string{"state", "unacked"}, 1},
		{"anthill_slaves_connected", nil, 1},
		{"anthill_apps_connected", nil, 1},
		{"anthill_store_size_bytes", nil, 1 << 20},
		{"anthill_slave_tasks_total", []string{"slave", "box-1", "state", "done"}, 1},
		{"anthill_slave_tasks_total", []string{"slave", "box-1", "state", "failed"}, 1},
		{"anthill_slave_busy_seconds_total", []string{"slave", "box-1"}, 1},
		{"anthill_slave_slots", []string{"slave", "box-1"}, 4},
		{"anthill_slave_connected", []string{"slave", "box-1"}, 1},
		{"anthill_slave_reconnects_total", []string{"slave", "box-1"}, 0},
		{"anthill_app_tasks_pushed_total", []string{"app", "render"}, 5},
		{"anthill_app_tasks_in_flight", []string{"app", "render"}, 3},
		{"anthill_app_tasks_finished_total", []string{"app", "render", "state", "done"}, 1},
		{"anthill_app_tasks_finished_total", []string{"app", "render", "state", "failed"}, 1},
		{"anthill_app_tasks_finished_total", []string{"app", "render", "state", "canceled"}, 1},
		{"anthill_app_task_latency_seconds", []string{"app", "render"}, 2},
	} {
		got, ok := value(mfs, c.name, c.labels...)
		if !ok {
			t.Errorf("%s%v: missing", c.name, c.labels)
			continue
		}
		if got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if got, want := histSum(mfs, "anthill_task_latency_seconds", "kind", "echo"), 2.04; math.Abs(got-want) > 1e-9 {
		t.Errorf("latency sum = %v, want %v", got, want)
	}
	if got, want := histSum(mfs, "anthill_store_commit_ops"), 5.0; got != want {
		t.Errorf("commit ops sum = %v, want %v", got, want)
	}
}

// TestMetricNames walks every family and checks the Prometheus naming
// conventions: our prefix, counters in _total and nothing else, units in
// the name, bounded label names, a help text.
func TestMetricNames(t *testing.T) {
	m, reg, _ := newMaster(t)
	recordAll(m)
	mfs := scrape(t, reg)
	if len(mfs) < 20 {
		t.Fatalf("only %d families", len(mfs))
	}
	labels := map[string]bool{"kind": true, "state": true, "slave": true, "app": true}
	for name, mf := range mfs {
		if !strings.HasPrefix(name, "anthill_") {
			t.Errorf("%s: not prefixed anthill_", name)
		}
		if mf.GetHelp() == "" {
			t.Errorf("%s: no help", name)
		}
		isCounter := mf.GetType() == dto.MetricType_COUNTER
		if isCounter != strings.HasSuffix(name, "_total") {
			t.Errorf("%s: type %s; counters and only counters end in _total", name, mf.GetType())
		}
		base := strings.TrimSuffix(name, "_total")
		for _, w := range []string{"latency", "duration", "busy", "time"} {
			if strings.Contains(base, w) && !strings.HasSuffix(base, "_seconds") {
				t.Errorf("%s: a duration must be in _seconds", name)
			}
		}
		if strings.Contains(base, "size") && !strings.HasSuffix(base, "_bytes") {
			t.Errorf("%s: a size must be in _bytes", name)
		}
		for _, bad := range []string{"_ms", "_milliseconds", "_microseconds", "_nanoseconds", "_minutes", "_kb", "_mb", "_kilobytes", "_megabytes"} {
			if strings.Contains(base, bad) {
				t.Errorf("%s: use base units", name)
			}
		}
		for _, metric := range mf.GetMetric() {
			for _, l := range metric.GetLabel() {
				if !labels[l.GetName()] {
					t.Errorf("%s: label %q not one of the bounded labels", name, l.GetName())
				}
			}
		}
	}
}

func TestTwoRegistries(t *testing.T) {
	m1, reg1, _ := newMaster(t)
	m2, reg2, _ := newMaster(t)
	m1.Submitted("echo", 1)
	m2.Submitted("echo", 10)
	m2.SlaveSeen("only-on-2", 1)
	mf1, mf2 := scrape(t, reg1), scrape(t, reg2)
	if v, _ := value(mf1, "anthill_tasks_submitted_total", "kind", "echo"); v != 1 {
		t.Errorf("master 1 submitted = %v, want 1", v)
	}
	if v, _ := value(mf2, "anthill_tasks_submitted_total", "kind", "echo"); v != 10 {
		t.Errorf("master 2 submitted = %v, want 10", v)
	}
	if _, ok := value(mf1, "anthill_slave_slots", "slave", "only-on-2"); ok {
		t.Error("master 2's slave shows on master 1")
	}

	// One registry cannot hold two masters, and the failure leaves it clean.
	if _, err := NewMaster(reg1, nil); err == nil {
		t.Fatal("second master on one registry: no error")
	}
	if v, _ := value(scrape(t, reg1), "anthill_tasks_submitted_total", "kind", "echo"); v != 1 {
		t.Errorf("after the failed registration, submitted = %v, want 1", v)
	}
	// A nil registry records without exporting.
	m, err := NewMaster(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	m.Submitted("echo", 1)
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
	m, _, c := newMaster(t)
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
	m, _, c := newMaster(t)
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
	m, _, c := newMaster(t)
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
	m, _, c := newMaster(t)
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

func TestSlaveLingersThenGoes(t *testing.T) {
	m, reg, c := newMaster(t)
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
	if v, ok := value(scrape(t, reg), "anthill_slave_connected", "slave", "box"); !ok || v != 0 {
		t.Errorf("lingering: connected = %v, %v; want 0, present", v, ok)
	}
	s2 := m.SlaveSeen("box", 3) // comes back: same series, one reconnect
	s2.Result(false, 0)
	mfs := scrape(t, reg)
	if v, _ := value(mfs, "anthill_slave_reconnects_total", "slave", "box"); v != 1 {
		t.Errorf("reconnects = %v, want 1", v)
	}
	if v, _ := value(mfs, "anthill_slave_tasks_total", "slave", "box", "state", "done"); v != 600 {
		t.Errorf("done after reconnect = %v, want 600", v)
	}
	if v, _ := value(mfs, "anthill_slave_slots", "slave", "box"); v != 3 {
		t.Errorf("slots = %v, want 3", v)
	}

	s2.Gone()
	c.Add(Linger)
	m.Tick()
	mfs = scrape(t, reg)
	for name, mf := range mfs {
		for _, metric := range mf.GetMetric() {
			for _, l := range metric.GetLabel() {
				if l.GetName() == "slave" {
					t.Errorf("%s still has slave %q after Linger", name, l.GetValue())
				}
			}
		}
	}
	if got := m.Slaves(); len(got) != 0 {
		t.Errorf("slaves after Linger = %+v", got)
	}
}

func TestAppLingersThenGoes(t *testing.T) {
	m, reg, c := newMaster(t)
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
	if _, ok := value(scrape(t, reg), "anthill_app_tasks_pushed_total", "app", "render"); !ok {
		t.Error("series gone before Linger")
	}
	c.Add(time.Second)
	m.Tick()
	if _, ok := value(scrape(t, reg), "anthill_app_tasks_pushed_total", "app", "render"); ok {
		t.Error("series still there after Linger")
	}
	if got := m.Apps(); len(got) != 0 {
		t.Errorf("apps after Linger = %+v", got)
	}
}

func TestKindsAreBounded(t *testing.T) {
	m, reg, _ := newMaster(t)
	for i := range MaxKinds + 5 {
		m.Submitted(fmt.Sprintf("k%d", i), 1)
	}
	m.Submitted("bad\xff", 1) // invalid UTF-8 must not panic
	mfs := scrape(t, reg)
	if n := len(mfs["anthill_tasks_submitted_total"].GetMetric()); n != MaxKinds+1 {
		t.Errorf("%d kind labels, want %d", n, MaxKinds+1)
	}
	if v, _ := value(mfs, "anthill_tasks_submitted_total", "kind", OtherKind); v != 6 {
		t.Errorf("%s = %v, want 6", OtherKind, v)
	}
}

// TestConcurrent records from many goroutines while ticking and reading;
// run with -race. Every count lands in exactly one second.
func TestConcurrent(t *testing.T) {
	m, reg, c := newMaster(t)
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
	var total float64
	for _, metric := range scrape(t, reg)["anthill_tasks_finished_total"].GetMetric() {
		total += metric.GetCounter().GetValue()
	}
	if total != workers*n {
		t.Errorf("finished_total = %v, want %d", total, workers*n)
	}
}

// TestHotPathDoesNotAllocate keeps the benchmarks' promise in every test run.
func TestHotPathDoesNotAllocate(t *testing.T) {
	m, _, _ := newMaster(t)
	s, a := recordAll(m)
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
	m, _, _ := newMaster(t)
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
