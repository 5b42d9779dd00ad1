package master

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/anthill-project/anthill/master/store"
	"github.com/anthill-project/anthill/protocol"
)

// Errors of the operator API. They are wrapped with the id they concern;
// match them with errors.Is.
var (
	ErrNotFound     = errors.New("task not found")
	ErrFinal        = errors.New("task is already finished")
	ErrNotFinal     = errors.New("only a failed or canceled task can be retried")
	ErrUnknownSlave = errors.New("no such slave")
)

// SubmitError refuses a batch submitted through Submit; nothing of it was
// stored. Code is protocol.CodeInvalidTask or protocol.CodePayloadTooLarge.
type SubmitError struct {
	Index   int
	Code    string
	Message string
}

func (e *SubmitError) Error() string { return e.Message }

// TaskInfo is a task as the operator API shows it.
type TaskInfo struct {
	ID          uint64
	App, Kind   string
	Key         string
	State       protocol.State
	Attempts    uint32
	MaxAttempts uint32
	Priority    int32
	Timeout     time.Duration
	CreatedAt   time.Time
	StartedAt   time.Time // zero until first dispatched
	FinishedAt  time.Time // zero until final
	Slave       string    // the slave of the last attempt
	Payload     []byte
	Result      []byte
	Err         string
	History     []Attempt // the most recent attempts, oldest first; nil before the first
}

func infoOf(r *store.Record) TaskInfo {
	return TaskInfo{
		ID: r.ID, App: r.App, Kind: r.Kind, Key: r.Key, State: r.State, Attempts: r.Attempts,
		MaxAttempts: r.MaxAttempts, Priority: r.Priority, Timeout: r.Timeout, CreatedAt: r.CreatedAt,
		StartedAt: r.StartedAt, FinishedAt: r.FinishedAt, Slave: r.Slave, Payload: r.Payload,
		Result: r.Result, Err: r.Err, History: attemptsOf(r.History),
	}
}

// TaskFilter selects tasks for Tasks. Zero fields match everything.
type TaskFilter struct {
	State protocol.State
	App   string
	Kind  string
	Limit int    // at most this many; zero means 100, the cap is 1000
	After uint64 // the cursor: only ids above it
	// Desc lists newest first. The cursor is then Before: only ids below
	// it (zero: from the newest), and After is ignored.
	Desc   bool
	Before uint64
}

func (f *TaskFilter) match(t *TaskInfo) bool {
	return (f.State == 0 || t.State == f.State) && (f.App == "" || t.App == f.App) && (f.Kind == "" || t.Kind == f.Kind)
}

// Info describes the running master.
type Info struct {
	Version  string
	Protocol int
	Strategy string
	Dispatch string
	Data     string
	Started  time.Time
	Uptime   time.Duration
}

// Info returns what the master is.
func (m *Master) Info() Info {
	return Info{
		Version: m.opts.Version, Protocol: protocol.Version, Strategy: m.queue.Name(),
		Dispatch: m.opts.Dispatch, Data: m.opts.Data, Started: m.started, Uptime: m.opts.Now().Sub(m.started),
	}
}

// MaxPayload is the largest payload a task may carry.
func (m *Master) MaxPayload() int { return m.opts.MaxPayload }

