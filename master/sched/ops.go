package sched

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"time"

	"github.com/anthill-project/anthill/master/store"
	"github.com/anthill-project/anthill/protocol"
)

// The operator API: what jsonrpc, the dashboard and the CLI do to tasks.

// Errors of the operator API. They are wrapped with the id they concern;
// match them with errors.Is.
var (
	ErrNotFound     = errors.New("task not found")
	ErrFinal        = errors.New("task is already finished")
	ErrNotFinal     = errors.New("only a failed or canceled task can be retried")
	ErrUnknownSlave = errors.New("no such slave")
	// ErrCopy refuses to act on a copy of a replicated task: its task is
	// canceled or retried, never one copy.
	ErrCopy = errors.New("a copy of the replicated task")
)

// TaskInfo is a task as the operator API shows it.
type TaskInfo struct {
	ID          uint64
	App, Kind   string
	Module      string // the WASM module's hash, for a task of kind "wasm"
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
	// Replicas and Quorum are what the task asked for (0: its app's
	// defaults). A replicated task's History holds its copies once a
	// verdict folded them in; Copies shows them while they run.
	Replicas, Quorum uint8
	Copies           []CopyInfo
	// Parent is, on a copy read by its id, the task it is a copy of.
	Parent uint64
}

// CopyInfo is one copy of a replicated task whose verdict is pending.
type CopyInfo struct {
	ID      uint64
	Slave   string // the volunteer and session it ran on, "identity/session"; empty while queued
	State   protocol.State
	Started time.Time
	Ended   time.Time
	Outcome Outcome // of its attempt; OutcomeRunning while it runs or waits
	Err     string
}

// copiesOf describes g's copies.
func copiesOf(g *group) []CopyInfo {
	if g == nil {
		return nil
	}
	out := make([]CopyInfo, len(g.copies))
	for i, c := range g.copies {
		out[i] = CopyInfo{ID: c.id, Slave: c.ranOn, State: c.state, Started: c.startedAt, Ended: c.finishedAt, Outcome: c.lastOutcome(), Err: c.err}
		if c.state == protocol.StatePending {
			out[i].Slave, out[i].Outcome = "", OutcomeRunning
		}
	}
	return out
}

// infoOf copies t; the history is cloned, since t's is reused in place.
func infoOf(t *task) TaskInfo {
	return TaskInfo{
		ID: t.id, App: t.app.name, Kind: t.kind, Module: t.module, Key: t.key, State: t.state, Attempts: t.attempts,
		MaxAttempts: t.maxAttempts, Priority: t.priority, Timeout: t.timeout, CreatedAt: t.createdAt,
		StartedAt: t.startedAt, FinishedAt: t.finishedAt, Slave: t.ranOn, Payload: t.payload,
		Result: t.result, Err: t.err, History: slices.Clone(t.history),
		Replicas: t.replicas, Quorum: t.quorum, Copies: copiesOf(t.group),
	}
}

// infoOfRecord reads a task that lives only in the store.
func infoOfRecord(r *store.Record) TaskInfo {
	return TaskInfo{
		ID: r.ID, App: r.App, Kind: r.Kind, Module: r.Module, Key: r.Key, State: r.State, Attempts: r.Attempts,
		MaxAttempts: r.MaxAttempts, Priority: r.Priority, Timeout: r.Timeout, CreatedAt: r.CreatedAt,
		StartedAt: r.StartedAt, FinishedAt: r.FinishedAt, Slave: r.Slave, Payload: r.Payload,
		Result: r.Result, Err: r.Err, History: historyOf(r.History),
		Replicas: r.Replicas, Quorum: r.Quorum, Parent: r.Parent,
	}
}

// SubmitError refuses a batch submitted through Submit; nothing of it was
// stored.
type SubmitError = protocol.TaskError

// Info describes the running master.
type Info struct {
	Version  string
	Protocol int
	Strategy string
	Dispatch string
	Data     string // the directory of the store
	Started  time.Time
	Uptime   time.Duration
}

// Info returns what the master is.
func (s *Scheduler) Info() Info {
	return Info{
		Version: s.opts.Version, Protocol: protocol.Version, Strategy: s.queue.strategy.Name(),
		Dispatch: s.opts.Dispatch, Data: filepath.Dir(s.st.Path()), Started: s.started,
		Uptime: s.opts.Now().Sub(s.started),
	}
}

