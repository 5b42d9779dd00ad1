package appnode

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anthill-project/anthill/internal/dial"
	"github.com/anthill-project/anthill/internal/wire"
	"github.com/anthill-project/anthill/protocol"
)

// A session that ended in a way the next one will repeat at once keeps
// the reconnect backoff growing; any other resets it.
func TestDoomedSessions(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("read: %w: more than 10 bytes", wire.ErrTooLarge), true},
		{&dial.RefusedError{Err: &protocol.Error{Code: protocol.CodeQuotaExceeded, Message: "max-apps is 3"}}, true},
		{&dial.RefusedError{Err: &protocol.Error{Code: protocol.CodeShuttingDown}}, false},
		{fmt.Errorf("connection reset"), false},
		{nil, false},
	} {
		if got := doomed(tc.err); got != tc.want {
			t.Errorf("doomed(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// lines is a log that a test can search.
type lines struct {
	t  *testing.T
	mu sync.Mutex
	s  []string
}

func (l *lines) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.s = append(l.s, string(b))
	l.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

func (l *lines) has(sub string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range l.s {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// M3: a master that sends a notification over the node's frame limit gets
// a clear error in the log, not a silent reconnect loop, and the node
// keeps serving: once the master sends what fits, the task is finished.
func TestOversizedNotifyIsReportedAndSurvived(t *testing.T) {
	p := newPeer(t, func(p *peer) { p.welcome.MaxFrameBytes = 1024 })
	log := &lines{t: t}
	r := &recorder{}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n, err := Connect(ctx, Options{Master: p.url(), App: "test-app", TaskFinished: r.finished,
		Logger:       slog.New(slog.NewTextHandler(log, nil)),
		ReconnectMin: time.Millisecond, ReconnectMax: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { shutdown(t, n) })
	pc := p.accept(t)
	task := &Task{Kind: "echo", Payload: []byte("p")}
	done := push(n, task)
	s := pc.submit(t)
	pc.send(&protocol.SubmitAck{Seq: s.Seq, FirstID: 9, Count: 1})
	if err := result(t, done); err != nil {
		t.Fatal(err)
	}
	pc.send(&protocol.Notify{Tasks: []protocol.Finished{{ID: 9, Kind: "echo", State: protocol.StateDone, Result: make([]byte, 2048)}}})
	pc = p.accept(t)
	if !log.has("the master sent a frame over this node's limit") {
		t.Fatal("no clear error for the oversized frame")
	}
	pc.send(&protocol.Notify{Tasks: []protocol.Finished{{ID: 9, Kind: "echo", State: protocol.StateFailed, Err: "too large"}}})
	if ids := pc.notifyAck(t); fmt.Sprint(ids) != "[9]" {
		t.Fatalf("ack %v", ids)
	}
	if got := r.calls(); len(got) != 1 || got[0].err == nil {
		t.Fatalf("calls %+v", got)
	}
}

// A master announces how many tasks it takes in one submit: a larger push
// is refused before it is sent, as the master would refuse it.
func TestPushOverAnnouncedSubmitCap(t *testing.T) {
	p := newPeer(t, func(p *peer) { p.welcome.MaxSubmitTasks = 2 })
	n := connect(t, p, nil)
	pc := p.accept(t)
	err := n.PushTasks(context.Background(), []*Task{{Kind: "echo"}, {Kind: "echo"}, {Kind: "echo"}})
	var rej *RejectError
	if !errors.As(err, &rej) || rej.Index != -1 || rej.Code != protocol.CodeQuotaExceeded || !strings.Contains(rej.Message, "at most 2") {
		t.Fatalf("push of 3: %v", err)
	}
	done := push(n, &Task{Kind: "echo"}, &Task{Kind: "echo"})
	s := pc.submit(t)
	if len(s.Tasks) != 2 {
		t.Fatalf("submit of %d tasks", len(s.Tasks))
	}
	pc.send(&protocol.SubmitAck{Seq: s.Seq, FirstID: 1, Count: 2})
	if err := result(t, done); err != nil {
		t.Fatal(err)
	}
}

// A task's module travels in its NewTask, and names the kind when the
// task gives none.
func TestNewTaskCarriesModule(t *testing.T) {
	h := strings.Repeat("ab", 32)
	nt, rej := newTask(0, &Task{Module: h})
	if rej != nil || nt.Module != h {
		t.Fatalf("newTask: %+v %v", nt, rej)
	}
	nts := []protocol.NewTask{nt}
	if te := protocol.CheckBatch(nts, 0, 0); te != nil || nts[0].Kind != protocol.KindWASM {
		t.Fatalf("checked: %+v %v", nts[0], te)
	}
}
