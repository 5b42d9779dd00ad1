package master

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/gorilla/websocket"

	"github.com/anthill-project/anthill/internal/modsig"
	"github.com/anthill-project/anthill/internal/netguard"
	"github.com/anthill-project/anthill/internal/wire"
	"github.com/anthill-project/anthill/master/sched"
	"github.com/anthill-project/anthill/protocol"
)

// The transport: accept a WebSocket, check its Hello, then turn each frame
// it reads into a call of the scheduler. Nothing here touches a task.

// peer is one accepted WebSocket, slave or application: the scheduler's
// Outbox for it.
type peer struct {
	conn *wire.Conn
	log  *slog.Logger
}

// Send queues msg. A peer whose queue is full is too slow to keep: it is
// closed, and its read loop's end detaches it from the scheduler, which
// re-queues whatever it held.
func (p *peer) Send(msg protocol.Message) bool {
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

// Close sends a protocol Error, then closes.
func (p *peer) Close(code, msg string) {
	p.log.Info("closing connection", "code", code, "msg", msg)
	p.conn.CloseWith(protocol.Encode(nil, &protocol.Error{Code: code, Message: msg}), closeCode(code), code)
}

// closeCode is the WebSocket close code that goes with a protocol error.
func closeCode(code string) int {
	switch code {
	case protocol.CodeFrameTooLarge:
		return websocket.CloseMessageTooBig
	case protocol.CodeBadFrame:
		return websocket.CloseUnsupportedData
	case protocol.CodeShuttingDown:
		return websocket.CloseGoingAway
	}
	return websocket.ClosePolicyViolation
}

// handshakeTimeout bounds the wait for a Hello.
const handshakeTimeout = 10 * time.Second

// accept upgrades, reads and checks the Hello. On failure it has already
// answered the client and closed; it returns nil.
func (m *Master) accept(w http.ResponseWriter, r *http.Request, role string) (*wire.Conn, *protocol.Hello, auth) {
	ws, err := m.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return nil, nil, auth{} // the upgrader already answered with an HTTP error
	}
	ip := netguard.ClientIP(r, m.opts.TrustProxy)
	refuse := func(code, msg string) (*wire.Conn, *protocol.Hello, auth) {
		// Credential failures are logged, sampled, by the limiter: a
		// guesser must not get a line per guess.
		if code != protocol.CodeUnauthorized && code != protocol.CodeRateLimited {
			m.opts.Logger.Info("handshake refused", "remote", r.RemoteAddr, "code", code, "msg", msg)
		}
		dl := time.Now().Add(time.Second)
		_ = ws.SetWriteDeadline(dl)
		_ = ws.WriteMessage(websocket.BinaryMessage, protocol.Encode(nil, &protocol.Error{Code: code, Message: msg}))
		_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.ClosePolicyViolation, code), dl)
		ws.Close()
		return nil, nil, auth{}
	}
	m.mu.Lock()
	if m.closing {
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

	// A locked-out address is refused before its Hello is read, so its
	// credential is never checked.
	if wait := m.opts.Limiter.Allow(ip); wait > 0 {
		return refuse(protocol.CodeRateLimited, fmt.Sprintf("too many wrong credentials from %s; try again in %v", ip, wait.Round(time.Second)))
	}
	_ = ws.SetReadDeadline(time.Now().Add(handshakeTimeout))
	ws.SetReadLimit(protocol.MaxHandshakeBytes)
	typ, frame, err := ws.ReadMessage()
	if err != nil {
		ws.Close()
		return nil, nil, auth{}
	}
	if typ != websocket.BinaryMessage {
		return refuse(protocol.CodeBadHandshake, "a text frame on a binary protocol: the hello must be a binary frame")
	}
	msg, err := protocol.Decode(frame)
	if err != nil {
		return refuse(protocol.CodeBadHandshake, err.Error())
	}
	h, isHello := msg.(*protocol.Hello)
	if !isHello {
		return refuse(protocol.CodeBadHandshake, fmt.Sprintf("first frame must be hello, got %s", msg.Type()))
	}
	// Asked again: connections opened before a lockout may each carry a
	// guess, and up to the per-IP cap of them can wait here.
	if wait := m.opts.Limiter.Allow(ip); wait > 0 {
		return refuse(protocol.CodeRateLimited, fmt.Sprintf("too many wrong credentials from %s; try again in %v", ip, wait.Round(time.Second)))
	}
	if code, why := m.checkHello(h, role); code != "" {
		if code == protocol.CodeUnauthorized {
			m.opts.Limiter.Fail(ip, role+" handshake")
		}
		return refuse(code, why)
	}
	a, code, why := m.authenticate(h, role, r.RemoteAddr)
	if code != "" {
		if code == protocol.CodeUnauthorized {
			m.opts.Limiter.Fail(ip, role+" handshake")
		}
		return refuse(code, why)
	}
	// No Limiter.Succeed here: the limiter is shared by every door, and a
	// volunteer's own token (or an open enrollment) must not wipe the
	// count of its guesses at the admin token. Quiet ages the count out.
	ws.SetReadLimit(0) // wire.Conn enforces MaxFrame itself, with a clear error
	frames := m.opts.SendQueue
	if role == protocol.RoleApp {
		// Results finish a commit at a time, so each notification the
		// window lets out may be a frame of its own: an application that
		// has not read them yet is behind, not too slow, and its window
		// already bounds them. The bytes still bound what it pins.
		frames += m.sched.NotifyWindow()
	}
	c := wire.New(ws, m.opts.Heartbeat, frames)
	c.SetQueueBytes(m.opts.SendQueueBytes)
	c.SetReadLimit(int64(m.opts.MaxFrame))
	m.mu.Lock()
	m.live[c] = struct{}{} // for shutdown; untrack undoes it
	m.mu.Unlock()
	ok = true
	return c, h, a
}