// Submit stores tasks for app and returns once they are durable; they get
// the ids firstID, firstID+1, ... in order. Tasks submitted this way are
// "quiet": no application connection is notified or has to acknowledge
// them; their record stays readable through Task until the retention
// expires. One invalid task refuses the batch with a *SubmitError; a batch
// over a quota is refused with a *QuotaError.
func (s *Scheduler) Submit(ctx context.Context, app string, tasks []protocol.NewTask) (uint64, error) {
	if app == "" || len(app) > protocol.MaxNameBytes {
		return 0, &SubmitError{Index: -1, Code: protocol.CodeInvalidTask, Problem: fmt.Sprintf("app must be 1 to %d bytes", protocol.MaxNameBytes)}
	}
	if err := s.checkSubmitSize(len(tasks)); err != nil {
		return 0, err
	}
	if err := protocol.CheckBatch(tasks, s.opts.MaxPayload, s.opts.MaxTimeout); err != nil {
		return 0, err
	}
	if err := s.checkModules(tasks); err != nil {
		return 0, err
	}
	durable := make(chan error, 1)
	s.mu.Lock()
	if s.isStopping() {
		s.mu.Unlock()
		return 0, ErrStopping
	}
	if err := s.checkQuotasLocked(s.apps[app], app, tasks); err != nil {
		s.mu.Unlock()
		return 0, err
	}
	first, b := s.acceptLocked(s.appLocked(app), tasks, nil)
	s.commitLocked(b, func(err error) {
		if err == nil {
			s.mu.Lock()
			s.coolPushLocked(first, uint32(len(tasks)))
			s.mu.Unlock()
		}
		durable <- err
	})
	s.pumpLocked()
	s.mu.Unlock()
	select {
	case err := <-durable:
		if err != nil {
			s.opts.OnFatal(fmt.Errorf("commit submitted tasks: %w", err))
			return 0, err
		}
		return first, nil
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// Task returns one task, from memory while it is live, from the store once
// it is finished and acknowledged.
func (s *Scheduler) Task(id uint64) (TaskInfo, error) {
	s.mu.Lock()
	t := s.tasks[id]
	var info TaskInfo
	if t != nil {
		info = infoOf(t)
	}
	s.mu.Unlock()
	if t != nil && info.Payload != nil {
		return info, nil
	}
	// Memory drops a final task's payload; the store keeps it.
	r, err := s.st.Get(id)
	switch {
	case t != nil:
		// Memory is current: the task is live, or final and not yet
		// acknowledged, or its final commit is under way.
		if err == nil {
			info.Payload = r.Payload
		}
		return info, nil
	case errors.Is(err, store.ErrNotFound):
		return TaskInfo{}, fmt.Errorf("task %d: %w", id, ErrNotFound)
	case err != nil:
		return TaskInfo{}, err
	}
	return infoOfRecord(r), nil
}

// TaskFilter selects tasks for Tasks. Zero fields match everything.
type TaskFilter struct {
	State protocol.State
	App   string
	Kind  string
	Limit int    // at most this many; zero means 100, the cap is MaxPage
	After uint64 // the cursor: only ids above it
	// Desc lists newest first. The cursor is then Before: only ids below
	// it (zero: from the newest), and After is ignored.
	Desc   bool
	Before uint64
}

// Bounds of one Tasks call.
const (
	DefaultPage = 100
	MaxPage     = 1000
	// MaxScan bounds the records one call reads from the store, without
	// the lock.
	MaxScan = 160000
	// MaxOverlay bounds the records one call lays live state over, under
	// the lock, scanChunk at a time, before the state filter: a rare state
	// never holds dispatch up for long.
	MaxOverlay = 16000
	scanChunk  = 2000
)

// Tasks lists tasks in id order (descending with f.Desc) from the store,
// with live state from memory laid over it, because dispatch is not
// written. The store skips the zones of ids that hold no match of f's
// state, app and kind (see store.ScanMatch), so a rare match costs what
// it lists; running tasks, whose records say pending, are listed from
// memory. A call reads at most MaxScan records and overlays at most
// MaxOverlay, so matches spread thin through the store come as short
// pages (maybe empty) with a cursor to continue from, as After or, with
// Desc, as Before; next is 0 at the end.
func (s *Scheduler) Tasks(f TaskFilter) (page []TaskInfo, next uint64, err error) {
	limit := f.Limit
	if limit <= 0 {
		limit = DefaultPage
	}
	limit = min(limit, MaxPage)
	if f.State == protocol.StateRunning {
		return s.running(&f, limit)
	}
	cursor := f.After
	if f.Desc {
		cursor = f.Before
	}
	for read, overlaid := 0, 0; ; {
		// Without a state filter every record overlaid is listed, so the
		// page needs no more than it lacks.
		want := min(scanChunk, MaxOverlay-overlaid)
		if f.State == 0 {
			want = limit - len(page)
		}
		sc, err := s.scan(&f, cursor, min(MaxScan-read, scanChunk), want)
		if err != nil {
			return nil, 0, err
		}
		read, overlaid = read+sc.read, overlaid+len(sc.found)
		var fullAt int
		page, fullAt = s.overlay(&f, sc.found, page, limit)
		switch {
		case fullAt > 0 && !sc.more && fullAt == len(sc.found):
			return page, 0, nil // full with the store's last match
		case fullAt > 0:
			return page, page[len(page)-1].ID, nil
		case !sc.more:
			return page, 0, nil
		case read >= MaxScan || overlaid >= MaxOverlay:
			return page, sc.last, nil
		}
		cursor = sc.last
	}
}

// scanned is one stretch of the store read for Tasks.
type scanned struct {
	found []*store.Record // those whose stored state, app and kind match
	read  int             // records read
	last  uint64          // the cursor to go on from
	more  bool            // the store may hold more past last
}

// scan reads up to n records from cursor on, in f's order, skipping the
// store's zones that hold no match, and stopping early once want of them
// matched. A pending task may be stored as running: it was requeued
// since, which is not written.
func (s *Scheduler) scan(f *TaskFilter, cursor uint64, n, want int) (scanned, error) {
	m := store.Match{App: f.App, Kind: f.Kind}
	switch f.State {
	case 0:
	case protocol.StatePending:
		m.States = []protocol.State{protocol.StatePending, protocol.StateRunning}
	default:
		m.States = []protocol.State{f.State}
	}
	var sc scanned
	res, err := s.st.ScanMatch(m, cursor, f.Desc, n, func(r *store.Record) (bool, error) {
		sc.found = append(sc.found, r)
		return len(sc.found) < want, nil
	})
	sc.read, sc.last, sc.more = res.Read, res.Last, res.More
	return sc, err
}

// overlay appends to page, up to limit, the records whose live state
// passes f's state filter: memory is ahead of the store (dispatch is not
// written, a final commit may be under way), the store has the payload.
// fullAt is how many records it took to fill the page, 0 if it did not.
func (s *Scheduler) overlay(f *TaskFilter, found []*store.Record, page []TaskInfo, limit int) ([]TaskInfo, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, r := range found {
		var info TaskInfo
		if t := s.tasks[r.ID]; t != nil {
			info = infoOf(t)
			info.Payload = r.Payload
		} else {
			info = infoOfRecord(r)
		}
		if f.State != 0 && info.State != f.State {
			continue
		}
		page = append(page, info)
		if len(page) == limit {
			return page, i + 1
		}
	}
	return page, 0
}

// running lists the running tasks f selects from memory, where every one
// of them is: the store says pending until they end. It walks the tasks
// in memory, which past Options.HotTasks are the running and the final
// ones not yet acknowledged, and reads their payloads after.
func (s *Scheduler) running(f *TaskFilter, limit int) ([]TaskInfo, uint64, error) {
	s.mu.Lock()
	var page []TaskInfo
	for _, t := range s.tasks {
		switch {
		case t.state != protocol.StateRunning, t.parent != nil,
			f.App != "" && t.app.name != f.App, f.Kind != "" && t.kind != f.Kind,
			!f.Desc && t.id <= f.After, f.Desc && f.Before > 0 && t.id >= f.Before:
			continue
		}
		page = append(page, infoOf(t))
	}
	s.mu.Unlock()
	slices.SortFunc(page, func(a, b TaskInfo) int {
		if f.Desc {
			return cmp.Compare(b.ID, a.ID)
		}
		return cmp.Compare(a.ID, b.ID)
	})
	var next uint64
	if len(page) > limit {
		page = page[:limit]
		next = page[limit-1].ID
	}
	rd := s.st.Reader()
	defer rd.Close()
	for i := range page {
		if page[i].Payload != nil {
			continue
		}
		switch r, err := rd.Get(page[i].ID); {
		case err == nil:
			page[i].Payload = r.Payload
		case !errors.Is(err, store.ErrNotFound):
			return nil, 0, err
		}
	}
	return page, next, nil
}

// watcher waits for a set of tasks to become final.
type watcher struct {
	left int
	done chan struct{}
}

// Wait blocks until every task in ids is final and durable, ctx ends or
// the scheduler stops, then returns those of them that are final. An
// unknown id is an error.
func (s *Scheduler) Wait(ctx context.Context, ids []uint64) ([]TaskInfo, error) {
	ids = slices.Compact(slices.Sorted(slices.Values(ids)))
	w := &watcher{done: make(chan struct{})}
	s.mu.Lock()
	var unknown []uint64
	for _, id := range ids {
		if t := s.liveLocked(id); t != nil && !t.settled {
			s.watch[id] = append(s.watch[id], w)
			w.left++
		} else if t == nil {
			unknown = append(unknown, id)
		}
	}
	if w.left == 0 {
		close(w.done)
	}
	s.mu.Unlock()
	defer s.unwatch(ids, w)
	for _, id := range unknown {
		if _, err := s.st.Get(id); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return nil, fmt.Errorf("task %d: %w", id, ErrNotFound)
			}
			return nil, err
		}
	}
	select {
	case <-w.done:
	case <-ctx.Done():
	case <-s.stopped:
	}
	var out []TaskInfo
	for _, id := range ids {
		info, err := s.Task(id)
		if err != nil {
			return nil, err
		}
		if info.State.Final() {
			out = append(out, info)
		}
	}
	return out, nil
}

