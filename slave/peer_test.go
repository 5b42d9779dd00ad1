package slave

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/anthill-project/anthill/protocol"
	"github.com/anthill-project/anthill/sandbox"
)

// This file holds a test-only protocol peer: a tiny stand-in for the master
// that speaks the wire protocol over real WebSockets on 127.0.0.1, so the
// slave can be tested in isolation. It records every frame the slave sends.

// peer accepts slave connections on /ws/slave.
type peer struct {
	t   *testing.T
	srv *httptest.Server
	mux *http.ServeMux // tests may serve more, such as /modules/
	// greet answers the n-th Hello (from 0): a Welcome or an Error. It may
	// block (to hold a connection in its handshake) until closing.
	greet func(n int, h *protocol.Hello) protocol.Message

	closing chan struct{}
	wg      sync.WaitGroup

	mu     sync.Mutex
	hellos []*protocol.Hello
	conns  []*peerConn
	closed bool
}

// peerConn is one accepted, welcomed connection.
type peerConn struct {
	ws   *websocket.Conn
	wmu  sync.Mutex
	done chan struct{} // closed when the slave's side is gone

	mu        sync.Mutex
	msgs      []protocol.Message
	closeCode int // close frame code the slave sent; 0 if none
}

// welcome is what the peer answers by default.
func welcome(dispatch string) *protocol.Welcome {
	return &protocol.Welcome{Version: protocol.Version, Session: "test", Dispatch: dispatch,
		HeartbeatMillis: 5000, MaxFrameBytes: 16 << 20, MaxPayloadBytes: 1 << 20}
}

func newPeer(t *testing.T, greet func(n int, h *protocol.Hello) protocol.Message) *peer {
	if greet == nil {
		greet = func(int, *protocol.Hello) protocol.Message { return welcome(protocol.DispatchSend) }
	}
	mux := http.NewServeMux()
	p := &peer{t: t, greet: greet, closing: make(chan struct{}), mux: mux}
	mux.HandleFunc("/ws/slave", p.serve)
	p.srv = httptest.NewServer(mux)
	t.Cleanup(p.close)
	return p
}

func (p *peer) url() string { return p.srv.URL } // http://…: the slave maps it to ws://

func (p *peer) serve(w http.ResponseWriter, r *http.Request) {
	p.wg.Add(1) // before the upgrade: srv.Close waits for this handler until then
	defer p.wg.Done()
	up := websocket.Upgrader{}
	ws, err := up.Upgrade(w, r, nil)
	if err != nil {
		p.t.Errorf("peer: upgrade: %v", err)
		return
	}
	defer ws.Close()
	_, frame, err := ws.ReadMessage()
	if err != nil {
		p.t.Logf("peer: read hello: %v", err)
		return
	}
	msg, err := protocol.Decode(frame)
	h, ok := msg.(*protocol.Hello)
	if err != nil || !ok {
		p.t.Errorf("peer: first frame is %v, %v; want hello", msg, err)
		return
	}
	p.mu.Lock()
	n := len(p.hellos)
	p.hellos = append(p.hellos, h)
	p.mu.Unlock()

	reply := p.greet(n, h)
	if err := ws.WriteMessage(websocket.BinaryMessage, protocol.Encode(nil, reply)); err != nil {
		return
	}
	if _, refused := reply.(*protocol.Error); refused {
		_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.ClosePolicyViolation, ""), time.Now().Add(time.Second))
		return
	}
	if w, ok := reply.(*protocol.Welcome); ok {
		ws.SetReadLimit(int64(w.MaxFrameBytes)) // the slave must respect the announced limit
	}
	c := &peerConn{ws: ws, done: make(chan struct{})}
	defer close(c.done)
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.conns = append(p.conns, c)
	p.mu.Unlock()
	for {
		_, frame, err := ws.ReadMessage()
		if errors.Is(err, websocket.ErrReadLimit) {
			p.t.Errorf("peer: the slave sent a frame over the limit")
		}
		if err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				c.mu.Lock()
				c.closeCode = ce.Code
				c.mu.Unlock()
			}
			return
		}
		msg, err := protocol.Decode(frame)
		if err != nil {
			p.t.Errorf("peer: the slave sent a bad frame: %v", err)
			return
		}
		c.mu.Lock()
		c.msgs = append(c.msgs, msg)
		c.mu.Unlock()
	}
}

// close stops the server and waits for every handler.
func (p *peer) close() {
	close(p.closing)
	p.srv.Close()
	p.mu.Lock()
	p.closed = true
	for _, c := range p.conns {
		c.ws.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *peer) hello(n int) *protocol.Hello {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.hellos[n]
}

func (p *peer) helloCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.hellos)
}

