package sched

import (
	"time"

	"github.com/anthill-project/anthill/master/store"
	"github.com/anthill-project/anthill/protocol"
)

// A task's history holds its most recent attempts (at most
// store.MaxHistory), oldest first, and is kept across Retry. It lives in
// the task, so the commits that already write the task (retry, requeue,
// final) carry it; dispatch writes nothing. At most one attempt is open,
// the last, and only while the task runs: every path that takes a task out
// of running closes it before writing the task.

// beginAttempt opens an attempt on slave at now. It allocates only while
// the history grows; a full one drops its oldest entry in place.
func (t *task) beginAttempt(slave string, now time.Time) {
	h := t.history
	if len(h) >= store.MaxHistory {
		n := copy(h, h[len(h)-store.MaxHistory+1:])
		h = h[:n]
	}
	t.history = append(h, Attempt{Slave: slave, Started: now})
}

// endAttempt closes the running attempt, if there is one, with o.
func (t *task) endAttempt(now time.Time, o Outcome, err string) {
	n := len(t.history)
	if n == 0 || t.history[n-1].Outcome != OutcomeRunning {
		return
	}
	a := &t.history[n-1]
	a.Ended, a.Outcome, a.Err = now, o, store.ClipErr(err)
}

// outcomeOf classifies a result. The slave reports a timeout as an error
// after the handler ran for the task's timeout; it measures from just after
// arming the deadline, and the wire carries microseconds, so a hair less
// still counts.
func outcomeOf(r *protocol.Result, timeout time.Duration) Outcome {
	switch {
	case r.Err == "":
		return OutcomeDone
	case timeout > 0 && r.Duration >= timeout-min(timeout/100, time.Millisecond):
		return OutcomeTimeout
	}
	return OutcomeFailed
}
