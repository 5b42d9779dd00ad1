package appnode

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/anthill-project/anthill/internal/dial"
	"github.com/anthill-project/anthill/internal/wire"
	"github.com/anthill-project/anthill/protocol"
)

// Options configures a Node. Master and App are required.
type Options struct {
	// Master is the master's base URL, ws://host:port or http://host:port
	// (wss and https work too); the node dials Master + "/ws/app".
	Master string
	// CA is a PEM file of the certificates that verify a wss:// master
	// (a private CA or a self-signed master). Default "": the system's
	// roots. TLS, when set, is used instead.
	CA string
	// TLS verifies a wss:// master. Default: from CA.
	TLS *tls.Config
	// MaxFrame caps a frame the node reads, whatever the master announces
	// (the smaller of the two counts; an announced 0 means this). Default
	// 16 MiB. Negative is refused.
	MaxFrame int
	// App is the application id. Notifications are kept by the master per
	// app id across reconnects and process restarts. Required.
	App string
	// Token is the application's credential: the token `anthill apps
	// enroll APP` printed for this App (it is good for no other app id),
	// or the master's admin token. A master refuses an app without one as
	// unauthorized, which Connect reports at once. Required in practice.
	Token string
	// TaskFinished is called exactly once per finished task that is not
	// owned by a running TaskSystem, including tasks pushed by an earlier
	// process under the same App id (those arrive as &Task{ID, Kind}).
	// result is the task's output and err nil when it succeeded; otherwise
	// result is nil and err a *TaskError. Calls are made one at a time from
	// one goroutine; a slow callback delays further notifications but not
	// the connection. nil drops the calls (tasks are still acknowledged).
	TaskFinished func(t *Task, result []byte, err error)
	// ReconnectMin and ReconnectMax bound the jittered exponential backoff
	// between reconnection attempts. Zero means 100ms and 5s.
	ReconnectMin, ReconnectMax time.Duration
	// Logger receives connection events. nil discards them.
	Logger *slog.Logger
}

// Task is one unit of work. The application fills in everything but ID.
type Task struct {
	// ID is set by the master when PushTask returns.
	ID uint64
	// Kind names the handler a slave runs the task with. With Module set
	// it may be left empty: it is then protocol.KindWASM.
	Kind string
	// Module is the hash of the WASM module that runs the task, as
	// UploadModule returned it (or anthill modules push printed it).
	// Default "": a task of a registered kind.
	Module string
	// Payload is the task's input, opaque to Anthill.
	Payload []byte
	// Priority orders pending tasks under the priority strategy: higher
	// runs first. Zero is the default.
	Priority int32
	// Timeout bounds each attempt. Zero means the master's default.
	Timeout time.Duration
	// MaxAttempts bounds how often the task runs before it fails. Zero
	// means the master's default.
	MaxAttempts int
	// Key is an optional routing key.
	Key string
	// Replicas is how many copies of the task run on distinct volunteers,
	// Quorum how many of them must agree before the master accepts their
	// result (0: a majority): TaskFinished then carries the result they
	// agreed on. Zero and zero: the app's defaults (Apps.Configure). At
	// most protocol.MaxReplicas.
	Replicas, Quorum uint8
	// Value is application state carried with the task in this process;
	// it is never sent.
	Value any
}

// TaskError is the error given to TaskFinished (or TaskSystem.Finished)
// when a task failed or was canceled.
type TaskError struct {
	ID       uint64
	State    protocol.State // protocol.StateFailed or protocol.StateCanceled
	Attempts int            // attempts the master made
	Message  string         // the last attempt's error
}

func (e *TaskError) Error() string {
	s := "s"
	if e.Attempts == 1 {
		s = ""
	}
	msg := fmt.Sprintf("task %d %s after %d attempt%s", e.ID, e.State, e.Attempts, s)
	if e.Message != "" {
		msg += ": " + e.Message
	}
	return msg
}

