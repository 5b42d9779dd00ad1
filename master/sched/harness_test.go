package sched

import (
	"context"
	"flag"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/anthill-project/anthill/master/store"
	"github.com/anthill-project/anthill/protocol"
)

// These tests drive the scheduler synchronously: no port, no ticker. Peers
// are recording outboxes, time is a clock the test moves, and the
// background duties run when the test calls tick. Only the store's commits
// are asynchronous, as they are in production: what the scheduler sends
// from a commit's callback is awaited with readAs.

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var hot = flag.Bool("hot", false, "keep the tests' queued tasks in memory (the default of a master with a shallow queue)")

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

// outbox records what the scheduler sends to one peer.
type outbox struct {
	t      testing.TB
	name   string
	msgs   chan protocol.Message
	closes chan string // protocol codes Close was called with
}

func newOutbox(t testing.TB, name string) *outbox {
	return &outbox{t: t, name: name, msgs: make(chan protocol.Message, 4096), closes: make(chan string, 16)}
}

func (o *outbox) Send(msg protocol.Message) bool {
	select {
	case o.msgs <- msg:
		return true
	default:
		o.t.Errorf("%s: outbox full", o.name)
		return false
	}
}

func (o *outbox) Close(code, _ string) { o.closes <- code }

// readAs waits for the next message to o and fails the test, saying what
// arrived instead, unless it is a T.
func readAs[T protocol.Message](t testing.TB, o *outbox) T {
	t.Helper()
	select {
	case msg := <-o.msgs:
		v, ok := msg.(T)
		if !ok {
			var want T
			t.Fatalf("%s: got %T %+v, want %T", o.name, msg, msg, want)
		}
		return v
	case <-time.After(10 * time.Second):
		var want T
		t.Fatalf("%s: nothing arrived in 10s, want %T", o.name, want)
	}
	panic("unreachable")
}

// quiet checks that nothing was sent to o, as far as the scheduler's
// synchronous work goes: a commit may still be under way.
func (o *outbox) quiet(t testing.TB) {
	t.Helper()
	select {
	case msg := <-o.msgs:
		t.Fatalf("%s: unexpected %T %+v", o.name, msg, msg)
	default:
	}
}

// harness is a scheduler on a real store in a temp dir, with its commit
// pump running.
type harness struct {
	t     testing.TB
	dir   string
	opts  Options
	clock *testClock
	s     *Scheduler
	st    *store.Store
	stop  func()
}

func newHarness(t testing.TB, o Options) *harness {
	t.Helper()
	h := &harness{t: t, dir: t.TempDir(), clock: newTestClock()}
	if o.Now == nil {
		o.Now = h.clock.Now
	}
	o.OnFatal = func(err error) { t.Errorf("scheduler failed: %v", err) }
	if o.HotTasks == 0 && !*hot {
		// Every test runs its tasks through the store, as a master with
		// a deep queue does (see cold.go); -hot keeps them in memory.
		o.HotTasks = -1
	}
	h.opts = o
	h.open()
	return h
}

func (h *harness) open() {
	h.t.Helper()
	st, err := store.Open(filepath.Join(h.dir, "anthill.db"), store.Options{NoSync: true})
	if err != nil {
		h.t.Fatal(err)
	}
	s, err := New(st, h.opts)
	if err != nil {
		st.Close()
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.pump(ctx) }()
	var once sync.Once
	h.s, h.st = s, st
	h.stop = func() {
		once.Do(func() {
			cancel()
			<-done
			s.flushCommits()
			if err := st.Close(); err != nil {
				h.t.Errorf("close store: %v", err)
			}
		})
	}
	h.t.Cleanup(h.stop)
}

// restart stops the scheduler and opens a new one on the same store, as a
// master restarted on its data dir.
func (h *harness) restart() {
	h.t.Helper()
	h.stop()
	h.open()
}

// tick runs the background duties that are due.
func (h *harness) tick() { h.s.tick() }

// slave attaches a slave session that runs kinds, window tasks at once.
func (h *harness) slave(name string, window int, kinds ...string) (*Slave, *outbox) {
	out := newOutbox(h.t, "slave "+name)
	hello := &protocol.Hello{Version: protocol.Version, Role: protocol.RoleSlave, Name: name, Kinds: kinds, Concurrency: window}
	return h.s.AttachSlave("session-"+name, hello, out), out
}

// app attaches a connection of application name.
func (h *harness) app(name string) (*App, *outbox) {
	out := newOutbox(h.t, "app "+name)
	a, _ := h.s.AttachApp(name, out, nil)
	return a, out
}

// submit stores tasks for app through the operator API.
func (h *harness) submit(app string, tasks ...protocol.NewTask) uint64 {
	h.t.Helper()
	first, err := h.s.Submit(context.Background(), app, tasks)
	if err != nil {
		h.t.Fatal(err)
	}
	return first
}

// push submits tasks as an application connection does and returns the
// ack, which arrives once they are durable.
func (h *harness) push(a *App, out *outbox, seq uint64, tasks ...protocol.NewTask) *protocol.SubmitAck {
	h.t.Helper()
	h.s.SubmitBatch(a, out, &protocol.Submit{Seq: seq, Tasks: tasks})
	return readAs[*protocol.SubmitAck](h.t, out)
}

// wait waits until the tasks are final and durable.
func (h *harness) wait(ids ...uint64) []TaskInfo {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got, err := h.s.Wait(ctx, ids)
	if err != nil || len(got) != len(ids) {
		h.t.Fatalf("wait %v: %d final, %v", ids, len(got), err)
	}
	return got
}

func (h *harness) task(id uint64) TaskInfo {
	h.t.Helper()
	info, err := h.s.Task(id)
	if err != nil {
		h.t.Fatal(err)
	}
	return info
}

// settle waits until every batch queued so far is durable.
func (h *harness) settle() {
	h.t.Helper()
	done := make(chan error, 1)
	h.s.mu.Lock()
	h.s.commitLocked(new(store.Batch), func(err error) { done <- err })
	h.s.mu.Unlock()
	if err := <-done; err != nil {
		h.t.Fatal(err)
	}
}

// complete hands sl's results to the scheduler as an honest slave would:
// a result without a lease echoes the one its task's running attempt has,
// if any. Tests of fencing call Complete with the lease they mean.
func (h *harness) complete(sl *Slave, results []protocol.Result) {
	h.s.mu.Lock()
	for i := range results {
		if r := &results[i]; r.Lease == 0 {
			if t := h.s.tasks[r.ID]; t != nil {
				r.Lease = t.lease
			}
		}
	}
	h.s.mu.Unlock()
	h.s.Complete(sl, results)
}

func result(id uint64, attempt uint32, out string) protocol.Result {
	return protocol.Result{ID: id, Attempt: attempt, Output: []byte(out)}
}

func failure(id uint64, attempt uint32, err string) protocol.Result {
	return protocol.Result{ID: id, Attempt: attempt, Err: err}
}

func tasksOf(kind string, n int) []protocol.NewTask {
	ts := make([]protocol.NewTask, n)
	for i := range ts {
		ts[i] = protocol.NewTask{Kind: kind, Payload: fmt.Appendf(nil, "%d", i)}
	}
	return ts
}
