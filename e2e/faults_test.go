package e2e

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/anthill-project/anthill/appnode"
	"github.com/anthill-project/anthill/internal/testmaster"
	"github.com/anthill-project/anthill/master"
	"github.com/anthill-project/anthill/protocol"
	"github.com/anthill-project/anthill/sandbox"
	"github.com/anthill-project/anthill/slave"
)

// rawPeer dials an endpoint and completes the handshake by hand, so a test
// can then misbehave in ways no real client would. A Hello without a token
// presents the test admin token.
func rawPeer(t *testing.T, url, path string, hello *protocol.Hello) *websocket.Conn {
	t.Helper()
	if hello.Token == "" {
		h := *hello
		h.Token = testmaster.AdminToken
		hello = &h
	}
	ws, _, err := websocket.DefaultDialer.Dial(url+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() })
	if err := ws.WriteMessage(websocket.BinaryMessage, protocol.Encode(nil, hello)); err != nil {
		t.Fatal(err)
	}
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, frame, err := ws.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	if msg, err := protocol.Decode(frame); err != nil || msg.Type() != protocol.TypeWelcome {
		t.Fatalf("handshake: %v %v", msg, err)
	}
	return ws
}

// expectError reads until the master's Error frame and the close.
func expectError(t *testing.T, ws *websocket.Conn, code string) {
	t.Helper()
	var got *protocol.Error
	for {
		_, frame, err := ws.ReadMessage()
		if err != nil {
			break
		}
		if msg, err := protocol.Decode(frame); err == nil {
			if e, ok := msg.(*protocol.Error); ok {
				got = e
			}
		}
	}
	if got == nil || got.Code != code {
		t.Fatalf("got error frame %+v, want code %s", got, code)
	}
}

var slaveHello = &protocol.Hello{Version: protocol.Version, Role: protocol.RoleSlave, Name: "evil",
	Kinds: []string{"echo"}, Concurrency: 1}

// slaveHelloWith is slaveHello presenting token.
func slaveHelloWith(token string) *protocol.Hello {
	h := *slaveHello
	h.Token = token
	return &h
}

// A malformed, unknown or oversized frame closes that one connection with
// an Error saying why; everybody else carries on and nothing is lost.
func TestBadFramesCloseOnlyThatConnection(t *testing.T) {
	m := startMaster(t, master.Options{MaxFrame: 64 << 10, MaxPayload: 1 << 10})
	startSlave(t, m.URL(), "good")
	c := newCollector()
	app := connect(t, m.URL(), "bystander", c)

	cases := []struct {
		name, path string
		hello      *protocol.Hello
		frame      []byte
		code       string
	}{
		{"garbage from a slave", "/ws/slave", slaveHello, []byte{byte(protocol.TypeResults), 0xff}, protocol.CodeBadFrame},
		{"unknown type from a slave", "/ws/slave", slaveHello, []byte{99, 1, 2, 3}, protocol.CodeBadFrame},
		{"app message from a slave", "/ws/slave", slaveHello, protocol.Encode(nil, &protocol.Submit{Seq: 1}), protocol.CodeBadFrame},
		{"a held module that is no hash", "/ws/slave", slaveHello, protocol.Encode(nil, &protocol.Modules{Held: []string{"../../etc/passwd"}}), protocol.CodeBadFrame},
		{"more held modules than allowed", "/ws/slave", slaveHello, protocol.Encode(nil, &protocol.Modules{Held: make([]string, protocol.MaxHeld+1)}), protocol.CodeBadFrame},
		{"oversized frame from a slave", "/ws/slave", slaveHello, make([]byte, 65<<10), protocol.CodeFrameTooLarge},
		{"garbage from an app", "/ws/app", &protocol.Hello{Version: protocol.Version, Role: protocol.RoleApp, Name: "evil-app"},
			[]byte{byte(protocol.TypeSubmit), 1, 0xff, 0xff, 0xff, 0xff, 0x0f}, protocol.CodeBadFrame},
		{"oversized frame from an app", "/ws/app", &protocol.Hello{Version: protocol.Version, Role: protocol.RoleApp, Name: "evil-app"},
			make([]byte, 65<<10), protocol.CodeFrameTooLarge},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// Work in flight on the good connections while the bad one fails.
			tasks := echoTasks(100)
			push(t, app, tasks[:50]...)
			ws := rawPeer(t, m.URL(), tc.path, tc.hello)
			if err := ws.WriteMessage(websocket.BinaryMessage, tc.frame); err != nil {
				t.Fatal(err)
			}
			expectError(t, ws, tc.code)
			push(t, app, tasks[50:]...)
			waitFor(t, 30*time.Second, "bystander results", func() bool {
				for _, task := range tasks {
					if _, ok := c.get(task.ID); !ok {
						return false
					}
				}
				return true
			})
		})
	}
	if d := c.duplicates(); len(d) > 0 {
		t.Fatalf("duplicates: %v", d)
	}
}

