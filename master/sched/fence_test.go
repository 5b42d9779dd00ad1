package sched

import (
	"strings"
	"testing"
	"time"

	"github.com/anthill-project/anthill/protocol"
)

// A result counts only from the session running the task, in its attempt,
// with its lease. The review's forger announces one kind, takes a bait
// task and answers for the ids around it: nothing it did not hold is
// touched, not even its bait under a wrong lease, and honest slaves then
// run every task with their own results.
func TestFenceRejectsResultsWithoutTheLease(t *testing.T) {
	h := newHarness(t, Options{})
	secret := h.submit("payroll", tasksOf("secret-kind", 3)...)
	gpu := h.submit("payroll", protocol.NewTask{Kind: "gpu-only"})
	bait := h.submit("victim", protocol.NewTask{Kind: "echo"})
	forger, fo := h.slave("evil", 1, "echo")
	d := readAs[*protocol.Dispatch](t, fo)
	if len(d.Tasks) != 1 || d.Tasks[0].ID != bait || d.Tasks[0].Lease == 0 {
		t.Fatalf("bait dispatch %+v", d.Tasks)
	}
	var forged []protocol.Result
	for id := bait - 20; id <= bait+20; id++ {
		forged = append(forged, protocol.Result{ID: id, Attempt: 1, Lease: d.Tasks[0].Lease ^ 1, Output: []byte("FORGED")})
	}
	h.s.Complete(forger, forged)
	for id := secret; id <= gpu; id++ {
		if info := h.task(id); info.State != protocol.StatePending || info.Attempts != 0 || len(info.History) != 0 || info.Result != nil {
			t.Fatalf("task %d after the forgery: %+v", id, info)
		}
	}
	if info := h.task(bait); info.State != protocol.StateRunning {
		t.Fatalf("bait after a result with a wrong lease: %+v", info)
	}
	st := h.s.Stats()
	if len(st.Slaves) != 1 || st.Slaves[0].RejectedResults != uint64(len(forged)) {
		t.Fatalf("rejected results %+v, want %d", st.Slaves, len(forged))
	}
	select {
	case code := <-fo.closes:
		t.Fatalf("closed with %s after %d rejected results: under the limit of 64", code, len(forged))
	default:
	}

	honest, ho := h.slave("honest", 4, "secret-kind", "gpu-only")
	for _, task := range readAs[*protocol.Dispatch](t, ho).Tasks {
		h.s.Complete(honest, []protocol.Result{{ID: task.ID, Attempt: task.Attempt, Lease: task.Lease, Output: []byte("real")}})
	}
	for id := secret; id <= gpu; id++ {
		if info := h.wait(id)[0]; string(info.Result) != "real" || info.Slave != "honest/session-honest" {
			t.Fatalf("task %d: %+v", id, info)
		}
	}
}

// A slave that keeps sending results it holds no lease for is
// disconnected with bad_result; an accepted result in between starts the
// count again.
func TestFenceDisconnectsAPersistentForger(t *testing.T) {
	h := newHarness(t, Options{})
	h.submit("a", tasksOf("k", 2)...)
	sl, so := h.slave("evil", 1, "k")
	task := readAs[*protocol.Dispatch](t, so).Tasks[0]
	forge := func(n int) {
		rs := make([]protocol.Result, n)
		for i := range rs {
			rs[i] = protocol.Result{ID: 1 << 40, Attempt: 1, Lease: 7}
		}
		h.s.Complete(sl, rs)
	}
	forge(64)
	h.s.Complete(sl, []protocol.Result{{ID: task.ID, Attempt: task.Attempt, Lease: task.Lease}})
	forge(64)
	select {
	case code := <-so.closes:
		t.Fatalf("closed with %s: no more than 64 in a row", code)
	default:
	}
	forge(1)
	select {
	case code := <-so.closes:
		if code != protocol.CodeBadResult {
			t.Fatalf("closed with %s, want %s", code, protocol.CodeBadResult)
		}
	default:
		t.Fatal("65 rejected results in a row, and the slave is still connected")
	}
	// Until its connection is gone it gets nothing more.
	for len(so.msgs) > 0 {
		<-so.msgs
	}
	h.submit("a", tasksOf("k", 3)...)
	forge(1)
	so.quiet(t)
}

