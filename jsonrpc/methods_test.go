package jsonrpc

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/anthill-project/anthill/protocol"
	"github.com/anthill-project/anthill/stats"
)

func TestSubmitWaitGet(t *testing.T) {
	e := start(t, envOpts{slave: true})
	id := e.submit("scripts", "echo", "hello", "priority", 5, "timeout_ms", 5000, "max_attempts", 2, "key", "k1")
	tasks := e.waitAll(id)
	if got := tasks[0]; got.ID != id || got.State != "done" || string(got.Result) != "hello" || got.Payload != nil {
		t.Fatalf("Wait gave %+v", got)
	}
	task := e.get(id)
	if task.ID != id || task.App != "scripts" || task.Kind != "echo" || task.State != "done" ||
		task.Attempts != 1 || task.MaxAttempts != 2 || task.Priority != 5 || task.TimeoutMS != 5000 ||
		task.Key != "k1" || task.Slave != "s1" || string(task.Payload) != "hello" ||
		string(task.Result) != "hello" || task.Error != "" {
		t.Fatalf("Get gave %+v", task)
	}
	if task.CreatedAt == nil || task.StartedAt == nil || task.FinishedAt == nil ||
		task.StartedAt.Before(*task.CreatedAt) || task.FinishedAt.Before(*task.StartedAt) {
		t.Fatalf("times %v %v %v", task.CreatedAt, task.StartedAt, task.FinishedAt)
	}

	// On the wire: base64 payload and result, RFC 3339 times, null for
	// what was never reached.
	_, r := e.post(fmt.Sprintf(`{"jsonrpc":"2.0","id":"x","method":"Tasks.Get","params":{"id":%d}}`, id))
	var wire map[string]any
	if err := json.Unmarshal(r.Result, &wire); err != nil {
		t.Fatal(err)
	}
	if wire["payload"] != base64.StdEncoding.EncodeToString([]byte("hello")) || wire["result"] != "aGVsbG8=" || string(r.ID) != `"x"` {
		t.Fatalf("wire task %s", r.Result)
	}
	for _, k := range []string{"id", "app", "kind", "state", "attempts", "priority", "created_at", "started_at", "finished_at", "slave", "result", "error", "max_attempts", "timeout_ms", "key", "history"} {
		if _, ok := wire[k]; !ok {
			t.Errorf("task lacks %q: %s", k, r.Result)
		}
	}
	// One attempt, with the slave's name, UTC times and its outcome.
	if h := task.History; len(h) != 1 || h[0].Slave != "s1" || h[0].Outcome != "done" || h[0].Error != "" ||
		h[0].EndedAt == nil || h[0].StartedAt.Location() != time.UTC || h[0].EndedAt.Before(h[0].StartedAt) ||
		!h[0].StartedAt.Equal(*task.StartedAt) || !h[0].EndedAt.Equal(*task.FinishedAt) {
		t.Fatalf("history %+v", h)
	}
	attempt := wire["history"].([]any)[0].(map[string]any)
	for _, k := range []string{"slave", "session", "started_at", "ended_at", "outcome", "error"} {
		if _, ok := attempt[k]; !ok || len(attempt) != 6 {
			t.Errorf("attempt lacks %q or has more: %v", k, attempt)
		}
	}

	// A task with the defaults: the master's timeout and attempts.
	sha := e.submit("scripts", "sha256", "abc")
	if got := e.waitAll(sha)[0]; string(got.Result) != "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" || got.MaxAttempts != 3 || got.TimeoutMS != 60000 {
		t.Fatalf("sha256 task %+v", got)
	}
	pending := e.submit("scripts", "nobody-runs-this", "")
	if got := e.get(pending); got.State != "pending" || got.StartedAt != nil || got.FinishedAt != nil || got.Result != nil {
		t.Fatalf("pending task %+v", got)
	}
	// No attempt yet: an empty history, not null.
	_, r = e.post(fmt.Sprintf(`{"jsonrpc":"2.0","id":1,"method":"Tasks.Get","params":{"id":%d}}`, pending))
	if !strings.Contains(string(r.Result), `"history":[]`) {
		t.Fatalf("pending task on the wire: %s", r.Result)
	}
}

