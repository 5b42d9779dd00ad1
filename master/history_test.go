package master

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anthill-project/anthill/master/store"
	"github.com/anthill-project/anthill/protocol"
)

// testClock is a clock the test moves by hand.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func newTestClock() *testClock { return &testClock{now: time.Unix(1_750_000_000, 0)} }

func (c *testClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }

func (c *testClock) Advance(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	return c.now
}

// wantHistory checks h entry by entry against "outcome@slave" strings and
// that every attempt ends after it starts and starts after the previous
// one ended.
func wantHistory(t *testing.T, h []Attempt, want ...string) {
	t.Helper()
	var got []string
	for _, a := range h {
		got = append(got, a.Outcome+"@"+a.Slave)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("history %v, want %v\n%+v", got, want, h)
	}
	for i, a := range h {
		if a.Started.IsZero() || a.Outcome != "running" && a.Ended.Before(a.Started) {
			t.Errorf("attempt %d runs from %v to %v", i, a.Started, a.Ended)
		}
		if (a.Outcome == "running") != a.Ended.IsZero() {
			t.Errorf("attempt %d is %s with end %v", i, a.Outcome, a.Ended)
		}
		if i > 0 && a.Started.Before(h[i-1].Ended) {
			t.Errorf("attempt %d starts at %v, before attempt %d ended at %v", i, a.Started, i-1, h[i-1].Ended)
		}
	}
}

func taskInfo(t *testing.T, m *Master, id uint64) TaskInfo {
	t.Helper()
	info, err := m.Task(id)
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// A task that fails on one slave and succeeds on another shows both
// attempts, in order, with the master's clock; the history is in the
// records the master writes anyway, so it survives a restart, for a
// finished task and for one waiting for its retry.
func TestHistoryFailedThenDone(t *testing.T) {
	dir := t.TempDir()
	clock := newTestClock()
	m := newMaster(t, dir, Options{Now: clock.Now})
	id := submit(t, m, "a", protocol.NewTask{Kind: "k", MaxAttempts: 3})
	t0 := clock.Now()

	a := dial(t, m, "/ws/slave", slaveHello("A", 1, "k"))
	d := a.read().(*protocol.Dispatch)
	info := taskInfo(t, m, id)
	wantHistory(t, info.History, "running@A")
	if !info.History[0].Started.Equal(t0) {
		t.Errorf("attempt started at %v, want the master's clock %v", info.History[0].Started, t0)
	}
	t1 := clock.Advance(time.Second)
	a.send(&protocol.Results{Results: []protocol.Result{{ID: id, Attempt: d.Tasks[0].Attempt, Err: "disk full", Duration: time.Millisecond}}})
	waitUntil(t, func() bool { return taskInfo(t, m, id).History[0].Outcome != "running" })
	a.ws.Close()
	waitUntil(t, func() bool { return len(m.Stats().Slaves) == 0 })

	b := dial(t, m, "/ws/slave", slaveHello("B", 1, "k"))
	t2 := clock.Advance(time.Minute) // past the retry's backoff
	d = b.read().(*protocol.Dispatch)
	if d.Tasks[0].Attempt != 2 {
		t.Fatalf("second dispatch is attempt %d", d.Tasks[0].Attempt)
	}
	t3 := clock.Advance(time.Second)
	b.send(&protocol.Results{Results: []protocol.Result{{ID: id, Attempt: 2, Output: []byte("ok")}}})
	if _, err := m.Wait(context.Background(), []uint64{id}); err != nil {
		t.Fatal(err)
	}

	check := func(info TaskInfo) {
		t.Helper()
		wantHistory(t, info.History, "failed@A", "done@B")
		h := info.History
		if info.State != protocol.StateDone || info.Attempts != 2 || info.Slave != "B" {
			t.Errorf("task %+v", info)
		}
		for i, want := range []time.Time{t0, t1, t2, t3} {
			got := h[i/2].Started
			if i%2 == 1 {
				got = h[i/2].Ended
			}
			if !got.Equal(want) {
				t.Errorf("time %d of the history is %v, want %v", i, got, want)
			}
		}
		if h[0].Err != "disk full" || h[1].Err != "" {
			t.Errorf("errors %q, %q", h[0].Err, h[1].Err)
		}
	}
	check(taskInfo(t, m, id))
	page, _, err := m.Tasks(TaskFilter{})
	if err != nil || len(page) != 1 {
		t.Fatalf("Tasks: %v %v", page, err)
	}
	check(page[0])

	// A second task fails once and waits for its retry across the restart.
	waiting := submit(t, m, "a", protocol.NewTask{Kind: "k", MaxAttempts: 3})
	d = b.read().(*protocol.Dispatch)
	b.send(&protocol.Results{Results: []protocol.Result{{ID: waiting, Attempt: d.Tasks[0].Attempt, Err: "flaky"}}})
	waitUntil(t, func() bool { return taskInfo(t, m, waiting).History[0].Outcome == "failed" })
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}

	m2 := newMaster(t, dir, Options{Now: clock.Now})
	check(taskInfo(t, m2, id))
	info = taskInfo(t, m2, waiting)
	wantHistory(t, info.History, "failed@B")
	if info.State != protocol.StatePending || info.History[0].Err != "flaky" {
		t.Errorf("waiting task after a restart: %+v", info)
	}
}

