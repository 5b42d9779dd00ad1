package master

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sort"
	"time"

	"github.com/gorilla/websocket"

	"github.com/anthill-project/anthill/internal/wire"
	"github.com/anthill-project/anthill/master/store"
	"github.com/anthill-project/anthill/protocol"
	"github.com/anthill-project/anthill/stats"
)

// peer is one accepted WebSocket, slave or application.
type peer struct {
	conn *wire.Conn
	log  *slog.Logger
}

// send queues msg. A peer whose queue is full is too slow to keep: it is
// closed, and its disconnect handling re-queues whatever it held.
func (p *peer) send(msg protocol.Message) bool {
	if p.conn.Send(protocol.Encode(nil, msg)) {
		return true
	}
	select {
	case <-p.conn.Closing():
	default:
		p.log.Warn("peer too slow; dropping it")
		p.conn.CloseWith(nil, websocket.ClosePolicyViolation, "too slow")
	}
	return false
}

// closeWith sends a protocol Error, then closes.
func (p *peer) closeWith(code, msg string, wsCode int) {
	p.conn.CloseWith(protocol.Encode(nil, &protocol.Error{Code: code, Message: msg}), wsCode, code)
}

// slave is one connected slave session.
type slave struct {
	conn      *peer
	hello     protocol.Hello
	view      SlaveView
	session   string
	window    int
	poll      bool
	credit    int // slots the slave asked for (polling pattern)
	draining  bool
	running   map[uint64]*task
	connected time.Time
	metrics   *stats.Slave

	dispatched, done, failed uint64
	busy                     time.Duration
}

func (s *slave) free() int {
	if s.draining {
		return 0
	}
	room := s.window - len(s.running)
	if s.poll {
		room = min(room, s.credit)
	}
	return room
}

// app is one application id; it outlives its connections.
type app struct {
	name    string
	conn    *peer            // nil while disconnected
	pending []*task          // final, not yet sent on conn
	sent    map[uint64]*task // sent on conn, not yet acknowledged
	pushes  map[uint64]*push // submit batches with unacknowledged tasks, by seq
	acked   uint64           // notifications acknowledged: the protocol's, not a statistic
	metrics *stats.App       // every other number of the application
}

// push remembers a submit batch so a re-sent one gets its original ids.
// It is needed only until the application has acknowledged every task of
// the batch: an application cannot acknowledge a task before it has the
// batch's ack (it does not know the id), so it cannot re-send the batch
// after that.
type push struct {
	seq, firstID uint64
	count        uint32
	left         int // tasks of the batch not yet acknowledged
	durable      bool
	waiters      []*peer // connections to ack once durable
}

func (m *Master) appLocked(name string) *app {
	a := m.apps[name]
	if a == nil {
		a = &app{name: name, sent: map[uint64]*task{}, pushes: map[uint64]*push{}, metrics: m.metrics.App(name)}
		m.apps[name] = a
	}
	return a
}

// handshakeTimeout bounds the wait for a Hello.
const handshakeTimeout = 10 * time.Second