func TestSubmitBatchAndList(t *testing.T) {
	e := start(t, envOpts{slave: true})
	var batch SubmitBatchResult
	specs := make([]obj, 7)
	for i := range specs {
		specs[i] = obj{"kind": "echo", "payload": []byte(fmt.Sprint(i))}
	}
	specs[6] = obj{"kind": "fail", "payload": []byte("boom"), "max_attempts": 1}
	e.call("Tasks.SubmitBatch", obj{"app": "batch", "tasks": specs}, &batch)
	if len(batch.IDs) != len(specs) {
		t.Fatalf("ids %v", batch.IDs)
	}
	for i := 1; i < len(batch.IDs); i++ {
		if batch.IDs[i] != batch.IDs[0]+uint64(i) {
			t.Fatalf("ids not consecutive: %v", batch.IDs)
		}
	}
	// Wait returns the tasks in the order asked, duplicates folded.
	ask := append(slices.Clone(batch.IDs), batch.IDs[0])
	slices.Reverse(ask)
	var w WaitResult
	e.call("Tasks.Wait", obj{"ids": ask, "timeout_ms": 60000}, &w)
	if !w.Done || len(w.Tasks) != len(specs) {
		t.Fatalf("wait: done=%v, %d tasks", w.Done, len(w.Tasks))
	}
	for i, task := range w.Tasks {
		if task.ID != ask[i] {
			t.Fatalf("wait order: task %d is %d, want %d", i, task.ID, ask[i])
		}
	}
	if f := e.get(batch.IDs[6]); f.State != "failed" || f.Error != "boom" || f.Attempts != 1 ||
		len(f.History) != 1 || f.History[0].Outcome != "failed" || f.History[0].Error != "boom" || f.History[0].EndedAt == nil {
		t.Fatalf("fail task %+v", f)
	}
	e.submit("other-app", "echo", "x")

	// Paging with limit 2: every task once, in id order.
	all := e.list(obj{"app": "batch", "limit": 2})
	if len(all) != len(specs) {
		t.Fatalf("listed %d tasks of app batch, want %d", len(all), len(specs))
	}
	for i, task := range all {
		if task.ID != batch.IDs[i] || task.App != "batch" || task.Payload != nil {
			t.Fatalf("list[%d] = %+v", i, task)
		}
	}
	if i := all[3]; string(i.Result) != "3" {
		t.Fatalf("listed result %q", i.Result)
	}
	// Newest first, the same tasks backwards.
	desc := e.list(obj{"app": "batch", "limit": 2, "order": "desc"})
	if len(desc) != len(all) {
		t.Fatalf("listed %d tasks newest first, want %d", len(desc), len(all))
	}
	for i, task := range desc {
		if task.ID != all[len(all)-1-i].ID {
			t.Fatalf("newest first [%d] = %d, want %d", i, task.ID, all[len(all)-1-i].ID)
		}
	}
	if done := e.list(obj{"app": "batch", "state": "done"}); len(done) != 6 {
		t.Fatalf("%d done tasks, want 6", len(done))
	}
	if failed := e.list(obj{"state": "failed", "kind": "fail"}); len(failed) != 1 || failed[0].ID != batch.IDs[6] {
		t.Fatalf("failed tasks %+v", failed)
	}
	if none := e.list(obj{"kind": "nothing"}); len(none) != 0 {
		t.Fatalf("kind nothing: %+v", none)
	}
	// The last page says so with a null cursor.
	_, r := e.post(`{"jsonrpc":"2.0","id":1,"method":"Tasks.List","params":{"app":"other-app"}}`)
	if !strings.Contains(string(r.Result), `"next_cursor":null`) {
		t.Fatalf("last page: %s", r.Result)
	}
}

func TestWaitTimesOut(t *testing.T) {
	e := start(t, envOpts{slave: true})
	done := e.submit("w", "echo", "x")
	e.waitAll(done)
	stuck := e.submit("w", "nobody-runs-this", "")
	var w WaitResult
	e.call("Tasks.Wait", obj{"ids": []uint64{stuck, done}, "timeout_ms": 20}, &w)
	if w.Done || len(w.Tasks) != 1 || w.Tasks[0].ID != done {
		t.Fatalf("wait with one stuck task: %+v", w)
	}
	// timeout_ms 0 answers at once.
	e.call("Tasks.Wait", obj{"ids": []uint64{stuck}, "timeout_ms": 0}, &w)
	if w.Done || len(w.Tasks) != 0 {
		t.Fatalf("wait 0: %+v", w)
	}
}

