package slave

import (
	"context"
	"fmt"
	"time"

	"github.com/gorilla/websocket"

	"github.com/anthill-project/anthill/internal/dial"
	"github.com/anthill-project/anthill/internal/wire"
	"github.com/anthill-project/anthill/protocol"
)

// Batching of results: the sender flushes when the burst is over (nothing
// queued locally), when a batch is full, or when the oldest result has
// waited linger.
const (
	maxBatchResults = 1000
	maxBatchBytes   = 1 << 20
	linger          = 2 * time.Millisecond
)

// serve runs one opened session until the connection is lost (it returns
// why) or ctx ends (it stops gracefully and returns nil).
//
// Goroutines: the reader (reads and handles frames), the sender (batches
// results, returns and requests into frames) and the wire.Conn's writer.
// serve waits for all three before it returns.
func (s *Slave) serve(ctx context.Context, c *wire.Conn, w *protocol.Welcome) error {
	s.startSession(w)

	sctx, cancelSender := context.WithCancel(context.Background())
	defer cancelSender()
	flush := make(chan struct{})
	senderDone := make(chan struct{})
	go func() {
		defer close(senderDone)
		s.sender(sctx, c, flush)
	}()
	readErr := make(chan error, 1)
	go func() { readErr <- dial.ReadLoop(c, s.handle) }()

	var err error
	readerDone := false
	select {
	case err = <-readErr:
		readerDone = true
		cancelSender()
	case <-ctx.Done():
		if err, readerDone = s.drain(readErr); readerDone {
			cancelSender() // the connection failed: nothing can be delivered
		} else {
			close(flush) // the sender sends what is left, then exits
		}
	}
	<-senderDone
	if readerDone {
		// The connection failed (or the reader already closed it with an
		// Error): flushing could only block on a dead socket.
		c.CloseWith(nil, websocket.CloseAbnormalClosure, "")
	} else {
		c.Close() // flushes the last results and Return, then a normal close
	}
	<-c.Done()
	if !readerDone {
		<-readErr // the socket is closed: the reader returns now
	}
	s.endSession()
	return err
}

// startSession prepares the shared state for a new connection. Results
// finished meanwhile are dropped: the master took their tasks back when
// the old session ended, and fences results by session (a lease is valid
// on the connection it was given on only), so it would reject them.
func (s *Slave) startSession(w *protocol.Welcome) {
	s.mu.Lock()
	s.connected = true
	s.session++
	if n := len(s.pending); n > 0 {
		s.stale += uint64(n)
		s.log.Info("dropping results of the previous session; the master re-queued their tasks", "results", n)
	}
	s.pending, s.pendingB = nil, 0
	s.poll = w.Dispatch == protocol.DispatchPoll
	s.maxResult = resultLimit(w.MaxFrameBytes)
	s.maxOutput = w.MaxResultBytes
	s.credit = max(s.window-len(s.active)-(len(s.queue)-s.head), 0)
	s.returns, s.sendReturn = nil, false
	s.mu.Unlock()
	s.signal()
}

// endSession forgets what belonged to the lost connection. Tasks queued and
// not started are dropped: the master re-queues them. Running tasks go on;
// their results wait for the next session.
func (s *Slave) endSession() {
	s.mu.Lock()
	s.connected = false
	dropped := s.dropQueueLocked()
	s.returns, s.sendReturn, s.credit = nil, false, 0
	running := len(s.active)
	s.mu.Unlock()
	s.log.Info("session ended", "dropped_queued", dropped, "running", running)
}

// drain stops taking work: queued tasks are handed back, running ones get
// Grace to finish, the rest are canceled and handed back. It returns once
// the sender may flush and close, or with the reader's error (and
// readerDone) if the connection failed meanwhile.
func (s *Slave) drain(readErr <-chan error) (err error, readerDone bool) {
	s.mu.Lock()
	s.draining = true
	for _, j := range s.queue[s.head:] {
		s.returns = append(s.returns, j.task.ID)
	}
	returned := s.dropQueueLocked()
	s.sendReturn = true
	running := len(s.active)
	s.mu.Unlock()
	s.signal()
	s.log.Info("stopping: handing back queued tasks, letting running ones finish",
		"returned", returned, "running", running, "grace", max(s.opts.Grace, 0))

	if s.opts.Grace < 0 {
		s.abandon()
		return nil, false
	}
	grace := time.NewTimer(s.opts.Grace)
	defer grace.Stop()
	for !s.isIdle() {
		select {
		case <-s.idle:
		case <-grace.C:
			s.abandon()
			return nil, false
		case err := <-readErr:
			s.log.Warn("connection lost while stopping; running tasks are abandoned", "err", err)
			return err, true
		}
	}
	return nil, false
}