// checkOrigin admits programs (no Origin) and, on /ws/slave only, the
// master's own volunteer page: a browser always sends its Origin, and a
// page of another site must open neither a slave session in a visitor's
// name nor an app connection. Behind a trusted proxy the host the browser
// saw may arrive as X-Forwarded-Host.
func (m *Master) checkOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	if r.URL.Path != "/ws/slave" {
		return false
	}
	u, err := url.Parse(o)
	if err != nil || u.Host == "" {
		return false
	}
	host := r.Host
	if fh := r.Header.Get("X-Forwarded-Host"); m.opts.TrustProxy && fh != "" {
		host = strings.TrimSpace(strings.Split(fh, ",")[0])
	}
	return strings.EqualFold(u.Host, host)
}

// checkHello returns why h cannot open a connection on the role's
// endpoint, as a protocol code and a message, or "".
func (m *Master) checkHello(h *protocol.Hello, role string) (code, why string) {
	switch {
	case h.Version != protocol.Version:
		return protocol.CodeUnsupportedVersion, fmt.Sprintf("protocol version %d; this master speaks %d", h.Version, protocol.Version)
	case h.Role != role:
		return protocol.CodeBadHandshake, fmt.Sprintf("role %q on the %s endpoint", h.Role, role)
	case h.Name == "" || len(h.Name) > protocol.MaxNameBytes:
		return protocol.CodeBadHandshake, fmt.Sprintf("name must be 1 to %d bytes", protocol.MaxNameBytes)
	case role != protocol.RoleSlave:
		return "", ""
	case len(h.Kinds) == 0 || len(h.Kinds) > protocol.MaxKinds:
		return protocol.CodeBadHandshake, fmt.Sprintf("a slave must announce 1 to %d kinds", protocol.MaxKinds)
	case h.Concurrency < 1 || h.Concurrency > protocol.MaxConcurrency:
		return protocol.CodeBadHandshake, fmt.Sprintf("concurrency must be 1 to %d", protocol.MaxConcurrency)
	case h.Prefetch < 0 || h.Prefetch > protocol.MaxPrefetch:
		return protocol.CodeBadHandshake, fmt.Sprintf("prefetch must be 0 to %d", protocol.MaxPrefetch)
	case slices.ContainsFunc(h.Kinds, func(k string) bool { return k == "" || strings.IndexByte(k, 0) >= 0 }):
		return protocol.CodeBadHandshake, "a kind must be a non-empty name without NUL bytes"
	case len(h.Modules) > protocol.MaxHeld:
		return protocol.CodeBadHandshake, fmt.Sprintf("a slave may announce at most %d held modules", protocol.MaxHeld)
	case slices.ContainsFunc(h.Modules, func(m string) bool { return !protocol.ValidModuleHash(m) }):
		return protocol.CodeBadHandshake, "a held module must be named by its hash: 64 lowercase hex digits"
	case len(h.TrustKeys) > protocol.MaxTrustKeys:
		return protocol.CodeBadHandshake, fmt.Sprintf("a slave may trust at most %d keys", protocol.MaxTrustKeys)
	}
	for _, k := range h.TrustKeys {
		if _, err := modsig.ParsePublic(k); err != nil {
			return protocol.CodeBadHandshake, "trust key: " + err.Error()
		}
	}
	return "", ""
}