// A new session gets a slow-start window whatever it asks for; each
// accepted result widens it by one, up to MaxWindow.
func TestFenceSlowStartWindow(t *testing.T) {
	h := newHarness(t, Options{MaxWindow: 6})
	h.submit("a", tasksOf("k", 20)...)
	out := newOutbox(t, "greedy")
	sl := h.s.AttachSlave("s1", &protocol.Hello{Version: protocol.Version, Role: protocol.RoleSlave, Name: "greedy",
		Kinds: []string{"k"}, Concurrency: protocol.MaxConcurrency, Prefetch: protocol.MaxPrefetch}, out)
	held := readAs[*protocol.Dispatch](t, out).Tasks
	if len(held) != SlowStartWindow {
		t.Fatalf("first dispatch of %d tasks, want the slow start of %d", len(held), SlowStartWindow)
	}
	for range 10 {
		task := held[0]
		held = held[1:]
		h.s.Complete(sl, []protocol.Result{{ID: task.ID, Attempt: task.Attempt, Lease: task.Lease}})
		held = append(held, readAs[*protocol.Dispatch](t, out).Tasks...)
		if len(held) > 6 {
			t.Fatalf("holding %d tasks, over MaxWindow 6", len(held))
		}
	}
	if len(held) != 6 {
		t.Fatalf("holding %d tasks after 10 results, want MaxWindow 6", len(held))
	}
	if st := h.s.Stats(); st.Slaves[0].Window != 6 || st.Slaves[0].MaxWindow != 6 {
		t.Fatalf("window %d of %d", st.Slaves[0].Window, st.Slaves[0].MaxWindow)
	}
}

// The window is capped in payload bytes too; a slave holding nothing may
// always take one task, however big.
func TestFenceWindowBytes(t *testing.T) {
	h := newHarness(t, Options{MaxWindowBytes: 100})
	h.submit("a", protocol.NewTask{Kind: "big", Payload: make([]byte, 300)})
	h.submit("a", protocol.NewTask{Kind: "k", Payload: make([]byte, 60)}, protocol.NewTask{Kind: "k", Payload: make([]byte, 60)},
		protocol.NewTask{Kind: "k", Payload: make([]byte, 60)})
	_, bo := h.slave("b", 4, "big")
	if d := readAs[*protocol.Dispatch](t, bo); len(d.Tasks) != 1 {
		t.Fatalf("a task over the byte cap was not given to an empty slave: %+v", d.Tasks)
	}
	sl, so := h.slave("s", 4, "k")
	d := readAs[*protocol.Dispatch](t, so)
	if len(d.Tasks) != 2 {
		t.Fatalf("dispatched %d tasks of 60 bytes under a cap of 100, want 2 (the cap is passed by one task at most)", len(d.Tasks))
	}
	h.s.Complete(sl, []protocol.Result{{ID: d.Tasks[0].ID, Attempt: 1, Lease: d.Tasks[0].Lease}})
	if d := readAs[*protocol.Dispatch](t, so); len(d.Tasks) != 1 {
		t.Fatalf("after a result freed 60 bytes: %d tasks", len(d.Tasks))
	}
}

// A slave that vanishes costs an attempt only on the oldest Concurrency
// tasks it held; the prefetched rest go back as returned.
func TestFenceUnstartedTasksCostNoAttempt(t *testing.T) {
	h := newHarness(t, Options{})
	h.submit("a", tasksOf("k", 30)...)
	out := newOutbox(t, "burner")
	sl := h.s.AttachSlave("s1", &protocol.Hello{Version: protocol.Version, Role: protocol.RoleSlave, Name: "burner",
		Kinds: []string{"k"}, Concurrency: 2, Prefetch: 100}, out)
	var held []protocol.Task
	held = append(held, readAs[*protocol.Dispatch](t, out).Tasks...)
	for range 8 { // grow the window to 10
		task := held[0]
		held = held[1:]
		h.s.Complete(sl, []protocol.Result{{ID: task.ID, Attempt: task.Attempt, Lease: task.Lease}})
		held = append(held, readAs[*protocol.Dispatch](t, out).Tasks...)
	}
	if len(held) != 10 {
		t.Fatalf("holding %d tasks, want 10", len(held))
	}
	if n := h.s.DetachSlave(sl); n != 10 {
		t.Fatalf("requeued %d, want 10", n)
	}
	for i, task := range held {
		info := h.task(task.ID)
		want, outcome := uint32(0), OutcomeReturned
		if i < 2 {
			want, outcome = 1, OutcomeLost
		}
		if info.State != protocol.StatePending || info.Attempts != want || info.History[len(info.History)-1].Outcome != outcome {
			t.Fatalf("task %d, %d in dispatch order: %+v; want %d attempts, %s", task.ID, i, info, want, outcome)
		}
	}
}

