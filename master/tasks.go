package master

import (
	"container/heap"
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"time"

	"github.com/anthill-project/anthill/master/store"
	"github.com/anthill-project/anthill/protocol"
	"github.com/anthill-project/anthill/stats"
)

// task is the master's view of one task. rec holds what is durable; the
// rest is scheduling state that a restart rebuilds.
type task struct {
	rec      store.Record
	q        QueuedTask
	app      *app
	slave    *slave    // running on it, while rec.State is running
	deadline time.Time // lease end while running
	retryAt  time.Time // while waiting for a retry
	retryIdx int       // index+1 in the retry heap; 0 when not waiting
	settled  bool      // final, and that is durable
	push     *push     // the batch it came in, until acknowledged
}

type commitReq struct {
	b    *store.Batch
	done func(error)
}

type expiring struct {
	id uint64
	at time.Time
}

// commitLocked hands a batch to the commit pump. Called under m.mu, so
// batches reach the store in the order the state changed.
func (m *Master) commitLocked(b *store.Batch, done func(error)) {
	m.commitQ = append(m.commitQ, commitReq{b, done})
	select {
	case m.commitCh <- struct{}{}:
	default:
	}
}

// commitPump moves queued batches to the store outside m.mu: Commit may
// block when the store is busy, and store callbacks take m.mu.
func (m *Master) commitPump() {
	defer m.loops.Done()
	for {
		select {
		case <-m.commitCh:
		case <-m.ctx.Done():
			m.flushCommits()
			return
		}
		m.flushCommits()
	}
}

func (m *Master) flushCommits() {
	m.mu.Lock()
	q := m.commitQ
	m.commitQ = nil
	m.mu.Unlock()
	for _, r := range q {
		ops, start, done := r.b.Len(), time.Now(), r.done
		m.st.Commit(r.b, func(err error) {
			m.metrics.Commit(ops, time.Since(start))
			done(err)
		})
	}
}

// reload rebuilds memory from the store after a (re)start: unfinished
// tasks are pending again, final unacknowledged ones wait for their app.
func (m *Master) reload() error {
	now := m.opts.Now()
	// Ids are handed out optimistically before their commit; one that was
	// dispatched but never durable must not be reused, or a late result for
	// it would land on a new task. Microseconds since the epoch advance
	// faster than any submit rate, so a restart always starts past them.
	m.nextID = max(m.st.NextID(), uint64(now.UnixMicro()))
	var acked []expiring
	err := m.st.Load(func(r *store.Record) error {
		if r.State.Final() {
			if r.Acked {
				acked = append(acked, expiring{r.ID, r.FinishedAt})
				return nil
			}
			t := m.newTask(r, m.appLocked(r.App))
			m.tasks[r.ID] = t
			t.app.pending = append(t.app.pending, t)
			return nil
		}
		r.State = protocol.StatePending
		t := m.newTask(r, m.appLocked(r.App))
		m.tasks[r.ID] = t
		m.queue.Push(&t.q)
		return nil
	})
	if err != nil {
		return fmt.Errorf("reload tasks: %w", err)
	}
	sort.Slice(acked, func(i, j int) bool { return acked[i].at.Before(acked[j].at) })
	m.expiry = acked
	var spent store.Batch
	err = m.st.LoadPushes(func(sp store.Push) error {
		p := &push{seq: sp.Seq, firstID: sp.FirstID, count: sp.Count, durable: true}
		for id := p.firstID; id < p.firstID+uint64(p.count); id++ {
			if t := m.tasks[id]; t != nil {
				t.push = p
				p.left++
			}
		}
		if p.left == 0 {
			// Every task was acknowledged before the stop; the delete of
			// this record did not make it.
			spent.DeletePush(sp.App, sp.Seq)
			return nil
		}
		m.appLocked(sp.App).pushes[p.seq] = p
		return nil
	})
	if err != nil {
		return fmt.Errorf("reload pushes: %w", err)
	}
	if spent.Len() > 0 {
		if err := m.st.CommitWait(context.Background(), &spent); err != nil {
			return fmt.Errorf("forget spent pushes: %w", err)
		}
	}
	m.opts.Logger.Info("store loaded", "path", m.st.Path(), "unfinished", len(m.tasks), "next_id", m.nextID)
	return nil
}

func (m *Master) newTask(r *store.Record, a *app) *task {
	t := &task{rec: *r, app: a}
	m.seenKinds[r.Kind] = struct{}{}
	t.q = QueuedTask{ID: r.ID, App: r.App, Kind: r.Kind, Priority: r.Priority, Key: r.Key, t: t}
	return t
}

