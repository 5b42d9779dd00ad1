package slave

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/anthill-project/anthill/protocol"
	"github.com/anthill-project/anthill/sandbox"
)

// job is one dispatched task on this slave.
type job struct {
	task    protocol.Task
	session uint64 // Slave.session it was dispatched in: its lease is that session's

	// Set by next before the job leaves the queue, under Slave.mu.
	ctx     context.Context
	cancel  context.CancelFunc
	unwatch func() bool // stops the timeout watcher; nil without a timeout
	start   time.Time

	// settled, under Slave.mu, means the task's outcome is decided (a
	// result, a timeout result, a Return) or no longer wanted (Cancel, the
	// slave stopping): whatever the handler returns later is dropped.
	settled bool
}

// errGoexit is the result of a handler that called runtime.Goexit.
var errGoexit = errors.New("task called runtime.Goexit")

// worker runs queued tasks one at a time until the slave stops. base is
// the parent of every task's context; it ends when the slave gives up on
// running tasks.
func (s *Slave) worker(base context.Context) {
	normal := false
	defer func() {
		if !normal {
			// A handler called runtime.Goexit: execute reported it, and
			// this goroutine is ending. Replace it so the slot survives.
			s.wg.Add(1)
			go s.worker(base)
		}
		s.wg.Done()
	}()
	for {
		j := s.next(base)
		if j == nil {
			normal = true
			return
		}
		s.execute(j)
	}
}

// next waits for a queued task and marks it running; nil means stop.
func (s *Slave) next(base context.Context) *job {
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.head == len(s.queue) && !s.stopping {
		s.work.Wait()
	}
	if s.stopping {
		return nil
	}
	j := s.queue[s.head]
	s.queue[s.head] = nil
	s.head++
	if s.head == len(s.queue) {
		s.queue, s.head = s.queue[:0], 0
	}
	if t := j.task.Timeout; t > 0 {
		j.ctx, j.cancel = context.WithTimeout(base, t)
		s.wg.Add(1)
		j.unwatch = context.AfterFunc(j.ctx, func() {
			defer s.wg.Done()
			s.expired(j)
		})
	} else {
		j.ctx, j.cancel = context.WithCancel(base)
	}
	j.start = time.Now()
	s.active[j] = struct{}{}
	return j
}

// execute runs j's handler and records its outcome. The deferred part runs
// even if the handler calls runtime.Goexit.
func (s *Slave) execute(j *job) {
	var (
		out      []byte
		err      error
		returned bool
	)
	defer func() {
		elapsed := time.Since(j.start)
		if !returned {
			out, err = nil, errGoexit
		}
		if j.unwatch != nil && j.unwatch() {
			s.wg.Done() // the watcher will never run
		}
		timedOut := errors.Is(j.ctx.Err(), context.DeadlineExceeded)
		j.cancel()
		s.finish(j, out, err, elapsed, timedOut)
	}()
	out, err = s.run(j.ctx, &j.task)
	returned = true
}

func timeoutMessage(d time.Duration) string {
	return fmt.Sprintf("task exceeded its timeout of %v", d)
}

// expired runs when a task's deadline passes: the failure is reported at
// once, though the worker keeps the slot until the handler returns.
func (s *Slave) expired(j *job) {
	if !errors.Is(j.ctx.Err(), context.DeadlineExceeded) {
		return // canceled: the handler returned, or the slave gave up
	}
	s.mu.Lock()
	if j.settled {
		s.mu.Unlock()
		return
	}
	j.settled = true
	s.addResultLocked(j, protocol.Result{
		ID: j.task.ID, Attempt: j.task.Attempt, Lease: j.task.Lease,
		Err: timeoutMessage(j.task.Timeout), Duration: time.Since(j.start),
	})
	s.urgent = true
	s.mu.Unlock()
	s.log.Warn("task timed out; its slot stays busy until the handler returns",
		"id", j.task.ID, "kind", j.task.Kind, "timeout", j.task.Timeout)
	s.signal()
}

// finish records what j's handler returned, unless j is settled.
func (s *Slave) finish(j *job, out []byte, err error, elapsed time.Duration, timedOut bool) {
	r := protocol.Result{ID: j.task.ID, Attempt: j.task.Attempt, Lease: j.task.Lease, Duration: elapsed}
	switch {
	case err == nil:
		r.Output = out
	case timedOut:
		r.Err = timeoutMessage(j.task.Timeout)
	default:
		// An empty Err means success on the wire.
		if r.Err = err.Error(); r.Err == "" {
			r.Err = "task failed with an empty error message"
		}
	}
	s.mu.Lock()
	delete(s.active, j)
	s.credit++
	keep := !j.settled
	j.settled = true
	if keep {
		s.addResultLocked(j, r)
	}
	idle := s.draining && len(s.active) == 0
	s.mu.Unlock()
	if keep && err != nil {
		var pe *sandbox.PanicError
		switch {
		case errors.As(err, &pe):
			s.log.Warn("task panicked", "id", j.task.ID, "kind", j.task.Kind, "err", err)
		case errors.Is(err, errGoexit):
			s.log.Warn("task called runtime.Goexit", "id", j.task.ID, "kind", j.task.Kind)
		}
	}
	s.signal()
	if idle {
		select {
		case s.idle <- struct{}{}:
		default:
		}
	}
}

