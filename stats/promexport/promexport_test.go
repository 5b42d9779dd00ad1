package promexport_test

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.uber.org/goleak"

	"github.com/anthill-project/anthill/stats"
	"github.com/anthill-project/anthill/stats/promexport"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// newMaster returns a recorder registered on a fresh registry, and a
// function that moves its clock.
func newMaster(t *testing.T) (*stats.Master, *prometheus.Registry, func(time.Duration)) {
	t.Helper()
	var now atomic.Int64
	now.Store(time.Unix(1_700_000_000, 0).UnixNano())
	m := stats.NewMaster(func() time.Time { return time.Unix(0, now.Load()) })
	reg := prometheus.NewRegistry()
	if err := promexport.Register(reg, m); err != nil {
		t.Fatal(err)
	}
	return m, reg, func(d time.Duration) { now.Add(int64(d)) }
}

// scrape fetches /metrics through Handler and parses the text format. The
// handler serves what it could gather even on an error (a label value seen
// twice, an inconsistent histogram), so scrape gathers once more to see it.
func scrape(t *testing.T, reg *prometheus.Registry) map[string]*dto.MetricFamily {
	t.Helper()
	srv := httptest.NewServer(promexport.Handler(reg))
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
	if _, err := reg.Gather(); err != nil {
		t.Fatalf("gather: %v", err)
	}
	return mfs
}

// value returns the value of the metric of family name with exactly labels
// (name=value pairs), the sample count for a histogram, and whether it was
// found.
func value(mfs map[string]*dto.MetricFamily, name string, labels ...string) (float64, bool) {
	m := metric(mfs, name, labels...)
	if m == nil {
		return 0, false
	}
	switch mfs[name].GetType() {
	case dto.MetricType_COUNTER:
		return m.GetCounter().GetValue(), true
	case dto.MetricType_GAUGE:
		return m.GetGauge().GetValue(), true
	case dto.MetricType_HISTOGRAM:
		return float64(m.GetHistogram().GetSampleCount()), true
	}
	return 0, false
}

// metric returns the metric of family name with exactly labels, or nil.
func metric(mfs map[string]*dto.MetricFamily, name string, labels ...string) *dto.Metric {
	want := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
next:
	for _, m := range mfs[name].GetMetric() {
		if len(m.GetLabel()) != len(want) {
			continue
		}
		for _, l := range m.GetLabel() {
			if v, ok := want[l.GetName()]; !ok || v != l.GetValue() {
				continue next
			}
		}
		return m
	}
	return nil
}

func histSum(mfs map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	if m := metric(mfs, name, labels...); m != nil {
		return m.GetHistogram().GetSampleSum()
	}
	return math.NaN()
}