// validate checks one submitted task against the master's limits.
func (m *Master) validate(nt *protocol.NewTask) (code, msg string) {
	switch {
	case nt.Kind == "":
		return protocol.CodeInvalidTask, "kind is empty"
	case len(nt.Kind) > 128:
		return protocol.CodeInvalidTask, "kind is longer than 128 bytes"
	case len(nt.Payload) > m.opts.MaxPayload:
		return protocol.CodePayloadTooLarge, fmt.Sprintf("payload is %d bytes; the limit is %d", len(nt.Payload), m.opts.MaxPayload)
	case nt.Timeout > m.opts.MaxTimeout:
		return protocol.CodeInvalidTask, fmt.Sprintf("timeout %v exceeds the limit of %v", nt.Timeout, m.opts.MaxTimeout)
	case nt.MaxAttempts > 1000:
		return protocol.CodeInvalidTask, "max attempts exceeds 1000"
	case len(nt.Key) > 1024:
		return protocol.CodeInvalidTask, "key is longer than 1024 bytes"
	}
	return "", ""
}

// submit accepts a batch from an application. Tasks are queued and may be
// dispatched at once, before their commit: the app is told only after the
// fsync, and a crash before it loses nothing the app believes accepted.
func (m *Master) submit(a *app, c *peer, msg *protocol.Submit) {
	if len(msg.Tasks) == 0 {
		c.send(&protocol.SubmitReject{Seq: msg.Seq, Index: -1, Code: protocol.CodeInvalidTask, Message: "a batch needs at least one task"})
		return
	}
	for i := range msg.Tasks {
		if code, text := m.validate(&msg.Tasks[i]); code != "" {
			c.send(&protocol.SubmitReject{Seq: msg.Seq, Index: int32(i), Code: code, Message: fmt.Sprintf("task %d: %s", i, text)})
			return
		}
	}
	now := m.opts.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if p := a.pushes[msg.Seq]; p != nil {
		// A batch re-sent after a reconnect: answer with its first ids.
		if p.durable {
			c.send(&protocol.SubmitAck{Seq: p.seq, FirstID: p.firstID, Count: p.count})
		} else {
			p.waiters = append(p.waiters, c)
		}
		return
	}
	p := &push{seq: msg.Seq, count: uint32(len(msg.Tasks)), left: len(msg.Tasks), waiters: []*peer{c}}
	first, b := m.acceptLocked(a, msg.Tasks, p)
	p.firstID = first
	a.pushes[msg.Seq] = p
	b.PutPush(store.Push{App: a.name, Seq: p.seq, FirstID: first, Count: p.count, At: now})
	m.commitLocked(b, func(err error) {
		if err != nil {
			m.fail(fmt.Errorf("commit submitted tasks: %w", err))
			return
		}
		m.mu.Lock()
		p.durable = true
		ack := &protocol.SubmitAck{Seq: p.seq, FirstID: p.firstID, Count: p.count}
		for _, w := range p.waiters {
			w.send(ack)
		}
		p.waiters = nil
		m.mu.Unlock()
	})
	if m.kinds[msg.Tasks[0].Kind] == 0 {
		m.opts.Logger.Debug("tasks wait for a slave that runs their kind", "kind", msg.Tasks[0].Kind)
	}
	m.pumpLocked()
}

// acceptLocked gives tasks their ids and queues them; the returned batch
// holds their records and must be committed by the caller. p is the submit
// batch they came in; tasks without one came through the API and are quiet:
// acknowledged by nobody (see Submit).
func (m *Master) acceptLocked(a *app, tasks []protocol.NewTask, p *push) (uint64, *store.Batch) {
	now := m.opts.Now()
	n := uint64(len(tasks))
	first := m.nextID
	m.nextID += n
	b := new(store.Batch)
	for i := range tasks {
		nt := &tasks[i]
		r := store.Record{
			ID: first + uint64(i), App: a.name, Kind: nt.Kind, Key: nt.Key, Priority: nt.Priority,
			Timeout: nt.Timeout, MaxAttempts: nt.MaxAttempts, State: protocol.StatePending,
			CreatedAt: now, Payload: nt.Payload, Quiet: p == nil,
		}
		if r.Timeout == 0 {
			r.Timeout = m.opts.DefaultTimeout
		}
		if r.MaxAttempts == 0 {
			r.MaxAttempts = uint32(m.opts.DefaultAttempts)
		}
		b.PutTask(&r)
		t := m.newTask(&r, a)
		t.push = p
		m.tasks[r.ID] = t
		m.queue.Push(&t.q)
		m.metrics.Submitted(r.Kind, 1)
	}
	b.SetNextID(m.nextID)
	a.metrics.Pushed(int(n))
	return first, b
}