// resultOverhead is room left in a frame beyond one result's output and
// error: the frame header and the result's varints.
const resultOverhead = 1024

// defaultMaxFrame is assumed until a Welcome announces the master's.
const defaultMaxFrame = 16 << 20

func resultLimit(maxFrame int) int {
	if maxFrame <= 0 {
		maxFrame = defaultMaxFrame
	}
	return max(maxFrame-resultOverhead, 0)
}

// resultSize bounds a result's encoded size: its bytes plus five varints.
func resultSize(r *protocol.Result) int { return len(r.Output) + len(r.Err) + 40 }

// addResultLocked queues r, the result of j, for the master and counts
// it. A result of an earlier session is dropped: the master took its task
// back when that session ended and would only reject it. A result too big
// for the master would fail anyway and count against the slave: it
// becomes an error at once, and a long error is cut to the master's limit.
func (s *Slave) addResultLocked(j *job, r protocol.Result) {
	if j.session != s.session {
		s.stale++
		return
	}
	if len(r.Err) > protocol.MaxErrBytes {
		r.Err = strings.ToValidUTF8(r.Err[:protocol.MaxErrBytes], "")
	}
	if n := len(r.Output); s.maxOutput > 0 && n > s.maxOutput {
		r.Output = nil
		r.Err = fmt.Sprintf("result of %d bytes exceeds the master's limit of %d", n, s.maxOutput)
	}
	if n := len(r.Output) + len(r.Err); n > s.maxResult {
		r.Output = nil
		r.Err = fmt.Sprintf("result of %d bytes exceeds the master's frame limit", n)
	}
	if r.Err == "" {
		s.stats.Done++
	} else {
		s.stats.Failed++
	}
	if len(s.pending) == 0 {
		s.oldest = time.Now()
	}
	s.pending = append(s.pending, r)
	s.pendingB += resultSize(&r)
}

// signal wakes the sender.
func (s *Slave) signal() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// enqueue takes dispatched tasks; while draining they go straight back.
func (s *Slave) enqueue(tasks []protocol.Task) {
	s.mu.Lock()
	if s.draining {
		for i := range tasks {
			s.returns = append(s.returns, tasks[i].ID)
		}
		s.mu.Unlock()
		s.signal()
		return
	}
	for i := range tasks {
		s.pushLocked(&job{task: tasks[i], session: s.session})
	}
	for range min(len(tasks), s.opts.Concurrency) {
		s.work.Signal() // one idle worker per task; a no-op when none waits
	}
	s.mu.Unlock()
}

// pushLocked appends to the queue, compacting it when the consumed prefix
// would otherwise make append grow it.
func (s *Slave) pushLocked(j *job) {
	if s.head > 0 && len(s.queue) == cap(s.queue) {
		n := copy(s.queue, s.queue[s.head:])
		clear(s.queue[n:])
		s.queue, s.head = s.queue[:n], 0
	}
	s.queue = append(s.queue, j)
}

func (s *Slave) dropQueueLocked() int {
	n := len(s.queue) - s.head
	clear(s.queue)
	s.queue, s.head = s.queue[:0], 0
	return n
}

// cancel abandons tasks at the master's request: queued ones are dropped,
// running ones have their context canceled. No result is sent for either.
func (s *Slave) cancel(ids []uint64) {
	set := make(map[uint64]struct{}, len(ids))
	for _, id := range ids {
		set[id] = struct{}{}
	}
	s.mu.Lock()
	kept := s.queue[:0]
	for _, j := range s.queue[s.head:] {
		if _, ok := set[j.task.ID]; !ok {
			kept = append(kept, j)
		}
	}
	dropped := len(s.queue) - s.head - len(kept)
	clear(s.queue[len(kept):])
	s.queue, s.head = kept, 0
	s.credit += dropped
	for j := range s.active {
		if _, ok := set[j.task.ID]; ok && !j.settled {
			j.settled = true
			j.cancel()
		}
	}
	// A result not sent yet is not wanted either: the master took its
	// slot back and may fill it, and a frame must stay within the window.
	rs := s.pending[:0]
	for _, r := range s.pending {
		if _, ok := set[r.ID]; ok {
			s.pendingB -= resultSize(&r)
			continue
		}
		rs = append(rs, r)
	}
	clear(s.pending[len(rs):])
	s.pending = rs
	s.mu.Unlock()
	if dropped > 0 {
		s.signal()
	}
}
