package sched

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/anthill-project/anthill/master/store"
	"github.com/anthill-project/anthill/protocol"
)

// wantHistory checks h entry by entry against "outcome@slave" strings and
// that every attempt ends after it starts and starts after the previous
// one ended.
func wantHistory(t *testing.T, h []Attempt, want ...string) {
	t.Helper()
	var got []string
	for _, a := range h {
		identity, _ := Attribution(a.Slave) // sessions are the harness's "session-" + name
		got = append(got, a.Outcome.String()+"@"+identity)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("history %v, want %v\n%+v", got, want, h)
	}
	for i, a := range h {
		if a.Started.IsZero() || a.Outcome != OutcomeRunning && a.Ended.Before(a.Started) {
			t.Errorf("attempt %d runs from %v to %v", i, a.Started, a.Ended)
		}
		if (a.Outcome == OutcomeRunning) != a.Ended.IsZero() {
			t.Errorf("attempt %d is %s with end %v", i, a.Outcome, a.Ended)
		}
		if i > 0 && a.Started.Before(h[i-1].Ended) {
			t.Errorf("attempt %d starts at %v, before attempt %d ended at %v", i, a.Started, i-1, h[i-1].Ended)
		}
	}
}

// A task that fails on one slave and succeeds on another shows both
// attempts, in order, with the scheduler's clock; the history is in the
// records written anyway, so it survives a restart, for a finished task
// and for one waiting for its retry.
func TestHistoryFailedThenDone(t *testing.T) {
	h := newHarness(t, Options{})
	id := h.submit("a", protocol.NewTask{Kind: "k", MaxAttempts: 3})
	t0 := h.clock.Now()

	a, ao := h.slave("A", 1, "k")
	d := readAs[*protocol.Dispatch](t, ao)
	info := h.task(id)
	wantHistory(t, info.History, "running@A")
	if !info.History[0].Started.Equal(t0) {
		t.Errorf("attempt started at %v, want the scheduler's clock %v", info.History[0].Started, t0)
	}
	t1 := h.clock.Advance(time.Second)
	h.complete(a, []protocol.Result{{ID: id, Attempt: d.Tasks[0].Attempt, Err: "disk full", Duration: time.Millisecond}})
	h.s.DetachSlave(a)

	b, bo := h.slave("B", 1, "k")
	t2 := h.clock.Advance(time.Minute) // past the retry's backoff
	h.tick()
	d = readAs[*protocol.Dispatch](t, bo)
	if d.Tasks[0].Attempt != 2 {
		t.Fatalf("second dispatch is attempt %d", d.Tasks[0].Attempt)
	}
	t3 := h.clock.Advance(time.Second)
	h.complete(b, []protocol.Result{result(id, 2, "ok")})
	h.wait(id)

	check := func(info TaskInfo) {
		t.Helper()
		wantHistory(t, info.History, "failed@A", "done@B")
		hist := info.History
		if info.State != protocol.StateDone || info.Attempts != 2 || info.Slave != "B/session-B" {
			t.Errorf("task %+v", info)
		}
		for i, want := range []time.Time{t0, t1, t2, t3} {
			got := hist[i/2].Started
			if i%2 == 1 {
				got = hist[i/2].Ended
			}
			if !got.Equal(want) {
				t.Errorf("time %d of the history is %v, want %v", i, got, want)
			}
		}
		if hist[0].Err != "disk full" || hist[1].Err != "" {
			t.Errorf("errors %q, %q", hist[0].Err, hist[1].Err)
		}
	}
	check(h.task(id))
	page, _, err := h.s.Tasks(TaskFilter{})
	if err != nil || len(page) != 1 {
		t.Fatalf("Tasks: %v %v", page, err)
	}
	check(page[0])

	// A second task fails once and waits for its retry across the restart.
	waiting := h.submit("a", protocol.NewTask{Kind: "k", MaxAttempts: 3})
	d = readAs[*protocol.Dispatch](t, bo)
	h.complete(b, []protocol.Result{failure(waiting, d.Tasks[0].Attempt, "flaky")})
	h.settle()

	h.restart()
	check(h.task(id))
	info = h.task(waiting)
	wantHistory(t, info.History, "failed@B")
	if info.State != protocol.StatePending || info.History[0].Err != "flaky" {
		t.Errorf("waiting task after a restart: %+v", info)
	}
}