func (s *Scheduler) unwatch(ids []uint64, w *watcher) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		ws := slices.DeleteFunc(s.watch[id], func(x *watcher) bool { return x == w })
		if len(ws) == 0 {
			delete(s.watch, id)
		} else {
			s.watch[id] = ws
		}
	}
}

// wakeLocked tells Wait callers that t is final and durable.
func (s *Scheduler) wakeLocked(t *task) {
	for _, w := range s.watch[t.id] {
		if w.left--; w.left == 0 {
			close(w.done)
		}
	}
	delete(s.watch, t.id)
}

// Cancel makes a pending or running task final as canceled; a running one
// is abandoned on its slave. Its application is notified as for any final
// state.
func (s *Scheduler) Cancel(id uint64) error {
	now := s.opts.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.liveLocked(id)
	if t == nil {
		if r, err := s.st.Get(id); err == nil {
			if r.Parent != 0 {
				return fmt.Errorf("task %d is %w %d", id, ErrCopy, r.Parent)
			}
			return fmt.Errorf("task %d: %w", id, ErrFinal)
		}
		return fmt.Errorf("task %d: %w", id, ErrNotFound)
	}
	if t.state.Final() {
		return fmt.Errorf("task %d: %w", id, ErrFinal)
	}
	if sl := t.slave; sl != nil && t.state == protocol.StateRunning {
		// The slave sends no result for a canceled task: free its slot now.
		s.cancelLocked(sl, id)
		s.repump = true
	}
	var c change
	s.cancelCopiesLocked(t, now, &c)
	t.endAttempt(now, OutcomeCanceled, "canceled by an operator")
	s.unqueueLocked(t)
	t.state, t.err = protocol.StateCanceled, "canceled by an operator"
	s.finishLocked(t, now, &c)
	if s.repump {
		s.refillLocked(nil) // sends the cancels
	}
	s.commitChangeLocked(&c)
	return nil
}

