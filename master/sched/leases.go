package sched

import (
	"time"

	"github.com/anthill-project/anthill/protocol"
)

// leaseHeap holds every running attempt's deadline, soonest first. An
// attempt that ends otherwise (a result, a cancel, its slave gone) is not
// taken out: its entry no longer matches the task (see live) and is
// dropped when its deadline comes, or when dead entries outnumber the
// live ones. Entries hold the slave, not the task, so a finished task is
// not kept alive by its lease.
type leaseHeap struct {
	values[leaseAt, *leaseAt]
	live int // entries live at the last filter, to know when to filter again
}

type leaseAt struct {
	at    int64 // the deadline, unix ns
	lease uint64
	id    uint64
	sl    *Slave
}

func (e *leaseAt) before(o *leaseAt) bool { return e.at < o.at }

// task is the attempt e stands for, if it still runs with that lease.
func (e *leaseAt) task() *task {
	t := e.sl.running[e.id]
	if t == nil || t.lease != e.lease || t.slave != e.sl || t.state != protocol.StateRunning {
		return nil
	}
	return t
}

func (h *leaseHeap) add(sl *Slave, t *task) {
	h.push(leaseAt{at: t.deadline.UnixNano(), lease: t.lease, id: t.id, sl: sl})
	if len(h.items) > 2*h.live+4096 {
		h.filter(func(e *leaseAt) bool { return e.task() != nil })
		h.live = len(h.items)
	}
}

// due removes the entries whose deadline is not after now and returns the
// attempts among them still running.
func (h *leaseHeap) due(now time.Time) []*task {
	var out []*task
	for n := now.UnixNano(); len(h.items) > 0 && h.items[0].at <= n; {
		e := h.pop()
		if t := e.task(); t != nil {
			out = append(out, t)
		}
	}
	return out
}
