package appnode

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/anthill-project/anthill/internal/wire"
	"github.com/anthill-project/anthill/protocol"
)

// batch is one Submit frame awaiting its SubmitAck or SubmitReject.
type batch struct {
	seq   uint64
	frame []byte // the encoded Submit, re-sent as is after a reconnect
	tasks []*Task
	owner *run // nil: a PushTasks call (notifications go to TaskFinished)
	done  chan struct{}

	// Under Node.mu.
	conn      *wire.Conn // the connection it was last queued on
	sent      bool       // queued on some connection: the master may have it
	abandoned bool       // its pusher gave up; not re-sent, its tasks are copied
	resolved  bool
	err       error // valid once done is closed
}

// PushTask pushes one task; see PushTasks.
func (n *Node) PushTask(ctx context.Context, t *Task) error {
	return n.PushTasks(ctx, []*Task{t})
}

// PushTasks sends the tasks to the master in one Submit frame and returns
// once the master has stored them durably: each task's ID is set then, and
// its outcome will be reported to Options.TaskFinished. A disconnect or a
// master restart in between is survived: the batch is re-sent with the
// same sequence number and stored once. The returned error is a
// *RejectError when the batch was refused (nothing stored; the IDs stay 0),
// ctx's error, ErrClosed, or the fatal error that stopped the node. After
// ctx's error the batch may still have been stored: its tasks are then
// reported to TaskFinished as copies carrying their IDs.
//
// Concurrent calls are pipelined: each sends its frame at once, without
// waiting for earlier acknowledgements. The tasks must not be modified
// until PushTasks returns.
func (n *Node) PushTasks(ctx context.Context, ts []*Task) error {
	if len(ts) == 0 {
		return nil
	}
	b, err := n.submit(ctx, ts, nil)
	if err != nil {
		return err
	}
	select {
	case <-b.done:
		return b.err
	case <-ctx.Done():
		n.mu.Lock()
		defer n.mu.Unlock()
		if b.resolved {
			return b.err
		}
		n.abandonLocked(b, ctx.Err())
		return ctx.Err()
	}
}

// newTask converts t, or explains why it cannot be sent.
func newTask(i int, t *Task) (protocol.NewTask, *RejectError) {
	bad := func(format string, a ...any) (protocol.NewTask, *RejectError) {
		return protocol.NewTask{}, &RejectError{Index: i, Code: protocol.CodeInvalidTask,
			Message: fmt.Sprintf("task %d: ", i) + fmt.Sprintf(format, a...)}
	}
	switch {
	case t == nil:
		return bad("nil task")
	case t.Timeout < 0:
		return bad("negative timeout %v", t.Timeout)
	case t.MaxAttempts < 0 || uint64(t.MaxAttempts) > math.MaxUint32:
		return bad("max attempts %d out of range", t.MaxAttempts)
	}
	timeout := t.Timeout
	if timeout > 0 && timeout < time.Millisecond {
		timeout = time.Millisecond // the wire counts milliseconds; 0 would mean the default
	}
	return protocol.NewTask{Kind: t.Kind, Module: t.Module, Payload: t.Payload, Priority: t.Priority, Timeout: timeout,
		MaxAttempts: uint32(t.MaxAttempts), Key: t.Key, Replicas: t.Replicas, Quorum: t.Quorum}, nil
}

// submit registers a batch and queues its frame on the current connection
// (or leaves it to the next connection's resender). It does not wait for
// the acknowledgement. The contract's limits and those the master
// announced are checked here, as the master checks them, so a batch the
// master would refuse never loops through reconnects.
func (n *Node) submit(ctx context.Context, ts []*Task, owner *run) (*batch, error) {
	n.mu.Lock()
	maxPayload, maxTasks := n.welcome.MaxPayloadBytes, n.welcome.MaxSubmitTasks
	n.mu.Unlock()
	if maxTasks > 0 && len(ts) > maxTasks {
		return nil, &RejectError{Index: -1, Code: protocol.CodeQuotaExceeded,
			Message: fmt.Sprintf("a push of %d tasks; the master takes at most %d at once (its --max-submit-tasks): push fewer at once", len(ts), maxTasks)}
	}
	nts := make([]protocol.NewTask, len(ts))
	for i, t := range ts {
		nt, rej := newTask(i, t)
		if rej != nil {
			return nil, rej
		}
		nts[i] = nt
	}
	if te := protocol.CheckBatch(nts, maxPayload, 0); te != nil {
		return nil, &RejectError{Index: te.Index, Code: te.Code, Message: te.Error()}
	}

	select {
	case n.sendSem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-n.stopping:
		return nil, n.stopErr()
	}
	defer func() { <-n.sendSem }()

	n.mu.Lock()
	if err := n.usableLocked(); err != nil {
		n.mu.Unlock()
		return nil, err
	}
	seq := n.nextSeq
	n.nextSeq++
	maxFrame := n.welcome.MaxFrameBytes
	n.mu.Unlock()

	frame := protocol.Encode(nil, &protocol.Submit{Seq: seq, Tasks: nts})
	if maxFrame > 0 && len(frame) > maxFrame {
		return nil, frameTooLarge(len(frame), maxFrame)
	}
	b := &batch{seq: seq, frame: frame, tasks: ts, owner: owner, done: make(chan struct{})}

	n.mu.Lock()
	if err := n.usableLocked(); err != nil {
		n.mu.Unlock()
		return nil, err
	}
	n.batches[seq] = b
	c := n.conn
	if c != nil {
		b.conn, b.sent = c, true
	}
	n.mu.Unlock()

	if c != nil {
		err := c.SendWait(ctx, frame)
		if err != nil && !errors.Is(err, wire.ErrClosed) {
			// Never queued anywhere (we hold sendSem, so no resender
			// sent it either): the master cannot have it.
			n.mu.Lock()
			if !b.resolved {
				n.resolveLocked(b, err)
			}
			n.mu.Unlock()
			return nil, err
		}
		// ErrClosed: the connection died; the next one's resender sends it.
	}
	return b, nil
}

