package appnode

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/goleak"

	"github.com/anthill-project/anthill/protocol"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// waitFor polls cond until it holds, failing the test after d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(time.Millisecond)
	}
}

// peer is a minimal master: it speaks the app side of the protocol so the
// node can be tested without the real one. By default each connection's
// frames go to the test through conns; with auto set the peer answers by
// itself.
type peer struct {
	t       *testing.T
	srv     *httptest.Server
	welcome protocol.Welcome
	// refuse, if set, answers the Hello instead of a Welcome.
	refuse *protocol.Error
	auto   func(pc *peerConn, m protocol.Message)

	conns chan *peerConn
	hello chan *protocol.Hello
	wg    sync.WaitGroup
	mu    sync.Mutex
	open  []*peerConn
}

type peerConn struct {
	t   *testing.T
	ws  *websocket.Conn
	wmu sync.Mutex
	in  chan protocol.Message
}

func newPeer(t *testing.T, configure func(p *peer)) *peer {
	p := &peer{
		t: t,
		welcome: protocol.Welcome{Version: protocol.Version, Session: "s", HeartbeatMillis: 5000,
			MaxFrameBytes: 1 << 24, MaxPayloadBytes: 1 << 20},
		conns: make(chan *peerConn, 256),
		hello: make(chan *protocol.Hello, 256),
	}
	if configure != nil {
		configure(p)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/ws/app", p.serve)
	p.srv = httptest.NewServer(mux)
	t.Cleanup(p.close)
	return p
}

func (p *peer) url() string { return p.srv.URL } // http://: the node must map it to ws://

func (p *peer) serve(w http.ResponseWriter, r *http.Request) {
	p.wg.Add(1)
	defer p.wg.Done()
	ws, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
	if err != nil {
		return
	}
	defer ws.Close()
	_, b, err := ws.ReadMessage()
	if err != nil {
		return
	}
	m, err := protocol.Decode(b)
	h, ok := m.(*protocol.Hello)
	if err != nil || !ok {
		p.t.Errorf("peer: first frame %v, %v; want hello", m, err)
		return
	}
	select {
	case p.hello <- h:
	default:
	}
	if p.refuse != nil {
		_ = ws.WriteMessage(websocket.BinaryMessage, protocol.Encode(nil, p.refuse))
		return
	}
	pc := &peerConn{t: p.t, ws: ws, in: make(chan protocol.Message, 1024)}
	pc.send(&p.welcome)
	p.mu.Lock()
	p.open = append(p.open, pc)
	p.mu.Unlock()
	select {
	case p.conns <- pc:
	default:
		p.t.Errorf("peer: too many connections")
	}
	for {
		_, b, err := ws.ReadMessage()
		if err != nil {
			close(pc.in)
			return
		}
		m, err := protocol.Decode(b)
		if err != nil {
			p.t.Errorf("peer: %v", err)
			close(pc.in)
			return
		}
		if p.auto != nil {
			p.auto(pc, m)
		} else {
			pc.in <- m
		}
	}
}

func (p *peer) close() {
	p.srv.Close()
	p.mu.Lock()
	for _, pc := range p.open {
		pc.ws.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// accept waits for the next connection.
func (p *peer) accept(t *testing.T) *peerConn {
	t.Helper()
	select {
	case pc := <-p.conns:
		return pc
	case <-time.After(10 * time.Second):
		t.Fatal("no connection from the node")
		return nil
	}
}

func (pc *peerConn) send(m protocol.Message) {
	pc.wmu.Lock()
	defer pc.wmu.Unlock()
	_ = pc.ws.WriteMessage(websocket.BinaryMessage, protocol.Encode(nil, m))
}

// next returns the next frame from the node.
func (pc *peerConn) next(t *testing.T) protocol.Message {
	t.Helper()
	select {
	case m, ok := <-pc.in:
		if !ok {
			t.Fatal("the node closed the connection")
		}
		return m
	case <-time.After(10 * time.Second):
		t.Fatal("no frame from the node")
		return nil
	}
}

func (pc *peerConn) submit(t *testing.T) *protocol.Submit {
	t.Helper()
	m := pc.next(t)
	s, ok := m.(*protocol.Submit)
	if !ok {
		t.Fatalf("got %T, want submit", m)
	}
	return s
}

func (pc *peerConn) notifyAck(t *testing.T) []uint64 {
	t.Helper()
	m := pc.next(t)
	ids, ok := m.(*protocol.IDs)
	if !ok || ids.T != protocol.TypeNotifyAck {
		t.Fatalf("got %#v, want notify_ack", m)
	}
	return ids.IDs
}

// drop cuts the connection without a close frame, as a crash would.
func (pc *peerConn) drop() { pc.ws.UnderlyingConn().Close() }

// outcome is one TaskFinished call.
type outcome struct {
	task   *Task
	result []byte
	err    error
}

// recorder collects TaskFinished calls.
type recorder struct {
	mu  sync.Mutex
	got []outcome
}

func (r *recorder) finished(t *Task, result []byte, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, outcome{t, result, err})
}

func (r *recorder) calls() []outcome {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]outcome(nil), r.got...)
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

// connect opens a node against p, shut down at cleanup (before p closes).
func connect(t *testing.T, p *peer, r *recorder) *Node {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	opts := Options{Master: p.url(), App: "test-app", Token: "secret", Logger: testLogger(t),
		ReconnectMin: time.Millisecond, ReconnectMax: 10 * time.Millisecond}
	if r != nil {
		opts.TaskFinished = r.finished
	}
	n, err := Connect(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { shutdown(t, n) })
	return n
}

func shutdown(t *testing.T, n *Node) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.Shutdown(ctx); err != nil {
		t.Errorf("shutdown: %v", err)
	}
}

