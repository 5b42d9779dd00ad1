package master

import (
	"time"

	"github.com/anthill-project/anthill/master/store"
	"github.com/anthill-project/anthill/protocol"
)

// Attempt is one run of a task on a slave, as the operator API shows it.
// A task's history holds its most recent attempts (at most 16), oldest
// first; it is kept across Retry.
type Attempt struct {
	Slave   string
	Started time.Time
	Ended   time.Time // zero while the attempt runs
	// Outcome is how the attempt ended: "running" (not yet), "done",
	// "failed" (the handler returned an error), "timeout" (the handler ran
	// past the task's timeout), "lost" (the slave disconnected or its lease
	// expired), "returned" (the stopping slave handed the task back; no
	// attempt spent) or "canceled" (by an operator, or abandoned because
	// another attempt's result finished the task).
	Outcome string
	Err     string // at most 256 bytes
}

func attemptsOf(h []store.Attempt) []Attempt {
	if len(h) == 0 {
		return nil
	}
	out := make([]Attempt, len(h))
	for i, a := range h {
		out[i] = Attempt{Slave: a.Slave, Started: a.Started, Ended: a.Ended, Outcome: a.Outcome.String(), Err: a.Err}
	}
	return out
}

// The history is kept in t.rec, so the commits that already write the task
// (retry, requeue, final) carry it; dispatch writes nothing. At most one
// attempt is open, the last, and only while the task runs: every path
// that takes a task out of running closes it before writing the record.

// beginAttempt opens an attempt on slave at now. It allocates only while
// the history grows; a full one drops its oldest entry in place.
func (t *task) beginAttempt(slave string, now time.Time) {
	h := t.rec.History
	if len(h) >= store.MaxHistory {
		n := copy(h, h[len(h)-store.MaxHistory+1:])
		h = h[:n]
	}
	t.rec.History = append(h, store.Attempt{Slave: slave, Started: now})
}

// endAttempt closes the running attempt, if there is one, with o.
func (t *task) endAttempt(now time.Time, o store.Outcome, err string) {
	n := len(t.rec.History)
	if n == 0 || t.rec.History[n-1].Outcome != store.OutcomeRunning {
		return
	}
	a := &t.rec.History[n-1]
	a.Ended, a.Outcome, a.Err = now, o, store.ClipErr(err)
}

// outcomeOf classifies a result. The slave reports a timeout as an error
// after the handler ran for the task's timeout; it measures from just after
// arming the deadline, and the wire carries microseconds, so a hair less
// still counts.
func outcomeOf(r *protocol.Result, timeout time.Duration) store.Outcome {
	switch {
	case r.Err == "":
		return store.OutcomeDone
	case timeout > 0 && r.Duration >= timeout-min(timeout/100, time.Millisecond):
		return store.OutcomeTimeout
	}
	return store.OutcomeFailed
}
