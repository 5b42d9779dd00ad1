package master

import (
	"context"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/goleak"

	"github.com/anthill-project/anthill/protocol"
)

// These tests pin the master's side of the wire: handshakes, frames and
// shutdown, over real sockets. A task's life is master/sched's, tested
// there without a port.

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testAdmin is the admin token newMaster gives a master without one; the
// Hellos below present it unless a test says otherwise.
const testAdmin = "master-test-admin-token"

func newMaster(t testing.TB, dir string, o Options) *Master {
	t.Helper()
	o.Listen, o.Data = "127.0.0.1:0", dir
	if o.AdminToken == "" {
		o.AdminToken = testAdmin
	}
	m, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- m.Run(context.Background()) }()
	t.Cleanup(func() {
		m.Close()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	return m
}

// testPeer speaks the protocol by hand: these tests pin the master's side
// of the contract without depending on the slave or appnode packages.
type testPeer struct {
	t  *testing.T
	ws *websocket.Conn
}

func open(t *testing.T, m *Master, path string) *testPeer {
	t.Helper()
	ws, _, err := websocket.DefaultDialer.Dial(m.URL()+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() })
	return &testPeer{t, ws}
}

// dial opens a connection and completes its handshake.
func dial(t *testing.T, m *Master, path string, h *protocol.Hello) *testPeer {
	t.Helper()
	p := open(t, m, path)
	p.send(h)
	if w := readAs[*protocol.Welcome](p); w.Version != protocol.Version || w.Session == "" {
		t.Fatalf("welcome %+v", w)
	}
	return p
}

func (p *testPeer) send(msg protocol.Message) {
	p.t.Helper()
	if err := p.ws.WriteMessage(websocket.BinaryMessage, protocol.Encode(nil, msg)); err != nil {
		p.t.Fatal(err)
	}
}

func (p *testPeer) read() protocol.Message {
	p.t.Helper()
	_ = p.ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, frame, err := p.ws.ReadMessage()
	if err != nil {
		p.t.Fatal(err)
	}
	msg, err := protocol.Decode(frame)
	if err != nil {
		p.t.Fatal(err)
	}
	return msg
}

// readAs reads the next message and fails the test, saying what arrived
// instead, unless it is a T.
func readAs[T protocol.Message](p *testPeer) T {
	p.t.Helper()
	msg := p.read()
	v, ok := msg.(T)
	if !ok {
		var want T
		p.t.Fatalf("got %T %+v, want %T", msg, msg, want)
	}
	return v
}

// closed reads until the master closes the connection and returns the
// close code.
func (p *testPeer) closed() int {
	p.t.Helper()
	_ = p.ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		if _, _, err := p.ws.ReadMessage(); err != nil {
			if ce, ok := err.(*websocket.CloseError); ok {
				return ce.Code
			}
			p.t.Fatalf("connection ended without a close frame: %v", err)
		}
	}
}

func appHello(name string) *protocol.Hello {
	return &protocol.Hello{Version: protocol.Version, Role: protocol.RoleApp, Name: name, Token: testAdmin}
}

func slaveHello(name string, window int, kinds ...string) *protocol.Hello {
	return &protocol.Hello{Version: protocol.Version, Role: protocol.RoleSlave, Name: name, Kinds: kinds, Concurrency: window, Token: testAdmin}
}

// A task's whole life over real sockets, across a restart: accepted means
// durable, a re-sent batch is answered with its ids, the result reaches
// the application, and its acknowledgement is confirmed.
func TestTaskLifeOverTheWire(t *testing.T) {
	dir := t.TempDir()
	m := newMaster(t, dir, Options{})
	app := dial(t, m, "/ws/app", appHello("a"))
	app.send(&protocol.Submit{Seq: 7, Tasks: []protocol.NewTask{{Kind: "k", Payload: []byte("1")}}})
	ack := readAs[*protocol.SubmitAck](app)
	if ack.Seq != 7 || ack.Count != 1 {
		t.Fatalf("ack %+v", ack)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}

	m2 := newMaster(t, dir, Options{})
	app2 := dial(t, m2, "/ws/app", appHello("a"))
	app2.send(&protocol.Submit{Seq: 7, Tasks: []protocol.NewTask{{Kind: "k"}}})
	if again := readAs[*protocol.SubmitAck](app2); *again != *ack {
		t.Fatalf("re-sent batch got %+v, want %+v", again, ack)
	}
	s := dial(t, m2, "/ws/slave", slaveHello("s", 10, "k"))
	d := readAs[*protocol.Dispatch](s)
	if len(d.Tasks) != 1 || d.Tasks[0].ID != ack.FirstID || string(d.Tasks[0].Payload) != "1" {
		t.Fatalf("dispatch %+v", d.Tasks)
	}
	s.send(&protocol.Results{Results: []protocol.Result{{ID: ack.FirstID, Attempt: 1, Lease: d.Tasks[0].Lease, Output: []byte("out")}}})
	n := readAs[*protocol.Notify](app2)
	if len(n.Tasks) != 1 || string(n.Tasks[0].Result) != "out" || n.Tasks[0].State != protocol.StateDone {
		t.Fatalf("notify %+v", n.Tasks)
	}
	app2.send(&protocol.IDs{T: protocol.TypeNotifyAck, IDs: []uint64{ack.FirstID}})
	if done := readAs[*protocol.IDs](app2); done.T != protocol.TypeNotifyDone || done.IDs[0] != ack.FirstID {
		t.Fatalf("notify_done %+v", done)
	}
}