// RejectError is returned by PushTask and PushTasks when the batch was
// refused as a whole and nothing of it was stored, by the master or, for
// limits the master announced, before sending. Index is the offending task
// in the batch, -1 when the batch itself is at fault. Code is one of the
// protocol's error codes.
type RejectError struct {
	Index   int
	Code    string
	Message string
}

func (e *RejectError) Error() string {
	return fmt.Sprintf("push rejected: %s: %s", e.Code, e.Message)
}

// ErrClosed is returned by pushes and Run once Shutdown has been called.
var ErrClosed = errors.New("appnode: node is shut down")

const (
	sendQueue    = 256 // frames waiting for the connection's writer
	defaultFrame = 8 << 20
)

// Node is a connection to a master under one app id. Its methods are safe
// for concurrent use.
type Node struct {
	opts Options
	url  string
	log  *slog.Logger

	ctx      context.Context // root lifetime: canceled by Shutdown
	cancel   context.CancelFunc
	sendSem  chan struct{} // capacity 1: orders Submit frames; taken before mu
	stopping chan struct{} // closed on Shutdown or a fatal error
	stopOnce sync.Once
	dispSig  chan struct{} // capacity 1: wakes the dispatcher
	dispDone chan struct{}
	wg       sync.WaitGroup // the loop and resenders

	mu        sync.Mutex
	conn      *wire.Conn // nil while disconnected
	welcome   protocol.Welcome
	closing   bool  // Shutdown called: no new pushes
	draining  bool  // Shutdown: no new notifications taken
	stopped   bool  // Shutdown: no new connections
	err       error // fatal error
	nextSeq   uint64
	batches   map[uint64]*batch // unacknowledged, by Seq
	inflight  map[uint64]*entry // acknowledged, not yet notified, by task id
	delivered map[uint64]struct{}
	handling  map[uint64]*item    // taken notifications not yet handled (incl. parked)
	owed      map[uint64]struct{} // handled, but no acknowledgement could be queued
	parked    []*item             // notifications for ids no ack has named yet
	queue     []*item             // for the dispatcher
	busy      int                 // routed items whose callback has not returned
	sending   int                 // ack frames being queued
	changed   chan struct{}       // closed on state changes while someone waits
}

// entry is an acknowledged task awaiting its notification.
type entry struct {
	task  *Task
	owner *run // nil: Options.TaskFinished
}

// Connect dials the master, completes the handshake and returns a running
// node; from then on it reconnects by itself. A dial failure or an Error
// from the master (unauthorized, unsupported_version, bad_handshake, ...) is
// returned; errors.As finds a *protocol.Error in the latter.
func Connect(ctx context.Context, opts Options) (*Node, error) {
	if opts.App == "" {
		return nil, errors.New("appnode: Options.App is required")
	}
	u, err := appURL(opts.Master)
	if err != nil {
		return nil, err
	}
	if opts.MaxFrame < 0 {
		return nil, fmt.Errorf("appnode: negative Options.MaxFrame %d", opts.MaxFrame)
	}
	if opts.TLS == nil {
		if opts.TLS, err = dial.ClientTLS(opts.CA); err != nil {
			return nil, fmt.Errorf("appnode: %w", err)
		}
	}
	if opts.ReconnectMin <= 0 {
		opts.ReconnectMin = 100 * time.Millisecond
	}
	if opts.ReconnectMax <= 0 {
		opts.ReconnectMax = 5 * time.Second
	}
	opts.ReconnectMax = max(opts.ReconnectMax, opts.ReconnectMin)
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	n := &Node{
		opts:      opts,
		url:       u,
		log:       log.With("app", opts.App),
		sendSem:   make(chan struct{}, 1),
		stopping:  make(chan struct{}),
		dispSig:   make(chan struct{}, 1),
		dispDone:  make(chan struct{}),
		nextSeq:   uint64(time.Now().UnixNano()),
		batches:   map[uint64]*batch{},
		inflight:  map[uint64]*entry{},
		delivered: map[uint64]struct{}{},
		handling:  map[uint64]*item{},
		owed:      map[uint64]struct{}{},
	}
	c, w, err := n.open(ctx)
	if err != nil {
		return nil, err
	}
	n.conn, n.welcome = c, *w // pushes from now on go straight out
	n.ctx, n.cancel = context.WithCancel(context.Background())
	n.wg.Add(1)
	go n.loop(c, w)
	go n.dispatch()
	return n, nil
}