// A slave that stops answering loses its attempt when the lease expires; a
// slave that disconnects loses its attempt at once. A late result from the
// first is ignored: its attempt stays lost, and the attempt running
// meanwhile goes on and finishes the task.
func TestHistoryLostAttempts(t *testing.T) {
	h := newHarness(t, Options{})
	id := h.submit("a", protocol.NewTask{Kind: "k", MaxAttempts: 5})
	slow, so := h.slave("slow", 1, "k")
	first := readAs[*protocol.Dispatch](t, so).Tasks[0]
	h.clock.Advance(2 * time.Minute) // the lease: the default timeout of 1m plus 5s
	h.tick()
	info := h.task(id)
	wantHistory(t, info.History, "lost@slow")
	if !strings.Contains(info.History[0].Err, "lease") || info.Attempts != 1 || info.State != protocol.StatePending {
		t.Fatalf("after the lease expired: %+v", info)
	}

	gone, goneOut := h.slave("gone", 1, "k")
	readAs[*protocol.Dispatch](t, goneOut)
	h.s.DetachSlave(gone)
	info = h.task(id)
	wantHistory(t, info.History, "lost@slow", "lost@gone")
	if !strings.Contains(info.History[1].Err, "disconnected") || info.Attempts != 2 || info.State != protocol.StatePending {
		t.Fatalf("after the disconnect: %+v", info)
	}

	fast, fo := h.slave("fast", 1, "k")
	if d := readAs[*protocol.Dispatch](t, fo); d.Tasks[0].Attempt != 3 {
		t.Fatalf("third dispatch is attempt %d", d.Tasks[0].Attempt)
	}
	h.clock.Advance(time.Second)
	h.s.Complete(slow, []protocol.Result{{ID: id, Attempt: 1, Lease: first.Lease, Output: []byte("late")}})
	info = h.task(id)
	wantHistory(t, info.History, "lost@slow", "lost@gone", "running@fast")
	if info.State != protocol.StateRunning || h.s.Stats().LateResults != 1 {
		t.Fatalf("after the late result: %+v", info)
	}
	h.complete(fast, []protocol.Result{result(id, 3, "fast")})
	info = h.wait(id)[0]
	wantHistory(t, info.History, "lost@slow", "lost@gone", "done@fast")
	if string(info.Result) != "fast" {
		t.Fatalf("result %q, want the running attempt's", info.Result)
	}
	if st := h.s.Stats(); st.Slaves[0].RejectedResults+st.Slaves[1].RejectedResults != 0 {
		t.Fatalf("a late result was counted as rejected: %+v", st.Slaves)
	}
}

// A slave whose lease expired may get the task again; a late result of its
// first attempt is ignored, and the second attempt's finishes the task.
func TestHistoryLateResultOnTheSameSlave(t *testing.T) {
	h := newHarness(t, Options{})
	id := h.submit("a", protocol.NewTask{Kind: "k", MaxAttempts: 5})
	s, so := h.slave("s", 2, "k")
	first := readAs[*protocol.Dispatch](t, so).Tasks[0]
	h.clock.Advance(2 * time.Minute)
	h.tick()
	if d := readAs[*protocol.Dispatch](t, so); d.Tasks[0].ID != id || d.Tasks[0].Attempt != 2 {
		t.Fatalf("after the lease expired: %+v", d.Tasks)
	}
	h.s.Complete(s, []protocol.Result{{ID: id, Attempt: 1, Lease: first.Lease, Output: []byte("first")}})
	if info := h.task(id); info.State != protocol.StateRunning {
		t.Fatalf("the first attempt's result changed the task: %+v", info)
	}
	h.complete(s, []protocol.Result{result(id, 2, "second")})
	got := h.wait(id)[0]
	wantHistory(t, got.History, "lost@s", "done@s")
	if string(got.Result) != "second" {
		t.Errorf("result %q", got.Result)
	}
}