// A slave that stops answering loses its attempt when the lease expires; a
// slave that disconnects loses its attempt at once. A late result from the
// first still finishes the task, but its attempt stays lost, and the
// attempt running meanwhile is abandoned.
func TestHistoryLostAttempts(t *testing.T) {
	clock := newTestClock()
	m := newMaster(t, t.TempDir(), Options{Now: clock.Now})
	id := submit(t, m, "a", protocol.NewTask{Kind: "k", MaxAttempts: 5})
	slow := dial(t, m, "/ws/slave", slaveHello("slow", 1, "k"))
	slow.read()
	clock.Advance(2 * time.Minute) // the lease: the default timeout of 1m plus 5s
	waitUntil(t, func() bool { return taskInfo(t, m, id).History[0].Outcome == "lost" })
	info := taskInfo(t, m, id)
	wantHistory(t, info.History, "lost@slow")
	if !strings.Contains(info.History[0].Err, "lease") || info.Attempts != 1 || info.State != protocol.StatePending {
		t.Fatalf("after the lease expired: %+v", info)
	}

	gone := dial(t, m, "/ws/slave", slaveHello("gone", 1, "k"))
	gone.read()
	gone.ws.Close()
	waitUntil(t, func() bool {
		return len(taskInfo(t, m, id).History) == 2 && taskInfo(t, m, id).State == protocol.StatePending
	})
	info = taskInfo(t, m, id)
	wantHistory(t, info.History, "lost@slow", "lost@gone")
	if !strings.Contains(info.History[1].Err, "disconnected") || info.Attempts != 2 {
		t.Fatalf("after the disconnect: %+v", info)
	}

	fast := dial(t, m, "/ws/slave", slaveHello("fast", 1, "k"))
	if d := fast.read().(*protocol.Dispatch); d.Tasks[0].Attempt != 3 {
		t.Fatalf("third dispatch is attempt %d", d.Tasks[0].Attempt)
	}
	clock.Advance(time.Second)
	slow.send(&protocol.Results{Results: []protocol.Result{{ID: id, Attempt: 1, Output: []byte("late")}}})
	if _, err := m.Wait(context.Background(), []uint64{id}); err != nil {
		t.Fatal(err)
	}
	info = taskInfo(t, m, id)
	wantHistory(t, info.History, "lost@slow", "lost@gone", "canceled@fast")
	if info.State != protocol.StateDone || string(info.Result) != "late" || !strings.Contains(info.History[2].Err, "slow") {
		t.Fatalf("after the late result: %+v", info)
	}
	// The abandoned attempt's own result is late and changes nothing.
	fast.send(&protocol.Results{Results: []protocol.Result{{ID: id, Attempt: 3, Err: "too late"}}})
	waitUntil(t, func() bool { return m.Stats().LateResults == 1 })
	wantHistory(t, taskInfo(t, m, id).History, "lost@slow", "lost@gone", "canceled@fast")
}

// A slave whose lease expired may get the task again; a late result of its
// first attempt then abandons the second, though both ran on that slave.
func TestHistoryLateResultOnTheSameSlave(t *testing.T) {
	clock := newTestClock()
	m := newMaster(t, t.TempDir(), Options{Now: clock.Now})
	id := submit(t, m, "a", protocol.NewTask{Kind: "k", MaxAttempts: 5})
	s := dial(t, m, "/ws/slave", slaveHello("s", 2, "k"))
	s.read()
	clock.Advance(2 * time.Minute)
	if d := s.read().(*protocol.Dispatch); d.Tasks[0].ID != id || d.Tasks[0].Attempt != 2 {
		t.Fatalf("after the lease expired: %+v", d.Tasks)
	}
	s.send(&protocol.Results{Results: []protocol.Result{{ID: id, Attempt: 1, Output: []byte("first")}}})
	got, err := m.Wait(context.Background(), []uint64{id})
	if err != nil || len(got) != 1 {
		t.Fatal(got, err)
	}
	wantHistory(t, got[0].History, "lost@s", "canceled@s")
	if string(got[0].Result) != "first" {
		t.Errorf("result %q", got[0].Result)
	}
}

// A stopping slave's Return closes its attempt as returned, without
// spending one.
func TestHistoryReturned(t *testing.T) {
	m := newMaster(t, t.TempDir(), Options{})
	id := submit(t, m, "a", protocol.NewTask{Kind: "k"})
	stopping := dial(t, m, "/ws/slave", slaveHello("stopping", 1, "k"))
	stopping.read()
	stopping.send(&protocol.IDs{T: protocol.TypeReturn, IDs: []uint64{id}})
	waitUntil(t, func() bool { return taskInfo(t, m, id).History[0].Outcome != "running" })
	info := taskInfo(t, m, id)
	wantHistory(t, info.History, "returned@stopping")
	if info.Attempts != 0 || info.State != protocol.StatePending {
		t.Fatalf("after the return: %+v", info)
	}
	other := dial(t, m, "/ws/slave", slaveHello("other", 1, "k"))
	d := other.read().(*protocol.Dispatch)
	other.send(&protocol.Results{Results: []protocol.Result{{ID: id, Attempt: d.Tasks[0].Attempt}}})
	got, err := m.Wait(context.Background(), []uint64{id})
	if err != nil || len(got) != 1 {
		t.Fatal(got, err)
	}
	wantHistory(t, got[0].History, "returned@stopping", "done@other")
	if got[0].Attempts != 1 {
		t.Errorf("%d attempts, want 1: a returned one is not counted", got[0].Attempts)
	}
}

