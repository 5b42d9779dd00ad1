package stats

import (
	"reflect"
	"slices"
	"testing"
	"time"
)

// A value on a bound counts in that bound's bucket, as Prometheus's le
// does; one above every bound only in Count.
func TestHistogramBuckets(t *testing.T) {
	h := newHistogram([]float64{1, 2, 4})
	for _, v := range []float64{0, 1, 1.5, 2, 4, 5, 100} {
		h.observe(v)
	}
	got := h.read()
	want := Histogram{Bounds: []float64{1, 2, 4}, Cumulative: []uint64{2, 4, 5}, Count: 7, Sum: 113.5}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("read = %+v, want %+v", got, want)
	}
	got.Bounds[0] = 99
	if h.bounds[0] != 1 {
		t.Error("changing a read's Bounds changed the histogram's")
	}
}

func TestExport(t *testing.T) {
	m, _ := newMaster(t)
	m.Submitted("echo", 3)
	m.Dispatched("echo", 2)
	m.Retried("echo")
	m.Requeued("echo", 1)
	m.Finished("echo", Done, 2*time.Millisecond)
	m.Finished("echo", Canceled, time.Hour) // not a latency
	m.SetQueue("sleep", 7)
	m.LateResult()
	m.Commit(3, time.Millisecond)
	m.SetTasks(1, 2, 3)
	m.SetConnections(4, 5)
	m.SetStoreSize(6)
	s := m.SlaveSeen("box", 2)
	s.Result(true, time.Second)
	s.Result(false, time.Second)
	a := m.App("render")
	a.Pushed(2)
	a.InFlight(1)
	a.Finished(Failed, 3*time.Millisecond)

	x := m.Export()
	if x.Late != 1 || x.Pending != 1 || x.Running != 2 || x.Unacked != 3 ||
		x.SlavesConnected != 4 || x.AppsConnected != 5 || x.StoreBytes != 6 {
		t.Errorf("label-less numbers: %+v", x)
	}
	if x.CommitOps.Count != 1 || x.CommitOps.Sum != 3 || x.CommitSeconds.Count != 1 {
		t.Errorf("commit histograms: %+v %+v", x.CommitOps, x.CommitSeconds)
	}
	if len(x.Kinds) != 2 || x.Kinds[0].Kind != "echo" || x.Kinds[1].Kind != "sleep" {
		t.Fatalf("kinds = %+v, want echo and sleep, sorted", x.Kinds)
	}
	echo := x.Kinds[0]
	echo.Latency = Histogram{}
	if want := (KindRow{Kind: "echo", Submitted: 3, Dispatched: 2, Retried: 1, Requeued: 1, Finished: [numStates]uint64{1, 0, 1}}); !reflect.DeepEqual(echo, want) {
		t.Errorf("echo = %+v, want %+v", echo, want)
	}
	if lat := x.Kinds[0].Latency; lat.Count != 1 || lat.Cumulative[0] != 0 || lat.Cumulative[1] != 1 || !slices.Equal(lat.Bounds, latencyBuckets) {
		t.Errorf("echo latency = %+v, want one value in the le=.0025 bucket", lat)
	}
	if x.Kinds[1].Queued != 7 {
		t.Errorf("sleep queued = %d, want 7", x.Kinds[1].Queued)
	}
	if want := []SlaveRow{{Slave: "box", Done: 1, Failed: 1, Busy: 2 * time.Second, Slots: 2, Sessions: 1}}; !reflect.DeepEqual(x.Slaves, want) {
		t.Errorf("slaves = %+v, want %+v", x.Slaves, want)
	}
	if len(x.Apps) != 1 {
		t.Fatalf("apps = %+v", x.Apps)
	}
	if r := x.Apps[0]; r.App != "render" || r.Pushed != 2 || r.InFlight != 1 || r.Finished != [numStates]uint64{0, 1, 0} || r.Latency.Count != 1 {
		t.Errorf("render = %+v", r)
	}
}

// Names that become one label share its row: an exporter must never see a
// label value twice.
func TestExportSharesLabels(t *testing.T) {
	m, _ := newMaster(t)
	m.Submitted(OtherKind, 1) // a kind that happens to be named like the overflow
	m.Submitted("bad\xff", 1)
	m.Submitted("bad\xfe", 2)
	for i := range MaxKinds {
		m.Submitted(string(rune('A'+i)), 1)
	}
	m.SlaveSeen("box\xff", 1).Result(true, 0)
	m.SlaveSeen("box\xfe", 2).Result(false, 0)
	m.App("app\xff").Pushed(1)
	m.App("app\xfe").Pushed(2)

	x := m.Export()
	kinds := map[string]uint64{}
	for _, r := range x.Kinds {
		if _, dup := kinds[r.Kind]; dup {
			t.Errorf("kind %q: two rows", r.Kind)
		}
		kinds[r.Kind] = r.Submitted
	}
	if kinds["bad\uFFFD"] != 3 {
		t.Errorf("bad\\uFFFD = %d, want 3", kinds["bad\uFFFD"])
	}
	if kinds[OtherKind] != 1+3 { // the kind named so, and the three past MaxKinds
		t.Errorf("%s = %d, want 4", OtherKind, kinds[OtherKind])
	}
	if want := []SlaveRow{{Slave: "box\uFFFD", Done: 1, Failed: 1, Slots: 3, Sessions: 2}}; !reflect.DeepEqual(x.Slaves, want) {
		t.Errorf("slaves = %+v, want %+v", x.Slaves, want)
	}
	if len(x.Apps) != 1 || x.Apps[0].App != "app\uFFFD" || x.Apps[0].Pushed != 3 {
		t.Errorf("apps = %+v, want one row app\\uFFFD with 3 pushed", x.Apps)
	}
	// The dashboard's summaries keep the names apart.
	if n := len(m.Slaves()); n != 2 {
		t.Errorf("%d slave summaries, want 2", n)
	}
}
