package master

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/anthill-project/anthill/protocol"
)

func submit(t *testing.T, m *Master, app string, tasks ...protocol.NewTask) uint64 {
	t.Helper()
	first, err := m.Submit(context.Background(), app, tasks)
	if err != nil {
		t.Fatal(err)
	}
	return first
}

func TestSubmitGetWait(t *testing.T) {
	m := newMaster(t, t.TempDir(), Options{})
	id := submit(t, m, "scripts", protocol.NewTask{Kind: "k", Payload: []byte("in")})
	info, err := m.Task(id)
	if err != nil || info.State != protocol.StatePending || string(info.Payload) != "in" || info.App != "scripts" {
		t.Fatalf("pending task: %+v %v", info, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if got, err := m.Wait(ctx, []uint64{id}); err != nil || len(got) != 0 {
		t.Fatalf("wait with nothing finished: %v %v", got, err)
	}

	s := dial(t, m, "/ws/slave", slaveHello("s", 1, "k"))
	d := s.read().(*protocol.Dispatch)
	if info, _ := m.Task(id); info.State != protocol.StateRunning || info.Slave != "s" || info.Attempts != 1 {
		t.Fatalf("running task: %+v", info)
	}
	waited := make(chan []TaskInfo, 1)
	go func() {
		got, _ := m.Wait(context.Background(), []uint64{id, id})
		waited <- got
	}()
	s.send(&protocol.Results{Results: []protocol.Result{{ID: d.Tasks[0].ID, Attempt: 1, Output: []byte("out")}}})
	got := <-waited
	if len(got) != 1 || got[0].State != protocol.StateDone || string(got[0].Result) != "out" || string(got[0].Payload) != "in" {
		t.Fatalf("waited: %+v", got)
	}
	// Quiet tasks need no acknowledgement: nothing stays pending in memory.
	if st := m.Stats(); st.Unacked != 0 {
		t.Fatalf("%d unacknowledged after a quiet task finished", st.Unacked)
	}
	if info, err := m.Task(id); err != nil || info.State != protocol.StateDone {
		t.Fatalf("finished task from the store: %+v %v", info, err)
	}
}

func TestSubmitRefusals(t *testing.T) {
	m := newMaster(t, t.TempDir(), Options{MaxPayload: 10})
	var se *SubmitError
	_, err := m.Submit(context.Background(), "a", []protocol.NewTask{{Kind: "k"}, {Kind: "k", Payload: make([]byte, 11)}})
	if !errors.As(err, &se) || se.Index != 1 || se.Code != protocol.CodePayloadTooLarge {
		t.Fatalf("oversized payload: %v", err)
	}
	if _, err := m.Submit(context.Background(), "", []protocol.NewTask{{Kind: "k"}}); !errors.As(err, &se) {
		t.Fatalf("empty app: %v", err)
	}
	if st := m.Stats(); st.Submitted != 0 {
		t.Fatalf("a refused batch stored %d tasks", st.Submitted)
	}
	for _, f := range []func() error{
		func() error { _, err := m.Task(42); return err },
		func() error { _, err := m.Wait(context.Background(), []uint64{42}); return err },
		func() error { return m.Cancel(42) },
		func() error { return m.Retry(42) },
	} {
		if err := f(); !errors.Is(err, ErrNotFound) {
			t.Errorf("unknown id: %v", err)
		}
	}
	if err := m.Drain("nope"); !errors.Is(err, ErrUnknownSlave) {
		t.Errorf("unknown slave: %v", err)
	}
}

// pageAll follows Tasks' cursor from the start and returns the ids it saw.
func pageAll(t *testing.T, m *Master, f TaskFilter) []uint64 {
	t.Helper()
	var ids []uint64
	for pages := 0; ; pages++ {
		page, next, err := m.Tasks(f)
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
	m := newMaster(t, t.TempDir(), Options{})
	var tasks []protocol.NewTask
	for i := range 25 {
		kind := "a"
		if i%5 == 0 {
			kind = "b"
		}
		tasks = append(tasks, protocol.NewTask{Kind: kind})
	}
	first := submit(t, m, "lister", tasks...)
	var all, newest []uint64
	for i := range uint64(25) {
		all, newest = append(all, first+i), append(newest, first+24-i)
	}
	if seen := pageAll(t, m, TaskFilter{Limit: 7}); !slices.Equal(seen, all) {
		t.Fatalf("paged through %d tasks: %v", len(seen), seen)
	}
	bs, _, err := m.Tasks(TaskFilter{Kind: "b", App: "lister", State: protocol.StatePending})
	if err != nil || len(bs) != 5 {
		t.Fatalf("filter kind b: %d %v", len(bs), err)
	}
	// Filtered pages with a cursor: every fifth task, two at a time, none
	// skipped or repeated where a page ends.
	bids := pageAll(t, m, TaskFilter{Kind: "b", Limit: 2})
	if !slices.Equal(bids, []uint64{first, first + 5, first + 10, first + 15, first + 20}) {
		t.Fatalf("kind b paged: %v", bids)
	}
	if none, _, _ := m.Tasks(TaskFilter{App: "other"}); len(none) != 0 {
		t.Fatalf("filter by another app found %d", len(none))
	}
	// Newest first, with Before as the cursor; After is ignored.
	if desc := pageAll(t, m, TaskFilter{Limit: 7, Desc: true, After: first + 100}); !slices.Equal(desc, newest) {
		t.Fatalf("newest first: %v", desc)
	}
}

func TestCancelAndRetry(t *testing.T) {
	m := newMaster(t, t.TempDir(), Options{})
	app := dial(t, m, "/ws/app", appHello("owner"))
	app.send(&protocol.Submit{Seq: 1, Tasks: []protocol.NewTask{{Kind: "k"}, {Kind: "k"}}})
	ack := app.read().(*protocol.SubmitAck)
	running, pending := ack.FirstID, ack.FirstID+1

	s := dial(t, m, "/ws/slave", slaveHello("s", 1, "k"))
	if d := s.read().(*protocol.Dispatch); d.Tasks[0].ID != running {
		t.Fatalf("dispatched %d", d.Tasks[0].ID)
	}
	if err := m.Cancel(pending); err != nil {
		t.Fatal(err)
	}
	if n := app.read().(*protocol.Notify); n.Tasks[0].ID != pending || n.Tasks[0].State != protocol.StateCanceled {
		t.Fatalf("notify %+v", n.Tasks)
	}
	// Cancelling a running task tells its slave and frees its slot.
	if err := m.Cancel(running); err != nil {
		t.Fatal(err)
	}
	if c := s.read().(*protocol.IDs); c.T != protocol.TypeCancel || c.IDs[0] != running {
		t.Fatalf("slave got %+v", c)
	}
	if n := app.read().(*protocol.Notify); n.Tasks[0].ID != running || n.Tasks[0].State != protocol.StateCanceled {
		t.Fatalf("notify %+v", n.Tasks)
	}
	if err := m.Cancel(running); !errors.Is(err, ErrFinal) {
		t.Fatalf("cancel twice: %v", err)
	}

	// A canceled task runs again on retry, from attempt 1.
	waitUntil(t, func() bool {
		info, _ := m.Task(running)
		return info.State == protocol.StateCanceled && !info.FinishedAt.IsZero()
	})
	if err := m.Retry(running); err != nil {
		t.Fatal(err)
	}
	d := s.read().(*protocol.Dispatch)
	if d.Tasks[0].ID != running || d.Tasks[0].Attempt != 1 {
		t.Fatalf("retried dispatch %+v", d.Tasks[0])
	}
	if err := m.Retry(running); !errors.Is(err, ErrNotFinal) {
		t.Fatalf("retry of a running task: %v", err)
	}
	s.send(&protocol.Results{Results: []protocol.Result{{ID: running, Attempt: 1, Output: []byte("ok")}}})
	if n := app.read().(*protocol.Notify); n.Tasks[0].ID != running || n.Tasks[0].State != protocol.StateDone {
		t.Fatalf("after retry: %+v", n.Tasks)
	}
}

func TestDrainStopsDispatch(t *testing.T) {
	m := newMaster(t, t.TempDir(), Options{})
	dial(t, m, "/ws/slave", slaveHello("draining", 4, "k"))
	waitUntil(t, func() bool { return len(m.Stats().Slaves) == 1 })
	if err := m.Drain(m.Stats().Slaves[0].Session); err != nil {
		t.Fatal(err)
	}
	id := submit(t, m, "a", protocol.NewTask{Kind: "k"})
	other := dial(t, m, "/ws/slave", slaveHello("other", 4, "k"))
	if d := other.read().(*protocol.Dispatch); d.Tasks[0].ID != id {
		t.Fatalf("the task went to %+v", d.Tasks)
	}
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition never held")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Finished tasks leave the store once the retention has passed; before
// that they stay readable.
func TestRetentionRemovesFinishedTasks(t *testing.T) {
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	m := newMaster(t, t.TempDir(), Options{Retention: time.Hour, Now: clock})
	id := submit(t, m, "a", protocol.NewTask{Kind: "k"})
	s := dial(t, m, "/ws/slave", slaveHello("s", 1, "k"))
	s.read()
	s.send(&protocol.Results{Results: []protocol.Result{{ID: id, Attempt: 1}}})
	if _, err := m.Wait(context.Background(), []uint64{id}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	now = now.Add(30 * time.Minute)
	mu.Unlock()
	time.Sleep(3 * timerTick) // let sweeps run: they must keep the task
	if _, err := m.Task(id); err != nil {
		t.Fatalf("task gone before its retention: %v", err)
	}
	mu.Lock()
	now = now.Add(time.Hour)
	mu.Unlock()
	waitUntil(t, func() bool { _, err := m.Task(id); return errors.Is(err, ErrNotFound) })
}
