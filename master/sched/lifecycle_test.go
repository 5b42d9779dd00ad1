package sched

import (
	"testing"
	"time"

	"github.com/anthill-project/anthill/protocol"
)

func TestSubmitIsDurableAcrossRestart(t *testing.T) {
	h := newHarness(t, Options{})
	a, out := h.app("a")
	ack := h.push(a, out, 7, protocol.NewTask{Kind: "k", Payload: []byte("1")}, protocol.NewTask{Kind: "k", Payload: []byte("2")})
	if ack.Seq != 7 || ack.Count != 2 {
		t.Fatalf("ack %+v", ack)
	}

	h.restart()
	if st := h.s.Stats(); st.Pending != 2 {
		t.Fatalf("after restart %d pending, want 2", st.Pending)
	}
	// The batch re-sent with the same seq is answered, not stored again.
	a, out = h.app("a")
	if again := h.push(a, out, 7, protocol.NewTask{Kind: "k"}, protocol.NewTask{Kind: "k"}); *again != *ack {
		t.Fatalf("re-sent batch got %+v, want %+v", again, ack)
	}
	if st := h.s.Stats(); st.Pending != 2 {
		t.Fatalf("re-sent batch stored again: %d pending", st.Pending)
	}
	// A slave now gets exactly those two, with their payloads.
	_, so := h.slave("s", 10, "k")
	d := readAs[*protocol.Dispatch](t, so)
	if len(d.Tasks) != 2 || d.Tasks[0].ID != ack.FirstID || string(d.Tasks[1].Payload) != "2" {
		t.Fatalf("dispatch %+v", d.Tasks)
	}
	// Ids after a restart never collide with ids handed out before it.
	if next := h.push(a, out, 8, protocol.NewTask{Kind: "k"}); next.FirstID <= ack.FirstID+1 {
		t.Fatalf("new id %d after restart does not follow %d", next.FirstID, ack.FirstID+1)
	}
}

// A batch re-sent before the first copy is durable waits for the same
// commit and gets the same ack.
func TestResentBatchBeforeItsCommit(t *testing.T) {
	h := newHarness(t, Options{})
	a, out := h.app("a")
	h.s.SubmitBatch(a, out, &protocol.Submit{Seq: 1, Tasks: tasksOf("k", 3)})
	h.s.SubmitBatch(a, out, &protocol.Submit{Seq: 1, Tasks: tasksOf("k", 3)})
	first, second := readAs[*protocol.SubmitAck](t, out), readAs[*protocol.SubmitAck](t, out)
	if *first != *second || h.s.Stats().Submitted != 3 {
		t.Fatalf("acks %+v and %+v, %d submitted", first, second, h.s.Stats().Submitted)
	}
}

func TestSubmitBatchRefusals(t *testing.T) {
	h := newHarness(t, Options{MaxPayload: 10, MaxTimeout: time.Minute})
	a, out := h.app("a")
	for _, tc := range []struct {
		tasks []protocol.NewTask
		index int32
		code  string
		msg   string
	}{
		{nil, -1, protocol.CodeInvalidTask, "a batch needs at least one task"},
		{[]protocol.NewTask{{Kind: "k"}, {}}, 1, protocol.CodeInvalidTask, "task 1: kind must not be empty"},
		{[]protocol.NewTask{{Kind: "k", Payload: make([]byte, 11)}}, 0, protocol.CodePayloadTooLarge, "task 0: payload is 11 bytes; the limit is 10"},
		{[]protocol.NewTask{{Kind: "k", Timeout: time.Hour}}, 0, protocol.CodeInvalidTask, "task 0: timeout of 1h0m0s exceeds the limit of 1m0s"},
		{[]protocol.NewTask{{Kind: "k", MaxAttempts: protocol.MaxAttempts + 1}}, 0, protocol.CodeInvalidTask, "task 0: max attempts exceeds 1000"},
	} {
		h.s.SubmitBatch(a, out, &protocol.Submit{Seq: 9, Tasks: tc.tasks})
		rej := readAs[*protocol.SubmitReject](t, out)
		if rej.Seq != 9 || rej.Index != tc.index || rej.Code != tc.code || rej.Message != tc.msg {
			t.Errorf("refusal %+v, want index %d, %s, %q", rej, tc.index, tc.code, tc.msg)
		}
	}
	if st := h.s.Stats(); st.Submitted != 0 {
		t.Fatalf("refused batches stored %d tasks", st.Submitted)
	}
}