// push runs PushTasks in the background.
func push(n *Node, ts ...*Task) <-chan error {
	done := make(chan error, 1)
	go func() { done <- n.PushTasks(context.Background(), ts) }()
	return done
}

func result(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("push did not return")
		return nil
	}
}

func TestHandshake(t *testing.T) {
	p := newPeer(t, nil)
	connect(t, p, nil)
	h := <-p.hello
	if h.Version != protocol.Version || h.Role != protocol.RoleApp || h.Name != "test-app" || h.Token != "secret" {
		t.Fatalf("hello = %+v", h)
	}
}

func TestConnectRefused(t *testing.T) {
	p := newPeer(t, func(p *peer) { p.refuse = &protocol.Error{Code: protocol.CodeUnauthorized, Message: "bad token"} })
	_, err := Connect(context.Background(), Options{Master: p.url(), App: "a"})
	var pe *protocol.Error
	if !errors.As(err, &pe) || pe.Code != protocol.CodeUnauthorized {
		t.Fatalf("Connect = %v, want unauthorized", err)
	}
	if _, err := Connect(context.Background(), Options{Master: p.url()}); err == nil {
		t.Fatal("Connect without an app id succeeded")
	}
}

func TestPushSetsIDsAfterAck(t *testing.T) {
	p := newPeer(t, nil)
	n := connect(t, p, nil)
	pc := p.accept(t)
	a := &Task{Kind: "echo", Payload: []byte("a"), Priority: 3, Timeout: 1500 * time.Millisecond, MaxAttempts: 2, Key: "k", Replicas: 3, Quorum: 2}
	b := &Task{Kind: "echo", Payload: []byte("b"), Quorum: 1}
	done := push(n, a, b)
	s := pc.submit(t) // decoded from the frame: the fields crossed the wire
	want := []protocol.NewTask{
		{Kind: "echo", Payload: []byte("a"), Priority: 3, Timeout: 1500 * time.Millisecond, MaxAttempts: 2, Key: "k", Replicas: 3, Quorum: 2},
		{Kind: "echo", Payload: []byte("b"), Quorum: 1},
	}
	if len(s.Tasks) != 2 || fmt.Sprint(s.Tasks) != fmt.Sprint(want) {
		t.Fatalf("submitted %+v, want %+v", s.Tasks, want)
	}
	select {
	case err := <-done:
		t.Fatalf("push returned %v before the ack", err)
	default:
	}
	pc.send(&protocol.SubmitAck{Seq: s.Seq, FirstID: 100, Count: 2})
	if err := result(t, done); err != nil {
		t.Fatal(err)
	}
	if a.ID != 100 || b.ID != 101 {
		t.Fatalf("ids %d, %d; want 100, 101", a.ID, b.ID)
	}

	// Pushes pipeline: a second batch goes out before the first is acked,
	// with the next seq.
	d1 := push(n, &Task{Kind: "x"})
	s1 := pc.submit(t)
	d2 := push(n, &Task{Kind: "y"})
	s2 := pc.submit(t)
	if s2.Seq <= s1.Seq || s1.Seq <= s.Seq {
		t.Fatalf("seqs %d, %d, %d do not increase", s.Seq, s1.Seq, s2.Seq)
	}
	pc.send(&protocol.SubmitAck{Seq: s2.Seq, FirstID: 201, Count: 1})
	pc.send(&protocol.SubmitAck{Seq: s1.Seq, FirstID: 200, Count: 1})
	if err := errors.Join(result(t, d1), result(t, d2)); err != nil {
		t.Fatal(err)
	}
}

