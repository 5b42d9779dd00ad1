package sched

import (
	"context"
	"time"

	"github.com/anthill-project/anthill/master/store"
)

// The commit pump. State changes are made under the scheduler's lock and
// their batches queued there, in the order of the changes; the pump hands
// them to the store outside the lock, because store.Commit may block when
// the store is busy and its callbacks take the lock. So a task's final
// record can never be overwritten by its own earlier "accepted" record.

type commitReq struct {
	b    *store.Batch
	done func(error)
}

// commitLocked queues b for the pump; done runs once b is durable, or
// with the error that stopped it.
func (s *Scheduler) commitLocked(b *store.Batch, done func(error)) {
	s.commitQ = append(s.commitQ, commitReq{b, done})
	select {
	case s.commitCh <- struct{}{}:
	default:
	}
}

// pump runs until ctx ends, then flushes what is queued.
func (s *Scheduler) pump(ctx context.Context) {
	for {
		select {
		case <-s.commitCh:
		case <-ctx.Done():
			s.flushCommits()
			return
		}
		s.flushCommits()
	}
}

func (s *Scheduler) flushCommits() {
	s.mu.Lock()
	q := s.commitQ
	s.commitQ = nil
	s.mu.Unlock()
	for _, r := range q {
		ops, start, done := r.b.Len(), time.Now(), r.done
		s.st.Commit(r.b, func(err error) {
			s.metrics.Commit(ops, time.Since(start))
			done(err)
		})
	}
}
