package sched

import (
	"fmt"
	"slices"
	"testing"

	"github.com/anthill-project/anthill/protocol"
)

// coldCount is how many tasks are cold, and how many are in memory.
func coldCount(h *harness) (cold, hot int) {
	h.s.mu.Lock()
	defer h.s.mu.Unlock()
	return h.s.cold, len(h.s.tasks)
}

// Once durable, pending tasks past HotTasks leave memory; whatever needs
// one warms it from the store: a Wait, a cancel, a dispatch. An
// acknowledgement of a cold task's id is not believed, and once every
// task is acknowledged nothing is left, in memory or in the store.
func TestColdTasksLiveInTheStore(t *testing.T) {
	h := newHarness(t, Options{HotTasks: -1})
	a, ao := h.app("a")
	ack := h.push(a, ao, 1, tasksOf("k", 30)...)
	api := h.submit("a", tasksOf("k", 20)...)
	if cold, hot := coldCount(h); cold != 50 || hot != 0 {
		t.Fatalf("%d cold tasks, %d in memory; want 50 and 0", cold, hot)
	}
	checkCounts(t, h.s)
	if info := h.task(ack.FirstID); info.State != protocol.StatePending || string(info.Payload) != "0" {
		t.Fatalf("a cold task reads as %+v", info)
	}

	// An application acknowledging a task not final is not told it is done.
	h.s.Acknowledge(a, ao, []uint64{ack.FirstID + 1})
	ao.quiet(t)

	// Canceled, a cold task is final at once.
	if err := h.s.Cancel(ack.FirstID + 2); err != nil {
		t.Fatal(err)
	}
	if got := h.wait(ack.FirstID + 2); got[0].State != protocol.StateCanceled {
		t.Fatalf("canceled task %+v", got[0])
	}
	if cold, _ := coldCount(h); cold != 49 {
		t.Fatalf("%d cold after a cancel, want 49", cold)
	}
	checkCounts(t, h.s)

	// Every other task runs, each once, with its own payload.
	sl, so := h.slave("s", 64, "k")
	seen := map[uint64]bool{}
	for len(seen) < 49 {
		d := readAs[*protocol.Dispatch](t, so)
		var rs []protocol.Result
		for _, task := range d.Tasks {
			if seen[task.ID] {
				t.Fatalf("task %d dispatched twice", task.ID)
			}
			seen[task.ID] = true
			want := task.ID - ack.FirstID
			if task.ID >= api {
				want = task.ID - api
			}
			if string(task.Payload) != fmt.Sprint(want) {
				t.Fatalf("task %d carries %q", task.ID, task.Payload)
			}
			rs = append(rs, result(task.ID, task.Attempt, "r"))
		}
		h.complete(sl, rs)
	}
	if seen[ack.FirstID+2] {
		t.Fatal("the canceled task ran")
	}
	var ids []uint64
	for len(ids) < 30 {
		n := readAs[*protocol.Notify](t, ao)
		for _, f := range n.Tasks {
			ids = append(ids, f.ID)
		}
	}
	h.s.Acknowledge(a, ao, ids)
	if done := readAs[*protocol.IDs](t, ao); len(done.IDs) != 30 {
		t.Fatalf("notify_done of %d ids", len(done.IDs))
	}
	h.settle()
	if cold, hot := coldCount(h); cold != 0 || hot != 0 {
		t.Fatalf("%d cold, %d in memory once everything is acknowledged", cold, hot)
	}
	h.s.mu.Lock()
	pushes := len(a.pushes)
	h.s.mu.Unlock()
	if pushes != 0 {
		t.Fatalf("%d submit records kept", pushes)
	}
	checkCounts(t, h.s)
}

// A restart reads the queue's index, not its tasks: every pending task is
// cold, the strategy's order holds over them, and a submit batch re-sent
// after the restart still gets its ids.
func TestRestartLoadsTheIndex(t *testing.T) {
	h := newHarness(t, Options{Strategy: StrategyPriority, HotTasks: 1 << 20})
	a, ao := h.app("a")
	tasks := tasksOf("k", 40)
	for i := range tasks {
		tasks[i].Priority = int32(i % 4)
	}
	ack := h.push(a, ao, 1, tasks...)
	if cold, _ := coldCount(h); cold != 0 {
		t.Fatalf("%d cold under HotTasks", cold)
	}
	h.restart()
	if cold, hot := coldCount(h); cold != 40 || hot != 0 {
		t.Fatalf("after a restart %d cold, %d in memory", cold, hot)
	}
	checkCounts(t, h.s)
	a, ao = h.app("a")
	if again := h.push(a, ao, 1, tasks...); again.FirstID != ack.FirstID {
		t.Fatalf("a re-sent batch got %d, want %d", again.FirstID, ack.FirstID)
	}
	sl, so := h.slave("s", 1, "k")
	var prios []int32
	for range 40 {
		task := readAs[*protocol.Dispatch](t, so).Tasks[0]
		prios = append(prios, tasks[task.ID-ack.FirstID].Priority)
		h.complete(sl, []protocol.Result{result(task.ID, task.Attempt, "r")})
	}
	if !slices.IsSortedFunc(prios, func(a, b int32) int { return int(b - a) }) {
		t.Fatalf("priorities in dispatch order %v, want highest first", prios)
	}
}

// A dispatch that cannot read a cold task from the store sends nothing
// and loses nothing: the entry waits in the queue.
func TestColdTaskUnreadableWaits(t *testing.T) {
	h := newHarness(t, Options{HotTasks: -1})
	h.submit("a", tasksOf("k", 3)...)
	if cold, _ := coldCount(h); cold != 3 {
		t.Fatalf("%d cold, want 3", cold)
	}
	if err := h.st.Close(); err != nil {
		t.Fatal(err)
	}
	_, so := h.slave("s", 4, "k")
	so.quiet(t)
	h.s.mu.Lock()
	pending := h.s.queue.len(h.s.classes["k"])
	h.s.mu.Unlock()
	if pending != 3 {
		t.Fatalf("%d tasks queued after a failed read, want 3", pending)
	}
}
