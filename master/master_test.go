package master

import (
	"context"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/goleak"

	"github.com/anthill-project/anthill/protocol"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newMaster(t testing.TB, dir string, o Options) *Master {
	t.Helper()
	o.Listen, o.Data = "127.0.0.1:0", dir
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

// peer speaks the protocol by hand: these tests pin the master's side of
// the contract without depending on the slave or appnode packages.
type testPeer struct {
	t  *testing.T
	ws *websocket.Conn
}

func dial(t *testing.T, m *Master, path string, h *protocol.Hello) *testPeer {
	t.Helper()
	ws, _, err := websocket.DefaultDialer.Dial(m.URL()+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() })
	p := &testPeer{t, ws}
	p.send(h)
	if w, ok := p.read().(*protocol.Welcome); !ok || w.Version != protocol.Version {
		t.Fatalf("no welcome")
	}
	return p
}

func (p *testPeer) send(msg protocol.Message) {
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

func appHello(name string) *protocol.Hello {
	return &protocol.Hello{Version: protocol.Version, Role: protocol.RoleApp, Name: name}
}

func slaveHello(name string, window int, kinds ...string) *protocol.Hello {
	return &protocol.Hello{Version: protocol.Version, Role: protocol.RoleSlave, Name: name, Kinds: kinds, Concurrency: window}
}

func TestSubmitIsDurableAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	m := newMaster(t, dir, Options{})
	app := dial(t, m, "/ws/app", appHello("a"))
	app.send(&protocol.Submit{Seq: 7, Tasks: []protocol.NewTask{{Kind: "k", Payload: []byte("1")}, {Kind: "k", Payload: []byte("2")}}})
	ack, ok := app.read().(*protocol.SubmitAck)
	if !ok || ack.Seq != 7 || ack.Count != 2 {
		t.Fatalf("ack %+v", ack)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}

	m2 := newMaster(t, dir, Options{})
	if st := m2.Stats(); st.Pending != 2 {
		t.Fatalf("after restart %d pending, want 2", st.Pending)
	}
	// The batch re-sent with the same seq is answered, not stored again.
	app2 := dial(t, m2, "/ws/app", appHello("a"))
	app2.send(&protocol.Submit{Seq: 7, Tasks: []protocol.NewTask{{Kind: "k"}, {Kind: "k"}}})
	again := app2.read().(*protocol.SubmitAck)
	if *again != *ack {
		t.Fatalf("re-sent batch got %+v, want %+v", again, ack)
	}
	if st := m2.Stats(); st.Pending != 2 {
		t.Fatalf("re-sent batch stored again: %d pending", st.Pending)
	}
	// A slave now gets exactly those two, with their payloads.
	s := dial(t, m2, "/ws/slave", slaveHello("s", 10, "k"))
	d := s.read().(*protocol.Dispatch)
	if len(d.Tasks) != 2 || d.Tasks[0].ID != ack.FirstID || string(d.Tasks[1].Payload) != "2" {
		t.Fatalf("dispatch %+v", d.Tasks)
	}
	// Ids after a restart never collide with ids handed out before it.
	app2.send(&protocol.Submit{Seq: 8, Tasks: []protocol.NewTask{{Kind: "k"}}})
	if a := app2.read().(*protocol.SubmitAck); a.FirstID <= ack.FirstID+1 {
		t.Fatalf("new id %d after restart does not follow %d", a.FirstID, ack.FirstID+1)
	}
}

func TestResultNotifyAckCycle(t *testing.T) {
	m := newMaster(t, t.TempDir(), Options{})
	s := dial(t, m, "/ws/slave", slaveHello("s", 4, "k"))
	app := dial(t, m, "/ws/app", appHello("a"))
	app.send(&protocol.Submit{Seq: 1, Tasks: []protocol.NewTask{{Kind: "k", Payload: []byte("p")}}})
	ack := app.read().(*protocol.SubmitAck)
	d := s.read().(*protocol.Dispatch)
	task := d.Tasks[0]
	if task.ID != ack.FirstID || task.Attempt != 1 || task.Timeout != time.Minute {
		t.Fatalf("dispatched %+v", task)
	}
	s.send(&protocol.Results{Results: []protocol.Result{{ID: task.ID, Attempt: 1, Output: []byte("out")}}})
	// A duplicate result is ignored.
	s.send(&protocol.Results{Results: []protocol.Result{{ID: task.ID, Attempt: 1, Output: []byte("dup")}}})
	n := app.read().(*protocol.Notify)
	if len(n.Tasks) != 1 || string(n.Tasks[0].Result) != "out" || n.Tasks[0].State != protocol.StateDone {
		t.Fatalf("notify %+v", n.Tasks)
	}
	app.send(&protocol.IDs{T: protocol.TypeNotifyAck, IDs: []uint64{task.ID}})
	done := app.read().(*protocol.IDs)
	if done.T != protocol.TypeNotifyDone || len(done.IDs) != 1 || done.IDs[0] != task.ID {
		t.Fatalf("notify_done %+v", done)
	}
	st := m.Stats()
	if st.Done != 1 || st.LateResults != 1 || st.Unacked != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestPollDispatchWaitsForRequests(t *testing.T) {
	m := newMaster(t, t.TempDir(), Options{Dispatch: protocol.DispatchPoll})
	app := dial(t, m, "/ws/app", appHello("a"))
	tasks := make([]protocol.NewTask, 5)
	for i := range tasks {
		tasks[i] = protocol.NewTask{Kind: "k"}
	}
	app.send(&protocol.Submit{Seq: 1, Tasks: tasks})
	app.read()
	s := dial(t, m, "/ws/slave", slaveHello("s", 8, "k"))
	s.send(&protocol.Request{N: 2})
	if d := s.read().(*protocol.Dispatch); len(d.Tasks) != 2 {
		t.Fatalf("asked for 2, got %d", len(d.Tasks))
	}
	s.send(&protocol.Request{N: 10})
	if d := s.read().(*protocol.Dispatch); len(d.Tasks) != 3 {
		t.Fatalf("asked for 10 with 3 left, got %d", len(d.Tasks))
	}
	// The unmet part of the request is remembered for new work.
	app.send(&protocol.Submit{Seq: 2, Tasks: tasks[:1]})
	if d := s.read().(*protocol.Dispatch); len(d.Tasks) != 1 {
		t.Fatalf("remembered request: got %d", len(d.Tasks))
	}
}

func TestLeaseExpiryRequeues(t *testing.T) {
	m := newMaster(t, t.TempDir(), Options{LeaseGrace: time.Millisecond})
	slow := dial(t, m, "/ws/slave", slaveHello("slow", 1, "k"))
	app := dial(t, m, "/ws/app", appHello("a"))
	app.send(&protocol.Submit{Seq: 1, Tasks: []protocol.NewTask{{Kind: "k", Timeout: 50 * time.Millisecond, MaxAttempts: 2}}})
	app.read()
	first := slow.read().(*protocol.Dispatch).Tasks[0]
	// The slow slave keeps its slot; a second slave gets attempt 2.
	fast := dial(t, m, "/ws/slave", slaveHello("fast", 1, "k"))
	second := fast.read().(*protocol.Dispatch).Tasks[0]
	if second.ID != first.ID || second.Attempt != 2 {
		t.Fatalf("after lease expiry got %+v", second)
	}
	fast.send(&protocol.Results{Results: []protocol.Result{{ID: second.ID, Attempt: 2, Output: []byte("ok")}}})
	if n := app.read().(*protocol.Notify); n.Tasks[0].Attempts != 2 || string(n.Tasks[0].Result) != "ok" {
		t.Fatalf("notify %+v", n.Tasks[0])
	}
}

func TestSlaveEnrollmentToken(t *testing.T) {
	m := newMaster(t, t.TempDir(), Options{SlaveToken: "s3cret"})
	ws, _, err := websocket.DefaultDialer.Dial(m.URL()+"/ws/slave", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	p := &testPeer{t, ws}
	p.send(slaveHello("intruder", 1, "k"))
	if e, ok := p.read().(*protocol.Error); !ok || e.Code != protocol.CodeUnauthorized {
		t.Fatalf("slave without token: %+v", e)
	}
	h := slaveHello("member", 1, "k")
	h.Token = "s3cret"
	dial(t, m, "/ws/slave", h) // fails the test unless welcomed
}

// A batch's dedupe record lives until all its tasks are acknowledged, no
// longer: an application pushing one task at a time must not make the
// master remember every push it ever made.
func TestPushRecordReleasedOnAck(t *testing.T) {
	dir := t.TempDir()
	m := newMaster(t, dir, Options{})
	s := dial(t, m, "/ws/slave", slaveHello("s", 4, "k"))
	app := dial(t, m, "/ws/app", appHello("a"))
	app.send(&protocol.Submit{Seq: 1, Tasks: []protocol.NewTask{{Kind: "k"}, {Kind: "k"}}})
	app.read() // submit_ack
	pushes := func() int { m.mu.Lock(); defer m.mu.Unlock(); return len(m.apps["a"].pushes) }
	d := s.read().(*protocol.Dispatch)
	var results []protocol.Result
	for _, task := range d.Tasks {
		results = append(results, protocol.Result{ID: task.ID, Attempt: 1})
	}
	s.send(&protocol.Results{Results: results})
	var ids []uint64
	for len(ids) < 2 {
		for _, f := range app.read().(*protocol.Notify).Tasks {
			ids = append(ids, f.ID)
		}
	}
	app.send(&protocol.IDs{T: protocol.TypeNotifyAck, IDs: ids[:1]})
	app.read() // notify_done
	if n := pushes(); n != 1 {
		t.Fatalf("%d push records with one task of the batch unacknowledged, want 1", n)
	}
	app.send(&protocol.IDs{T: protocol.TypeNotifyAck, IDs: ids[1:]})
	app.read()
	if n := pushes(); n != 0 {
		t.Fatalf("%d push records after every task was acknowledged", n)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	m2 := newMaster(t, dir, Options{})
	if a := m2.apps["a"]; a != nil && len(a.pushes) != 0 {
		t.Fatalf("%d push records came back after a restart", len(a.pushes))
	}
}

// Tasks nobody can run yet show as the app's in-flight tasks in the
// metrics (a gauge sampled once a second).
func TestInFlightGauge(t *testing.T) {
	m := newMaster(t, t.TempDir(), Options{})
	app := dial(t, m, "/ws/app", appHello("waiting"))
	app.send(&protocol.Submit{Seq: 1, Tasks: []protocol.NewTask{{Kind: "k"}, {Kind: "k"}, {Kind: "k"}}})
	app.read()
	waitUntil(t, func() bool {
		for _, a := range m.Metrics().Apps() {
			if a.Name == "waiting" && a.InFlight == 3 && a.Pushed == 3 {
				return true
			}
		}
		return false
	})
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