func TestPushRejected(t *testing.T) {
	p := newPeer(t, func(p *peer) { p.welcome.MaxPayloadBytes = 10 })
	n := connect(t, p, nil)
	pc := p.accept(t)
	// The master's timeout limit is not announced: only it can refuse.
	a, b := &Task{Kind: "echo"}, &Task{Kind: "echo", Timeout: 48 * time.Hour}
	done := push(n, a, b)
	s := pc.submit(t)
	pc.send(&protocol.SubmitReject{Seq: s.Seq, Index: 1, Code: protocol.CodeInvalidTask, Message: "task 1: timeout of 48h0m0s exceeds the limit of 24h0m0s"})
	err := result(t, done)
	var rej *RejectError
	if !errors.As(err, &rej) || rej.Index != 1 || rej.Code != protocol.CodeInvalidTask || rej.Message != "task 1: timeout of 48h0m0s exceeds the limit of 24h0m0s" {
		t.Fatalf("push = %v, want a RejectError for task 1", err)
	}
	if a.ID != 0 || b.ID != 0 {
		t.Fatal("a refused batch got ids")
	}

	// Limits the master announced are checked before sending.
	err = n.PushTasks(context.Background(), []*Task{{Kind: "echo"}, {Kind: "echo", Payload: make([]byte, 11)}})
	if !errors.As(err, &rej) || rej.Index != 1 || rej.Code != protocol.CodePayloadTooLarge {
		t.Fatalf("oversized payload: %v", err)
	}
	err = n.PushTask(context.Background(), &Task{Kind: "echo", MaxAttempts: -1})
	if !errors.As(err, &rej) || rej.Code != protocol.CodeInvalidTask {
		t.Fatalf("negative max attempts: %v", err)
	}
	// So are the contract's own limits, with the master's words.
	err = n.PushTasks(context.Background(), []*Task{{Kind: "echo"}, {Kind: ""}})
	if !errors.As(err, &rej) || rej.Index != 1 || rej.Code != protocol.CodeInvalidTask || rej.Message != "task 1: kind must not be empty" {
		t.Fatalf("empty kind: %v", err)
	}
	err = n.PushTask(context.Background(), &Task{Kind: "echo", MaxAttempts: protocol.MaxAttempts + 1})
	if !errors.As(err, &rej) || rej.Message != "task 0: max attempts exceeds 1000" {
		t.Fatalf("max attempts over the contract's limit: %v", err)
	}
	err = n.PushTasks(context.Background(), []*Task{{Kind: "echo"}, {Kind: "echo", Replicas: protocol.MaxReplicas + 1}})
	if !errors.As(err, &rej) || rej.Index != 1 || rej.Code != protocol.CodeInvalidTask || rej.Message != "task 1: replicas of 17 exceeds 16" {
		t.Fatalf("replicas over the contract's limit: %v", err)
	}
	err = n.PushTask(context.Background(), &Task{Kind: "echo", Replicas: 2, Quorum: 3})
	if !errors.As(err, &rej) || rej.Message != "task 0: quorum of 3 exceeds the task's replicas (2)" {
		t.Fatalf("a quorum over the task's replicas: %v", err)
	}
}