// appURL turns a base URL into the app endpoint's WebSocket URL.
func appURL(base string) (string, error) {
	u, err := wire.EndpointURL(base, "/ws/app")
	if err != nil {
		return "", fmt.Errorf("appnode: %w", err)
	}
	return u, nil
}

// open dials the master and runs the handshake.
func (n *Node) open(ctx context.Context) (*wire.Conn, *protocol.Welcome, error) {
	hello := &protocol.Hello{Version: protocol.Version, Role: protocol.RoleApp, Name: n.opts.App, Token: n.opts.Token}
	c, w, err := dial.Open(ctx, n.url, hello, dial.Options{Queue: sendQueue, MaxFrame: n.opts.MaxFrame, TLS: n.opts.TLS})
	if err != nil {
		return nil, nil, fmt.Errorf("appnode: %w", err)
	}
	return c, w, nil
}

// loop serves one connection after another until Shutdown or a fatal error.
func (n *Node) loop(c *wire.Conn, w *protocol.Welcome) {
	defer n.wg.Done()
	backoff := dial.Backoff{Min: n.opts.ReconnectMin, Max: n.opts.ReconnectMax}
	for {
		if err := n.serve(c, w); !doomed(err) {
			backoff.Reset()
		}
		if n.ctx.Err() != nil || n.failed() {
			return
		}
		wait := backoff.Next()
		for {
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-n.ctx.Done():
				t.Stop()
				return
			}
			var err error
			c, w, err = n.open(n.ctx)
			if err == nil {
				break
			}
			if n.ctx.Err() != nil {
				return
			}
			if dial.Fatal(err) {
				n.fail(err)
				return
			}
			wait = backoff.Next()
			n.log.Warn("reconnect failed", "err", err, "retry_in", wait)
		}
	}
}

// doomed reports whether a session ended in a way the next one will most
// likely repeat at once: a frame over the local limit (the master would
// send it again), or a refusal for a quota. Reconnecting is still right,
// since the master or its quotas may change, but the backoff keeps
// growing instead of starting over, so the node does not loop at full
// speed.
func doomed(err error) bool {
	var pe *protocol.Error
	return errors.Is(err, wire.ErrTooLarge) || (errors.As(err, &pe) && pe.Code == protocol.CodeQuotaExceeded)
}

func (n *Node) failed() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.err != nil
}

// serve installs c as the current connection, re-sends unacknowledged
// batches on it and reads until it fails, and returns why.
func (n *Node) serve(c *wire.Conn, w *protocol.Welcome) error {
	n.mu.Lock()
	if n.stopped || n.err != nil {
		n.mu.Unlock()
		dial.HangUp(c)
		return nil
	}
	n.conn = c
	n.welcome = *w
	n.bumpLocked()
	n.mu.Unlock()
	n.log.Info("connected", "url", n.url, "session", w.Session)

	n.wg.Add(1)
	go n.resend(c)
	err := n.read(c)

	n.mu.Lock()
	n.conn = nil
	n.disconnectedLocked()
	n.mu.Unlock()
	dial.HangUp(c)
	switch {
	case n.ctx.Err() != nil:
		n.log.Debug("connection closed", "session", w.Session, "err", err)
	case errors.Is(err, wire.ErrTooLarge):
		n.log.Error("the master sent a frame over this node's limit; reconnecting with a growing delay",
			"session", w.Session, "limit", w.MaxFrameBytes, "err", err)
	default:
		n.log.Warn("disconnected; reconnecting", "session", w.Session, "err", err)
	}
	return err
}

