// Package wire runs one WebSocket connection the way master, slave and
// appnode all need it: one reader (the caller), a writer that drains a
// bounded queue of frames, symmetric ping heartbeats and read deadlines
// tied to them. It knows nothing of message contents.
package wire

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// ErrClosed is returned by sends on a closed connection.
var ErrClosed = errors.New("connection closed")

// ErrTooLarge is returned by Read for a frame over the read limit. The
// caller decides what to tell the peer before closing.
var ErrTooLarge = errors.New("frame too large")

// writeTimeout bounds one frame write: a peer that cannot take a frame in
// this long is too slow to keep.
const writeTimeout = 10 * time.Second

// Conn is a WebSocket with a writer. The writer is a goroutine only while
// there is something to write (frames, a heartbeat's ping, the close):
// an idle connection, of which a master may hold thousands, costs a timer
// rather than a goroutine and its stack. Read must be called by one
// goroutine at a time; every other method is safe for concurrent use.
type Conn struct {
	ws        *websocket.Conn
	heartbeat time.Duration
	// The frames waiting to be written, oldest first, at most maxFrames.
	// A slice that grows with the traffic rather than a channel of
	// maxFrames slots: an idle connection, of which a master may hold
	// thousands, then costs no queue at all.
	mu        sync.Mutex
	queue     [][]byte
	spare     [][]byte // the writer's last batch, reused
	maxFrames int
	writing   bool // a writer goroutine runs; guarded by mu
	pingDue   bool // the heartbeat wants a ping written; guarded by mu
	finished  bool // the socket is closed; guarded by mu
	pinger    *time.Timer
	room      chan struct{} // a SendWait may retry; capacity 1
	closing   chan struct{} // closed by Close: the writer flushes and stops
	done      chan struct{} // closed when the socket is closed
	once      sync.Once
	limit     int64
	readDone  chan struct{} // closed when Read has failed: the peer is gone or closed
	readOnce  sync.Once
	// queued is the bytes of the frames in send; maxQueued bounds it for
	// Send (0: only the frame count bounds the queue).
	queued    atomic.Int64
	maxQueued atomic.Int64

	// Set once before closing is closed; the writer reads them after.
	closeMsg    []byte
	closeCode   int
	closeReason string
}

// defaultHeartbeat stands in for a non-positive interval. It must equal
// protocol.DefaultHeartbeat, which wire cannot name because it imports
// nothing of ours; clients never reach it, internal/dial passes the
// protocol's.
const defaultHeartbeat = 5 * time.Second

// New starts the writer. heartbeat is the ping interval (non-positive
// means defaultHeartbeat); the read deadline is two of them, so a peer
// that misses two heartbeats is dropped. queue bounds the frames waiting
// to be written.
func New(ws *websocket.Conn, heartbeat time.Duration, queue int) *Conn {
	if heartbeat <= 0 {
		heartbeat = defaultHeartbeat
	}
	c := &Conn{
		readDone:  make(chan struct{}),
		ws:        ws,
		heartbeat: heartbeat,
		maxFrames: max(queue, 1),
		room:      make(chan struct{}, 1),
		closing:   make(chan struct{}),
		done:      make(chan struct{}),
	}
	c.extend()
	alive := func(string) error { c.extend(); return nil }
	ws.SetPongHandler(alive)
	ws.SetPingHandler(func(data string) error {
		c.extend()
		err := ws.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(writeTimeout))
		if err != nil && !errors.Is(err, websocket.ErrCloseSent) {
			return err
		}
		return nil
	})
	c.mu.Lock() // the timer may fire before New returns
	c.pinger = time.AfterFunc(heartbeat, c.ping)
	c.mu.Unlock()
	return c
}

// ping is the heartbeat's timer firing: a ping to write, and the next one.
func (c *Conn) ping() {
	c.mu.Lock()
	if c.finished {
		c.mu.Unlock()
		return
	}
	c.pingDue = true
	pinger := c.pinger
	c.mu.Unlock()
	c.wake()
	pinger.Reset(c.heartbeat)
}

func (c *Conn) extend() {
	_ = c.ws.SetReadDeadline(time.Now().Add(2 * c.heartbeat))
}

// SetReadLimit caps the size of a frame the peer may send; Read fails with
// ErrTooLarge on a larger one. Call it before the first Read.
func (c *Conn) SetReadLimit(n int64) { c.limit = n }

// SetQueueBytes bounds the bytes of the frames waiting to be written: Send
// refuses a frame that would take the queue past n, so a peer that does
// not read pins at most n bytes however large its frames are. A frame
// larger than n is still taken when nothing else waits. Zero or less
// means no bound but the frame count.
func (c *Conn) SetQueueBytes(n int64) { c.maxQueued.Store(n) }

// QueuedBytes is the bytes of the frames waiting to be written.
func (c *Conn) QueuedBytes() int64 { return c.queued.Load() }

// Read returns the next binary frame. Text frames are an error: the
// protocol is binary only.
func (c *Conn) Read() ([]byte, error) {
	typ, r, err := c.ws.NextReader()
	if err != nil {
		c.readOnce.Do(func() { close(c.readDone) })
		return nil, err
	}
	if typ != websocket.BinaryMessage {
		return nil, errors.New("text frame on a binary protocol")
	}
	if c.limit > 0 {
		r = io.LimitReader(r, c.limit+1)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	if c.limit > 0 && int64(len(b)) > c.limit {
		return nil, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, c.limit)
	}
	c.extend()
	return b, nil
}