func TestTaskFinished(t *testing.T) {
	p := newPeer(t, nil)
	r := &recorder{}
	n := connect(t, p, r)
	pc := p.accept(t)
	ok := &Task{Kind: "echo", Payload: []byte("hi"), Value: "mine"}
	bad := &Task{Kind: "fail"}
	done := push(n, ok, bad)
	s := pc.submit(t)
	// The ack and the notification back to back, as the master may send them.
	pc.send(&protocol.SubmitAck{Seq: s.Seq, FirstID: 41, Count: 2})
	pc.send(&protocol.Notify{Tasks: []protocol.Finished{
		{ID: 41, Kind: "echo", State: protocol.StateDone, Attempts: 1, Result: []byte("hi")},
		{ID: 42, Kind: "fail", State: protocol.StateFailed, Attempts: 3, Err: "boom"},
		{ID: 7, Kind: "old", State: protocol.StateCanceled, Attempts: 0},
	}})
	if err := result(t, done); err != nil {
		t.Fatal(err)
	}
	if ids := pc.notifyAck(t); fmt.Sprint(ids) != "[41 42 7]" {
		t.Fatalf("notify_ack %v, want [41 42 7]", ids)
	}
	got := r.calls()
	if len(got) != 3 {
		t.Fatalf("%d TaskFinished calls, want 3", len(got))
	}
	if got[0].task != ok || string(got[0].result) != "hi" || got[0].err != nil {
		t.Errorf("success: %+v", got[0])
	}
	var te *TaskError
	if got[1].task != bad || got[1].result != nil || !errors.As(got[1].err, &te) ||
		*te != (TaskError{ID: 42, State: protocol.StateFailed, Attempts: 3, Message: "boom"}) {
		t.Errorf("failure: %+v", got[1])
	}
	if msg := got[1].err.Error(); msg != "task 42 failed after 3 attempts: boom" {
		t.Errorf("error text %q", msg)
	}
	// A task this process never pushed (an earlier process did).
	if o := got[2]; o.task.ID != 7 || o.task.Kind != "old" || !errors.As(o.err, &te) || te.State != protocol.StateCanceled {
		t.Errorf("orphan: %+v %v", o.task, o.err)
	}
}

func TestDeliveredNotifyIsNotRepeated(t *testing.T) {
	p := newPeer(t, nil)
	r := &recorder{}
	n := connect(t, p, r)
	pc := p.accept(t)
	f := protocol.Finished{ID: 9, Kind: "echo", State: protocol.StateDone, Attempts: 1, Result: []byte("x")}
	pc.send(&protocol.Notify{Tasks: []protocol.Finished{f}})
	if ids := pc.notifyAck(t); fmt.Sprint(ids) != "[9]" {
		t.Fatalf("ack %v", ids)
	}
	// The master restarted before it stored the ack: it notifies again.
	pc.send(&protocol.Notify{Tasks: []protocol.Finished{f, {ID: 10, Kind: "echo", State: protocol.StateDone}}})
	if ids := pc.notifyAck(t); fmt.Sprint(ids) != "[9 10]" {
		t.Fatalf("ack %v, want the duplicate acknowledged too", ids)
	}
	if got := r.calls(); len(got) != 2 || got[0].task.ID != 9 || got[1].task.ID != 10 {
		t.Fatalf("calls %+v, want 9 then 10 once each", got)
	}

	// Across a reconnect too: handled but unacknowledged, offered again.
	pc.send(&protocol.Notify{Tasks: []protocol.Finished{{ID: 11, Kind: "echo", State: protocol.StateDone}}})
	waitFor(t, 10*time.Second, "task 11", func() bool { return len(r.calls()) == 3 })
	pc.drop()
	pc = p.accept(t)
	pc.send(&protocol.Notify{Tasks: []protocol.Finished{{ID: 11, Kind: "echo", State: protocol.StateDone}}})
	if ids := pc.notifyAck(t); fmt.Sprint(ids) != "[11]" {
		t.Fatalf("ack %v", ids)
	}
	if got := r.calls(); len(got) != 3 {
		t.Fatalf("%d calls, want 3", len(got))
	}

	// NotifyDone lets the node forget them.
	pc.send(&protocol.IDs{T: protocol.TypeNotifyDone, IDs: []uint64{9, 10, 11}})
	waitFor(t, 10*time.Second, "delivered to empty", func() bool {
		n.mu.Lock()
		defer n.mu.Unlock()
		return len(n.delivered) == 0
	})
}