// conn waits for the n-th welcomed connection (from 0).
func (p *peer) conn(n int) *peerConn {
	p.t.Helper()
	var c *peerConn
	waitFor(p.t, "slave connection", func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		if len(p.conns) > n {
			c = p.conns[n]
		}
		return c != nil
	})
	return c
}

func (c *peerConn) send(t *testing.T, m protocol.Message) {
	t.Helper()
	c.sendRaw(t, protocol.Encode(nil, m))
}

func (c *peerConn) sendRaw(t *testing.T, frame []byte) {
	t.Helper()
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.ws.WriteMessage(websocket.BinaryMessage, frame); err != nil {
		t.Fatalf("peer: send: %v", err)
	}
}

// dispatch sends tasks in one Dispatch frame.
func (c *peerConn) dispatch(t *testing.T, tasks ...protocol.Task) {
	t.Helper()
	for i := range tasks {
		if tasks[i].Attempt == 0 {
			tasks[i].Attempt = 1
		}
	}
	c.send(t, &protocol.Dispatch{Tasks: tasks})
}

func (c *peerConn) messages() []protocol.Message {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]protocol.Message(nil), c.msgs...)
}

// results lists every result received, in order.
func (c *peerConn) results() []protocol.Result {
	var rs []protocol.Result
	for _, m := range c.messages() {
		if r, ok := m.(*protocol.Results); ok {
			rs = append(rs, r.Results...)
		}
	}
	return rs
}

// result returns the results received for id.
func (c *peerConn) resultsFor(id uint64) []protocol.Result {
	var rs []protocol.Result
	for _, r := range c.results() {
		if r.ID == id {
			rs = append(rs, r)
		}
	}
	return rs
}

// waitResult waits for the result of id.
func (c *peerConn) waitResult(t *testing.T, id uint64) protocol.Result {
	t.Helper()
	var r protocol.Result
	waitFor(t, "result", func() bool {
		rs := c.resultsFor(id)
		if len(rs) > 0 {
			r = rs[0]
		}
		return len(rs) > 0
	})
	return r
}

// count counts the frames of type typ received.
func (c *peerConn) count(typ protocol.Type) int {
	n := 0
	for _, m := range c.messages() {
		if m.Type() == typ {
			n++
		}
	}
	return n
}

// returned lists the ids of every Return received.
func (c *peerConn) returned() map[uint64]bool {
	ids := map[uint64]bool{}
	for _, m := range c.messages() {
		if r, ok := m.(*protocol.IDs); ok && r.T == protocol.TypeReturn {
			for _, id := range r.IDs {
				ids[id] = true
			}
		}
	}
	return ids
}

// requested sums the N of every Request received.
func (c *peerConn) requested() (total int, first uint32) {
	for _, m := range c.messages() {
		if r, ok := m.(*protocol.Request); ok {
			if total == 0 {
				first = r.N
			}
			total += int(r.N)
		}
	}
	return total, first
}

func (c *peerConn) closedWith() (code int, gone bool) {
	select {
	case <-c.done:
	default:
		return 0, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closeCode, true
}

// waitFor polls cond until it holds, failing the test after a generous
// deadline. Tests synchronise with it, never with sleeps.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// running is a slave started by start; its Run ends at cleanup at the
// latest.
type running struct {
	*Slave
	cancel  context.CancelFunc
	done    chan struct{}
	err     error
	checked bool // the test looked at err
}

// start runs a slave against p. Zero options get test-friendly values.
func start(t *testing.T, p *peer, o Options) *running {
	t.Helper()
	o.Master = p.url()
	if o.Registry == nil {
		o.Registry = builtins()
	}
	if o.ReconnectMin == 0 {
		o.ReconnectMin, o.ReconnectMax = time.Millisecond, 20*time.Millisecond
	}
	if o.Logger == nil {
		o.Logger = testLogger(t)
	}
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{Slave: s, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		r.err = s.Run(ctx)
	}()
	t.Cleanup(func() {
		if r.cancel(); !r.checked {
			if err := r.wait(t); err != nil {
				t.Errorf("Run: %v", err)
			}
		}
	})
	return r
}

// stop cancels Run's context and returns what Run returned.
func (r *running) stop(t testing.TB) error {
	r.cancel()
	return r.wait(t)
}

// wait waits for Run to return by itself.
func (r *running) wait(t testing.TB) error {
	t.Helper()
	waitFor(t, "Run to return", r.returned)
	r.checked = true
	return r.err
}

func (r *running) returned() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

func builtins() *sandbox.Registry {
	r := sandbox.NewRegistry()
	RegisterBuiltins(r)
	return r
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(b), "\n"))
	return len(b), nil
}

var _ io.Writer = testWriter{}