// pumpLocked fills every slave that has room.
func (m *Master) pumpLocked() {
	for s := range m.hungry {
		m.dispatchLocked(s)
	}
}

// dispatchLocked sends s as many tasks as its window allows, in one frame.
func (m *Master) dispatchLocked(s *slave) {
	free := s.free()
	if free <= 0 {
		delete(m.hungry, s)
		return
	}
	now := m.opts.Now()
	var d protocol.Dispatch
	size := 0
	for free > 0 && size < m.opts.MaxFrame/2 {
		q := m.queue.Next(&s.view)
		if q == nil {
			break
		}
		t := q.t
		t.rec.State = protocol.StateRunning
		t.rec.Attempts++
		t.rec.StartedAt = now
		t.rec.Slave = s.view.Name
		t.beginAttempt(s.view.Name, now)
		t.slave = s
		t.deadline = now.Add(t.rec.Timeout + m.opts.LeaseGrace)
		s.running[t.rec.ID] = t
		s.dispatched++
		m.metrics.Dispatched(t.rec.Kind, 1)
		if s.credit > 0 {
			s.credit--
		}
		free--
		size += len(t.rec.Payload) + len(t.rec.Kind) + 16
		d.Tasks = append(d.Tasks, protocol.Task{
			ID: t.rec.ID, Attempt: t.rec.Attempts, Kind: t.rec.Kind,
			Timeout: t.rec.Timeout, Payload: t.rec.Payload,
		})
	}
	if free <= 0 {
		delete(m.hungry, s)
	} else {
		m.hungry[s] = struct{}{}
	}
	if len(d.Tasks) == 0 {
		return
	}
	s.conn.send(&d)
}

// results handles a slave's finished attempts. Any result for an unfinished
// task is accepted, whatever attempt it answers: a valid result is a valid
// result. Results for final or unknown tasks are late duplicates.
//
// A result closes the attempt it answers in the history if that attempt
// still runs. One for an attempt already closed (its lease expired, its
// slave reconnected) leaves that entry as it is; an attempt of the task
// running elsewhere meanwhile is abandoned, and closed as canceled.
func (m *Master) results(s *slave, msg *protocol.Results) {
	now := m.opts.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	b := new(store.Batch)
	var final []*task
	for i := range msg.Results {
		r := &msg.Results[i]
		delete(s.running, r.ID) // frees the slot, whoever finished the task
		t := m.tasks[r.ID]
		if t == nil || t.rec.State.Final() {
			m.metrics.LateResult()
			continue
		}
		if r.Err == "" {
			s.done++
		} else {
			s.failed++
		}
		s.metrics.Result(r.Err == "", r.Duration)
		s.busy += r.Duration
		if t.rec.State == protocol.StateRunning && t.slave == s && r.Attempt == t.rec.Attempts {
			t.endAttempt(now, outcomeOf(r, t.rec.Timeout), r.Err)
		} else {
			t.endAttempt(now, store.OutcomeCanceled, "abandoned: slave "+s.view.Name+" delivered a result of an earlier attempt")
		}
		m.detachLocked(t)
		t.rec.Slave = s.view.Name
		if r.Err != "" && t.rec.Attempts < t.rec.MaxAttempts {
			t.rec.Err = r.Err
			m.retryLocked(t, now)
			b.PutTask(&t.rec)
			continue
		}
		if r.Err == "" {
			t.rec.State, t.rec.Result, t.rec.Err = protocol.StateDone, r.Output, ""
		} else {
			t.rec.State, t.rec.Err = protocol.StateFailed, r.Err
		}
		m.finishLocked(t, now, b)
		final = append(final, t)
	}
	m.dispatchLocked(s)
	if b.Len() > 0 {
		m.commitFinalLocked(b, final)
	}
}

// detachLocked takes t out of wherever it waits: a slave, the queue or the
// retry heap.
func (m *Master) detachLocked(t *task) {
	switch {
	case t.rec.State == protocol.StateRunning:
		t.slave = nil
	case t.retryIdx > 0:
		heap.Remove(&m.retries, t.retryIdx-1)
	default:
		m.queue.Remove(&t.q)
	}
}