func newSession() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (m *Master) welcome(session string, a auth) *protocol.Welcome {
	return &protocol.Welcome{
		Version: protocol.Version, Session: session, Dispatch: m.sched.Dispatch(),
		HeartbeatMillis: int(m.opts.Heartbeat / time.Millisecond),
		MaxFrameBytes:   m.opts.MaxFrame, MaxPayloadBytes: m.sched.MaxPayload(),
		MaxSubmitTasks: m.sched.MaxSubmitTasks(),
		MaxResultBytes: m.sched.MaxResult(),
		Volunteer:      a.volunteer, VolunteerToken: a.issued,
	}
}

// session is what a connection's reader needs of its role: the decode
// limits of each frame type, what a decoded message does, and how the
// session ends.
type session interface {
	limits(protocol.Type) protocol.DecodeLimits
	handle(protocol.Message) error
	end()
}

// reader reads a session's frames until the peer goes, handing each
// decoded message to the session. A frame that does not decode within the
// limits for its type, or that the session refuses, closes this
// connection only, with an Error saying why.
//
// Each frame is read on a fresh goroutine: the one that read and handled
// a frame starts the next and exits. An idle connection waits in a read
// whose frames take 2 to 4 KiB, but handling a frame (the scheduler, a
// log line) grows a stack to 8 KiB or more, and the runtime halves a stack
// only when a quarter of it is used, so a reader that handled its own
// frames would keep 8 KiB for good: at 10,000 volunteers, 40 MB. A
// goroutine costs well under a microsecond, against a frame's tens.
type reader struct {
	p *peer
	s session
}

// logPanic turns a panic in a connection's code into a log line, as
// net/http does for a handler; the deferred detaches have run, or run
// next.
func logPanic(p *peer) {
	if v := recover(); v != nil {
		p.log.Error("connection handler panicked", "panic", v, "stack", string(debug.Stack()))
	}
}

func startReader(p *peer, s session) {
	r := &reader{p: p, s: s}
	go r.next()
}

func (r *reader) next() {
	ended := true
	defer func() {
		if ended {
			r.s.end()
		}
	}()
	defer logPanic(r.p) // before the end above: the session still ends, no ghost
	p := r.p
	frame, err := p.conn.Read()
	if err != nil {
		switch {
		case errors.Is(err, wire.ErrTooLarge):
			p.log.Warn("frame too large; closing", "err", err)
			p.Close(protocol.CodeFrameTooLarge, err.Error())
		case websocket.IsCloseError(err, websocket.CloseNormalClosure, websocket.CloseGoingAway):
			p.log.Debug("peer closed")
		default:
			p.log.Info("connection lost", "err", err)
		}
		p.conn.CloseWith(nil, websocket.CloseNormalClosure, "")
		return
	}
	var lim protocol.DecodeLimits
	if len(frame) > 0 {
		lim = r.s.limits(protocol.Type(frame[0]))
	}
	msg, err := protocol.DecodeWith(frame, lim)
	if err == nil {
		err = r.s.handle(msg)
	}
	if err != nil {
		p.log.Warn("bad frame; closing", "err", err)
		p.Close(protocol.CodeBadFrame, err.Error())
		return
	}
	ended = false
	go r.next()
}

// untrack forgets a connection accept registered, once its writer is gone.
func (m *Master) untrack(c *wire.Conn) {
	c.Wait()
	m.mu.Lock()
	delete(m.live, c)
	m.mu.Unlock()
	m.conns.Done()
}