func TestResultNotifyAckCycle(t *testing.T) {
	h := newHarness(t, Options{})
	sl, so := h.slave("s", 4, "k")
	a, ao := h.app("a")
	ack := h.push(a, ao, 1, protocol.NewTask{Kind: "k", Payload: []byte("p")})
	task := readAs[*protocol.Dispatch](t, so).Tasks[0]
	if task.ID != ack.FirstID || task.Attempt != 1 || task.Timeout != time.Minute || string(task.Payload) != "p" {
		t.Fatalf("dispatched %+v", task)
	}
	h.complete(sl, []protocol.Result{result(task.ID, 1, "out")})
	// A duplicate result is late and ignored.
	h.complete(sl, []protocol.Result{result(task.ID, 1, "dup")})
	n := readAs[*protocol.Notify](t, ao)
	if len(n.Tasks) != 1 || string(n.Tasks[0].Result) != "out" || n.Tasks[0].State != protocol.StateDone {
		t.Fatalf("notify %+v", n.Tasks)
	}
	h.s.Acknowledge(a, ao, []uint64{task.ID})
	done := readAs[*protocol.IDs](t, ao)
	if done.T != protocol.TypeNotifyDone || len(done.IDs) != 1 || done.IDs[0] != task.ID {
		t.Fatalf("notify_done %+v", done)
	}
	if st := h.s.Stats(); st.Done != 1 || st.LateResults != 1 || st.Unacked != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// Notifications wait for a disconnected application and reach its next
// connection; what was sent and not acknowledged is sent again.
func TestNotificationsWaitForTheApplication(t *testing.T) {
	h := newHarness(t, Options{})
	sl, so := h.slave("s", 4, "k")
	a, ao := h.app("a")
	ack := h.push(a, ao, 1, tasksOf("k", 2)...)
	readAs[*protocol.Dispatch](t, so)
	h.complete(sl, []protocol.Result{result(ack.FirstID, 1, "one")})
	readAs[*protocol.Notify](t, ao) // sent, never acknowledged
	h.s.DetachApp(a, ao)
	h.complete(sl, []protocol.Result{result(ack.FirstID+1, 1, "two")})
	h.settle()
	ao.quiet(t)

	// A newer connection replaces an older one, which is closed.
	_, first := h.app("a")
	a, second := h.app("a")
	if code := <-first.closes; code != protocol.CodeReplaced {
		t.Fatalf("replaced connection closed with %q", code)
	}
	var ids []uint64
	for _, o := range []*outbox{first, second} {
		for len(o.msgs) > 0 {
			for _, f := range readAs[*protocol.Notify](t, o).Tasks {
				if o == second {
					ids = append(ids, f.ID)
				}
			}
		}
	}
	if len(ids) != 2 || ids[0] != ack.FirstID || ids[1] != ack.FirstID+1 {
		t.Fatalf("the newest connection got %v, want both tasks in order", ids)
	}
	h.s.Acknowledge(a, second, ids)
	readAs[*protocol.IDs](t, second)
	if st := h.s.Stats(); st.Unacked != 0 {
		t.Fatalf("%d unacknowledged", st.Unacked)
	}
}

func TestPollDispatchWaitsForRequests(t *testing.T) {
	h := newHarness(t, Options{Dispatch: protocol.DispatchPoll})
	a, ao := h.app("a")
	h.push(a, ao, 1, tasksOf("k", 5)...)
	sl, so := h.slave("s", 8, "k")
	so.quiet(t)
	h.s.Request(sl, 2)
	if d := readAs[*protocol.Dispatch](t, so); len(d.Tasks) != 2 {
		t.Fatalf("asked for 2, got %d", len(d.Tasks))
	}
	h.s.Request(sl, 10)
	d := readAs[*protocol.Dispatch](t, so)
	if len(d.Tasks) != SlowStartWindow-2 {
		t.Fatalf("asked for 10 in a slow start of %d holding 2, got %d", SlowStartWindow, len(d.Tasks))
	}
	// Each accepted result widens the window by one; the request waited.
	h.complete(sl, []protocol.Result{result(d.Tasks[0].ID, 1, "")})
	if d := readAs[*protocol.Dispatch](t, so); len(d.Tasks) != 1 {
		t.Fatalf("asked for 10 with 1 left and a window of %d, got %d", SlowStartWindow+1, len(d.Tasks))
	}
	readAs[*protocol.Notify](t, ao)
	// The unmet part of the request is remembered for new work.
	h.push(a, ao, 2, tasksOf("k", 1)...)
	if d := readAs[*protocol.Dispatch](t, so); len(d.Tasks) != 1 {
		t.Fatalf("remembered request: got %d", len(d.Tasks))
	}
}

func TestLeaseExpiryRequeues(t *testing.T) {
	h := newHarness(t, Options{LeaseGrace: time.Millisecond})
	_, slow := h.slave("slow", 1, "k")
	a, ao := h.app("a")
	h.push(a, ao, 1, protocol.NewTask{Kind: "k", Timeout: 50 * time.Millisecond, MaxAttempts: 2})
	first := readAs[*protocol.Dispatch](t, slow).Tasks[0]
	fastSlave, fast := h.slave("fast", 1, "k")
	h.clock.Advance(40 * time.Millisecond)
	h.tick()
	fast.quiet(t) // not yet: the lease runs
	// The slow slave keeps its slot; the fast one gets attempt 2.
	h.clock.Advance(leasesEvery)
	h.tick()
	second := readAs[*protocol.Dispatch](t, fast).Tasks[0]
	if second.ID != first.ID || second.Attempt != 2 {
		t.Fatalf("after lease expiry got %+v", second)
	}
	h.complete(fastSlave, []protocol.Result{result(second.ID, 2, "ok")})
	if n := readAs[*protocol.Notify](t, ao); n.Tasks[0].Attempts != 2 || string(n.Tasks[0].Result) != "ok" {
		t.Fatalf("notify %+v", n.Tasks[0])
	}
	slow.quiet(t)
}

// A failing task is retried after its backoff, up to its max attempts,
// then fails with its last error.
func TestRetriesThenFails(t *testing.T) {
	h := newHarness(t, Options{RetryBackoff: time.Second, RetryBackoffMax: time.Second})
	sl, so := h.slave("s", 1, "k")
	a, ao := h.app("a")
	id := h.push(a, ao, 1, protocol.NewTask{Kind: "k", MaxAttempts: 2}).FirstID
	readAs[*protocol.Dispatch](t, so)
	h.complete(sl, []protocol.Result{failure(id, 1, "first")})
	h.tick()
	so.quiet(t) // the backoff runs
	h.clock.Advance(time.Second)
	h.tick()
	if d := readAs[*protocol.Dispatch](t, so); d.Tasks[0].Attempt != 2 {
		t.Fatalf("retry is attempt %d", d.Tasks[0].Attempt)
	}
	h.complete(sl, []protocol.Result{failure(id, 2, "second")})
	n := readAs[*protocol.Notify](t, ao).Tasks[0]
	if n.State != protocol.StateFailed || n.Err != "second" || n.Attempts != 2 {
		t.Fatalf("notify %+v", n)
	}
	if st := h.s.Stats(); st.Retried != 1 || st.Failed != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// A slave that disconnects hands its tasks back at the cost of an
// attempt; one that returns them while stopping costs none.
func TestDetachAndReturnRequeue(t *testing.T) {
	h := newHarness(t, Options{})
	a, ao := h.app("a")
	ack := h.push(a, ao, 1, tasksOf("k", 2)...)
	gone, _ := h.slave("gone", 2, "k")
	if n := h.s.DetachSlave(gone); n != 2 {
		t.Fatalf("detach requeued %d, want 2", n)
	}
	stopping, so := h.slave("stopping", 2, "k")
	readAs[*protocol.Dispatch](t, so)
	h.s.Return(stopping, []uint64{ack.FirstID, ack.FirstID + 1})
	for _, id := range []uint64{ack.FirstID, ack.FirstID + 1} {
		if info := h.task(id); info.State != protocol.StatePending || info.Attempts != 1 {
			t.Fatalf("task %d: %+v", id, info)
		}
	}
	if st := h.s.Stats(); st.Requeued != 4 || st.Pending != 2 || len(st.Slaves) != 1 || !st.Slaves[0].Draining {
		t.Fatalf("stats %+v", st)
	}
}

// A batch's dedupe record lives until all its tasks are acknowledged, no
// longer: an application pushing one task at a time must not make the
// master remember every push it ever made.
func TestPushRecordReleasedOnAck(t *testing.T) {
	h := newHarness(t, Options{})
	sl, so := h.slave("s", 4, "k")
	a, ao := h.app("a")
	h.push(a, ao, 1, tasksOf("k", 2)...)
	pushes := func() int {
		h.s.mu.Lock()
		defer h.s.mu.Unlock()
		if a := h.s.apps["a"]; a != nil {
			return len(a.pushes)
		}
		return 0
	}
	var results []protocol.Result
	for _, task := range readAs[*protocol.Dispatch](t, so).Tasks {
		results = append(results, result(task.ID, 1, ""))
	}
	h.complete(sl, results)
	var ids []uint64
	for len(ids) < 2 {
		for _, f := range readAs[*protocol.Notify](t, ao).Tasks {
			ids = append(ids, f.ID)
		}
	}
	h.s.Acknowledge(a, ao, ids[:1])
	readAs[*protocol.IDs](t, ao)
	if n := pushes(); n != 1 {
		t.Fatalf("%d push records with one task of the batch unacknowledged, want 1", n)
	}
	h.s.Acknowledge(a, ao, ids[1:])
	readAs[*protocol.IDs](t, ao)
	if n := pushes(); n != 0 {
		t.Fatalf("%d push records after every task was acknowledged", n)
	}
	h.restart()
	if n := pushes(); n != 0 {
		t.Fatalf("%d push records came back after a restart", n)
	}
}

// Tasks nobody can run yet show as the app's in-flight tasks in the
// metrics, a gauge sampled by its duty.
func TestInFlightGauge(t *testing.T) {
	h := newHarness(t, Options{})
	a, ao := h.app("waiting")
	h.push(a, ao, 1, tasksOf("k", 3)...)
	h.tick()
	for _, as := range h.s.Metrics().Apps() {
		if as.Name == "waiting" && as.InFlight == 3 && as.Pushed == 3 {
			return
		}
	}
	t.Fatalf("apps %+v", h.s.Metrics().Apps())
}

// The duties run when due by the scheduler's clock, each on its own
// interval.
func TestDutiesRunOnTheirIntervals(t *testing.T) {
	h := newHarness(t, Options{})
	runs := map[string]int{}
	for i := range h.s.duties {
		d := &h.s.duties[i]
		run := d.run
		d.run = func(s *Scheduler, now time.Time, c *change) { runs[d.name]++; run(s, now, c) }
	}
	for range 50 { // one second of ticks
		h.tick()
		h.clock.Advance(tick)
	}
	want := map[string]int{"retries": 50, "series": 50, "leases": 10, "gauges": 1, "retention": 1}
	for name, n := range want {
		if runs[name] != n {
			t.Errorf("%s ran %d times in a second, want %d", name, runs[name], n)
		}
	}
	h.clock.Advance(-time.Hour) // a clock that steps back does not silence them
	h.tick()
	if runs["gauges"] != 2 {
		t.Errorf("gauges ran %d times after the clock stepped back", runs["gauges"])
	}
}
