package e2e

import (
	"net/http"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/anthill-project/anthill/appnode"
)

// A master process's /metrics, parsed with the Prometheus text parser,
// counts exactly the work that went through it.
func TestMetricsCountTheWork(t *testing.T) {
	addr := freePort(t)
	mp := start(t, "master", "--listen", addr, "--data", t.TempDir())
	mp.line(t, "listening on")
	url := "ws://" + addr
	startSlave(t, url, "metered", "--concurrency", "2")
	c := newCollector()
	app := connect(t, url, "metrics-app", c)
	tasks := echoTasks(300)
	fails := []*appnode.Task{{Kind: "fail", Payload: []byte("no"), MaxAttempts: 2}, {Kind: "fail", Payload: []byte("no"), MaxAttempts: 2}}
	push(t, app, append(tasks, fails...)...)
	checkEchoedAmong(t, c, tasks, len(tasks)+len(fails))

	want := map[string]float64{
		`anthill_tasks_submitted_total{kind="echo"}`:                300,
		`anthill_tasks_submitted_total{kind="fail"}`:                2,
		`anthill_tasks_finished_total{kind="echo",state="done"}`:    300,
		`anthill_tasks_finished_total{kind="fail",state="failed"}`:  2,
		`anthill_tasks_retried_total{kind="fail"}`:                  2,
		`anthill_tasks_dispatched_total{kind="fail"}`:               4,
		`anthill_slave_tasks_total{slave="metered",state="done"}`:   300,
		`anthill_slave_tasks_total{slave="metered",state="failed"}`: 4,
		`anthill_app_tasks_pushed_total{app="metrics-app"}`:         302,
		`anthill_slaves_connected`:                                  1, // gauges are sampled once a second
	}
	var got map[string]float64
	deadline := time.Now().Add(10 * time.Second)
	for {
		got = scrape(t, "http://"+addr+"/metrics")
		missing := 0
		for k, v := range want {
			if got[k] != v {
				missing++
			}
		}
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			for k, v := range want {
				if got[k] != v {
					t.Errorf("%s = %v, want %v", k, got[k], v)
				}
			}
			t.FailNow()
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// checkEchoedAmong waits for all n notifications and checks the echo ones.
func checkEchoedAmong(t *testing.T, c *collector, echoes []*appnode.Task, n int) {
	t.Helper()
	waitFor(t, 60*time.Second, "all notifications", func() bool { return c.len() == n })
	for _, task := range echoes {
		if o, _ := c.get(task.ID); o.err != nil || string(o.result) != string(task.Payload) {
			t.Fatalf("task %d: %q %v", task.ID, o.result, o.err)
		}
	}
}

// scrape parses /metrics into "name{label="v",...}" -> value, labels in the
// order the exposition gives them; histograms are left out.
func scrape(t *testing.T, url string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	out := map[string]float64{}
	for name, mf := range mfs {
		for _, m := range mf.Metric {
			key := name
			if len(m.Label) > 0 {
				key += "{"
				for i, l := range m.Label {
					if i > 0 {
						key += ","
					}
					key += l.GetName() + `="` + l.GetValue() + `"`
				}
				key += "}"
			}
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				out[key] = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				out[key] = m.GetGauge().GetValue()
			}
		}
	}
	return out
}