func TestCancelAndRetry(t *testing.T) {
	e := start(t, envOpts{slave: true})
	id := e.submit("c", "nobody-runs-this", "")
	var ok OKResult
	e.call("Tasks.Cancel", obj{"id": id}, &ok)
	if !ok.OK {
		t.Fatal("cancel: ok false")
	}
	if got := e.waitAll(id)[0]; got.State != "canceled" || got.Error == "" {
		t.Fatalf("canceled task %+v", got)
	}
	e.wantError("Tasks.Cancel", obj{"id": id}, CodeConflict, fmt.Sprintf("task %d is already canceled", id))

	// A failed task runs again, from its first attempt.
	f := e.submit("c", "fail", "broken", "max_attempts", 1)
	if got := e.waitAll(f)[0]; got.State != "failed" || got.Error != "broken" {
		t.Fatalf("fail task %+v", got)
	}
	e.call("Tasks.Retry", obj{"id": f}, &ok)
	if got := e.waitAll(f)[0]; got.State != "failed" || got.Error != "broken" || got.Attempts != 1 {
		t.Fatalf("fail task after retry %+v", got)
	}
	var s Summary
	e.call("Stats.Summary", nil, &s)
	if s.Tasks.Failed != 2 {
		t.Fatalf("the retried task failed %d times in all, want 2", s.Tasks.Failed)
	}
	done := e.submit("c", "echo", "")
	e.waitAll(done)
	e.wantError("Tasks.Retry", obj{"id": done}, CodeConflict, "is done")

	// Cancel a task the slave is (or is about to be) running.
	long := e.submit("c", "sleep", "600000")
	e.call("Tasks.Cancel", obj{"id": long}, &ok)
	if got := e.waitAll(long)[0]; got.State != "canceled" {
		t.Fatalf("canceled sleep %+v", got)
	}
}

func TestSlaves(t *testing.T) {
	e := start(t, envOpts{slave: true})
	e.waitAll(e.submit("s", "echo", "")) // the slave is connected
	var list SlaveList
	e.call("Slaves.List", obj{}, &list)
	if len(list.Slaves) != 1 {
		t.Fatalf("slaves %+v", list)
	}
	s := list.Slaves[0]
	if s.Name != "s1" || s.ID == "" || s.Concurrency != 4 || !slices.Contains(s.Kinds, "sha256") || s.Done != 1 || s.ConnectedAt.IsZero() {
		t.Fatalf("slave %+v", s)
	}
	var one Slave
	e.call("Slaves.Get", obj{"id": s.ID}, &one)
	if one.ID != s.ID || one.Name != "s1" {
		t.Fatalf("Slaves.Get %+v", one)
	}
	e.wantError("Slaves.Get", obj{"id": "nosuch"}, CodeNotFound, `slave session "nosuch" not found`)
	e.wantError("Slaves.Drain", obj{"id": "nosuch"}, CodeNotFound, `slave session "nosuch" not found`)

	var ok OKResult
	e.call("Slaves.Drain", obj{"id": s.ID}, &ok)
	if !ok.OK {
		t.Fatal("drain: ok false")
	}
	e.call("Slaves.Get", obj{"id": s.ID}, &one)
	if !one.Draining {
		t.Fatal("Slaves.Get does not show the slave draining")
	}
	// The drained slave gets no more work.
	id := e.submit("s", "echo", "")
	var w WaitResult
	e.call("Tasks.Wait", obj{"ids": []uint64{id}, "timeout_ms": 50}, &w)
	if w.Done {
		t.Fatal("a drained slave ran a new task")
	}
}

func TestAppsAndStats(t *testing.T) {
	e := start(t, envOpts{slave: true})
	var b SubmitBatchResult
	e.call("Tasks.SubmitBatch", obj{"app": "stats-app", "tasks": []obj{
		{"kind": "echo"}, {"kind": "echo"}, {"kind": "echo"}, {"kind": "fail", "max_attempts": 1},
	}}, &b)
	e.waitAll(b.IDs...)
	e.submit("stats-app", "nobody-runs-this", "")

	var apps AppList
	e.call("Apps.List", nil, &apps)
	if len(apps.Apps) != 1 {
		t.Fatalf("apps %+v", apps)
	}
	if a := apps.Apps[0]; a.Name != "stats-app" || a.Pushed != 5 || a.Done != 3 || a.Failed != 1 || a.Unfinished != 1 || a.Connected {
		t.Fatalf("app %+v", a)
	}

	var s Summary
	e.call("Stats.Summary", obj{}, &s)
	tc := s.Tasks
	if tc.Submitted != 5 || tc.Done != 3 || tc.Failed != 1 || tc.Pending != 1 || tc.Running != 0 || tc.Dispatched != 4 {
		t.Fatalf("task counts %+v", tc)
	}
	if s.Slaves.Connected != 1 || s.Slaves.Concurrency != 4 {
		t.Fatalf("slave counts %+v", s.Slaves)
	}
	// The first summary's window starts at the master's start.
	if th := s.Throughput; th.Finished != 4 || th.FinishedPerSec <= 0 || th.DispatchedPerSec <= 0 || th.WindowMS < 0 {
		t.Fatalf("throughput %+v", th)
	}
	if s.DispatchLatencyEstimateMS == nil || *s.DispatchLatencyEstimateMS <= 0 {
		t.Fatalf("dispatch latency estimate %v with one pending task", s.DispatchLatencyEstimateMS)
	}
	if !slices.ContainsFunc(s.Kinds, func(k KindCount) bool { return k.Kind == "nobody-runs-this" && k.Pending == 1 && k.Slaves == 0 }) {
		t.Fatalf("kinds %+v", s.Kinds)
	}
}