// Send queues a frame without blocking. It reports false when the queue is
// full or the connection is closed: the caller treats the peer as too slow.
func (c *Conn) Send(frame []byte) bool {
	select {
	case <-c.closing:
		return false
	default:
	}
	n := int64(len(frame))
	if have := c.queued.Add(n); have > n {
		if limit := c.maxQueued.Load(); limit > 0 && have > limit {
			c.queued.Add(-n)
			return false
		}
	}
	if !c.push(frame) {
		c.queued.Add(-n)
		return false
	}
	return true
}

// push appends frame to the queue unless it holds maxFrames, and wakes
// the writer.
func (c *Conn) push(frame []byte) bool {
	c.mu.Lock()
	if len(c.queue) >= c.maxFrames {
		c.mu.Unlock()
		return false
	}
	c.queue = append(c.queue, frame)
	c.mu.Unlock()
	c.wake()
	return true
}

// wake starts a writer unless one runs or the socket is closed.
func (c *Conn) wake() {
	c.mu.Lock()
	if c.writing || c.finished {
		c.mu.Unlock()
		return
	}
	c.writing = true
	c.mu.Unlock()
	go c.writer()
}

// signal wakes whoever waits on ch, without blocking.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// SendWait queues a frame, waiting for room; clients use it for
// backpressure.
func (c *Conn) SendWait(ctx context.Context, frame []byte) error {
	n := int64(len(frame))
	c.queued.Add(n)
	for {
		select {
		case <-c.closing:
			c.queued.Add(-n)
			return ErrClosed
		default:
		}
		if c.push(frame) {
			return nil
		}
		select {
		case <-c.room:
		case <-c.closing:
			c.queued.Add(-n)
			return ErrClosed
		case <-ctx.Done():
			c.queued.Add(-n)
			return ctx.Err()
		}
	}
}

// take hands the writer every frame queued, and room to the senders; it
// stops the writer (false) when there is nothing to write.
func (c *Conn) take() (batch [][]byte, ping, closing, ok bool) {
	c.mu.Lock()
	batch = c.queue
	c.queue = c.spare[:0]
	c.spare = nil
	ping, c.pingDue = c.pingDue, false
	select {
	case <-c.closing:
		closing = true
	default:
	}
	if len(batch) == 0 && !ping && !closing {
		c.writing = false
		c.spare = batch
		c.mu.Unlock()
		return nil, false, false, false
	}
	c.mu.Unlock()
	if len(batch) > 0 {
		signal(c.room)
	}
	return batch, ping, closing, true
}

// recycle takes back the batch the writer wrote, so its array serves the next.
// A burst's large array is let go rather than kept by an idle connection.
func (c *Conn) recycle(batch [][]byte) {
	clear(batch)
	if cap(batch) > 64 {
		return
	}
	c.mu.Lock()
	c.spare = batch[:0]
	c.mu.Unlock()
}

// CloseWith sends last (if non-nil) after the frames already queued, then a
// close frame with code and reason, then closes the socket. It does not
// wait; use Wait for that.
func (c *Conn) CloseWith(last []byte, code int, reason string) {
	c.once.Do(func() {
		c.closeMsg, c.closeCode, c.closeReason = last, code, reason
		close(c.closing)
		c.wake()
	})
}

// Close closes normally.
func (c *Conn) Close() { c.CloseWith(nil, websocket.CloseNormalClosure, "") }

// Done is closed once the socket is closed.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Closing is closed as soon as Close or CloseWith was called.
func (c *Conn) Closing() <-chan struct{} { return c.closing }

// Wait blocks until the socket is closed.
func (c *Conn) Wait() { <-c.done }

// writer writes what is due until nothing is, or until the close.
func (c *Conn) writer() {
	for {
		batch, ping, closing, ok := c.take()
		if !ok {
			return
		}
		for _, f := range batch {
			c.queued.Add(-int64(len(f)))
			if c.write(f) != nil {
				c.fail()
				return
			}
		}
		c.recycle(batch)
		if ping && c.ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(writeTimeout)) != nil {
			c.fail()
			return
		}
		if closing {
			c.flush()
			c.finish()
			return
		}
	}
}

// fail closes a socket that could not be written.
func (c *Conn) fail() {
	c.CloseWith(nil, websocket.CloseAbnormalClosure, "")
	c.finish()
}

// finish closes the socket, once; the writer that calls it is the last.
func (c *Conn) finish() {
	c.mu.Lock()
	if c.finished {
		c.mu.Unlock()
		return
	}
	c.finished = true
	pinger := c.pinger
	c.mu.Unlock()
	pinger.Stop()
	c.ws.Close()
	close(c.done)
}

func (c *Conn) write(f []byte) error {
	_ = c.ws.SetWriteDeadline(time.Now().Add(writeTimeout))
	return c.ws.WriteMessage(websocket.BinaryMessage, f)
}

// flush writes what is queued, the last message and the close frame, each
// best effort: the peer may already be gone.
func (c *Conn) flush() {
	if c.closeCode == websocket.CloseAbnormalClosure {
		return // the socket failed; nothing more can be written
	}
	batch, _, _, _ := c.take()
	for _, f := range batch {
		c.queued.Add(-int64(len(f)))
		if c.write(f) != nil {
			return
		}
	}
	if c.closeMsg != nil && c.write(c.closeMsg) != nil {
		return
	}
	msg := websocket.FormatCloseMessage(c.closeCode, c.closeReason)
	if c.ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second)) != nil {
		return
	}
	// Closing the socket while the peer's last frames are unread makes the
	// kernel send a reset, and the peer can lose what we just wrote. Give a
	// reader the chance to see the peer's close reply first.
	select {
	case <-c.readDone:
	case <-time.After(closeWait):
	}
}

// closeWait bounds the wait for the peer's close reply.
const closeWait = time.Second