// A result reporting the slave's timeout is a timeout; an operator's cancel
// of a running task closes its attempt as canceled; Retry keeps the
// history.
func TestHistoryTimeoutCancelRetry(t *testing.T) {
	m := newMaster(t, t.TempDir(), Options{})
	s := dial(t, m, "/ws/slave", slaveHello("s", 1, "k"))
	id := submit(t, m, "a", protocol.NewTask{Kind: "k", Timeout: time.Second, MaxAttempts: 1})
	s.read()
	s.send(&protocol.Results{Results: []protocol.Result{{ID: id, Attempt: 1, Err: "task exceeded its timeout of 1s", Duration: time.Second}}})
	got, err := m.Wait(context.Background(), []uint64{id})
	if err != nil || len(got) != 1 {
		t.Fatal(got, err)
	}
	wantHistory(t, got[0].History, "timeout@s")
	if got[0].State != protocol.StateFailed || got[0].History[0].Err != "task exceeded its timeout of 1s" {
		t.Fatalf("timed out task: %+v", got[0])
	}

	if err := m.Retry(id); err != nil {
		t.Fatal(err)
	}
	s.read()
	wantHistory(t, taskInfo(t, m, id).History, "timeout@s", "running@s")
	if err := m.Cancel(id); err != nil {
		t.Fatal(err)
	}
	s.read() // the cancel frame
	got, err = m.Wait(context.Background(), []uint64{id})
	if err != nil || len(got) != 1 {
		t.Fatal(got, err)
	}
	wantHistory(t, got[0].History, "timeout@s", "canceled@s")
	if got[0].History[1].Err != "canceled by an operator" || got[0].Attempts != 1 {
		t.Fatalf("canceled task: %+v", got[0])
	}
}

// The history keeps the most recent attempts; Attempts counts them all.
func TestHistoryKeepsTheLatest(t *testing.T) {
	m := newMaster(t, t.TempDir(), Options{RetryBackoff: time.Nanosecond, RetryBackoffMax: time.Nanosecond})
	const n = store.MaxHistory + 4
	id := submit(t, m, "a", protocol.NewTask{Kind: "k", MaxAttempts: n})
	s := dial(t, m, "/ws/slave", slaveHello("s", 1, "k"))
	for i := range n {
		d := s.read().(*protocol.Dispatch)
		s.send(&protocol.Results{Results: []protocol.Result{{ID: id, Attempt: d.Tasks[0].Attempt, Err: fmt.Sprint("boom ", i+1)}}})
	}
	got, err := m.Wait(context.Background(), []uint64{id})
	if err != nil || len(got) != 1 {
		t.Fatal(got, err)
	}
	h := got[0].History
	if got[0].Attempts != n || len(h) != store.MaxHistory {
		t.Fatalf("%d attempts, %d in the history", got[0].Attempts, len(h))
	}
	if h[0].Err != "boom 5" || h[len(h)-1].Err != fmt.Sprint("boom ", n) {
		t.Errorf("history from %q to %q, want the last %d", h[0].Err, h[len(h)-1].Err, store.MaxHistory)
	}
}

func TestOutcomeOfResult(t *testing.T) {
	for _, tc := range []struct {
		err      string
		duration time.Duration
		timeout  time.Duration
		want     store.Outcome
	}{
		{"", time.Hour, time.Second, store.OutcomeDone},
		{"boom", 500 * time.Millisecond, time.Second, store.OutcomeFailed},
		{"boom", time.Second - time.Microsecond, time.Second, store.OutcomeTimeout}, // measured a hair short
		{"boom", 2 * time.Second, time.Second, store.OutcomeTimeout},
		{"boom", time.Millisecond, 2 * time.Millisecond, store.OutcomeFailed},
		{"boom", time.Hour, 0, store.OutcomeFailed}, // no timeout
	} {
		r := protocol.Result{Err: tc.err, Duration: tc.duration}
		if got := outcomeOf(&r, tc.timeout); got != tc.want {
			t.Errorf("%q after %v with timeout %v: %v, want %v", tc.err, tc.duration, tc.timeout, got, tc.want)
		}
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
		full.endAttempt(now, store.OutcomeFailed, "boom")
	}
	if n := testing.AllocsPerRun(100, func() {
		full.beginAttempt("s", now)
		full.endAttempt(now, store.OutcomeFailed, "boom")
	}); n != 0 {
		t.Errorf("attempt on a full history: %v allocations", n)
	}
	if len(full.rec.History) != store.MaxHistory {
		t.Errorf("history of %d", len(full.rec.History))
	}
}