// retryLocked schedules another attempt of t after an exponential backoff
// with jitter, so a failing task does not hammer the slaves in lockstep.
func (m *Master) retryLocked(t *task, now time.Time) {
	d := m.opts.RetryBackoff << min(t.rec.Attempts-1, 20)
	d = min(d, m.opts.RetryBackoffMax)
	d = d/2 + rand.N(d/2+1)
	t.rec.State = protocol.StatePending
	t.slave = nil
	t.retryAt = now.Add(d)
	heap.Push(&m.retries, t)
	m.metrics.Retried(t.rec.Kind)
}

// requeueLocked puts t back to pending after its slave vanished or its
// lease expired (OutcomeLost: that cost an attempt) or it was handed back
// (OutcomeReturned: no attempt spent), and closes the running attempt with
// that outcome and why. When no attempts are left the task fails with why.
func (m *Master) requeueLocked(t *task, o store.Outcome, why string, now time.Time, b *store.Batch, final *[]*task) {
	t.slave = nil
	t.endAttempt(now, o, why)
	spent := o != store.OutcomeReturned
	if !spent {
		t.rec.Attempts--
	}
	if spent && t.rec.Attempts >= t.rec.MaxAttempts {
		t.rec.State = protocol.StateFailed
		t.rec.Err = fmt.Sprintf("%s (attempt %d of %d)", why, t.rec.Attempts, t.rec.MaxAttempts)
		m.finishLocked(t, now, b)
		*final = append(*final, t)
		return
	}
	t.rec.State = protocol.StatePending
	m.queue.Push(&t.q)
	m.metrics.Requeued(t.rec.Kind, 1)
	if spent {
		b.PutTask(&t.rec)
	}
}

// finishLocked records t's final state into b; its application hears of it
// once b is durable (commitFinalLocked).
func (m *Master) finishLocked(t *task, now time.Time, b *store.Batch) {
	t.rec.FinishedAt = now
	t.slave = nil
	t.rec.Acked = t.rec.Quiet // nobody will acknowledge a quiet task
	var st stats.State
	switch t.rec.State {
	case protocol.StateDone:
		st = stats.Done
	case protocol.StateFailed:
		st = stats.Failed
	case protocol.StateCanceled:
		st = stats.Canceled
	}
	latency := now.Sub(t.rec.CreatedAt)
	m.metrics.Finished(t.rec.Kind, st, latency)
	t.app.metrics.Finished(st, latency)
	b.PutTask(&t.rec)
	// The payload is no longer needed in memory; the store keeps it.
	t.rec.Payload = nil
}

func (m *Master) commitFinalLocked(b *store.Batch, final []*task) {
	m.commitLocked(b, func(err error) {
		if err != nil {
			m.fail(fmt.Errorf("commit results: %w", err))
			return
		}
		if len(final) == 0 {
			return
		}
		m.mu.Lock()
		touched := map[*app]struct{}{}
		for _, t := range final {
			if m.tasks[t.rec.ID] != t {
				continue // superseded by a Retry while this commit ran
			}
			t.settled = true
			m.wakeLocked(t)
			if t.rec.Quiet {
				delete(m.tasks, t.rec.ID)
				m.expiry = append(m.expiry, expiring{t.rec.ID, t.rec.FinishedAt})
				continue
			}
			t.app.pending = append(t.app.pending, t)
			touched[t.app] = struct{}{}
		}
		for a := range touched {
			m.notifyLocked(a)
		}
		m.mu.Unlock()
	})
}

// notifyLocked sends a's pending notifications, within its window.
func (m *Master) notifyLocked(a *app) {
	c := a.conn
	if c == nil {
		return
	}
	for len(a.pending) > 0 && len(a.sent) < m.opts.NotifyWindow {
		var n protocol.Notify
		size := 0
		for len(a.pending) > 0 && len(a.sent) < m.opts.NotifyWindow && size < m.opts.MaxFrame/2 {
			t := a.pending[0]
			a.pending[0] = nil
			a.pending = a.pending[1:]
			if _, dup := a.sent[t.rec.ID]; dup {
				continue
			}
			a.sent[t.rec.ID] = t
			size += len(t.rec.Result) + len(t.rec.Err) + len(t.rec.Kind) + 16
			n.Tasks = append(n.Tasks, protocol.Finished{
				ID: t.rec.ID, Kind: t.rec.Kind, State: t.rec.State, Attempts: t.rec.Attempts,
				Result: t.rec.Result, Err: t.rec.Err,
			})
		}
		if len(n.Tasks) == 0 {
			return
		}
		if !c.send(&n) {
			return
		}
	}
}