func TestMasterInfo(t *testing.T) {
	e := start(t, envOpts{master: masterOpts(1234)})
	var in MasterInfo
	e.call("Master.Info", obj{}, &in)
	if in.Version != "test" || in.Protocol != protocol.Version || in.Strategy != "fifo" || in.Dispatch != "send" ||
		in.DataDir != e.dir || in.MaxPayload != 1234 || in.StartedAt.IsZero() || in.UptimeMS < 0 {
		t.Fatalf("info %+v", in)
	}
}

// Wait returned the task canceled, so it is final and durable: Retry and
// List must see it so at once.
func TestRetryRightAfterCancel(t *testing.T) {
	e := start(t, envOpts{})
	id := e.submit("c", "nobody-runs-this", "")
	var ok OKResult
	e.call("Tasks.Cancel", obj{"id": id}, &ok)
	if got := e.waitAll(id)[0]; got.State != "canceled" {
		t.Fatalf("canceled task %+v", got)
	}
	if got := e.list(obj{"app": "c"}); len(got) != 1 || got[0].State != "canceled" {
		t.Errorf("Tasks.List right after Wait shows %+v, want the task canceled", got)
	}
	e.call("Tasks.Retry", obj{"id": id}, &ok)
	if got := e.get(id); got.State != "pending" || got.Attempts != 0 || got.Error != "" || got.FinishedAt != nil {
		t.Fatalf("retried task %+v", got)
	}
	e.wantError("Tasks.Retry", obj{"id": id}, CodeConflict, fmt.Sprintf("task %d is pending", id), "failed or canceled")
}

// Stats.Series returns the per-second numbers the dashboard charts: the
// tasks counted in its seconds add up to the tasks done.
func TestStatsSeries(t *testing.T) {
	e := start(t, envOpts{slave: true})
	ids := []uint64{e.submit("series", "echo", ""), e.submit("series", "echo", ""), e.submit("series", "fail", "x", "max_attempts", 1)}
	e.waitAll(ids...)
	var res SeriesResult
	deadline := time.Now().Add(10 * time.Second)
	for {
		// The second of the results must close before it is counted.
		e.call("Stats.Series", obj{"names": []string{"done", "failed"}}, &res)
		sum := func(name string) (n float64) {
			for _, p := range res.Series[name] {
				n += p.V
			}
			return n
		}
		if len(res.Series) == 2 && sum("done") == 2 && sum("failed") == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("series never added up to 2 done, 1 failed: %+v", res.Series)
		}
		time.Sleep(50 * time.Millisecond)
	}
	pts := res.Series["done"]
	for i := 1; i < len(pts); i++ {
		if pts[i].T != pts[i-1].T+1 {
			t.Fatalf("seconds not consecutive at %d: %d after %d", i, pts[i].T, pts[i-1].T)
		}
	}
	// since cuts: only seconds after it.
	last := pts[len(pts)-1].T
	e.call("Stats.Series", obj{"names": []string{"done"}, "since": last}, &res)
	for _, p := range res.Series["done"] {
		if p.T <= last {
			t.Fatalf("point %d returned for since %d", p.T, last)
		}
	}
	// Without names, every series.
	e.call("Stats.Series", nil, &res)
	if len(res.Series) != len(stats.SeriesNames()) {
		t.Fatalf("%d series, want %d", len(res.Series), len(stats.SeriesNames()))
	}
	e.wantError("Stats.Series", obj{"names": []string{"bogus"}}, CodeInvalidParams, "names", "bogus")
	e.wantError("Stats.Series", obj{"since": -1}, CodeInvalidParams, "since")
}