// Every malformed Hello is refused with a code naming why, and closes that
// connection only.
func TestHandshakeRefusals(t *testing.T) {
	m := newMaster(t, t.TempDir(), Options{SlaveToken: "s3cret-invitation"})
	withToken := func(h *protocol.Hello) *protocol.Hello { h.Token = "s3cret-invitation"; return h }
	noToken := func(h *protocol.Hello) *protocol.Hello { h.Token = ""; return h }
	for _, tc := range []struct {
		name  string
		path  string
		hello protocol.Message
		code  string
	}{
		{"not a hello", "/ws/app", &protocol.Request{N: 1}, protocol.CodeBadHandshake},
		{"old version", "/ws/app", &protocol.Hello{Version: protocol.Version + 1, Role: protocol.RoleApp, Name: "a"}, protocol.CodeUnsupportedVersion},
		{"wrong role", "/ws/app", withToken(slaveHello("s", 1, "k")), protocol.CodeBadHandshake},
		{"no name", "/ws/app", appHello(""), protocol.CodeBadHandshake},
		{"name too long", "/ws/app", appHello(string(make([]byte, protocol.MaxNameBytes+1))), protocol.CodeBadHandshake},
		{"slave without token", "/ws/slave", noToken(slaveHello("intruder", 1, "k")), protocol.CodeUnauthorized},
		{"slave with a wrong token", "/ws/slave", func() *protocol.Hello { h := slaveHello("intruder", 1, "k"); h.Token = "guess"; return h }(), protocol.CodeUnauthorized},
		{"app without token", "/ws/app", noToken(appHello("a")), protocol.CodeUnauthorized},
		{"slave without kinds", "/ws/slave", withToken(slaveHello("s", 1)), protocol.CodeBadHandshake},
		{"slave without slots", "/ws/slave", withToken(slaveHello("s", 0, "k")), protocol.CodeBadHandshake},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := open(t, m, tc.path)
			p.send(tc.hello)
			if e := readAs[*protocol.Error](p); e.Code != tc.code {
				t.Fatalf("refused with %+v, want %s", e, tc.code)
			}
			if code := p.closed(); code != websocket.ClosePolicyViolation {
				t.Fatalf("close code %d", code)
			}
		})
	}
	// A slave with the token is welcomed.
	dial(t, m, "/ws/slave", withToken(slaveHello("member", 1, "k")))
}

// A frame that does not decode, or that the peer's role may not send,
// closes that connection with bad_frame; others keep working.
func TestBadFrameClosesOnlyThatConnection(t *testing.T) {
	m := newMaster(t, t.TempDir(), Options{})
	good := dial(t, m, "/ws/app", appHello("good"))
	for _, frame := range [][]byte{
		{byte(protocol.TypeSubmit), 0xff, 0xff}, // truncated varints
		protocol.Encode(nil, &protocol.Request{N: 1}),
	} {
		bad := dial(t, m, "/ws/app", appHello("bad"))
		if err := bad.ws.WriteMessage(websocket.BinaryMessage, frame); err != nil {
			t.Fatal(err)
		}
		if e := readAs[*protocol.Error](bad); e.Code != protocol.CodeBadFrame {
			t.Fatalf("refused with %+v", e)
		}
		if code := bad.closed(); code != websocket.CloseUnsupportedData {
			t.Fatalf("close code %d", code)
		}
	}
	good.send(&protocol.Submit{Seq: 1, Tasks: []protocol.NewTask{{Kind: "k"}}})
	readAs[*protocol.SubmitAck](good)
}

// A frame over the limit closes the connection with frame_too_large.
func TestFrameTooLarge(t *testing.T) {
	m := newMaster(t, t.TempDir(), Options{MaxPayload: 1 << 10, MaxFrame: 4 << 10})
	app := dial(t, m, "/ws/app", appHello("a"))
	app.send(&protocol.Submit{Seq: 1, Tasks: []protocol.NewTask{{Kind: "k", Payload: make([]byte, 8<<10)}}})
	if e := readAs[*protocol.Error](app); e.Code != protocol.CodeFrameTooLarge {
		t.Fatalf("refused with %+v", e)
	}
	if code := app.closed(); code != websocket.CloseMessageTooBig {
		t.Fatalf("close code %d", code)
	}
}

// A second connection of an app id replaces the first, which is told why.
func TestAppConnectionReplaced(t *testing.T) {
	m := newMaster(t, t.TempDir(), Options{})
	old := dial(t, m, "/ws/app", appHello("a"))
	dial(t, m, "/ws/app", appHello("a"))
	if e := readAs[*protocol.Error](old); e.Code != protocol.CodeReplaced {
		t.Fatalf("old connection got %+v", e)
	}
}

// Shutdown tells every peer, and refuses new connections while it runs.
func TestShutdownTellsPeers(t *testing.T) {
	m := newMaster(t, t.TempDir(), Options{})
	s := dial(t, m, "/ws/slave", slaveHello("s", 1, "k"))
	app := dial(t, m, "/ws/app", appHello("a"))
	closed := make(chan error, 1)
	go func() { closed <- m.Close() }()
	for _, p := range []*testPeer{s, app} {
		if e := readAs[*protocol.Error](p); e.Code != protocol.CodeShuttingDown {
			t.Fatalf("peer got %+v", e)
		}
		if code := p.closed(); code != websocket.CloseGoingAway {
			t.Fatalf("close code %d", code)
		}
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
}

func TestStoppingClosesWhenShutdownBegins(t *testing.T) {
	m, err := New(Options{Listen: "127.0.0.1:0", Data: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-m.Stopping():
		t.Fatal("Stopping closed before Run")
	default:
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	cancel()
	<-m.Stopping()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
}
