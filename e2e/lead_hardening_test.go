package e2e

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/anthill-project/anthill/appnode"
	"github.com/anthill-project/anthill/master"
	"github.com/anthill-project/anthill/protocol"
)

// Review L5: option values that once panicked a connection handler (and
// left a ghost slave), put a huge timeout on the wire, or made a task
// retry forever are refused at startup, naming the option.
func TestMasterRefusesNonsensicalOptions(t *testing.T) {
	for _, tc := range []struct {
		flag, value, want string
	}{
		{"--retry-backoff", "-1s", "retry backoff"},
		{"--default-timeout", "-5s", "default timeout"},
		{"--default-attempts", "-1", "default attempts"},
		{"--lease-grace", "-1s", "lease grace"},
	} {
		t.Run(tc.flag, func(t *testing.T) {
			// A master that accepts the value serves until killed.
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, bin, "master", "--data", t.TempDir(), "--listen", "127.0.0.1:0", tc.flag, tc.value).CombinedOutput()
			if ctx.Err() != nil {
				t.Fatalf("anthill master %s %s started: %s", tc.flag, tc.value, out)
			}
			if err == nil || !strings.Contains(string(out), tc.want) {
				t.Fatalf("anthill master %s %s: %v, output %q; want a failure naming %q", tc.flag, tc.value, err, out, tc.want)
			}
		})
	}
}

// Review L6: the protocol is binary; a Hello in a text frame is refused
// like any other bad handshake.
func TestTextFrameHelloIsRefused(t *testing.T) {
	m := startMaster(t, master.Options{})
	ws, _, err := websocket.DefaultDialer.Dial(m.URL()+"/ws/slave", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	if err := ws.WriteMessage(websocket.TextMessage, protocol.Encode(nil, slaveHello)); err != nil {
		t.Fatal(err)
	}
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second)) // an accepted hello would stay open
	expectError(t, ws, protocol.CodeBadHandshake)
}

// Review L6: an application "acknowledging" another application's task,
// or an unfinished one, is not told its acknowledgement took effect. The
// second ack, of an id the master does not know, is confirmed; commits
// are answered in order, so had the first been confirmed it would arrive
// first.
func TestNotifyDoneConfirmsNothingOfAnotherApp(t *testing.T) {
	m := startMaster(t, master.Options{})
	victim := connect(t, m.URL(), "victim", newCollector())
	task := &appnode.Task{Kind: "no-slave-runs-this", Payload: []byte("x")}
	push(t, victim, task)

	ws := rawPeer(t, m.URL(), "/ws/app", &protocol.Hello{Version: protocol.Version, Role: protocol.RoleApp, Name: "intruder"})
	for _, ids := range [][]uint64{{task.ID}, {1}} {
		if err := ws.WriteMessage(websocket.BinaryMessage, protocol.Encode(nil, &protocol.IDs{T: protocol.TypeNotifyAck, IDs: ids})); err != nil {
			t.Fatal(err)
		}
	}
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		_, frame, err := ws.ReadMessage()
		if err != nil {
			t.Fatalf("no notify_done: %v", err)
		}
		msg, err := protocol.Decode(frame)
		if err != nil {
			t.Fatal(err)
		}
		if ids, ok := msg.(*protocol.IDs); ok && ids.T == protocol.TypeNotifyDone {
			if len(ids.IDs) != 1 || ids.IDs[0] != 1 {
				t.Fatalf("the intruder got notify_done %v; want only [1]", ids.IDs)
			}
			break
		}
	}
	info, err := m.Scheduler().Task(task.ID)
	if err != nil || info.State != protocol.StatePending {
		t.Fatalf("the victim's task after the intruder's ack: %+v, %v", info, err)
	}
}
