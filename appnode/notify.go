package appnode

import (
	"math"
	"slices"

	"github.com/anthill-project/anthill/internal/wire"
	"github.com/anthill-project/anthill/protocol"
)

// item is one notification taken for delivery.
type item struct {
	f      protocol.Finished
	task   *Task
	owner  *run        // set when routed; nil: the dispatcher
	groups []*ackGroup // Notify frames whose acknowledgement waits for it
	// watermark is, for a parked item, the last Seq assigned when it
	// arrived: the batch holding its task, if any, is at most that.
	watermark uint64
}

// outcome is what the callback gets.
func (it *item) outcome() ([]byte, error) {
	if it.f.State == protocol.StateDone {
		return it.f.Result, nil
	}
	return nil, &TaskError{ID: it.f.ID, State: it.f.State, Attempts: int(it.f.Attempts), Message: it.f.Err}
}

// ackGroup is the NotifyAck owed for one Notify frame: sent when every item
// it waits for has been handled.
type ackGroup struct {
	ids       []uint64
	remaining int
}

// notified handles a Notify frame. Each task is either a duplicate (already
// delivered or being delivered: only acknowledged), or taken: routed to its
// owner, or parked when its id is unknown while batches are unacknowledged
// (after a reconnect the master sends pending notifications before it
// answers the re-sent batches, so the ack naming the id may still come).
func (n *Node) notified(c *wire.Conn, m *protocol.Notify) {
	g := &ackGroup{}
	n.mu.Lock()
	unresolved := -1 // lazily: whether any sent batch awaits an answer
	for i := range m.Tasks {
		f := &m.Tasks[i]
		if it := n.handling[f.ID]; it != nil {
			it.groups = append(it.groups, g)
			g.remaining++
			g.ids = append(g.ids, f.ID)
			continue
		}
		if _, ok := n.delivered[f.ID]; ok {
			g.ids = append(g.ids, f.ID)
			continue
		}
		if n.draining || n.err != nil {
			continue // not taken: the master offers it again later
		}
		it := &item{f: *f, groups: []*ackGroup{g}}
		g.remaining++
		g.ids = append(g.ids, f.ID)
		n.handling[f.ID] = it
		if n.inflight[f.ID] == nil {
			if unresolved < 0 {
				unresolved = 0
				if n.lowestSentLocked() != math.MaxUint64 {
					unresolved = 1
				}
			}
			if unresolved == 1 {
				it.watermark = n.nextSeq - 1
				n.parked = append(n.parked, it)
				continue
			}
		}
		n.routeLocked(it)
	}
	var ready [][]uint64
	if g.remaining == 0 && len(g.ids) > 0 {
		ready = append(ready, g.ids)
		n.sending++
	}
	n.mu.Unlock()
	n.sendAcks(c, ready)
}

// sendAcks queues a NotifyAck per id list on c, then records which ids are
// still owed an acknowledgement: those that could not be queued. The
// caller counted one in n.sending when ready is not empty.
func (n *Node) sendAcks(c *wire.Conn, ready [][]uint64) {
	if len(ready) == 0 {
		return
	}
	queued := 0
	for _, ids := range ready {
		if c == nil || c.SendWait(n.ctx, ackFrame(ids)) != nil {
			break
		}
		queued++
	}
	n.mu.Lock()
	for i, ids := range ready {
		for _, id := range ids {
			if i < queued {
				delete(n.owed, id)
			} else {
				n.owed[id] = struct{}{}
			}
		}
	}
	n.sending--
	n.bumpLocked()
	n.mu.Unlock()
}

func ackFrame(ids []uint64) []byte {
	return protocol.Encode(nil, &protocol.IDs{T: protocol.TypeNotifyAck, IDs: ids})
}

// lowestSentLocked is the lowest Seq of a batch that was sent and not yet
// answered, or MaxUint64.
func (n *Node) lowestSentLocked() uint64 {
	low := uint64(math.MaxUint64)
	for _, b := range n.batches {
		if b.sent && b.seq < low {
			low = b.seq
		}
	}
	return low
}