// read handles frames from c until the session ends, and stops the node
// when the master ended it for good.
func (n *Node) read(c *wire.Conn) error {
	err := dial.ReadLoop(c, func(m protocol.Message) error {
		switch m := m.(type) {
		case *protocol.SubmitAck:
			n.acked(m)
		case *protocol.SubmitReject:
			n.rejected(m)
		case *protocol.Notify:
			n.notified(c, m)
		case *protocol.IDs:
			if m.T != protocol.TypeNotifyDone {
				return fmt.Errorf("unexpected %s", m.T)
			}
			n.notifyDone(m.IDs)
		default:
			return fmt.Errorf("unexpected %s", m.Type())
		}
		return nil
	})
	if dial.Fatal(err) {
		n.fail(fmt.Errorf("appnode: %w", err))
	}
	return err
}

// fail stops the node for good: every pending push returns err, Run
// returns it, no reconnection is attempted.
func (n *Node) fail(err error) {
	n.mu.Lock()
	if n.err == nil {
		n.err = err
	}
	for _, b := range n.batches {
		n.resolveLocked(b, err)
	}
	n.bumpLocked()
	n.mu.Unlock()
	n.stop()
	n.log.Error("stopped", "err", err)
}

func (n *Node) stop() { n.stopOnce.Do(func() { close(n.stopping) }) }

// stopErr is what pushes and Run return once stopping is closed.
func (n *Node) stopErr() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.usableLocked()
}

func (n *Node) usableLocked() error {
	switch {
	case n.err != nil:
		return n.err
	case n.closing:
		return ErrClosed
	}
	return nil
}

// bumpLocked wakes waitUntil callers.
func (n *Node) bumpLocked() {
	if n.changed != nil {
		close(n.changed)
		n.changed = nil
	}
}

// waitUntil blocks until cond (called under mu) holds or ctx ends.
func (n *Node) waitUntil(ctx context.Context, cond func() bool) error {
	for {
		n.mu.Lock()
		if cond() {
			n.mu.Unlock()
			return nil
		}
		if n.changed == nil {
			n.changed = make(chan struct{})
		}
		ch := n.changed
		n.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Shutdown stops the node: no more pushes are accepted (Run returns
// ErrClosed), pending pushes get their acknowledgement (or fail with
// ErrClosed when ctx ends first), callbacks already under way finish and
// their acknowledgements are written, then the connection is closed
// normally and every goroutine of the node exits. Notifications not yet
// taken stay with the master for the next process under the same app id.
// It returns ctx's error if ctx ended before all that; a TaskFinished
// callback still running then exits when it returns. Shutdown is
// idempotent.
func (n *Node) Shutdown(ctx context.Context) error {
	n.mu.Lock()
	n.closing = true
	n.bumpLocked()
	n.mu.Unlock()
	n.stop()

	err := n.waitUntil(ctx, func() bool { return len(n.batches) == 0 })
	n.mu.Lock()
	n.draining = true
	var ready [][]uint64
	for _, it := range n.parked {
		ready = append(ready, n.untakeLocked(it)...)
	}
	n.parked = nil
	c := n.conn
	if len(ready) > 0 {
		n.sending++
	}
	n.mu.Unlock()
	n.sendAcks(c, ready)
	if err == nil {
		// Handled notifications whose ack could not be sent (the connection
		// was down) are offered again after a reconnect and acked then.
		err = n.waitUntil(ctx, func() bool {
			return n.busy == 0 && n.sending == 0 && (len(n.owed) == 0 || n.err != nil)
		})
	}

	n.mu.Lock()
	n.stopped = true
	c = n.conn
	for _, b := range n.batches {
		n.resolveLocked(b, ErrClosed)
	}
	n.mu.Unlock()
	n.cancel()
	if c != nil {
		c.Close()
	}
	n.wg.Wait()
	select {
	case <-n.dispDone:
	case <-ctx.Done():
		if err == nil {
			err = ctx.Err()
		}
	}
	return err
}