// open accepts a connection of role and welcomes it as a new session.
// On failure it has already answered the client; it returns a nil peer.
// Call done once the connection's read loop ended.
func (m *Master) open(w http.ResponseWriter, r *http.Request, role string) (p *peer, h *protocol.Hello, a auth, welcome *protocol.Welcome, done func()) {
	c, h, a := m.accept(w, r, role)
	if c == nil {
		return nil, nil, a, nil, nil
	}
	session := newSession()
	log := m.opts.Logger.With(role, h.Name, "session", session, "remote", r.RemoteAddr)
	if a.volunteer != "" {
		log = log.With("volunteer", a.volunteer)
	}
	p = &peer{conn: c, log: log}
	// The caller queues the Welcome before the scheduler can send anything,
	// so no dispatch or notification overtakes it. done closes before it
	// waits, so a handler that panics still lets the writer go and the
	// connection be forgotten.
	return p, h, a, m.welcome(session, a), func() { c.Close(); m.untrack(c) }
}

// serveSlave and serveApp hand the connection to a goroutine of its own
// and return: the HTTP server then lets go of its buffers, the request
// and a deep handler stack, which at thousands of idle volunteers were
// most of what one cost.
func (m *Master) serveSlave(w http.ResponseWriter, r *http.Request) {
	p, h, a, welcome, done := m.open(w, r, protocol.RoleSlave)
	if p == nil {
		return
	}
	remote := r.RemoteAddr
	go func() {
		defer logPanic(p)
		if s := m.startSlave(p, h, a, welcome, remote, done); s != nil {
			startReader(p, s)
		}
	}()
}

func (m *Master) serveApp(w http.ResponseWriter, r *http.Request) {
	p, h, au, welcome, done := m.open(w, r, protocol.RoleApp)
	if p == nil {
		return
	}
	go func() {
		defer logPanic(p)
		if s := m.startApp(p, h, au, welcome, done); s != nil {
			startReader(p, s)
		}
	}()
}

// slaveSession is a slave connection attached to the scheduler: what its
// frames go to, and how it ends.
type slaveSession struct {
	m     *Master
	p     *peer
	sl    *sched.Slave
	who   string // the volunteer identity
	done  func()
	slave protocol.DecodeLimits
	held  protocol.DecodeLimits
}

// startSlave attaches a welcomed slave. It returns nil, having ended the
// connection, when the session may not go on.
func (m *Master) startSlave(p *peer, h *protocol.Hello, a auth, welcome *protocol.Welcome, remote string, done func()) (s *slaveSession) {
	ok := false
	defer func() {
		if !ok { // refused, or a panic: end what was started
			if s != nil {
				s.end()
			} else {
				done()
			}
		}
	}()
	p.Send(welcome)
	p.log.Info("slave connected", "kinds", h.Kinds, "concurrency", h.Concurrency, "prefetch", h.Prefetch,
		"host", h.Host, "os", h.OS, "arch", h.Arch, "cores", h.Cores)
	sl := m.sched.AttachVolunteer(sched.Who{Identity: a.volunteer, Session: welcome.Session, Remote: remote}, h, p)
	// A slave holds at most its largest window of tasks, and the tasks
	// withdrawn from it while it finished them, so no frame of it answers
	// or returns more.
	s = &slaveSession{m: m, p: p, sl: sl, who: a.volunteer, done: done,
		slave: protocol.DecodeLimits{MaxItems: sl.MaxFrameItems()},
		held:  protocol.DecodeLimits{MaxItems: protocol.MaxHeld},
	}
	m.trackSlave(a.volunteer, slaveConn{sl, p})
	if !m.stillValid(a, h.Token) {
		// Revoked, or its token replaced, between its handshake and its
		// tracking: the revocation could not see this session, so end it
		// here.
		n := m.sched.RevokeSlave(sl, "lost its credential")
		p.log.Info("volunteer session ended", "why", "credential revoked or replaced during the handshake", "requeued", n)
		p.Close(protocol.CodeUnauthorized, "volunteer "+a.volunteer+": its credential was revoked or replaced")
		ok = true
		s.end()
		return nil
	}
	ok = true
	return s
}

// end detaches the session: its tasks go back to the queue.
func (s *slaveSession) end() {
	defer s.done()
	s.m.untrackSlave(s.who, s.sl)
	n := s.m.sched.DetachSlave(s.sl)
	s.p.log.Info("slave disconnected", "requeued", n)
}

func (s *slaveSession) limits(t protocol.Type) protocol.DecodeLimits {
	if t == protocol.TypeModules {
		return s.held
	}
	return s.slave
}