// A result over MaxResult, or an error over the limit, fails its attempt
// with a message saying so and counts against the slave.
func TestFenceOversizedResultFailsTheAttempt(t *testing.T) {
	h := newHarness(t, Options{MaxResult: 10})
	id := h.submit("a", protocol.NewTask{Kind: "k", MaxAttempts: 2})
	sl, so := h.slave("s", 1, "k")
	task := readAs[*protocol.Dispatch](t, so).Tasks[0]
	h.s.Complete(sl, []protocol.Result{{ID: id, Attempt: 1, Lease: task.Lease, Output: make([]byte, 11)}})
	info := h.task(id)
	if info.State != protocol.StatePending || !strings.Contains(info.History[0].Err, "result of 11 bytes exceeds the limit of 10") {
		t.Fatalf("after an oversized result: %+v", info)
	}
	h.clock.Advance(DefaultRetryBackoff)
	h.tick()
	task = readAs[*protocol.Dispatch](t, so).Tasks[0]
	h.s.Complete(sl, []protocol.Result{{ID: id, Attempt: 2, Lease: task.Lease, Err: strings.Repeat("e", protocol.MaxErrBytes+1)}})
	info = h.wait(id)[0]
	if info.State != protocol.StateFailed || !strings.Contains(info.Err, "error of 4097 bytes exceeds the limit of 4096") {
		t.Fatalf("after an oversized error: %+v", info)
	}
	if st := h.s.Stats(); st.Slaves[0].RejectedResults != 2 {
		t.Fatalf("rejected %d, want 2", st.Slaves[0].RejectedResults)
	}
}

// Options that could not notify one maximal result in a frame are refused.
func TestFenceMaxResultMustFitANotification(t *testing.T) {
	_, err := New(nil, Options{MaxFrame: 1 << 20, MaxPayload: 1 << 10, MaxResult: 1 << 20})
	if err == nil || !strings.Contains(err.Error(), "max result") {
		t.Fatalf("New with a max result as big as the frame: %v", err)
	}
}

// A silent slave's expired leases cost an attempt only for the tasks it
// could have started: the prefetched ones go back as returned.
func TestFenceExpiredPrefetchCostsNoAttempt(t *testing.T) {
	h := newHarness(t, Options{})
	h.submit("a", tasksOf("k", 10)...)
	out := newOutbox(t, "silent")
	sl := h.s.AttachSlave("s1", &protocol.Hello{Version: protocol.Version, Role: protocol.RoleSlave, Name: "silent",
		Kinds: []string{"k"}, Concurrency: 1, Prefetch: 10}, out)
	held := readAs[*protocol.Dispatch](t, out).Tasks
	for range 3 { // grow the window to 4
		task := held[0]
		held = held[1:]
		h.s.Complete(sl, []protocol.Result{{ID: task.ID, Attempt: task.Attempt, Lease: task.Lease}})
		held = append(held, readAs[*protocol.Dispatch](t, out).Tasks...)
	}
	if len(held) != 4 {
		t.Fatalf("holding %d, want 4", len(held))
	}
	h.clock.Advance(2 * time.Minute)
	h.tick()
	for i, task := range held {
		info := h.task(task.ID)
		want := uint32(0)
		if i == 0 {
			want = 1
		}
		if info.Attempts != want || info.State != protocol.StatePending {
			t.Fatalf("task %d in dispatch order after its lease expired: %+v; want %d attempts", i, info, want)
		}
	}
}

// A task whose lease expired on a session can come back to that same
// session: it is held once, its bytes counted once, so the window's byte
// cap does not shrink for good with every such return.
func TestFenceRedispatchToTheSameSessionIsHeldOnce(t *testing.T) {
	h := newHarness(t, Options{LeaseGrace: time.Millisecond})
	h.submit("a", protocol.NewTask{Kind: "k", Payload: make([]byte, 100), Timeout: 50 * time.Millisecond})
	sl, so := h.slave("s", 2, "k")
	first := readAs[*protocol.Dispatch](t, so).Tasks[0]
	h.clock.Advance(200 * time.Millisecond)
	h.tick()
	second := readAs[*protocol.Dispatch](t, so).Tasks[0]
	if second.ID != first.ID || second.Attempt != 2 {
		t.Fatalf("second dispatch %+v after %+v", second, first)
	}
	h.s.Complete(sl, []protocol.Result{{ID: second.ID, Attempt: 2, Lease: second.Lease, Output: []byte("ok")}})
	h.s.mu.Lock()
	running, held := len(sl.running), sl.heldBytes
	h.s.mu.Unlock()
	if running != 0 || held != 0 {
		t.Fatalf("after the result the session holds %d tasks and %d bytes; want none", running, held)
	}
}