// A stopping slave's Return closes its attempt as returned, without
// spending one.
func TestHistoryReturned(t *testing.T) {
	h := newHarness(t, Options{})
	id := h.submit("a", protocol.NewTask{Kind: "k"})
	stopping, so := h.slave("stopping", 1, "k")
	readAs[*protocol.Dispatch](t, so)
	h.s.Return(stopping, []uint64{id})
	info := h.task(id)
	wantHistory(t, info.History, "returned@stopping")
	if info.Attempts != 0 || info.State != protocol.StatePending {
		t.Fatalf("after the return: %+v", info)
	}
	other, oo := h.slave("other", 1, "k")
	d := readAs[*protocol.Dispatch](t, oo)
	h.complete(other, []protocol.Result{result(id, d.Tasks[0].Attempt, "")})
	got := h.wait(id)[0]
	wantHistory(t, got.History, "returned@stopping", "done@other")
	if got.Attempts != 1 {
		t.Errorf("%d attempts, want 1: a returned one is not counted", got.Attempts)
	}
}

// A result reporting the slave's timeout is a timeout; an operator's cancel
// of a running task closes its attempt as canceled; Retry keeps the
// history.
func TestHistoryTimeoutCancelRetry(t *testing.T) {
	h := newHarness(t, Options{})
	s, so := h.slave("s", 1, "k")
	id := h.submit("a", protocol.NewTask{Kind: "k", Timeout: time.Second, MaxAttempts: 1})
	readAs[*protocol.Dispatch](t, so)
	h.complete(s, []protocol.Result{{ID: id, Attempt: 1, Err: "task exceeded its timeout of 1s", Duration: time.Second}})
	got := h.wait(id)[0]
	wantHistory(t, got.History, "timeout@s")
	if got.State != protocol.StateFailed || got.History[0].Err != "task exceeded its timeout of 1s" {
		t.Fatalf("timed out task: %+v", got)
	}

	if err := h.s.Retry(id); err != nil {
		t.Fatal(err)
	}
	readAs[*protocol.Dispatch](t, so)
	wantHistory(t, h.task(id).History, "timeout@s", "running@s")
	if err := h.s.Cancel(id); err != nil {
		t.Fatal(err)
	}
	readAs[*protocol.IDs](t, so) // the cancel frame
	got = h.wait(id)[0]
	wantHistory(t, got.History, "timeout@s", "canceled@s")
	if got.History[1].Err != "canceled by an operator" || got.Attempts != 1 {
		t.Fatalf("canceled task: %+v", got)
	}
}

// The history keeps the most recent attempts; Attempts counts them all.
func TestHistoryKeepsTheLatest(t *testing.T) {
	h := newHarness(t, Options{RetryBackoff: time.Nanosecond, RetryBackoffMax: time.Nanosecond})
	const n = store.MaxHistory + 4
	id := h.submit("a", protocol.NewTask{Kind: "k", MaxAttempts: n})
	s, so := h.slave("s", 1, "k")
	for i := range n {
		d := readAs[*protocol.Dispatch](t, so)
		h.complete(s, []protocol.Result{failure(id, d.Tasks[0].Attempt, fmt.Sprint("boom ", i+1))})
		h.clock.Advance(tick)
		h.tick()
	}
	got := h.wait(id)[0]
	hist := got.History
	if got.Attempts != n || len(hist) != store.MaxHistory {
		t.Fatalf("%d attempts, %d in the history", got.Attempts, len(hist))
	}
	if hist[0].Err != "boom 5" || hist[len(hist)-1].Err != fmt.Sprint("boom ", n) {
		t.Errorf("history from %q to %q, want the last %d", hist[0].Err, hist[len(hist)-1].Err, store.MaxHistory)
	}
}