// Submit stores tasks for app and returns once they are durable; they get
// the ids firstID, firstID+1, ... in order. Tasks submitted this way are
// "quiet": no application connection is notified or has to acknowledge
// them; their record stays readable through Task until the retention
// expires. One invalid task refuses the batch with a *SubmitError.
func (m *Master) Submit(ctx context.Context, app string, tasks []protocol.NewTask) (uint64, error) {
	if app == "" || len(app) > protocol.MaxNameBytes {
		return 0, &SubmitError{Index: -1, Code: protocol.CodeInvalidTask, Message: fmt.Sprintf("app must be 1 to %d bytes", protocol.MaxNameBytes)}
	}
	if len(tasks) == 0 {
		return 0, &SubmitError{Index: -1, Code: protocol.CodeInvalidTask, Message: "no tasks"}
	}
	for i := range tasks {
		if code, text := m.validate(&tasks[i]); code != "" {
			return 0, &SubmitError{Index: i, Code: code, Message: fmt.Sprintf("task %d: %s", i, text)}
		}
	}
	durable := make(chan error, 1)
	m.mu.Lock()
	if m.draining {
		m.mu.Unlock()
		return 0, ErrShuttingDown
	}
	a := m.appLocked(app)
	first, b := m.acceptLocked(a, tasks, nil)
	m.commitLocked(b, func(err error) { durable <- err })
	m.pumpLocked()
	m.mu.Unlock()
	select {
	case err := <-durable:
		if err != nil {
			m.fail(fmt.Errorf("commit submitted tasks: %w", err))
			return 0, err
		}
		return first, nil
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// Task returns one task, from memory while it is live, from the store once
// it is finished and acknowledged.
func (m *Master) Task(id uint64) (TaskInfo, error) {
	m.mu.Lock()
	t := m.tasks[id]
	live := t != nil && !t.settled
	var info TaskInfo
	if t != nil {
		info = infoOf(&t.rec)
	}
	m.mu.Unlock()
	if live && info.Payload != nil {
		return info, nil
	}
	// Memory drops a final task's payload; the store keeps it.
	r, err := m.st.Get(id)
	switch {
	case live:
		// Live, or final with its commit under way: memory is current.
		if err == nil {
			info.Payload = r.Payload
		}
		return info, nil
	case errors.Is(err, store.ErrNotFound):
		return TaskInfo{}, fmt.Errorf("task %d: %w", id, ErrNotFound)
	case err != nil:
		return TaskInfo{}, err
	}
	return infoOf(r), nil
}

// Tasks lists tasks in id order (descending with f.Desc) from the store,
// with live state from memory laid over it. It scans a bounded number of
// records per call, so a filter that matches rarely returns a short page
// (maybe empty) with a cursor to continue from, as After or, with Desc,
// as Before; next is 0 at the end.
func (m *Master) Tasks(f TaskFilter) ([]TaskInfo, uint64, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	limit = min(limit, 1000)
	budget := 10*limit + 10000
	var found []*store.Record
	var last uint64
	exhausted := true
	scan, from := m.st.Scan, f.After
	if f.Desc {
		scan, from = m.st.ScanDesc, f.Before
	}
	err := scan(from, func(r *store.Record) (bool, error) {
		last = r.ID
		budget--
		// App and kind never change, so those filters run here, outside
		// the lock. State is filtered after the overlay below: a running
		// task is still "pending" in the store.
		if (f.App == "" || r.App == f.App) && (f.Kind == "" || r.Kind == f.Kind) {
			found = append(found, r)
		}
		if len(found) >= 2*limit || budget == 0 {
			exhausted = false
			return false, nil
		}
		return true, nil
	})
	if err != nil {
		return nil, 0, err
	}
	var out []TaskInfo
	m.mu.Lock()
	for i, r := range found {
		// Memory is ahead of the store (dispatch is not written, a final
		// commit may be under way); the store has the payload.
		var info TaskInfo
		if t := m.tasks[r.ID]; t != nil {
			info = infoOf(&t.rec)
			info.Payload = r.Payload
		} else {
			info = infoOf(r)
		}
		if f.match(&info) {
			out = append(out, info)
		}
		if len(out) == limit {
			last = r.ID
			exhausted = exhausted && i == len(found)-1
			break
		}
	}
	m.mu.Unlock()
	if exhausted {
		return out, 0, nil
	}
	return out, last, nil
}

// watcher waits for a set of tasks to become final.
type watcher struct {
	left int
	done chan struct{}
}

// Wait blocks until every task in ids is final and durable, ctx ends or the
// master stops, then returns those of them that are final. An unknown id is
// an error.
func (m *Master) Wait(ctx context.Context, ids []uint64) ([]TaskInfo, error) {
	ids = slices.Compact(slices.Sorted(slices.Values(ids)))
	w := &watcher{done: make(chan struct{})}
	m.mu.Lock()
	var unknown []uint64
	for _, id := range ids {
		if t := m.tasks[id]; t != nil && !t.settled {
			m.watch[id] = append(m.watch[id], w)
			w.left++
		} else if t == nil {
			unknown = append(unknown, id)
		}
	}
	if w.left == 0 {
		close(w.done)
	}
	m.mu.Unlock()
	defer m.unwatch(ids, w)
	for _, id := range unknown {
		if _, err := m.st.Get(id); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return nil, fmt.Errorf("task %d: %w", id, ErrNotFound)
			}
			return nil, err
		}
	}
	select {
	case <-w.done:
	case <-ctx.Done():
	case <-m.ctx.Done():
	}
	var out []TaskInfo
	for _, id := range ids {
		info, err := m.Task(id)
		if err != nil {
			return nil, err
		}
		if info.State.Final() {
			out = append(out, info)
		}
	}
	return out, nil
}