// acked handles an application's NotifyAck: the notifications are done
// with; once that is durable the app is told (NotifyDone) so it can forget
// its duplicate guard.
func (m *Master) acked(a *app, c *peer, ids []uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b := new(store.Batch)
	for _, id := range ids {
		t := m.tasks[id]
		if t == nil || t.app != a || !t.rec.State.Final() {
			continue
		}
		delete(a.sent, id)
		delete(m.tasks, id)
		if p := t.push; p != nil {
			if p.left--; p.left == 0 {
				delete(a.pushes, p.seq)
				b.DeletePush(a.name, p.seq)
			}
		}
		if m.opts.Retention < 0 {
			b.DeleteTask(id)
		} else {
			b.AckTask(id)
			m.expiry = append(m.expiry, expiring{id, t.rec.FinishedAt})
		}
		a.acked++
	}
	done := &protocol.IDs{T: protocol.TypeNotifyDone, IDs: ids}
	m.commitLocked(b, func(err error) {
		if err != nil {
			m.fail(fmt.Errorf("commit acknowledgements: %w", err))
			return
		}
		c.send(done)
	})
	m.notifyLocked(a)
}

// timers runs leases, retries and retention on one ticker.
func (m *Master) timers() {
	defer m.loops.Done()
	tick := time.NewTicker(timerTick)
	defer tick.Stop()
	lastSweep := m.opts.Now()
	for n := 0; ; n++ {
		select {
		case <-m.ctx.Done():
			return
		case <-tick.C:
		}
		now := m.opts.Now()
		m.mu.Lock()
		b := new(store.Batch)
		var final []*task
		for len(m.retries) > 0 && !m.retries[0].retryAt.After(now) {
			t := heap.Pop(&m.retries).(*task)
			m.queue.Push(&t.q)
		}
		// Leases are coarse (timeout plus seconds of grace): checking them
		// every fifth tick keeps the scan of running tasks off the hot path.
		for s := range m.slaves {
			if n%5 != 0 {
				break
			}
			for _, t := range s.running {
				if t.slave != s || t.rec.State != protocol.StateRunning || now.Before(t.deadline) {
					continue
				}
				// The slave keeps the slot until it answers; the task may
				// run elsewhere meanwhile.
				m.requeueLocked(t, store.OutcomeLost, fmt.Sprintf("no result from slave %s within the lease of %v", s.view.Name, t.rec.Timeout+m.opts.LeaseGrace), now, b, &final)
			}
		}
		m.metrics.Tick()
		if n%gaugeEvery == 0 {
			m.gaugesLocked()
		}
		if now.Sub(lastSweep) >= sweepEvery {
			lastSweep = now
			m.sweepLocked(now, b)
		}
		m.pumpLocked()
		if b.Len() > 0 {
			m.commitFinalLocked(b, final)
		}
		m.mu.Unlock()
	}
}

const (
	gaugeEvery = 50 // ticks: the gauges are sampled once a second
	timerTick  = 20 * time.Millisecond
	sweepEvery = 10 * time.Second
)

// gaugesLocked samples what the metrics show as levels rather than events.
func (m *Master) gaugesLocked() {
	pending, running, unacked, apps := len(m.retries), 0, 0, 0
	for k := range m.seenKinds {
		n := m.queue.Len(k)
		pending += n
		m.metrics.SetQueue(k, n)
	}
	for s := range m.slaves {
		running += len(s.running)
	}
	for _, a := range m.apps {
		unacked += len(a.pending) + len(a.sent)
		if a.conn != nil {
			apps++
		}
		pushed, done, failed, canceled := a.metrics.Counts()
		if final := done + failed + canceled; pushed >= final {
			a.metrics.InFlight(int(pushed - final))
		}
	}
	m.metrics.SetTasks(pending, running, unacked)
	m.metrics.SetConnections(len(m.slaves), apps)
}

// sweepLocked deletes acknowledged tasks past retention.
func (m *Master) sweepLocked(now time.Time, b *store.Batch) {
	cut := now.Add(-m.opts.Retention)
	n := 0
	for n < len(m.expiry) && m.expiry[n].at.Before(cut) && n < 50000 {
		b.DeleteTask(m.expiry[n].id)
		n++
	}
	m.expiry = m.expiry[n:]
}

// retryHeap orders tasks waiting for a retry by retryAt.
type retryHeap []*task

func (h retryHeap) Len() int           { return len(h) }
func (h retryHeap) Less(i, j int) bool { return h[i].retryAt.Before(h[j].retryAt) }
func (h retryHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].retryIdx, h[j].retryIdx = i+1, j+1
}
func (h *retryHeap) Push(x any) {
	t := x.(*task)
	t.retryIdx = len(*h) + 1
	*h = append(*h, t)
}
func (h *retryHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	t.retryIdx = 0
	return t
}