func TestOutcomeOfResult(t *testing.T) {
	for _, tc := range []struct {
		err      string
		duration time.Duration
		timeout  time.Duration
		want     Outcome
	}{
		{"", time.Hour, time.Second, OutcomeDone},
		{"boom", 500 * time.Millisecond, time.Second, OutcomeFailed},
		{"boom", time.Second - time.Microsecond, time.Second, OutcomeTimeout}, // measured a hair short
		{"boom", 2 * time.Second, time.Second, OutcomeTimeout},
		{"boom", time.Millisecond, 2 * time.Millisecond, OutcomeFailed},
		{"boom", time.Hour, 0, OutcomeFailed}, // no timeout
	} {
		r := protocol.Result{Err: tc.err, Duration: tc.duration}
		if got := outcomeOf(&r, tc.timeout); got != tc.want {
			t.Errorf("%q after %v with timeout %v: %v, want %v", tc.err, tc.duration, tc.timeout, got, tc.want)
		}
	}
}

// Every outcome maps to a stored byte of its own and back.
func TestOutcomesRoundTripTheStore(t *testing.T) {
	for o := OutcomeRunning; o <= OutcomeCanceled; o++ {
		if back, ok := fromStore[toStore[o]]; !ok || back != o {
			t.Errorf("outcome %v: stored as %d, read back as %v", o, toStore[o], back)
		}
	}
	if len(fromStore) != len(outcomeNames) {
		t.Errorf("%d stored outcomes for %d outcomes", len(fromStore), len(outcomeNames))
	}
}

// Dispatch pays at most one allocation for the history, and none once it
// is full.
func TestBeginAttemptAllocations(t *testing.T) {
	now := time.Now()
	if n := testing.AllocsPerRun(100, func() {
		var tk task
		tk.beginAttempt("s", now)
	}); n > 1 {
		t.Errorf("first attempt: %v allocations", n)
	}
	var full task
	for range store.MaxHistory {
		full.beginAttempt("s", now)
		full.endAttempt(now, OutcomeFailed, "boom")
	}
	if n := testing.AllocsPerRun(100, func() {
		full.beginAttempt("s", now)
		full.endAttempt(now, OutcomeFailed, "boom")
	}); n != 0 {
		t.Errorf("attempt on a full history: %v allocations", n)
	}
	if len(full.history) != store.MaxHistory {
		t.Errorf("history of %d", len(full.history))
	}
}

// Writing a task with a full history allocates nothing for the history.
func TestPutReusesScratch(t *testing.T) {
	h := newHarness(t, Options{})
	var tk task
	tk.app = &App{name: "a"}
	for range store.MaxHistory {
		tk.beginAttempt("s", time.Now())
	}
	var b store.Batch
	h.s.put(&b, &tk) // grows the scratch
	b.Reset()
	h.s.put(&b, &tk) // grows the batch once
	if n := testing.AllocsPerRun(100, func() { b.Reset(); h.s.put(&b, &tk) }); n != 0 {
		t.Errorf("put: %v allocations", n)
	}
}

// A revoked slave's tasks go back at no attempt cost, even a task with a
// single attempt, and the session gets no more work; its DetachSlave then
// finds nothing to requeue.
func TestRevokeSlaveCostsNoAttempt(t *testing.T) {
	h := newHarness(t, Options{})
	id := h.submit("a", protocol.NewTask{Kind: "k", MaxAttempts: 1})
	revoked, ro := h.slave("revoked", 2, "k")
	readAs[*protocol.Dispatch](t, ro)
	if n := h.s.RevokeSlave(revoked, "revoked"); n != 1 {
		t.Fatalf("RevokeSlave took back %d tasks, want 1", n)
	}
	info := h.task(id)
	wantHistory(t, info.History, "returned@revoked")
	if info.Attempts != 0 || info.State != protocol.StatePending {
		t.Fatalf("after the revocation: %+v", info)
	}
	h.submit("a", protocol.NewTask{Kind: "k"})
	if n := h.s.DetachSlave(revoked); n != 0 {
		t.Fatalf("DetachSlave requeued %d after the revocation", n)
	}
	other, oo := h.slave("other", 1, "k")
	d := readAs[*protocol.Dispatch](t, oo)
	if d.Tasks[0].ID != id {
		t.Fatalf("dispatched %d first, want the returned %d", d.Tasks[0].ID, id)
	}
	h.complete(other, []protocol.Result{result(id, d.Tasks[0].Attempt, "")})
	if got := h.wait(id)[0]; got.State != protocol.StateDone || got.Attempts != 1 {
		t.Fatalf("%+v", got)
	}
}
