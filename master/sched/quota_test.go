package sched

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/anthill-project/anthill/master/store"
	"github.com/anthill-project/anthill/protocol"
)

// checkCounts recomputes what the quotas count from the tasks themselves
// and compares it with the counters kept as they live.
func checkCounts(t *testing.T, s *Scheduler) (tasks, bytes int64) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	kinds := map[string]int{}
	perApp := map[*App][2]int64{}
	for _, tk := range s.tasks {
		kinds[tk.kind]++
		if tk.state.Final() {
			continue
		}
		tasks++
		bytes += int64(len(tk.payload))
		c := perApp[tk.app]
		perApp[tk.app] = [2]int64{c[0] + 1, c[1] + int64(len(tk.payload))}
	}
	// The cold tasks are in the store only.
	cold := 0
	err := s.st.LoadIndex(func(sum *store.Summary, _ func() (*store.Record, error)) error {
		if sum.State.Final() || sum.Parent != 0 || s.tasks[sum.ID] != nil {
			return nil
		}
		cold++
		kinds[string(sum.Kind)]++
		tasks++
		bytes += int64(sum.PayloadLen)
		a := s.apps[string(sum.App)]
		c := perApp[a]
		perApp[a] = [2]int64{c[0] + 1, c[1] + int64(sum.PayloadLen)}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if cold != s.cold {
		t.Fatalf("%d cold tasks counted, %d in the store", s.cold, cold)
	}
	if tasks != s.queuedTasks || bytes != s.queuedBytes {
		t.Fatalf("counted %d tasks, %d bytes; the tasks are %d, %d bytes", s.queuedTasks, s.queuedBytes, tasks, bytes)
	}
	for _, a := range s.apps {
		if c := perApp[a]; c[0] != a.queuedTasks || c[1] != a.queuedBytes {
			t.Fatalf("app %s counted %d tasks, %d bytes; its tasks are %d, %d", a.name, a.queuedTasks, a.queuedBytes, c[0], c[1])
		}
	}
	if len(kinds) != len(s.liveKinds) {
		t.Fatalf("live kinds %v, tasks' kinds %v", s.liveKinds, kinds)
	}
	for k, n := range kinds {
		if s.liveKinds[k] != n {
			t.Fatalf("live kinds %v, tasks' kinds %v", s.liveKinds, kinds)
		}
	}
	return tasks, bytes
}

func quotaErr(t *testing.T, err error, quota string) {
	t.Helper()
	var qe *QuotaError
	if !errors.As(err, &qe) || qe.Quota != quota {
		t.Fatalf("got %v, want a quota error of %s", err, quota)
	}
}

// The queue quotas count every task accepted and not final, through
// submit, cancel, retry and restart, and refuse a submit that would pass
// them, whole.
func TestQuotaCountsFollowTheTaskLife(t *testing.T) {
	h := newHarness(t, Options{MaxQueuedTasks: 5, MaxQueuedBytes: 10, MaxQueuedTasksPerApp: 4, MaxSubmitTasks: 3})
	first := h.submit("a", tasksOf("k", 3)...) // payloads "0" "1" "2"
	if n, b := checkCounts(t, h.s); n != 3 || b != 3 {
		t.Fatalf("after submit: %d tasks, %d bytes", n, b)
	}
	_, err := h.s.Submit(context.Background(), "a", tasksOf("k", 2))
	quotaErr(t, err, QuotaQueuedTasksPerApp)
	_, err = h.s.Submit(context.Background(), "b", tasksOf("k", 4))
	quotaErr(t, err, QuotaSubmitTasks)
	_, err = h.s.Submit(context.Background(), "b", []protocol.NewTask{{Kind: "k", Payload: make([]byte, 8)}})
	quotaErr(t, err, QuotaQueuedBytes)
	h.submit("b", tasksOf("k", 2)...)
	_, err = h.s.Submit(context.Background(), "b", tasksOf("k", 1))
	quotaErr(t, err, QuotaQueuedTasks)
	checkCounts(t, h.s)

	// An application connection hears of it as a reject of the whole batch.
	a, ao := h.app("a")
	h.s.SubmitBatch(a, ao, &protocol.Submit{Seq: 1, Tasks: tasksOf("k", 1)})
	rej := readAs[*protocol.SubmitReject](t, ao)
	if rej.Code != protocol.CodeQuotaExceeded || rej.Index != -1 || !strings.Contains(rej.Message, "max-queued-tasks is 5") {
		t.Fatalf("reject %+v", rej)
	}

	if err := h.s.Cancel(first); err != nil {
		t.Fatal(err)
	}
	h.wait(first)
	if n, _ := checkCounts(t, h.s); n != 4 {
		t.Fatalf("after cancel: %d tasks", n)
	}
	if err := h.s.Retry(first); err != nil {
		t.Fatal(err)
	}
	if n, _ := checkCounts(t, h.s); n != 5 {
		t.Fatalf("after retry: %d tasks", n)
	}
	h.settle()
	h.restart()
	if n, b := checkCounts(t, h.s); n != 5 || b != 5 {
		t.Fatalf("after restart: %d tasks, %d bytes", n, b)
	}
	_, err = h.s.Submit(context.Background(), "c", tasksOf("k", 1))
	quotaErr(t, err, QuotaQueuedTasks)
}

// The kind quota counts the kinds of the tasks held, not every kind ever
// seen: once a kind's tasks are gone, another may come.
func TestQuotaKindsAreThoseHeld(t *testing.T) {
	h := newHarness(t, Options{MaxKinds: 2, Retention: -1})
	h.submit("a", tasksOf("one", 1)...)
	gone := h.submit("a", tasksOf("two", 1)...)
	_, err := h.s.Submit(context.Background(), "a", append(tasksOf("two", 1), tasksOf("three", 1)...))
	quotaErr(t, err, QuotaKinds)
	if err := h.s.Cancel(gone); err != nil {
		t.Fatal(err)
	}
	h.wait(gone) // quiet: final, then gone from memory
	h.submit("a", tasksOf("three", 1)...)
	checkCounts(t, h.s)
}

// An application with nothing left is forgotten after AppIdle, with its
// series; past MaxApps a new one is refused, and a forgotten one makes
// room.
func TestQuotaIdleAppsAreForgotten(t *testing.T) {
	h := newHarness(t, Options{MaxApps: 2, AppIdle: time.Minute, Retention: -1})
	a, ao := h.app("a")
	h.app("b")
	over := newOutbox(t, "app c")
	if got, _ := h.s.AttachApp("c", over, nil); got != nil {
		t.Fatal("a third app was attached")
	}
	if code := <-over.closes; code != protocol.CodeQuotaExceeded {
		t.Fatalf("closed with %s", code)
	}
	_, err := h.s.Submit(context.Background(), "c", tasksOf("k", 1))
	quotaErr(t, err, QuotaApps)

	ack := h.push(a, ao, 1, tasksOf("k", 1)...)
	if err := h.s.Cancel(ack.FirstID); err != nil {
		t.Fatal(err)
	}
	readAs[*protocol.Notify](t, ao)
	h.s.DetachApp(a, ao)
	h.tick()
	h.clock.Advance(2 * time.Minute)
	h.tick()
	if h.s.apps["a"] == nil {
		t.Fatal("an app with an unacknowledged notification was forgotten")
	}
	a, ao = h.app("a")
	readAs[*protocol.Notify](t, ao)
	h.s.Acknowledge(a, ao, []uint64{ack.FirstID})
	readAs[*protocol.IDs](t, ao)
	h.s.DetachApp(a, ao)
	// The duty sees it idle on its next run, a second on at most.
	h.clock.Advance(time.Second)
	h.tick()
	h.clock.Advance(30 * time.Second)
	h.tick()
	if h.s.apps["a"] == nil {
		t.Fatal("forgotten before its idle time")
	}
	h.clock.Advance(30 * time.Second)
	h.tick()
	if h.s.apps["a"] != nil {
		t.Fatal("an idle app was kept")
	}
	for _, as := range h.s.metrics.Apps() {
		if as.Name == "a" {
			t.Fatal("the forgotten app's series remain")
		}
	}
	if got, _ := h.s.AttachApp("c", newOutbox(t, "app c"), nil); got == nil {
		t.Fatal("no room after an app was forgotten")
	}
}

// M4: the retention sweep keeps the record of a task retried after its
// acknowledgement, and a restart finds it pending.
func TestQuotaRetentionKeepsRetriedTask(t *testing.T) {
	h := newHarness(t, Options{Retention: time.Second})
	id := h.submit("a", tasksOf("k", 1)...)
	if err := h.s.Cancel(id); err != nil {
		t.Fatal(err)
	}
	h.wait(id)
	if err := h.s.Retry(id); err != nil {
		t.Fatal(err)
	}
	h.settle()
	h.clock.Advance(time.Minute)
	h.tick()
	h.settle()
	h.restart()
	if got := h.task(id); got.State != protocol.StatePending {
		t.Fatalf("after the sweep and a restart: %s", got.State)
	}
}

// BenchmarkDetachSlaveLargeTasks is H3's requeue under the scheduler's
// lock: a slave holding 300 tasks of 1 MiB vanishes. It reports the bytes
// the requeue writes (bytes/requeue) and allocates (B/op); before payloads
// were written once, both were the 300 MiB of payloads again (see
// store's BenchmarkRequeueLargePayloads, PutTask).
func BenchmarkDetachSlaveLargeTasks(b *testing.B) {
	h := newHarness(b, Options{MaxFrame: 512 << 20, MaxPayload: 1 << 20})
	tasks := make([]protocol.NewTask, 300)
	for i := range tasks {
		tasks[i] = protocol.NewTask{Kind: "k", Payload: make([]byte, 1<<20)}
	}
	for i := 0; i < len(tasks); i += 50 {
		h.submit("a", tasks[i:i+50]...)
	}
	var wrote int
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		h.s.mu.Lock()
		for _, t := range h.s.tasks {
			t.attempts = 0 // every round costs an attempt
		}
		h.s.mu.Unlock()
		sl, out := h.slave("s", len(tasks), "k")
		// Past the slow start at once, as a session that has delivered
		// for a while would be.
		h.s.mu.Lock()
		sl.window = sl.maxWindow
		h.s.dispatchLocked(sl, false)
		h.s.mu.Unlock()
		for held := 0; held < len(tasks); h.tick() {
			held += len(readAs[*protocol.Dispatch](b, out).Tasks)
		}
		before := h.st.Stats().Bytes
		b.StartTimer()
		h.s.DetachSlave(sl)
		b.StopTimer()
		h.settle()
		wrote = int(h.st.Stats().Bytes - before)
		b.StartTimer()
	}
	b.ReportMetric(float64(wrote), "bytes/requeue")
}
