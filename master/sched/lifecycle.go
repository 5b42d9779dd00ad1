package sched

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/anthill-project/anthill/master/store"
	"github.com/anthill-project/anthill/protocol"
	"github.com/anthill-project/anthill/stats"
)

// A task's life, in the order it is lived:
//
//	SubmitBatch / Submit -> acceptLocked          pending, written
//	dispatchLocked                                running (not written)
//	Complete -> retryLocked | finishLocked        pending again, or final
//	requeueLocked (lost, returned, lease)         pending again, or final
//	commitFinalLocked -> notifyLocked             notified once durable
//	Acknowledge                                   acknowledged; swept later

// SubmitBatch accepts a batch from an application connection. Its tasks
// are queued and may be dispatched at once, before their commit: out gets
// the SubmitAck only after the fsync, so a crash before it loses nothing
// the application believes accepted. A batch re-sent with a seq already
// seen is answered with its original ids, never stored twice.
func (s *Scheduler) SubmitBatch(a *App, out Outbox, msg *protocol.Submit) {
	if err := s.checkSubmitSize(len(msg.Tasks)); err != nil {
		out.Send(err.reject(msg.Seq))
		return
	}
	err := protocol.CheckBatch(msg.Tasks, s.opts.MaxPayload, s.opts.MaxTimeout)
	if err == nil {
		err = s.checkModules(msg.Tasks)
	}
	if err != nil {
		out.Send(&protocol.SubmitReject{Seq: msg.Seq, Index: int32(err.Index), Code: err.Code, Message: err.Error()})
		return
	}
	now := s.opts.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := a.pushes[msg.Seq]; p != nil {
		if p.durable {
			out.Send(&protocol.SubmitAck{Seq: p.seq, FirstID: p.firstID, Count: p.count})
		} else {
			p.waiters = append(p.waiters, out)
		}
		return
	}
	// After the seq check: a re-sent batch that was accepted gets its ids
	// whatever the queue holds now.
	if err := s.checkQuotasLocked(a, a.name, msg.Tasks); err != nil {
		out.Send(err.reject(msg.Seq))
		return
	}
	p := &push{seq: msg.Seq, count: uint32(len(msg.Tasks)), left: len(msg.Tasks), waiters: []Outbox{out}}
	first, b := s.acceptLocked(a, msg.Tasks, p)
	p.firstID = first
	a.addPush(p)
	b.PutPush(store.Push{App: a.name, Seq: p.seq, FirstID: first, Count: p.count, At: now})
	s.commitLocked(b, func(err error) {
		if err != nil {
			s.opts.OnFatal(fmt.Errorf("commit submitted tasks: %w", err))
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		p.durable = true
		ack := &protocol.SubmitAck{Seq: p.seq, FirstID: p.firstID, Count: p.count}
		for _, w := range p.waiters {
			w.Send(ack)
		}
		p.waiters = nil
		s.coolPushLocked(p.firstID, p.count)
	})
	if s.kinds[msg.Tasks[0].Kind] == 0 {
		s.opts.Logger.Debug("tasks wait for a slave that runs their kind", "kind", msg.Tasks[0].Kind)
	}
	s.pumpLocked()
}

// acceptLocked gives tasks their ids and queues them; the returned batch
// holds their records and must be committed by the caller. p is the submit
// batch they came in; tasks without one came through the operator API and
// are quiet: acknowledged by nobody (see Submit).
func (s *Scheduler) acceptLocked(a *App, tasks []protocol.NewTask, p *push) (uint64, *store.Batch) {
	now := s.opts.Now()
	n := uint64(len(tasks))
	first := s.nextID
	s.nextID += n
	b := new(store.Batch)
	for i := range tasks {
		nt := &tasks[i]
		t := &task{
			id: first + uint64(i), app: a, kind: nt.Kind, module: nt.Module, key: nt.Key, priority: nt.Priority,
			timeout: nt.Timeout, maxAttempts: nt.MaxAttempts, createdAt: now, payload: nt.Payload,
			quiet: p == nil, state: protocol.StatePending, push: p, replicas: nt.Replicas, quorum: nt.Quorum,
		}
		if t.timeout == 0 {
			t.timeout = s.opts.DefaultTimeout
		}
		if t.maxAttempts == 0 {
			t.maxAttempts = uint32(s.opts.DefaultAttempts)
		}
		s.putNew(b, t)
		s.addLocked(t)
		s.pushLocked(t)
		s.metrics.Submitted(t.kind, 1)
	}
	b.SetNextID(s.nextID)
	a.metrics.Pushed(int(n))
	return first, b
}

// addLocked makes t the live task of its id, in place of any other.
func (s *Scheduler) addLocked(t *task) {
	s.removeLocked(t.id)
	s.tasks[t.id] = t
	s.liveKinds[t.kind]++
	t.app.live++
	t.app.idleSince = time.Time{}
	if !t.state.Final() {
		s.queuedLocked(t)
	}
}

// pumpLocked fills every slave that has room. With WASM tasks unfinished
// it goes twice: first each slave takes only what it can run with the
// modules it holds, then anything it may run. So a module's tasks go to
// the slaves that hold it first, and a slave fetches a module only for
// the tasks the holders left.
func (s *Scheduler) pumpLocked() {
	s.sendCancelsLocked()
	if s.moduleTasks > 0 {
		for sl := range s.hungry {
			if s.queue.empty() {
				return
			}
			if sl.wasm {
				s.dispatchLocked(sl, true)
			}
		}
	}
	for sl := range s.hungry {
		if s.queue.empty() {
			return // the rest stay hungry for the next pump
		}
		s.dispatchLocked(sl, false)
	}
}

// dispatchLocked sends sl as many tasks as its window allows, in one
// frame: at most its window of tasks and, unless it holds none, about
// MaxWindowBytes of payload. Each attempt gets a fresh lease. The tasks
// its held view allows come first; heldOnly stops there. Cold tasks are
// read from the store in one read transaction for the frame, begun only
// if the frame draws one.
func (s *Scheduler) dispatchLocked(sl *Slave, heldOnly bool) {
	free := sl.free()
	if free <= 0 {
		delete(s.hungry, sl)
		return
	}
	rd := s.st.Reader()
	defer rd.Close()
	now := s.opts.Now()
	var d protocol.Dispatch
	size := 0
	view := &sl.view
	if sl.wasm {
		view = &sl.held
	}
	var forks *store.Batch // made by the first fork, if any
	var skipped []*task
	for free > 0 && size < s.opts.MaxFrame/2 && (len(sl.running) == 0 || sl.heldBytes < s.opts.MaxWindowBytes) {
		if len(s.suspects) > 0 && s.throttledLocked(sl) {
			break
		}
		q, ok := s.queue.next(view)
		if !ok && view == &sl.held && !heldOnly {
			view = &sl.view
			q, ok = s.queue.next(view)
		}
		if !ok {
			break
		}
		t, err := s.queuedTaskLocked(rd, q)
		if err != nil {
			// The store could not be read: the entry waits for the
			// next dispatch.
			s.queue.push(q)
			s.opts.Logger.Error("reading a queued task from the store", "task", q.ID, "err", err)
			break
		}
		if t == nil {
			continue
		}
		t.queued = false
		if t.parent != nil && !s.distinctLocked(t.parent.group, sl) {
			// Another copy of its task ran here: it waits for another
			// volunteer. A bounded number of them are passed over per
			// frame, so a queue of such copies costs no walk.
			skipped = append(skipped, t)
			if len(skipped) >= maxSkipped {
				break
			}
			continue
		}
		t, ringer := s.placeLocked(sl, t, free, now, &forks)
		for _, t := range [...]*task{t, ringer} {
			if t == nil {
				continue
			}
			s.sendLocked(sl, t, now, &d)
			free--
			size += len(t.payload) + len(t.kind) + len(t.module) + 16
		}
	}
	for _, t := range skipped {
		s.pushLocked(t)
	}
	if forks != nil {
		s.commitLocked(forks, func(err error) {
			if err != nil {
				s.opts.OnFatal(fmt.Errorf("commit copies: %w", err))
			}
		})
	}
	if free <= 0 {
		delete(s.hungry, sl)
	} else {
		s.hungry[sl] = struct{}{}
	}
	if len(d.Tasks) == 0 {
		return
	}
	sl.metrics.Dispatched(len(d.Tasks))
	sl.out.Send(&d)
}

// cancelLocked withdraws the task id from sl; the cancel frames go out
// together, one per slave, at the next pump or refill.
func (s *Scheduler) cancelLocked(sl *Slave, id uint64) {
	sl.withdraw(id)
	s.cancels[sl] = append(s.cancels[sl], id)
	s.hungry[sl] = struct{}{}
}

// sendCancelsLocked sends the cancels cancelLocked collected.
func (s *Scheduler) sendCancelsLocked() {
	for sl, ids := range s.cancels {
		sl.out.Send(&protocol.IDs{T: protocol.TypeCancel, IDs: ids})
	}
	clear(s.cancels)
}

// maxSkipped bounds the copies one dispatch passes over because another
// copy of their task ran on the slave.
const maxSkipped = 64

// sendLocked starts an attempt of t on sl, with a fresh lease, and adds
// it to the frame d.
func (s *Scheduler) sendLocked(sl *Slave, t *task, now time.Time, d *protocol.Dispatch) {
	t.state = protocol.StateRunning
	t.attempts++
	t.startedAt = now
	t.ranOn = sl.view.Name
	t.remote = sl.host
	t.beginAttempt(sl.view.Name, now)
	t.slave = sl
	t.deadline = now.Add(t.timeout + s.opts.LeaseGrace)
	t.lease = s.newLeaseLocked()
	s.leases.add(sl, t)
	s.dispatchN++
	t.seq = s.dispatchN
	// A task whose lease expired on this very session stays in its
	// running set (a late result still frees the slot); taken again,
	// it is held once.
	sl.release(t.id)
	t.size = len(t.payload)
	sl.hold(t)
	s.metrics.Dispatched(t.kind, 1)
	if sl.credit > 0 {
		sl.credit--
	}
	d.Tasks = append(d.Tasks, protocol.Task{
		ID: t.id, Attempt: t.attempts, Lease: t.lease, Kind: t.kind, Module: t.module, Timeout: t.timeout, Payload: t.payload,
	})
}

// Complete takes a slave's finished attempts. A result counts only if the
// task is running on this session, in the attempt and with the lease the
// result echoes. One for a task the session was given but lost meanwhile
// (its lease expired) is late: it frees the slot and changes nothing else.
// Any other (a task pending, never dispatched to this session, running
// elsewhere, final or unknown, or a wrong lease) is rejected: it touches
// no task and counts against the slave, and a slave that sends more than
// max(64, its window) of them without an accepted one in between is
// disconnected with CodeBadResult. A result over MaxResult, or an error
// over protocol.MaxErrBytes (less with tiny frames), fails its attempt
// and counts against the slave as well.
func (s *Scheduler) Complete(sl *Slave, results []protocol.Result) {
	now := s.opts.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	var c change
	for i := range results {
		if sl.strikes > max(64, sl.maxWindow) {
			break // closed already: the rest of the frame is not looked at
		}
		r := &results[i]
		t := sl.running[r.ID]
		switch {
		case t == nil && sl.wasWithdrawn(r.ID):
			s.metrics.LateResult() // it crossed the cancel
			continue
		case t == nil:
			s.rejectLocked(sl, "a task it does not hold")
			continue
		case t.slave != sl || t.state != protocol.StateRunning:
			// Given to this session, then taken back: an honest slave
			// finishing after its lease, not a forger.
			sl.release(r.ID)
			s.metrics.LateResult()
			continue
		case r.Attempt != t.attempts:
			// An earlier attempt of a task that came back to this slave.
			s.metrics.LateResult()
			continue
		case r.Lease != t.lease:
			s.rejectLocked(sl, "a wrong lease")
			continue
		}
		sl.release(r.ID)
		out, errText := r.Output, r.Err
		switch {
		case len(errText) > s.maxErr():
			errText = fmt.Sprintf("error of %d bytes exceeds the limit of %d", len(errText), s.maxErr())
			s.rejectLocked(sl, "an oversized error")
		case errText == "" && len(out) > s.opts.MaxResult:
			errText = fmt.Sprintf("result of %d bytes exceeds the limit of %d", len(out), s.opts.MaxResult)
			s.rejectLocked(sl, "an oversized result")
		default:
			sl.strikes = 0
			if sl.window < sl.maxWindow {
				sl.window++
			}
		}
		sl.metrics.Result(errText == "", r.Duration)
		claim := claimOf(r.Duration, t.startedAt, now)
		if t.ringer != nil {
			t.slave = nil
			s.ringerDoneLocked(sl, t, errText == "", out, claim, now, &c)
			continue
		}
		t.claim = claim
		judged := protocol.Result{Err: errText, Duration: r.Duration}
		t.endAttempt(now, outcomeOf(&judged, t.timeout), errText)
		s.unqueueLocked(t)
		t.ranOn = sl.view.Name
		if errText != "" && t.attempts < t.maxAttempts {
			t.err = errText
			s.uncheckLocked(t)
			s.retryLocked(t, now)
			s.put(&c.b, t)
			continue
		}
		if errText == "" && t.onTrust && (t.check != nil || t.checkFailed) {
			s.holdLocked(t, out, claim, now, &c) // its ringer decides
			continue
		}
		if errText == "" {
			t.state, t.result, t.err = protocol.StateDone, out, ""
			if t.onTrust {
				s.onTrustDoneLocked(sl.who.Identity, t, claim, &c)
			}
		} else {
			t.state, t.err = protocol.StateFailed, errText
		}
		s.finishLocked(t, now, &c)
	}
	s.refillLocked(sl)
	s.commitChangeLocked(&c)
}

// refillLocked fills sl's window (if any) after it sent results; every
// slave's when a verdict queued copies or freed other slaves' slots.
func (s *Scheduler) refillLocked(sl *Slave) {
	s.sendCancelsLocked()
	if !s.repump {
		if sl != nil {
			s.dispatchLocked(sl, false)
		}
		return
	}
	s.repump = false
	if sl != nil {
		s.hungry[sl] = struct{}{} // dispatchLocked drops it if it has no room
	}
	s.pumpLocked()
}

// rejectLocked counts a result of sl that does not count, and disconnects
// sl once it has sent too many in a row: an honest slave sends one only
// when it races a lease or reconnects, never a window's worth.
func (s *Scheduler) rejectLocked(sl *Slave, why string) {
	s.metrics.LateResult()
	sl.metrics.Rejected()
	sl.strikes++
	if limit := max(64, sl.maxWindow); sl.strikes > limit {
		s.opts.Logger.Warn("disconnecting a slave that sends results it holds no lease for",
			"slave", sl.view.Name, "session", sl.session, "rejected", sl.metrics.Session().Rejected, "last", why)
		// Nothing more for it: what it holds goes back when it is gone.
		sl.draining = true
		delete(s.hungry, sl)
		sl.out.Close(protocol.CodeBadResult, fmt.Sprintf("%d results in a row without a lease of this session (the last for %s)", sl.strikes, why))
	}
}

// unqueueLocked takes t out of wherever it waits: a slave, the queue or
// the retry heap.
func (s *Scheduler) unqueueLocked(t *task) {
	switch {
	case t.state == protocol.StateRunning:
		t.slave = nil
	case t.retrySlot > 0:
		s.retries.remove(t)
	default:
		s.unpushLocked(t)
	}
}

// retryLocked schedules another attempt of t after an exponential backoff
// with jitter, so a failing task does not hammer the slaves in lockstep.
func (s *Scheduler) retryLocked(t *task, now time.Time) {
	d := backoff(s.opts.RetryBackoff, s.opts.RetryBackoffMax, t.attempts)
	d = d/2 + rand.N(d/2+1)
	t.state = protocol.StatePending
	t.slave = nil
	t.retryAt = now.Add(d)
	s.retries.push(t)
	s.metrics.Retried(t.kind)
}

// backoff is base doubled per attempt after the first, capped at max. It
// doubles step by step rather than shifting once, so a large base cannot
// overflow into a negative delay.
func backoff(base, max time.Duration, attempts uint32) time.Duration {
	d := base
	for i := uint32(1); i < attempts && d < max; i++ {
		d *= 2
	}
	return min(d, max)
}

// requeueLocked puts t back to pending after its slave vanished or its
// lease expired (OutcomeLost: that cost an attempt) or it was handed back
// (OutcomeReturned: no attempt spent), and closes the running attempt with
// that outcome and why. When no attempts are left the task fails with why.
func (s *Scheduler) requeueLocked(t *task, o Outcome, why string, now time.Time, c *change) {
	t.slave = nil
	if t.ringer != nil {
		// A ringer lost is forgotten; the task it checked is checked
		// by its copies instead.
		t.state = protocol.StateCanceled
		s.checkEndedLocked(t, false, now, c)
		return
	}
	s.uncheckLocked(t)
	t.endAttempt(now, o, why)
	spent := o != OutcomeReturned
	if !spent {
		t.attempts--
	}
	if spent && t.attempts >= t.maxAttempts {
		t.state = protocol.StateFailed
		t.err = fmt.Sprintf("%s (attempt %d of %d)", why, t.attempts, t.maxAttempts)
		s.finishLocked(t, now, c)
		return
	}
	t.state = protocol.StatePending
	s.pushLocked(t)
	s.metrics.Requeued(t.kind, 1)
	if spent {
		s.put(&c.b, t)
	}
}

// finishLocked writes t's final state into c; its application hears of it
// once c is durable (commitChangeLocked).
func (s *Scheduler) finishLocked(t *task, now time.Time, c *change) {
	if t.parent != nil {
		s.copyEndedLocked(t, now, c)
		return
	}
	t.finishedAt = now
	t.slave = nil
	t.acked = t.quiet // nobody will acknowledge a quiet task
	var st stats.State
	switch t.state {
	case protocol.StateDone:
		st = stats.Done
	case protocol.StateFailed:
		st = stats.Failed
	case protocol.StateCanceled:
		st = stats.Canceled
	}
	latency := now.Sub(t.createdAt)
	s.metrics.Finished(t.kind, st, latency)
	t.app.metrics.Finished(st, latency)
	s.put(&c.b, t)
	s.doneLocked(t)
	// The payload is no longer needed in memory; the store keeps it.
	t.payload = nil
	c.final = append(c.final, t)
}

// commitChangeLocked commits c, if it changed anything; once it is durable
// the tasks it made final wake their Wait callers and are notified.
func (s *Scheduler) commitChangeLocked(c *change) {
	if len(s.dirtyTrust) > 0 {
		s.writeTrustLocked(&c.b)
	}
	if c.b.Len() == 0 {
		return
	}
	b, final := &c.b, c.final
	s.commitLocked(b, func(err error) {
		if err != nil {
			s.opts.OnFatal(fmt.Errorf("commit results: %w", err))
			return
		}
		if len(final) == 0 {
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		touched := map[*App]struct{}{}
		for _, t := range final {
			if s.tasks[t.id] != t {
				continue // superseded by a Retry while this commit ran
			}
			t.settled = true
			s.wakeLocked(t)
			if t.quiet {
				s.removeLocked(t.id)
				s.expiry = append(s.expiry, expiring{t.id, t.finishedAt})
				continue
			}
			t.app.pending = append(t.app.pending, t)
			touched[t.app] = struct{}{}
		}
		for a := range touched {
			s.notifyLocked(a)
		}
	})
}

// notifyLocked sends a's pending notifications, within its window.
func (s *Scheduler) notifyLocked(a *App) {
	out := a.out
	if out == nil {
		return
	}
	// The frame's bound is a promise to the application, which refuses a
	// larger frame: it holds whatever a slave delivered.
	limit := s.opts.MaxFrame - notifyHeader
	for len(a.pending) > 0 && len(a.sent) < s.opts.NotifyWindow {
		var n protocol.Notify
		size := 0
		for len(a.pending) > 0 && len(a.sent) < s.opts.NotifyWindow && size < s.opts.MaxFrame/2 {
			t := a.pending[0]
			if _, dup := a.sent[t.id]; dup {
				a.pending[0] = nil
				a.pending = a.pending[1:]
				continue
			}
			f, fsize := s.finishedOf(t, limit)
			if len(n.Tasks) > 0 && size+fsize > limit {
				break // the next frame takes it
			}
			a.pending[0] = nil
			a.pending = a.pending[1:]
			a.sent[t.id] = t
			size += fsize
			n.Tasks = append(n.Tasks, f)
		}
		if len(n.Tasks) == 0 {
			return
		}
		if !out.Send(&n) {
			return
		}
	}
}

// Encoded sizes of a notify frame: its type and count, and the fields of
// one task beside its kind, error and result (five uvarints and a byte).
const (
	notifyHeader   = 1 + 10
	notifyOverhead = 5*10 + 1
)

// finishedOf is t's notification and an upper bound of its encoded size,
// which never exceeds limit: a result (or error) too large for a frame is
// replaced by an error that says so, so the notification is delivered
// rather than refused by the application forever.
func (s *Scheduler) finishedOf(t *task, limit int) (protocol.Finished, int) {
	f := protocol.Finished{ID: t.id, Kind: t.kind, State: t.state, Attempts: t.attempts, Result: t.result, Err: t.err}
	size := len(t.kind) + len(t.err) + len(t.result) + notifyOverhead
	if size <= limit {
		return f, size
	}
	what := "result"
	n := len(t.result)
	if len(t.err) > n {
		what, n = "error", len(t.err)
	}
	f.State, f.Result = protocol.StateFailed, nil
	f.Err = fmt.Sprintf("the %s of %d bytes does not fit a notify frame of %d bytes", what, n, s.opts.MaxFrame)
	s.opts.Logger.Warn("notification too large for a frame; sent as an error", "task", t.id, "app", t.app.name, "err", f.Err)
	return f, len(t.kind) + len(f.Err) + notifyOverhead
}

// Acknowledge takes an application's NotifyAck: those notifications are
// done with. Once that is durable out gets NotifyDone, so the application
// can forget its duplicate guard.
func (s *Scheduler) Acknowledge(a *App, out Outbox, ids []uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := new(store.Batch)
	// NotifyDone promises only that an id will not be notified again: true
	// of the ids acknowledged now and of those no longer known (acknowledged
	// before), never of another application's task or an unfinished one,
	// which the application must not believe taken care of.
	done := &protocol.IDs{T: protocol.TypeNotifyDone, IDs: make([]uint64, 0, len(ids))}
	for _, id := range ids {
		t := s.tasks[id]
		if t == nil {
			if s.coldRecordLocked(id) == nil {
				done.IDs = append(done.IDs, id)
			}
			continue
		}
		if t.app != a || !t.state.Final() {
			continue
		}
		done.IDs = append(done.IDs, id)
		delete(a.sent, id)
		s.removeLocked(id)
		if p := t.push; p != nil {
			if p.left--; p.left == 0 {
				a.forgetPush(p)
				b.DeletePush(a.name, p.seq)
			}
		}
		if s.opts.Retention < 0 {
			b.DeleteTask(id)
		} else {
			b.AckTask(id)
			s.expiry = append(s.expiry, expiring{id, t.finishedAt})
		}
		a.acked++
	}
	if len(done.IDs) == 0 {
		s.notifyLocked(a)
		return
	}
	s.commitLocked(b, func(err error) {
		if err != nil {
			s.opts.OnFatal(fmt.Errorf("commit acknowledgements: %w", err))
			return
		}
		out.Send(done)
	})
	s.notifyLocked(a)
}