// releaseParkedLocked routes parked items whose batch, if they have one,
// has been answered by now.
func (n *Node) releaseParkedLocked() {
	if len(n.parked) == 0 {
		return
	}
	low := n.lowestSentLocked()
	kept := n.parked[:0]
	for _, it := range n.parked {
		switch {
		case it.watermark >= low:
			kept = append(kept, it)
		case n.draining || n.err != nil:
			n.oweLocked(n.untakeLocked(it))
		default:
			n.routeLocked(it)
		}
	}
	clear(n.parked[len(kept):])
	n.parked = kept
}

// routeLocked hands a taken item to its owner: the running TaskSystem that
// pushed the task, else the dispatcher.
func (n *Node) routeLocked(it *item) {
	id := it.f.ID
	if e := n.inflight[id]; e != nil {
		delete(n.inflight, id)
		it.task, it.owner = e.task, e.owner
	} else {
		it.task = &Task{ID: id, Kind: it.f.Kind}
	}
	n.delivered[id] = struct{}{}
	n.busy++
	if r := it.owner; r != nil && !r.ended {
		r.items = append(r.items, it)
		r.signal()
		return
	}
	it.owner = nil
	n.queue = append(n.queue, it)
	select {
	case n.dispSig <- struct{}{}:
	default:
	}
}

// untakeLocked gives a parked item back: it was not delivered, so the
// master offers it again. Acknowledgements that waited only for it are
// returned, for the caller to send.
func (n *Node) untakeLocked(it *item) (ready [][]uint64) {
	delete(n.handling, it.f.ID)
	for _, g := range it.groups {
		g.ids = slices.DeleteFunc(g.ids, func(id uint64) bool { return id == it.f.ID })
		if g.remaining--; g.remaining == 0 && len(g.ids) > 0 {
			ready = append(ready, g.ids)
		}
	}
	it.groups = nil
	return ready
}

// oweLocked records acknowledgements that cannot be sent now.
func (n *Node) oweLocked(ready [][]uint64) {
	for _, ids := range ready {
		for _, id := range ids {
			n.owed[id] = struct{}{}
		}
	}
}

// complete records that its callback returned and sends the
// acknowledgements that were waiting only for it.
func (n *Node) complete(it *item) {
	var ready [][]uint64
	n.mu.Lock()
	if n.handling[it.f.ID] == it {
		delete(n.handling, it.f.ID)
	}
	n.busy--
	for _, g := range it.groups {
		if g.remaining--; g.remaining == 0 {
			ready = append(ready, g.ids)
		}
	}
	it.groups = nil
	c := n.conn
	if len(ready) > 0 {
		n.sending++
	}
	n.bumpLocked()
	n.mu.Unlock()
	// Without a connection the ids stay owed: the master offers them again
	// on the next one, and they are acknowledged then as duplicates.
	n.sendAcks(c, ready)
}

// notifyDone handles NotifyDone: the master holds those acknowledgements
// durably and will not notify the ids again.
func (n *Node) notifyDone(ids []uint64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, id := range ids {
		if n.handling[id] == nil {
			delete(n.delivered, id)
			delete(n.owed, id)
		}
	}
}

// dispatch calls Options.TaskFinished, one notification at a time, until
// Shutdown.
func (n *Node) dispatch() {
	defer close(n.dispDone)
	for {
		n.mu.Lock()
		for len(n.queue) == 0 {
			n.mu.Unlock()
			select {
			case <-n.dispSig:
			case <-n.ctx.Done():
				return
			}
			n.mu.Lock()
		}
		it := n.queue[0]
		n.queue[0] = nil
		n.queue = n.queue[1:]
		n.mu.Unlock()
		if n.ctx.Err() != nil {
			return // stopped: the master keeps the rest for the next process
		}
		result, err := it.outcome()
		if fn := n.opts.TaskFinished; fn != nil {
			fn(it.task, result, err)
		}
		n.complete(it)
	}
}