func (m *Master) unwatch(ids []uint64, w *watcher) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, id := range ids {
		ws := slices.DeleteFunc(m.watch[id], func(x *watcher) bool { return x == w })
		if len(ws) == 0 {
			delete(m.watch, id)
		} else {
			m.watch[id] = ws
		}
	}
}

// wakeLocked tells Wait callers that t is final and durable.
func (m *Master) wakeLocked(t *task) {
	for _, w := range m.watch[t.rec.ID] {
		if w.left--; w.left == 0 {
			close(w.done)
		}
	}
	delete(m.watch, t.rec.ID)
}

// Cancel makes a pending or running task final as canceled; a running one
// is abandoned on its slave. Its application is notified as for any final
// state.
func (m *Master) Cancel(id uint64) error {
	now := m.opts.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	t := m.tasks[id]
	if t == nil {
		if _, err := m.st.Get(id); err == nil {
			return fmt.Errorf("task %d: %w", id, ErrFinal)
		}
		return fmt.Errorf("task %d: %w", id, ErrNotFound)
	}
	if t.rec.State.Final() {
		return fmt.Errorf("task %d: %w", id, ErrFinal)
	}
	if s := t.slave; s != nil && t.rec.State == protocol.StateRunning {
		// The slave sends no result for a canceled task: free its slot now.
		delete(s.running, id)
		s.conn.send(&protocol.IDs{T: protocol.TypeCancel, IDs: []uint64{id}})
		m.dispatchLocked(s)
	}
	t.endAttempt(now, store.OutcomeCanceled, "canceled by an operator")
	m.detachLocked(t)
	t.rec.State, t.rec.Err = protocol.StateCanceled, "canceled by an operator"
	b := new(store.Batch)
	m.finishLocked(t, now, b)
	m.commitFinalLocked(b, []*task{t})
	return nil
}

// Retry runs a failed or canceled task again from its first attempt. Its
// application is notified again when the new run is final. The attempt
// history is kept: the new attempts follow the old ones.
func (m *Master) Retry(id uint64) error {
	// The payload of a final task is only in the store.
	r, err := m.st.Get(id)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("task %d: %w", id, ErrNotFound)
	} else if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	rec := *r
	old := m.tasks[id]
	if old != nil {
		// Memory is ahead of the store while a commit is under way.
		rec = old.rec
		rec.Payload = r.Payload
	}
	if rec.State != protocol.StateFailed && rec.State != protocol.StateCanceled {
		return fmt.Errorf("task %d is %s: %w", id, rec.State, ErrNotFinal)
	}
	if old != nil {
		// Its old outcome must not reach the application any more.
		delete(old.app.sent, id)
		old.app.pending = slices.DeleteFunc(old.app.pending, func(x *task) bool { return x == old })
	}
	rec.State, rec.Attempts, rec.Err, rec.Result = protocol.StatePending, 0, "", nil
	rec.StartedAt, rec.FinishedAt, rec.Slave, rec.Acked = time.Time{}, time.Time{}, "", false
	// The history stays, to show why the task needed a retry; the old
	// task must not share its array.
	rec.History = slices.Clone(rec.History)
	t := m.newTask(&rec, m.appLocked(rec.App))
	if old != nil {
		t.push = old.push // released when the new outcome is acknowledged
	}
	m.tasks[id] = t
	m.queue.Push(&t.q)
	b := new(store.Batch)
	b.PutTask(&t.rec)
	m.commitLocked(b, func(err error) {
		if err != nil {
			m.fail(fmt.Errorf("commit retry: %w", err))
		}
	})
	m.pumpLocked()
	return nil
}

// Drain lets the slave session finish what it runs and gives it no more.
func (m *Master) Drain(session string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for s := range m.slaves {
		if s.session == session {
			s.draining = true
			delete(m.hungry, s)
			return nil
		}
	}
	return fmt.Errorf("slave %q: %w", session, ErrUnknownSlave)
}