// accept upgrades, reads and checks the Hello. On failure it has already
// answered the client and closed; it returns nil.
func (m *Master) accept(w http.ResponseWriter, r *http.Request, role string) (*wire.Conn, *protocol.Hello) {
	ws, err := m.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return nil, nil // the upgrader already answered with an HTTP error
	}
	refuse := func(code, msg string) (*wire.Conn, *protocol.Hello) {
		m.opts.Logger.Info("handshake refused", "remote", r.RemoteAddr, "code", code, "msg", msg)
		dl := time.Now().Add(time.Second)
		_ = ws.SetWriteDeadline(dl)
		_ = ws.WriteMessage(websocket.BinaryMessage, protocol.Encode(nil, &protocol.Error{Code: code, Message: msg}))
		_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.ClosePolicyViolation, code), dl)
		ws.Close()
		return nil, nil
	}
	m.mu.Lock()
	if m.draining {
		m.mu.Unlock()
		return refuse(protocol.CodeShuttingDown, "master is shutting down")
	}
	m.conns.Add(1)
	m.raw[ws] = struct{}{}
	m.mu.Unlock()
	ok := false
	defer func() {
		m.mu.Lock()
		delete(m.raw, ws)
		m.mu.Unlock()
		if !ok {
			m.conns.Done()
		}
	}()

	_ = ws.SetReadDeadline(time.Now().Add(handshakeTimeout))
	ws.SetReadLimit(64 << 10)
	_, frame, err := ws.ReadMessage()
	if err != nil {
		ws.Close()
		return nil, nil
	}
	msg, err := protocol.Decode(frame)
	if err != nil {
		return refuse(protocol.CodeBadHandshake, err.Error())
	}
	h, isHello := msg.(*protocol.Hello)
	switch {
	case !isHello:
		return refuse(protocol.CodeBadHandshake, fmt.Sprintf("first frame must be hello, got %s", msg.Type()))
	case h.Version != protocol.Version:
		return refuse(protocol.CodeUnsupportedVersion, fmt.Sprintf("protocol version %d; this master speaks %d", h.Version, protocol.Version))
	case h.Role != role:
		return refuse(protocol.CodeBadHandshake, fmt.Sprintf("role %q on the %s endpoint", h.Role, role))
	case h.Name == "" || len(h.Name) > protocol.MaxNameBytes:
		return refuse(protocol.CodeBadHandshake, fmt.Sprintf("name must be 1 to %d bytes", protocol.MaxNameBytes))
	}
	if role == protocol.RoleSlave {
		switch {
		case m.opts.SlaveToken != "" && subtle.ConstantTimeCompare([]byte(h.Token), []byte(m.opts.SlaveToken)) != 1:
			return refuse(protocol.CodeUnauthorized, "this master requires an enrollment token (anthill slave --token)")
		case len(h.Kinds) == 0 || len(h.Kinds) > protocol.MaxKinds:
			return refuse(protocol.CodeBadHandshake, fmt.Sprintf("a slave must announce 1 to %d kinds", protocol.MaxKinds))
		case h.Concurrency < 1 || h.Concurrency > protocol.MaxConcurrency:
			return refuse(protocol.CodeBadHandshake, fmt.Sprintf("concurrency must be 1 to %d", protocol.MaxConcurrency))
		case h.Prefetch < 0 || h.Prefetch > protocol.MaxPrefetch:
			return refuse(protocol.CodeBadHandshake, fmt.Sprintf("prefetch must be 0 to %d", protocol.MaxPrefetch))
		}
	}
	ws.SetReadLimit(0) // wire.Conn enforces MaxFrame itself, with a clear error
	c := wire.New(ws, m.opts.Heartbeat, m.opts.SendQueue)
	c.SetReadLimit(int64(m.opts.MaxFrame))
	m.mu.Lock()
	m.live[c] = struct{}{} // for shutdown; untrack undoes it
	m.mu.Unlock()
	ok = true
	return c, h
}

func newSession() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (m *Master) welcome(session string) *protocol.Welcome {
	return &protocol.Welcome{
		Version: protocol.Version, Session: session, Dispatch: m.opts.Dispatch,
		HeartbeatMillis: int(m.opts.Heartbeat / time.Millisecond),
		MaxFrameBytes:   m.opts.MaxFrame, MaxPayloadBytes: m.opts.MaxPayload,
	}
}

// readLoop reads frames until the peer goes, handing each decoded message
// to handle. A frame that does not decode or that handle refuses closes
// this connection only, with an Error saying why.
func (m *Master) readLoop(p *peer, handle func(protocol.Message) error) {
	for {
		frame, err := p.conn.Read()
		if err != nil {
			switch {
			case errors.Is(err, wire.ErrTooLarge):
				p.log.Warn("frame too large; closing", "err", err)
				p.closeWith(protocol.CodeFrameTooLarge, err.Error(), websocket.CloseMessageTooBig)
			case websocket.IsCloseError(err, websocket.CloseNormalClosure, websocket.CloseGoingAway):
				p.log.Debug("peer closed")
			default:
				p.log.Info("connection lost", "err", err)
			}
			p.conn.CloseWith(nil, websocket.CloseNormalClosure, "")
			return
		}
		msg, err := protocol.Decode(frame)
		if err == nil {
			err = handle(msg)
		}
		if err != nil {
			p.log.Warn("bad frame; closing", "err", err)
			p.closeWith(protocol.CodeBadFrame, err.Error(), websocket.CloseUnsupportedData)
			return
		}
	}
}

// untrack forgets a connection accept registered, once its writer is gone.
func (m *Master) untrack(c *wire.Conn) {
	c.Wait()
	m.mu.Lock()
	delete(m.live, c)
	m.mu.Unlock()
	m.conns.Done()
}

func (m *Master) serveSlave(w http.ResponseWriter, r *http.Request) {
	c, h := m.accept(w, r, protocol.RoleSlave)
	if c == nil {
		return
	}
	defer m.untrack(c)
	kinds := slices.Clone(h.Kinds)
	sort.Strings(kinds)
	kinds = slices.Compact(kinds)
	s := &slave{
		hello:     *h,
		view:      SlaveView{Name: h.Name, Kinds: kinds},
		session:   newSession(),
		window:    h.Concurrency + h.Prefetch,
		poll:      m.opts.Dispatch == protocol.DispatchPoll,
		running:   map[uint64]*task{},
		connected: m.opts.Now(),
		metrics:   m.metrics.SlaveSeen(h.Name, h.Concurrency+h.Prefetch),
	}
	s.conn = &peer{conn: c, log: m.opts.Logger.With("slave", h.Name, "session", s.session, "remote", r.RemoteAddr)}
	s.conn.log.Info("slave connected", "kinds", kinds, "concurrency", h.Concurrency, "prefetch", h.Prefetch,
		"host", h.Host, "os", h.OS, "arch", h.Arch, "cores", h.Cores)

	m.mu.Lock()
	s.conn.send(m.welcome(s.session))
	m.slaves[s] = struct{}{}
	for _, k := range kinds {
		m.kinds[k]++
	}
	m.dispatchLocked(s)
	m.mu.Unlock()

	m.readLoop(s.conn, func(msg protocol.Message) error {
		switch msg := msg.(type) {
		case *protocol.Results:
			m.results(s, msg)
		case *protocol.Request:
			m.mu.Lock()
			s.credit = min(s.credit+int(msg.N), s.window)
			m.dispatchLocked(s)
			m.mu.Unlock()
		case *protocol.IDs:
			if msg.T != protocol.TypeReturn {
				return fmt.Errorf("unexpected %s from a slave", msg.T)
			}
			m.returned(s, msg.IDs)
		default:
			return fmt.Errorf("unexpected %s from a slave", msg.Type())
		}
		return nil
	})
	m.slaveGone(s)
}