func TestReconnectResendsSameSeq(t *testing.T) {
	p := newPeer(t, nil)
	r := &recorder{}
	n := connect(t, p, r)
	pc := p.accept(t)
	task := &Task{Kind: "echo", Payload: []byte("p")}
	done := push(n, task)
	s := pc.submit(t)
	pc.drop() // before the ack: the node cannot know whether it was stored

	pc = p.accept(t)
	again := pc.submit(t)
	if again.Seq != s.Seq || fmt.Sprint(again.Tasks) != fmt.Sprint(s.Tasks) {
		t.Fatalf("re-sent %d %+v, want %d %+v", again.Seq, again.Tasks, s.Seq, s.Tasks)
	}
	// A master that had stored it sends its pending notification first,
	// then answers the re-sent batch with the original id.
	pc.send(&protocol.Notify{Tasks: []protocol.Finished{{ID: 5, Kind: "echo", State: protocol.StateDone, Result: []byte("p")}}})
	pc.send(&protocol.SubmitAck{Seq: s.Seq, FirstID: 5, Count: 1})
	if err := result(t, done); err != nil {
		t.Fatal(err)
	}
	if task.ID != 5 {
		t.Fatalf("id %d, want 5", task.ID)
	}
	if ids := pc.notifyAck(t); fmt.Sprint(ids) != "[5]" {
		t.Fatalf("ack %v", ids)
	}
	if got := r.calls(); len(got) != 1 || got[0].task != task || string(got[0].result) != "p" {
		t.Fatalf("calls %+v: the notification must reach the pushed task itself", got)
	}
}

func TestShutdownWaitsForPendingPush(t *testing.T) {
	p := newPeer(t, nil)
	n := connect(t, p, nil)
	pc := p.accept(t)
	task := &Task{Kind: "echo"}
	done := push(n, task)
	s := pc.submit(t)
	stopped := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		stopped <- n.Shutdown(ctx)
	}()
	waitFor(t, 10*time.Second, "shutdown to start", func() bool {
		n.mu.Lock()
		defer n.mu.Unlock()
		return n.closing
	})
	if err := n.PushTask(context.Background(), &Task{Kind: "late"}); !errors.Is(err, ErrClosed) {
		t.Fatalf("push during shutdown = %v, want ErrClosed", err)
	}
	pc.send(&protocol.SubmitAck{Seq: s.Seq, FirstID: 1, Count: 1})
	if err := result(t, done); err != nil || task.ID != 1 {
		t.Fatalf("push = %v, id %d", err, task.ID)
	}
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	if m, ok := <-pc.in; ok {
		t.Fatalf("%T after the shutdown", m)
	}
}

func TestFatalErrorFailsPushes(t *testing.T) {
	p := newPeer(t, nil)
	n := connect(t, p, nil)
	pc := p.accept(t)
	done := push(n, &Task{Kind: "echo"})
	pc.submit(t)
	pc.send(&protocol.Error{Code: protocol.CodeBadHandshake, Message: "replaced by a new connection"})
	err := result(t, done)
	var pe *protocol.Error
	if !errors.As(err, &pe) || pe.Code != protocol.CodeBadHandshake {
		t.Fatalf("push = %v, want the fatal error", err)
	}
	if err := n.PushTask(context.Background(), &Task{Kind: "echo"}); !errors.As(err, &pe) {
		t.Fatalf("push after a fatal error = %v", err)
	}
}

// job is a TaskSystem of n tiny tasks that checks each finishes once.
type job struct {
	n, next  int
	finished []int
	bad      atomic.Int64
}

func (j *job) Next() *Task {
	if j.next == j.n {
		return nil
	}
	i := j.next
	j.next++
	return &Task{Kind: "echo", Payload: []byte(strconv.Itoa(i)), Value: i}
}

func (j *job) Finished(t *Task, result []byte, err error) {
	i := t.Value.(int)
	j.finished[i]++
	if err != nil || string(result) != strconv.Itoa(i) {
		j.bad.Add(1)
	}
}