// Retry runs a failed or canceled task again from its first attempt. Its
// application is notified again when the new run is final. The attempt
// history is kept: the new attempts follow the old ones.
func (s *Scheduler) Retry(id uint64) error {
	// The payload of a final task is only in the store.
	r, err := s.st.Get(id)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("task %d: %w", id, ErrNotFound)
	} else if err != nil {
		return err
	}
	if r.Parent != 0 {
		return fmt.Errorf("task %d is %w %d", id, ErrCopy, r.Parent)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t := taskOf(r, s.appLocked(r.App))
	old := s.tasks[id]
	if old != nil {
		// Memory is ahead of the store while a commit is under way. The
		// history is cloned: the old task must not share its array.
		t.state, t.attempts, t.history = old.state, old.attempts, slices.Clone(old.history)
		t.push = old.push // released when the new outcome is acknowledged
	}
	if t.state != protocol.StateFailed && t.state != protocol.StateCanceled {
		return fmt.Errorf("task %d is %s: %w", id, t.state, ErrNotFinal)
	}
	if old != nil {
		// Its old outcome must not reach the application any more.
		delete(old.app.sent, id)
		old.app.pending = slices.DeleteFunc(old.app.pending, func(x *task) bool { return x == old })
	}
	// The history stays, to show why the task needed a retry.
	t.state, t.attempts, t.err, t.result = protocol.StatePending, 0, "", nil
	t.startedAt, t.finishedAt, t.ranOn, t.acked = time.Time{}, time.Time{}, "", false
	s.addLocked(t)
	s.pushLocked(t)
	// An acknowledged task has an entry in the retention list; left there,
	// the sweep would delete the record of the new run.
	s.expiry = slices.DeleteFunc(s.expiry, func(e expiring) bool { return e.id == id })
	b := new(store.Batch)
	s.put(b, t)
	s.commitLocked(b, func(err error) {
		if err != nil {
			s.opts.OnFatal(fmt.Errorf("commit retry: %w", err))
		}
	})
	s.pumpLocked()
	return nil
}

// Drain lets the slave session finish what it runs and gives it no more.
func (s *Scheduler) Drain(session string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for sl := range s.slaves {
		if sl.session == session {
			sl.draining = true
			delete(s.hungry, sl)
			return nil
		}
	}
	return fmt.Errorf("slave %q: %w", session, ErrUnknownSlave)
}