func frameTooLarge(size, limit int) *RejectError {
	return &RejectError{Index: -1, Code: protocol.CodeFrameTooLarge,
		Message: fmt.Sprintf("the batch encodes to %d bytes; the master's frame limit is %d: push fewer tasks at once", size, limit)}
}

// resend queues every batch not yet queued on c, in Seq order. It holds
// sendSem so that new batches follow the re-sent ones.
func (n *Node) resend(c *wire.Conn) {
	defer n.wg.Done()
	select {
	case n.sendSem <- struct{}{}:
	case <-c.Closing():
		return
	case <-n.ctx.Done():
		return
	}
	defer func() { <-n.sendSem }()

	n.mu.Lock()
	if n.conn != c {
		n.mu.Unlock()
		return
	}
	maxFrame := n.welcome.MaxFrameBytes
	var todo []*batch
	for _, b := range n.batches {
		switch {
		case b.conn == c || b.abandoned:
		case maxFrame > 0 && len(b.frame) > maxFrame:
			// The master restarted with a smaller limit.
			n.resolveLocked(b, frameTooLarge(len(b.frame), maxFrame))
		default:
			b.conn, b.sent = c, true
			todo = append(todo, b)
		}
	}
	n.mu.Unlock()

	slices.SortFunc(todo, func(a, b *batch) int { return cmpUint64(a.seq, b.seq) })
	for _, b := range todo {
		if c.SendWait(n.ctx, b.frame) != nil {
			return
		}
	}
	if len(todo) > 0 {
		n.log.Info("re-sent unacknowledged batches", "batches", len(todo))
	}
}

func cmpUint64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// acked handles a SubmitAck: the tasks get their ids and are registered as
// in flight before the push completes, since their Notify may come next.
func (n *Node) acked(m *protocol.SubmitAck) {
	n.mu.Lock()
	defer n.mu.Unlock()
	b := n.batches[m.Seq]
	if b == nil {
		return // a duplicate answer to a re-sent batch
	}
	if int(m.Count) != len(b.tasks) {
		n.log.Error("master acknowledged a batch with the wrong count", "seq", m.Seq, "count", m.Count, "tasks", len(b.tasks))
		n.resolveLocked(b, fmt.Errorf("appnode: master acknowledged %d tasks of a batch of %d", m.Count, len(b.tasks)))
		return
	}
	owner := b.owner
	if b.abandoned {
		owner = nil
	}
	for i, t := range b.tasks {
		id := m.FirstID + uint64(i)
		t.ID = id
		if _, dup := n.delivered[id]; dup {
			n.log.Error("master acknowledged an id it had already notified", "id", id)
			continue
		}
		n.inflight[id] = &entry{task: t, owner: owner}
	}
	n.resolveLocked(b, nil)
}

// rejected handles a SubmitReject.
func (n *Node) rejected(m *protocol.SubmitReject) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if b := n.batches[m.Seq]; b != nil {
		n.resolveLocked(b, &RejectError{Index: int(m.Index), Code: m.Code, Message: m.Message})
	}
}

// resolveLocked completes b's push with err (nil: acknowledged).
func (n *Node) resolveLocked(b *batch, err error) {
	if b.resolved {
		return
	}
	delete(n.batches, b.seq)
	b.resolved, b.err = true, err
	close(b.done)
	if r := b.owner; r != nil && !b.abandoned && !r.ended {
		r.resolved = append(r.resolved, b)
		r.signal()
	}
	n.releaseParkedLocked()
	n.bumpLocked()
}

// abandonLocked gives up on b. A batch never queued is dropped; one that
// was may be stored by the master, so its acknowledgement (if it comes on
// this connection) still registers its tasks, for TaskFinished.
// Called before the pusher returns, it copies the tasks: the pusher may
// reuse its own once it has.
func (n *Node) abandonLocked(b *batch, err error) {
	if !b.sent {
		n.resolveLocked(b, err)
		return
	}
	b.abandoned = true
	cp := make([]Task, len(b.tasks))
	ts := make([]*Task, len(b.tasks)) // b.tasks is the caller's slice
	for i, t := range b.tasks {
		cp[i] = *t
		ts[i] = &cp[i]
	}
	b.tasks = ts
}

// disconnectedLocked forgets what only made sense on the lost connection:
// abandoned batches are not re-sent, and parked notifications will be
// offered again by the master, since they were not acknowledged.
func (n *Node) disconnectedLocked() {
	for _, it := range n.parked {
		n.oweLocked(n.untakeLocked(it)) // no connection to acknowledge the rest on
	}
	clear(n.parked)
	n.parked = n.parked[:0]
	for _, b := range n.batches {
		if b.abandoned {
			n.resolveLocked(b, context.Canceled)
		}
	}
	n.bumpLocked()
}
