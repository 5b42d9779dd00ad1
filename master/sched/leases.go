package sched

import (
	"slices"
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
	items []leaseAt
	live  int // entries live at the last filter, to know when to filter again
}

type leaseAt struct {
	at    int64 // the deadline, unix ns
	lease uint64
	id    uint64
	sl    *Slave
}

// task is the attempt e stands for, if it still runs with that lease.
func (e *leaseAt) task() *task {
	t := e.sl.running[e.id]
	if t == nil || t.lease != e.lease || t.slave != e.sl || t.state != protocol.StateRunning {
		return nil
	}
	return t
}

func (h *leaseHeap) add(sl *Slave, t *task) {
	h.items = append(h.items, leaseAt{at: t.deadline.UnixNano(), lease: t.lease, id: t.id, sl: sl})
	h.up(len(h.items) - 1)
	if len(h.items) > 2*h.live+4096 {
		h.filter()
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

func (h *leaseHeap) filter() {
	h.items = slices.DeleteFunc(h.items, func(e leaseAt) bool { return e.task() == nil })
	for i := len(h.items)/2 - 1; i >= 0; i-- {
		h.down(i)
	}
	h.live = len(h.items)
}

func (h *leaseHeap) pop() leaseAt {
	e := h.items[0]
	last := len(h.items) - 1
	h.items[0] = h.items[last]
	h.items[last] = leaseAt{}
	h.items = h.items[:last]
	if last > 0 {
		h.down(0)
	}
	return e
}

func (h *leaseHeap) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if h.items[p].at <= h.items[i].at {
			return
		}
		h.items[i], h.items[p] = h.items[p], h.items[i]
		i = p
	}
}

func (h *leaseHeap) down(i int) {
	for n := len(h.items); ; {
		l := 2*i + 1
		if l >= n {
			return
		}
		m := l
		if r := l + 1; r < n && h.items[r].at < h.items[l].at {
			m = r
		}
		if h.items[m].at >= h.items[i].at {
			return
		}
		h.items[i], h.items[m] = h.items[m], h.items[i]
		i = m
	}
}