// recordAll records at least one of everything.
func recordAll(m *stats.Master) {
	m.Submitted("echo", 5)
	m.Submitted("sleep", 2)
	m.Dispatched("echo", 3)
	m.Finished("echo", stats.Done, 10*time.Millisecond)
	m.Finished("echo", stats.Done, 30*time.Millisecond)
	m.Finished("echo", stats.Failed, 2*time.Second)
	m.Finished("sleep", stats.Canceled, time.Hour)
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
	s.Rejected()
	s.Rejected()
	a := m.App("render")
	a.Pushed(5)
	a.InFlight(3)
	a.Finished(stats.Done, 10*time.Millisecond)
	a.Finished(stats.Failed, 30*time.Millisecond)
	a.Finished(stats.Canceled, time.Hour)
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
		{"anthill_slave_rejected_results_total", []string{"slave", "box-1"}, 2},
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

// The buckets are the ones the metrics had when stats registered
// client_golang's own histograms: dashboards' bucket queries depend on them.
func TestBuckets(t *testing.T) {
	m, reg, _ := newMaster(t)
	recordAll(m)
	mfs := scrape(t, reg)
	latency := []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 1800}
	for _, c := range []struct {
		name   string
		labels []string
		want   []float64
	}{
		{"anthill_task_latency_seconds", []string{"kind", "echo"}, latency},
		{"anthill_app_task_latency_seconds", []string{"app", "render"}, latency},
		{"anthill_store_commit_duration_seconds", nil, prometheus.ExponentialBuckets(50e-6, 2, 16)},
		{"anthill_store_commit_ops", nil, prometheus.ExponentialBuckets(1, 2, 14)},
	} {
		var got []float64
		for _, b := range metric(mfs, c.name, c.labels...).GetHistogram().GetBucket() {
			got = append(got, b.GetUpperBound())
		}
		if want := append(c.want, math.Inf(1)); !slices.Equal(got, want) {
			t.Errorf("%s buckets:\n got %v\nwant %v", c.name, got, want)
		}
	}
	// le: the commit of 4 changes counts in the bucket of 4, not only of 8.
	for _, b := range metric(mfs, "anthill_store_commit_ops").GetHistogram().GetBucket() {
		if b.GetUpperBound() == 4 && b.GetCumulativeCount() != 2 {
			t.Errorf("le=4: %d, want 2", b.GetCumulativeCount())
		}
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

	// One registry cannot hold two masters, nor one master twice, and the
	// failure leaves it clean.
	if err := promexport.Register(reg1, m2); err == nil {
		t.Fatal("second master on one registry: no error")
	}
	var already prometheus.AlreadyRegisteredError
	if err := promexport.Register(reg1, m1); !errors.As(err, &already) {
		t.Fatalf("one master twice: %v, want AlreadyRegisteredError", err)
	}
	if v, _ := value(scrape(t, reg1), "anthill_tasks_submitted_total", "kind", "echo"); v != 1 {
		t.Errorf("after the failed registration, submitted = %v, want 1", v)
	}
}

// A slave's and an application's series stay while they linger and go
// after stats.Linger.
func TestLingeringSeriesGo(t *testing.T) {
	m, reg, advance := newMaster(t)
	s := m.SlaveSeen("box", 2)
	for range 600 {
		s.Result(true, time.Second)
	}
	a := m.App("render")
	a.Pushed(4)

	s.Gone()
	a.Gone()
	advance(stats.Linger / 2)
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
	if _, ok := value(mfs, "anthill_app_tasks_pushed_total", "app", "render"); !ok {
		t.Error("app series gone before Linger")
	}

	s2.Gone()
	advance(stats.Linger)
	for name, mf := range scrape(t, reg) {
		for _, metric := range mf.GetMetric() {
			for _, l := range metric.GetLabel() {
				if l.GetName() == "slave" || l.GetName() == "app" {
					t.Errorf("%s still has %s %q after Linger", name, l.GetName(), l.GetValue())
				}
			}
		}
	}
}

func TestKindsAreBounded(t *testing.T) {
	m, reg, _ := newMaster(t)
	for i := range stats.MaxKinds + 5 {
		m.Submitted(fmt.Sprintf("k%d", i), 1)
	}
	// Invalid UTF-8 must not panic, nor show one label twice.
	m.Submitted("bad\xff", 1)
	m.SlaveSeen("bad\xff", 1)
	m.SlaveSeen("bad\xfe", 1)
	mfs := scrape(t, reg)
	if n := len(mfs["anthill_tasks_submitted_total"].GetMetric()); n != stats.MaxKinds+1 {
		t.Errorf("%d kind labels, want %d", n, stats.MaxKinds+1)
	}
	if v, _ := value(mfs, "anthill_tasks_submitted_total", "kind", stats.OtherKind); v != 6 {
		t.Errorf("%s = %v, want 6", stats.OtherKind, v)
	}
	if v, _ := value(mfs, "anthill_slave_connected", "slave", "bad\uFFFD"); v != 2 {
		t.Errorf("two names of one label: connected = %v, want 2", v)
	}
}

// TestScrapeWhileRecording scrapes while every kind of recording goes on;
// run with -race. Each scrape is consistent (Gather checks the histograms)
// and the last one counts everything.
func TestScrapeWhileRecording(t *testing.T) {
	m, reg, advance := newMaster(t)
	const workers, n = 4, 1000
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			s := m.SlaveSeen("s"+strconv.Itoa(w%2), 1)
			a := m.App("app")
			for i := range n {
				kind := "k" + strconv.Itoa(i%3)
				m.Submitted(kind, 1)
				m.Finished(kind, stats.Done, time.Millisecond)
				m.Commit(2, time.Millisecond)
				s.Result(true, time.Millisecond)
				a.Finished(stats.Done, time.Millisecond)
			}
			s.Gone()
		})
	}
	for range 5 {
		advance(time.Second)
		scrape(t, reg)
	}
	wg.Wait()
	mfs := scrape(t, reg)
	var done, latency float64
	for _, k := range []string{"k0", "k1", "k2"} {
		v, _ := value(mfs, "anthill_tasks_finished_total", "kind", k, "state", "done")
		done += v
		v, _ = value(mfs, "anthill_task_latency_seconds", "kind", k)
		latency += v
	}
	if done != workers*n || latency != workers*n {
		t.Errorf("finished = %v, latency count = %v, want %d", done, latency, workers*n)
	}
	if v, _ := value(mfs, "anthill_app_task_latency_seconds", "app", "app"); v != workers*n {
		t.Errorf("app latency count = %v, want %d", v, workers*n)
	}
}