func (s *Slave) isIdle() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.active) == 0
}

// abandon cancels every running task and hands back those without a
// result.
func (s *Slave) abandon() {
	s.mu.Lock()
	n := 0
	for j := range s.active {
		if !j.settled {
			j.settled = true
			s.returns = append(s.returns, j.task.ID)
			n++
		}
		j.cancel()
	}
	s.mu.Unlock()
	if n > 0 {
		s.log.Warn("grace period over: canceled running tasks and handed them back", "returned", n)
	}
	s.signal()
}

// handle takes one frame from the master; an error ends the session as a
// bad frame.
func (s *Slave) handle(msg protocol.Message) error {
	switch m := msg.(type) {
	case *protocol.Dispatch:
		s.enqueue(m.Tasks)
	case *protocol.IDs:
		if m.T != protocol.TypeCancel {
			return fmt.Errorf("unexpected %s", m.T)
		}
		s.cancel(m.IDs)
	default:
		return fmt.Errorf("unexpected %s", msg.Type())
	}
	return nil
}

// sender turns finished results, hand-backs and freed slots into frames.
// It returns when ctx ends (the connection is gone: unsent results are put
// back for the next session) or, after one last flush, when flush closes.
func (s *Slave) sender(ctx context.Context, c *wire.Conn, flush <-chan struct{}) {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		final := false
		select {
		case <-ctx.Done():
			return
		case <-flush:
			final = true
		case <-s.kick:
		case <-timer.C:
		}
		msgs, wait := s.collect(final)
		for i, m := range msgs {
			if err := c.SendWait(ctx, protocol.Encode(nil, m)); err != nil {
				s.putBack(msgs[i:])
				return
			}
		}
		if final {
			return
		}
		if wait > 0 {
			timer.Reset(wait)
		}
	}
}

// collect takes what is ready to send. When results are held back to
// batch, wait says how long until they are due.
func (s *Slave) collect(final bool) (msgs []protocol.Message, wait time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := len(s.pending); n > 0 {
		age := time.Since(s.oldest)
		burstOver := s.head == len(s.queue)
		if final || s.urgent || burstOver || n >= maxBatchResults || s.pendingB >= maxBatchBytes || age >= linger {
			msgs = s.batchesLocked(msgs)
		} else {
			wait = linger - age
		}
	}
	if s.sendReturn || len(s.returns) > 0 {
		msgs = append(msgs, &protocol.IDs{T: protocol.TypeReturn, IDs: s.returns})
		s.returns, s.sendReturn = nil, false
	}
	if s.heldDirty && s.modules != nil {
		msgs = append(msgs, &protocol.Modules{Held: s.modules.list()})
		s.heldDirty = false
	}
	if s.poll && !s.draining && s.credit > 0 && wait == 0 {
		msgs = append(msgs, &protocol.Request{N: uint32(s.credit)})
		s.credit = 0
	}
	return msgs, wait
}

// batchesLocked moves every pending result into Results frames of at most
// maxBatchResults results and about maxBatchBytes each, never more than the
// master's frame limit.
func (s *Slave) batchesLocked(msgs []protocol.Message) []protocol.Message {
	limit := min(maxBatchBytes, s.maxResult)
	rs := s.pending
	for len(rs) > 0 {
		n, size := 0, 0
		for n < len(rs) && n < maxBatchResults {
			r := &rs[n]
			if l := len(r.Output) + len(r.Err); l > s.maxResult {
				// Only if the master's limit shrank since the result was made.
				r.Output, r.Err = nil, fmt.Sprintf("result of %d bytes exceeds the master's frame limit", l)
			}
			sz := resultSize(r)
			if n > 0 && size+sz > limit {
				break
			}
			size += sz
			n++
		}
		msgs = append(msgs, &protocol.Results{Results: rs[:n:n]})
		rs = rs[n:]
	}
	s.pending, s.pendingB, s.urgent = nil, 0, false
	return msgs
}

// putBack returns the results of frames that could not be sent, ahead of
// newer ones, for the next session. Returns and requests belong to the
// lost session and are dropped.
func (s *Slave) putBack(msgs []protocol.Message) {
	var rs []protocol.Result
	for _, m := range msgs {
		if r, ok := m.(*protocol.Results); ok {
			rs = append(rs, r.Results...)
		}
	}
	if len(rs) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.pending) == 0 {
		s.oldest = time.Now()
	}
	s.pending = append(rs, s.pending...)
	for i := range rs {
		s.pendingB += resultSize(&rs[i])
	}
}