// returned re-queues tasks a stopping slave hands back; they cost no
// attempt. The slave gets no more work.
func (m *Master) returned(s *slave, ids []uint64) {
	now := m.opts.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	s.draining = true
	delete(m.hungry, s)
	var final []*task
	b := new(store.Batch)
	for _, id := range ids {
		t := s.running[id]
		if t == nil {
			continue
		}
		delete(s.running, id)
		if t.slave == s && t.rec.State == protocol.StateRunning {
			m.requeueLocked(t, store.OutcomeReturned, "slave "+s.view.Name+" handed the task back while stopping", now, b, &final)
		}
	}
	m.pumpLocked()
	if b.Len() > 0 {
		m.commitFinalLocked(b, final)
	}
}

// slaveGone re-queues everything the slave was running; each costs an
// attempt, so a task that kills every slave it touches fails in the end.
func (m *Master) slaveGone(s *slave) {
	now := m.opts.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.slaves, s)
	delete(m.hungry, s)
	for _, k := range s.view.Kinds {
		if m.kinds[k]--; m.kinds[k] == 0 {
			delete(m.kinds, k)
		}
	}
	var final []*task
	b := new(store.Batch)
	n := 0
	for _, t := range s.running {
		if t.slave == s && t.rec.State == protocol.StateRunning {
			m.requeueLocked(t, store.OutcomeLost, fmt.Sprintf("slave %s disconnected while running the task", s.view.Name), now, b, &final)
			n++
		}
	}
	s.running = nil
	s.metrics.Gone()
	s.conn.log.Info("slave disconnected", "requeued", n)
	m.pumpLocked()
	if b.Len() > 0 {
		m.commitFinalLocked(b, final)
	}
}

func (m *Master) serveApp(w http.ResponseWriter, r *http.Request) {
	c, h := m.accept(w, r, protocol.RoleApp)
	if c == nil {
		return
	}
	defer m.untrack(c)
	session := newSession()
	p := &peer{conn: c, log: m.opts.Logger.With("app", h.Name, "session", session, "remote", r.RemoteAddr)}

	m.mu.Lock()
	a := m.appLocked(h.Name)
	if old := a.conn; old != nil {
		// The newest connection wins: the old one is most likely dead and
		// not yet noticed.
		old.log.Info("replaced by a new connection of the same app")
		old.closeWith(protocol.CodeReplaced, "replaced by a new connection of the same app", websocket.ClosePolicyViolation)
		m.appDetachLocked(a)
	}
	a.conn = p
	p.send(m.welcome(session))
	waiting := len(a.pending)
	m.notifyLocked(a)
	m.mu.Unlock()
	p.log.Info("app connected", "pending_notifications", waiting)

	m.readLoop(p, func(msg protocol.Message) error {
		switch msg := msg.(type) {
		case *protocol.Submit:
			m.submit(a, p, msg)
		case *protocol.IDs:
			if msg.T != protocol.TypeNotifyAck {
				return fmt.Errorf("unexpected %s from an application", msg.T)
			}
			m.acked(a, p, msg.IDs)
		default:
			return fmt.Errorf("unexpected %s from an application", msg.Type())
		}
		return nil
	})

	m.mu.Lock()
	if a.conn == p {
		m.appDetachLocked(a)
	}
	m.mu.Unlock()
	p.log.Info("app disconnected")
}

// appDetachLocked forgets a's connection: what was sent and not
// acknowledged goes back to pending, oldest first, for the next one.
func (m *Master) appDetachLocked(a *app) {
	a.conn = nil
	if len(a.sent) == 0 {
		return
	}
	back := make([]*task, 0, len(a.sent)+len(a.pending))
	for _, t := range a.sent {
		back = append(back, t)
	}
	sort.Slice(back, func(i, j int) bool { return back[i].rec.ID < back[j].rec.ID })
	a.pending = append(back, a.pending...)
	clear(a.sent)
}