func (s *slaveSession) handle(msg protocol.Message) error {
	m := s.m
	switch msg := msg.(type) {
	case *protocol.Results:
		m.sched.Complete(s.sl, msg.Results)
	case *protocol.Modules:
		if slices.ContainsFunc(msg.Held, func(h string) bool { return !protocol.ValidModuleHash(h) }) {
			return errors.New("a held module must be named by its hash: 64 lowercase hex digits")
		}
		m.sched.Held(s.sl, msg.Held)
	case *protocol.Request:
		m.sched.Request(s.sl, msg.N)
	case *protocol.IDs:
		if msg.T != protocol.TypeReturn {
			return fmt.Errorf("unexpected %s from a slave", msg.T)
		}
		m.sched.Return(s.sl, msg.IDs)
	default:
		return fmt.Errorf("unexpected %s from a slave", msg.Type())
	}
	return nil
}

// appSession is an application connection attached to the scheduler.
type appSession struct {
	m    *Master
	p    *peer
	name string
	a    *sched.App // nil until attached
	done func()
}

// startApp attaches a welcomed application. It returns nil, having ended
// the connection, when the session may not go on.
func (m *Master) startApp(p *peer, h *protocol.Hello, au auth, welcome *protocol.Welcome, done func()) *appSession {
	s := &appSession{m: m, p: p, name: h.Name, done: done}
	ok := false
	defer func() {
		if !ok { // refused, or a panic: end what was started
			s.end()
		}
	}()
	// Tracked before the scheduler hears of it: a revocation that starts
	// meanwhile finds it and closes it.
	m.mu.Lock()
	// Every connection is tracked, not only the newest: two arriving at
	// once attach in either order, and a revocation must find the one the
	// scheduler kept.
	if m.appConns[h.Name] == nil {
		m.appConns[h.Name] = map[*peer]bool{}
	}
	m.appConns[h.Name][p] = au.admin
	m.mu.Unlock()
	if !au.admin && !m.ident.CheckApp(h.Name, h.Token) {
		p.Close(protocol.CodeUnauthorized, "app "+h.Name+": its token was revoked")
		return nil
	}
	a, waiting := m.sched.AttachApp(h.Name, p, welcome)
	if a == nil {
		return nil // refused for a quota, and closed
	}
	s.a = a
	p.log.Info("app connected", "pending_notifications", waiting)
	ok = true
	return s
}

func (s *appSession) end() {
	defer s.done()
	defer s.m.untrackApp(s.name, s.p)
	if s.a != nil {
		s.m.sched.DetachApp(s.a, s.p)
		s.p.log.Info("app disconnected")
	}
}

func (s *appSession) limits(t protocol.Type) protocol.DecodeLimits { return s.m.appDecodeLimits(t) }

func (s *appSession) handle(msg protocol.Message) error {
	switch msg := msg.(type) {
	case *protocol.Submit:
		s.m.sched.SubmitBatch(s.a, s.p, msg)
	case *protocol.IDs:
		if msg.T != protocol.TypeNotifyAck {
			return fmt.Errorf("unexpected %s from an application", msg.T)
		}
		s.m.sched.Acknowledge(s.a, s.p, msg.IDs)
	default:
		return fmt.Errorf("unexpected %s from an application", msg.Type())
	}
	return nil
}

// appDecodeLimits bound an application's frames by type: a Submit of at
// most protocol.MaxSubmitTasks tasks (CheckBatch would refuse more, but
// only after decoding them; the master's own smaller cap is refused after
// decoding, with quota_exceeded, which the app can act on), a NotifyAck of at most the notify window
// (the app cannot hold more notifications), anything else of one item,
// which is refused after decoding anyway.
func (m *Master) appDecodeLimits(t protocol.Type) protocol.DecodeLimits {
	switch t {
	case protocol.TypeSubmit:
		return protocol.DecodeLimits{MaxItems: protocol.MaxSubmitTasks}
	case protocol.TypeNotifyAck:
		return protocol.DecodeLimits{MaxItems: m.sched.NotifyWindow()}
	}
	return protocol.DecodeLimits{MaxItems: 1}
}

// untrackApp forgets p as one of app's connections.
func (m *Master) untrackApp(app string, p *peer) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.appConns[app], p)
	if len(m.appConns[app]) == 0 {
		delete(m.appConns, app)
	}
}

// Scheduler is the master's task life: the operator API and its numbers.
func (m *Master) Scheduler() *sched.Scheduler { return m.sched }
