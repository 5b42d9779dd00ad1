package sched

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/anthill-project/anthill/protocol"
)

func TestSubmitGetWait(t *testing.T) {
	h := newHarness(t, Options{})
	id := h.submit("scripts", protocol.NewTask{Kind: "k", Payload: []byte("in")})
	info := h.task(id)
	if info.State != protocol.StatePending || string(info.Payload) != "in" || info.App != "scripts" {
		t.Fatalf("pending task: %+v", info)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if got, err := h.s.Wait(ctx, []uint64{id}); err != nil || len(got) != 0 {
		t.Fatalf("wait with nothing finished: %v %v", got, err)
	}

	sl, so := h.slave("s", 1, "k")
	d := readAs[*protocol.Dispatch](t, so)
	if info := h.task(id); info.State != protocol.StateRunning || info.Slave != "s/session-s" || info.Attempts != 1 {
		t.Fatalf("running task: %+v", info)
	}
	waited := make(chan []TaskInfo, 1)
	go func() {
		got, _ := h.s.Wait(context.Background(), []uint64{id, id})
		waited <- got
	}()
	h.complete(sl, []protocol.Result{result(d.Tasks[0].ID, 1, "out")})
	got := <-waited
	if len(got) != 1 || got[0].State != protocol.StateDone || string(got[0].Result) != "out" || string(got[0].Payload) != "in" {
		t.Fatalf("waited: %+v", got)
	}
	// Quiet tasks need no acknowledgement: nothing stays pending in memory.
	if st := h.s.Stats(); st.Unacked != 0 {
		t.Fatalf("%d unacknowledged after a quiet task finished", st.Unacked)
	}
	if info := h.task(id); info.State != protocol.StateDone {
		t.Fatalf("finished task from the store: %+v", info)
	}
}

// Stop refuses new work and ends long polls.
func TestStopRefusesAndWakes(t *testing.T) {
	h := newHarness(t, Options{})
	id := h.submit("a", protocol.NewTask{Kind: "k"})
	waited := make(chan error, 1)
	go func() {
		got, err := h.s.Wait(context.Background(), []uint64{id})
		if err == nil && len(got) != 0 {
			err = errors.New("a pending task came back as final")
		}
		waited <- err
	}()
	h.s.Stop()
	h.s.Stop()
	if err := <-waited; err != nil {
		t.Fatal(err)
	}
	if _, err := h.s.Submit(context.Background(), "a", tasksOf("k", 1)); !errors.Is(err, ErrStopping) {
		t.Fatalf("submit after Stop: %v", err)
	}
}

func TestSubmitRefusals(t *testing.T) {
	h := newHarness(t, Options{MaxPayload: 10})
	var se *SubmitError
	_, err := h.s.Submit(context.Background(), "a", []protocol.NewTask{{Kind: "k"}, {Kind: "k", Payload: make([]byte, 11)}})
	if !errors.As(err, &se) || se.Index != 1 || se.Code != protocol.CodePayloadTooLarge || se.Field != protocol.FieldPayload {
		t.Fatalf("oversized payload: %v", err)
	}
	if _, err := h.s.Submit(context.Background(), "", tasksOf("k", 1)); !errors.As(err, &se) || se.Index != -1 {
		t.Fatalf("empty app: %v", err)
	}
	if st := h.s.Stats(); st.Submitted != 0 {
		t.Fatalf("a refused batch stored %d tasks", st.Submitted)
	}
	for _, f := range []func() error{
		func() error { _, err := h.s.Task(42); return err },
		func() error { _, err := h.s.Wait(context.Background(), []uint64{42}); return err },
		func() error { return h.s.Cancel(42) },
		func() error { return h.s.Retry(42) },
	} {
		if err := f(); !errors.Is(err, ErrNotFound) {
			t.Errorf("unknown id: %v", err)
		}
	}
	if err := h.s.Drain("nope"); !errors.Is(err, ErrUnknownSlave) {
		t.Errorf("unknown slave: %v", err)
	}
}

// pageAll follows Tasks' cursor from the start and returns the ids it saw.
func pageAll(t *testing.T, s *Scheduler, f TaskFilter) []uint64 {
	t.Helper()
	var ids []uint64
	for pages := 0; ; pages++ {
		page, next, err := s.Tasks(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, ti := range page {
			ids = append(ids, ti.ID)
		}
		if next == 0 {
			return ids
		}
		if pages > 30 {
			t.Fatalf("pagination of %+v does not end", f)
		}
		f.After, f.Before = next, next
	}
}

func TestListPaginatesAndFilters(t *testing.T) {
	h := newHarness(t, Options{})
	var tasks []protocol.NewTask
	for i := range 25 {
		kind := "a"
		if i%5 == 0 {
			kind = "b"
		}
		tasks = append(tasks, protocol.NewTask{Kind: kind})
	}
	first := h.submit("lister", tasks...)
	var all, newest []uint64
	for i := range uint64(25) {
		all, newest = append(all, first+i), append(newest, first+24-i)
	}
	if seen := pageAll(t, h.s, TaskFilter{Limit: 7}); !slices.Equal(seen, all) {
		t.Fatalf("paged through %d tasks: %v", len(seen), seen)
	}
	bs, _, err := h.s.Tasks(TaskFilter{Kind: "b", App: "lister", State: protocol.StatePending})
	if err != nil || len(bs) != 5 {
		t.Fatalf("filter kind b: %d %v", len(bs), err)
	}
	// Filtered pages with a cursor: every fifth task, two at a time, none
	// skipped or repeated where a page ends.
	bids := pageAll(t, h.s, TaskFilter{Kind: "b", Limit: 2})
	if !slices.Equal(bids, []uint64{first, first + 5, first + 10, first + 15, first + 20}) {
		t.Fatalf("kind b paged: %v", bids)
	}
	if none, _, _ := h.s.Tasks(TaskFilter{App: "other"}); len(none) != 0 {
		t.Fatalf("filter by another app found %d", len(none))
	}
	// Newest first, with Before as the cursor; After is ignored.
	if desc := pageAll(t, h.s, TaskFilter{Limit: 7, Desc: true, After: first + 100}); !slices.Equal(desc, newest) {
		t.Fatalf("newest first: %v", desc)
	}
	// Live state is laid over the store: a running task is listed as
	// running though the store still says pending.
	_, so := h.slave("s", 1, "a")
	running := readAs[*protocol.Dispatch](t, so).Tasks[0].ID
	page, _, err := h.s.Tasks(TaskFilter{State: protocol.StateRunning})
	if err != nil || len(page) != 1 || page[0].ID != running || page[0].Slave != "s/session-s" {
		t.Fatalf("running tasks: %+v %v", page, err)
	}
}

// A rare match answers in one call whatever the store holds besides: the
// store skips its zones that hold none (see store.ScanMatch). Matches
// spread thin, one in every thousand records, fill a page over several
// calls, each reading at most MaxScan records, with a cursor between.
func TestListOfARareMatch(t *testing.T) {
	h := newHarness(t, Options{})
	rare := h.submit("many", tasksOf("k", 1)...)
	if err := h.s.Cancel(rare); err != nil {
		t.Fatal(err)
	}
	var spread []uint64
	for range MaxScan/10000 + 1 {
		first := h.submit("many", tasksOf("k", 10000)...)
		for id := first + 999; id < first+10000; id += 1000 {
			if err := h.s.Cancel(id); err != nil {
				t.Fatal(err)
			}
			spread = append(spread, id)
		}
	}
	last := rare + MaxScan/10000*10000 + 10000
	h.submit("few", protocol.NewTask{Kind: "rare"})
	for _, f := range []TaskFilter{
		{App: "few"},
		{App: "few", Desc: true},
		{Kind: "rare"},
		{App: "few", Kind: "rare", State: protocol.StatePending},
	} {
		page, next, err := h.s.Tasks(f)
		if err != nil || len(page) != 1 || page[0].ID != last+1 || page[0].State != protocol.StatePending || next != 0 {
			t.Errorf("%+v: %+v, next %d, %v", f, page, next, err)
		}
	}
	for _, f := range []TaskFilter{{App: "nobody"}, {Kind: "none"}, {State: protocol.StateDone}, {App: "many", Kind: "rare"}} {
		if page, next, err := h.s.Tasks(f); err != nil || len(page) != 0 || next != 0 {
			t.Errorf("%+v: %d tasks, next %d, %v", f, len(page), next, err)
		}
	}
	f := TaskFilter{State: protocol.StateCanceled, App: "many", Limit: MaxPage}
	page, next, err := h.s.Tasks(f)
	if err != nil || len(page) == 0 || len(page) == len(spread)+1 || next == 0 || page[0].ID != rare {
		t.Fatalf("spread thin, first call: %d tasks, next %d, %v", len(page), next, err)
	}
	got := []uint64{}
	for _, ti := range page {
		got = append(got, ti.ID)
	}
	f.After = next
	if page, next, err = h.s.Tasks(f); err != nil || next != 0 {
		t.Fatalf("second call: %d tasks, next %d, %v", len(page), next, err)
	}
	for _, ti := range page {
		got = append(got, ti.ID)
	}
	if !slices.Equal(got, append([]uint64{rare}, spread...)) {
		t.Errorf("spread thin, listed %v", got)
	}
	newest, _, err := h.s.Tasks(TaskFilter{App: "many", State: protocol.StatePending, Desc: true, Limit: 3})
	// The last of the many is canceled.
	if err != nil || len(newest) != 3 || newest[0].ID != last-1 || newest[2].ID != last-3 {
		t.Fatalf("newest pending: %+v, %v", newest, err)
	}
}

func TestCancelAndRetry(t *testing.T) {
	h := newHarness(t, Options{})
	a, ao := h.app("owner")
	ack := h.push(a, ao, 1, tasksOf("k", 2)...)
	running, pending := ack.FirstID, ack.FirstID+1

	sl, so := h.slave("s", 1, "k")
	if d := readAs[*protocol.Dispatch](t, so); d.Tasks[0].ID != running {
		t.Fatalf("dispatched %d", d.Tasks[0].ID)
	}
	if err := h.s.Cancel(pending); err != nil {
		t.Fatal(err)
	}
	if n := readAs[*protocol.Notify](t, ao); n.Tasks[0].ID != pending || n.Tasks[0].State != protocol.StateCanceled {
		t.Fatalf("notify %+v", n.Tasks)
	}
	// Cancelling a running task tells its slave and frees its slot.
	if err := h.s.Cancel(running); err != nil {
		t.Fatal(err)
	}
	if c := readAs[*protocol.IDs](t, so); c.T != protocol.TypeCancel || c.IDs[0] != running {
		t.Fatalf("slave got %+v", c)
	}
	if n := readAs[*protocol.Notify](t, ao); n.Tasks[0].ID != running || n.Tasks[0].State != protocol.StateCanceled {
		t.Fatalf("notify %+v", n.Tasks)
	}
	if err := h.s.Cancel(running); !errors.Is(err, ErrFinal) {
		t.Fatalf("cancel twice: %v", err)
	}

	// A canceled task runs again on retry, from attempt 1, and its
	// application hears of the new outcome.
	if err := h.s.Retry(running); err != nil {
		t.Fatal(err)
	}
	d := readAs[*protocol.Dispatch](t, so)
	if d.Tasks[0].ID != running || d.Tasks[0].Attempt != 1 {
		t.Fatalf("retried dispatch %+v", d.Tasks[0])
	}
	if err := h.s.Retry(running); !errors.Is(err, ErrNotFinal) {
		t.Fatalf("retry of a running task: %v", err)
	}
	h.complete(sl, []protocol.Result{result(running, 1, "ok")})
	if n := readAs[*protocol.Notify](t, ao); n.Tasks[0].ID != running || n.Tasks[0].State != protocol.StateDone {
		t.Fatalf("after retry: %+v", n.Tasks)
	}
	// A final task the application acknowledged is read from the store,
	// and can be retried from there.
	h.s.Acknowledge(a, ao, []uint64{pending})
	readAs[*protocol.IDs](t, ao)
	if err := h.s.Cancel(pending); !errors.Is(err, ErrFinal) {
		t.Fatalf("cancel of an acknowledged task: %v", err)
	}
	if err := h.s.Retry(pending); err != nil {
		t.Fatal(err)
	}
	if d := readAs[*protocol.Dispatch](t, so); d.Tasks[0].ID != pending || d.Tasks[0].Attempt != 1 || string(d.Tasks[0].Payload) != "1" {
		t.Fatalf("retried from the store: %+v", d.Tasks[0])
	}
}

func TestDrainStopsDispatch(t *testing.T) {
	h := newHarness(t, Options{})
	draining, _ := h.slave("draining", 4, "k")
	if err := h.s.Drain(draining.Session()); err != nil {
		t.Fatal(err)
	}
	id := h.submit("a", protocol.NewTask{Kind: "k"})
	_, other := h.slave("other", 4, "k")
	if d := readAs[*protocol.Dispatch](t, other); d.Tasks[0].ID != id {
		t.Fatalf("the task went to %+v", d.Tasks)
	}
}

// Finished tasks leave the store once the retention has passed; before
// that they stay readable.
func TestRetentionRemovesFinishedTasks(t *testing.T) {
	h := newHarness(t, Options{Retention: time.Hour})
	id := h.submit("a", protocol.NewTask{Kind: "k"})
	sl, so := h.slave("s", 1, "k")
	readAs[*protocol.Dispatch](t, so)
	h.complete(sl, []protocol.Result{result(id, 1, "")})
	h.wait(id)
	h.clock.Advance(30 * time.Minute)
	h.tick()
	h.settle()
	if _, err := h.s.Task(id); err != nil {
		t.Fatalf("task gone before its retention: %v", err)
	}
	h.clock.Advance(time.Hour)
	h.tick()
	h.settle()
	if _, err := h.s.Task(id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("task still there after its retention: %v", err)
	}
}

// With a negative retention an acknowledged task is deleted at once.
func TestNegativeRetentionDeletesOnAck(t *testing.T) {
	h := newHarness(t, Options{Retention: -1})
	sl, so := h.slave("s", 1, "k")
	a, ao := h.app("a")
	id := h.push(a, ao, 1, protocol.NewTask{Kind: "k"}).FirstID
	readAs[*protocol.Dispatch](t, so)
	h.complete(sl, []protocol.Result{result(id, 1, "")})
	readAs[*protocol.Notify](t, ao)
	h.s.Acknowledge(a, ao, []uint64{id})
	readAs[*protocol.IDs](t, ao)
	if _, err := h.s.Task(id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("acknowledged task kept: %v", err)
	}
}

// BenchmarkTasks lists pages of a store of 100,000 tasks, one in a thousand
// canceled and the rest waiting, as the dashboard and Tasks.List do. Waiting
// tasks are live, so each is copied under the scheduler's lock: the time per
// call bounds how long dispatch may wait behind an operator paging.
func BenchmarkTasks(b *testing.B) {
	h := newHarness(b, Options{})
	batch := tasksOf("echo", 1000)
	for range 100 {
		first := h.submit("bench", batch...)
		if err := h.s.Cancel(first + 500); err != nil {
			b.Fatal(err)
		}
	}
	for _, bc := range []struct {
		name string
		f    TaskFilter
	}{
		{"page-50", TaskFilter{Limit: 50, Desc: true}},
		{"canceled-1000", TaskFilter{State: protocol.StateCanceled, Limit: 1000}},
		{"app-mismatch-1000", TaskFilter{App: "nobody", Limit: 1000}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				if _, _, err := h.s.Tasks(bc.f); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// A task that was final but not yet acknowledged when the master stopped
// is final after the restart: Wait returns it at once, payload and all.
func TestWaitAfterRestartOnAnUnacknowledgedTask(t *testing.T) {
	h := newHarness(t, Options{})
	sl, so := h.slave("s", 1, "k")
	a, ao := h.app("a")
	id := h.push(a, ao, 1, protocol.NewTask{Kind: "k", Payload: []byte("in")}).FirstID
	readAs[*protocol.Dispatch](t, so)
	h.complete(sl, []protocol.Result{result(id, 1, "out")})
	readAs[*protocol.Notify](t, ao)
	h.restart()
	got := h.wait(id)
	if got[0].State != protocol.StateDone || string(got[0].Result) != "out" || string(got[0].Payload) != "in" {
		t.Fatalf("after the restart: %+v", got[0])
	}
	if st := h.s.Stats(); st.Unacked != 1 {
		t.Fatalf("%d unacknowledged after the restart, want 1", st.Unacked)
	}
}