// autoMaster acks every batch and finishes its tasks at once (result =
// payload), recording the most tasks it held un-notified at a time.
type autoMaster struct {
	mu        sync.Mutex
	nextID    uint64
	submitted int
	notified  int
	maxOpen   int
	acks      int
	seqs      map[uint64]bool
	dupSeq    bool
}

func (a *autoMaster) handle(pc *peerConn, m protocol.Message) {
	a.mu.Lock()
	defer a.mu.Unlock()
	switch m := m.(type) {
	case *protocol.Submit:
		if a.seqs[m.Seq] {
			a.dupSeq = true
		}
		a.seqs[m.Seq] = true
		a.submitted += len(m.Tasks)
		a.maxOpen = max(a.maxOpen, a.submitted-a.notified)
		first := a.nextID
		a.nextID += uint64(len(m.Tasks))
		pc.send(&protocol.SubmitAck{Seq: m.Seq, FirstID: first, Count: uint32(len(m.Tasks))})
		fin := make([]protocol.Finished, len(m.Tasks))
		for i, t := range m.Tasks {
			fin[i] = protocol.Finished{ID: first + uint64(i), Kind: t.Kind, State: protocol.StateDone, Attempts: 1, Result: t.Payload}
		}
		a.notified += len(fin)
		pc.send(&protocol.Notify{Tasks: fin})
	case *protocol.IDs:
		a.acks += len(m.IDs)
		pc.send(&protocol.IDs{T: protocol.TypeNotifyDone, IDs: m.IDs})
	}
}

func TestRunWindowedJob(t *testing.T) {
	const tasks, window = 100_000, 500
	am := &autoMaster{nextID: 1, seqs: map[uint64]bool{}}
	p := newPeer(t, func(p *peer) { p.auto = am.handle })
	r := &recorder{}
	n := connect(t, p, r)
	j := &job{n: tasks, finished: make([]int, tasks)}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := n.Run(ctx, j, RunOptions{Window: window, Batch: 100}); err != nil {
		t.Fatal(err)
	}
	for i, c := range j.finished {
		if c != 1 {
			t.Fatalf("task %d finished %d times", i, c)
		}
	}
	if b := j.bad.Load(); b > 0 {
		t.Fatalf("%d tasks with a wrong outcome", b)
	}
	am.mu.Lock()
	maxOpen, submitted, dup := am.maxOpen, am.submitted, am.dupSeq
	am.mu.Unlock()
	if submitted != tasks || dup {
		t.Fatalf("master got %d tasks (duplicate seq: %v), want %d", submitted, dup, tasks)
	}
	if maxOpen > window {
		t.Fatalf("%d tasks in flight at once; the window is %d", maxOpen, window)
	}
	if len(r.calls()) != 0 {
		t.Fatal("a task of the job went to TaskFinished")
	}
	waitFor(t, 10*time.Second, "every ack", func() bool {
		am.mu.Lock()
		defer am.mu.Unlock()
		return am.acks == tasks
	})
	waitFor(t, 10*time.Second, "delivered to empty", func() bool {
		n.mu.Lock()
		defer n.mu.Unlock()
		return len(n.delivered) == 0 && len(n.inflight) == 0 && len(n.handling) == 0
	})
}

// rejectJob makes tasks the master refuses; each must still be Finished.
type rejectJob struct {
	left int
	errs []error
}

func (j *rejectJob) Next() *Task {
	if j.left == 0 {
		return nil
	}
	j.left--
	return &Task{Kind: "echo", Payload: make([]byte, 100)}
}

func (j *rejectJob) Finished(_ *Task, _ []byte, err error) { j.errs = append(j.errs, err) }

func TestRunReportsRefusedTasks(t *testing.T) {
	p := newPeer(t, func(p *peer) { p.welcome.MaxPayloadBytes = 10 })
	n := connect(t, p, nil)
	j := &rejectJob{left: 5}
	if err := n.Run(context.Background(), j, RunOptions{Window: 2}); err != nil {
		t.Fatal(err)
	}
	var rej *RejectError
	if len(j.errs) != 5 || !errors.As(j.errs[4], &rej) || rej.Code != protocol.CodePayloadTooLarge {
		t.Fatalf("outcomes %v", j.errs)
	}
}