func TestHandshakeRefusals(t *testing.T) {
	m := startMaster(t, master.Options{})
	for _, tc := range []struct {
		name  string
		path  string
		hello *protocol.Hello
		code  string
	}{
		{"old protocol", "/ws/slave", &protocol.Hello{Version: 0, Role: protocol.RoleSlave, Name: "x", Kinds: []string{"echo"}, Concurrency: 1}, protocol.CodeUnsupportedVersion},
		{"slave on the app endpoint", "/ws/app", slaveHello, protocol.CodeBadHandshake},
		{"slave with no kinds", "/ws/slave", &protocol.Hello{Version: protocol.Version, Role: protocol.RoleSlave, Name: "x", Concurrency: 1}, protocol.CodeBadHandshake},
		{"protocol version 3", "/ws/slave", &protocol.Hello{Version: 3, Role: protocol.RoleSlave, Name: "x", Kinds: []string{"echo"}, Concurrency: 1}, protocol.CodeUnsupportedVersion},
		{"a kind with a NUL byte", "/ws/slave", &protocol.Hello{Version: protocol.Version, Role: protocol.RoleSlave, Name: "x", Kinds: []string{"\x00wasm/x"}, Concurrency: 1}, protocol.CodeBadHandshake},
		{"a held module that is no hash", "/ws/slave", &protocol.Hello{Version: protocol.Version, Role: protocol.RoleSlave, Name: "x", Kinds: []string{"wasm"}, Concurrency: 1, Modules: []string{"abc"}}, protocol.CodeBadHandshake},
		{"a trust key that is no key", "/ws/slave", &protocol.Hello{Version: protocol.Version, Role: protocol.RoleSlave, Name: "x", Kinds: []string{"wasm"}, Concurrency: 1, TrustKeys: []string{"not-a-key"}}, protocol.CodeBadHandshake},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ws, _, err := websocket.DefaultDialer.Dial(m.URL()+tc.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer ws.Close()
			_ = ws.WriteMessage(websocket.BinaryMessage, protocol.Encode(nil, tc.hello))
			expectError(t, ws, tc.code)
		})
	}
	// The app library reports a refusal as a clear error.
	_, err := appnode.Connect(context.Background(), appnode.Options{Master: m.URL(), App: strings.Repeat("x", 500)})
	if err == nil {
		t.Fatal("an app id of 500 bytes was accepted")
	}
}

// A user task that panics becomes an error result; the slave survives and
// runs the next task. The slave here is the slave package in-process, so
// the test can register a kind that panics.
func TestPanickingTaskBecomesError(t *testing.T) {
	m := startMaster(t, master.Options{RetryBackoff: time.Millisecond})
	reg := sandbox.NewRegistry()
	slave.RegisterBuiltins(reg)
	reg.Register("explode", func(context.Context, []byte) ([]byte, error) {
		var m map[string]int
		m["boom"]++ // nil map write: a real runtime panic
		return nil, nil
	})
	s, err := slave.New(slave.Options{Master: m.URL(), Name: "brave", Token: testmaster.AdminToken, Registry: reg, Concurrency: 2, Logger: testmaster.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("slave run: %v", err)
		}
	}()

	c := newCollector()
	app := connect(t, m.URL(), "panics", c)
	bad := &appnode.Task{Kind: "explode", MaxAttempts: 2}
	good := &appnode.Task{Kind: "echo", Payload: []byte("still alive")}
	push(t, app, bad)
	waitFor(t, 30*time.Second, "panic result", func() bool { _, ok := c.get(bad.ID); return ok })
	push(t, app, good)
	waitFor(t, 30*time.Second, "next result", func() bool { _, ok := c.get(good.ID); return ok })

	o, _ := c.get(bad.ID)
	var te *appnode.TaskError
	if !errors.As(o.err, &te) || !strings.Contains(te.Message, "panic") || te.Attempts != 2 {
		t.Fatalf("panic outcome: %v", o.err)
	}
	if o, _ := c.get(good.ID); string(o.result) != "still alive" {
		t.Fatalf("after the panic: %q %v", o.result, o.err)
	}
	if st := m.Scheduler().Stats(); len(st.Slaves) != 1 || st.Slaves[0].Name != "brave" {
		t.Fatalf("the slave did not stay connected: %+v", st.Slaves)
	}
}

// SIGTERM makes a slave hand back what it has not started, finish what
// runs, and exit 0; no attempt is spent on the returned tasks.
func TestSlaveGracefulShutdown(t *testing.T) {
	m := startMaster(t, master.Options{})
	leaving := startSlave(t, m.URL(), "leaving", "--concurrency", "2", "--prefetch", "20")
	waitSlaves(t, m, 1)
	c := newCollector()
	app := connect(t, m.URL(), "graceful", c)
	// Enough tasks to outlast the slow start: the window reaches 22 after
	// 20 results.
	tasks := make([]*appnode.Task, 60)
	for i := range tasks {
		tasks[i] = &appnode.Task{Kind: "sleep", Payload: []byte("100"), MaxAttempts: 1}
	}
	push(t, app, tasks...)
	waitFor(t, 20*time.Second, "a full window", func() bool {
		st := m.Scheduler().Stats()
		return len(st.Slaves) == 1 && st.Slaves[0].Running == 22
	})
	leaving.stop(t)
	if leaving.err != nil {
		t.Fatalf("slave exit: %v", leaving.err)
	}
	startSlave(t, m.URL(), "staying", "--concurrency", "8")
	waitFor(t, 60*time.Second, "all tasks", func() bool { return c.len() == len(tasks) })
	for _, task := range tasks {
		// MaxAttempts is 1: a returned task that cost an attempt would fail.
		if o, _ := c.get(task.ID); o.err != nil {
			t.Fatalf("task %d: %v", task.ID, o.err)
		}
	}
}