func TestRunReconnectsMidJob(t *testing.T) {
	p := newPeer(t, nil)
	r := &recorder{}
	n := connect(t, p, r)
	pc := p.accept(t)
	j := &job{n: 3, finished: make([]int, 3)}
	done := make(chan error, 1)
	go func() { done <- n.Run(context.Background(), j, RunOptions{Window: 10}) }()
	s := pc.submit(t)
	pc.drop()
	pc = p.accept(t)
	// The master had stored the batch and finished it before the node came
	// back: the notification precedes the ack of the re-sent batch. It must
	// reach the job, not TaskFinished.
	fin := make([]protocol.Finished, len(s.Tasks))
	for i, nt := range s.Tasks {
		fin[i] = protocol.Finished{ID: 50 + uint64(i), Kind: nt.Kind, State: protocol.StateDone, Result: nt.Payload}
	}
	pc.send(&protocol.Notify{Tasks: fin})
	if again := pc.submit(t); again.Seq != s.Seq {
		t.Fatalf("re-sent seq %d, want %d", again.Seq, s.Seq)
	}
	pc.send(&protocol.SubmitAck{Seq: s.Seq, FirstID: 50, Count: uint32(len(s.Tasks))})
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not finish")
	}
	if fmt.Sprint(j.finished) != "[1 1 1]" || j.bad.Load() != 0 || len(r.calls()) != 0 {
		t.Fatalf("finished %v, bad %d, TaskFinished %d", j.finished, j.bad.Load(), len(r.calls()))
	}
	if ids := pc.notifyAck(t); fmt.Sprint(ids) != "[50 51 52]" {
		t.Fatalf("ack %v", ids)
	}
}

func TestRunCanceledHandsOverToTaskFinished(t *testing.T) {
	p := newPeer(t, nil)
	r := &recorder{}
	n := connect(t, p, r)
	pc := p.accept(t)
	j := &job{n: 2, finished: make([]int, 2)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx, j, RunOptions{Window: 10}) }()
	s := pc.submit(t)
	pc.send(&protocol.SubmitAck{Seq: s.Seq, FirstID: 1, Count: 2})
	waitFor(t, 10*time.Second, "ids", func() bool {
		n.mu.Lock()
		defer n.mu.Unlock()
		return len(n.inflight) == 2
	})
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v", err)
	}
	pc.send(&protocol.Notify{Tasks: []protocol.Finished{{ID: 1, Kind: "echo", State: protocol.StateDone, Result: []byte("0")}}})
	if ids := pc.notifyAck(t); fmt.Sprint(ids) != "[1]" {
		t.Fatalf("ack %v", ids)
	}
	if got := r.calls(); len(got) != 1 || got[0].task.Value != 0 || j.finished[0] != 0 {
		t.Fatalf("after Run returned: TaskFinished %+v, job %v", got, j.finished)
	}
}

func TestCanceledPushStillReported(t *testing.T) {
	p := newPeer(t, nil)
	r := &recorder{}
	n := connect(t, p, r)
	pc := p.accept(t)
	task := &Task{Kind: "echo", Payload: []byte("late"), Value: 1}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.PushTask(ctx, task) }()
	s := pc.submit(t)
	cancel()
	if err := result(t, done); !errors.Is(err, context.Canceled) {
		t.Fatalf("push = %v, want context.Canceled", err)
	}
	// The master had stored it after all.
	pc.send(&protocol.SubmitAck{Seq: s.Seq, FirstID: 3, Count: 1})
	pc.send(&protocol.Notify{Tasks: []protocol.Finished{{ID: 3, Kind: "echo", State: protocol.StateDone, Result: []byte("late")}}})
	if ids := pc.notifyAck(t); fmt.Sprint(ids) != "[3]" {
		t.Fatalf("ack %v", ids)
	}
	got := r.calls()
	if len(got) != 1 || got[0].task == task || got[0].task.ID != 3 || got[0].task.Value != 1 || task.ID != 0 {
		t.Fatalf("calls %+v: want a copy of the task with its id, the caller's untouched", got)
	}
}
