package master

import (
	"errors"
	"regexp"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/anthill-project/anthill/protocol"
)

// FuzzHandshake sends one frame as the first of a connection to a real
// master, on the slave or the app endpoint. Whatever the frame, the master
// answers with a Welcome or an Error with a code, or closes; it welcomes
// only a Hello within the contract's limits; and it keeps serving. The
// seed corpus (testdata/fuzz/FuzzHandshake and the seeds below) runs with
// go test.
func FuzzHandshake(f *testing.F) {
	good := protocol.Encode(nil, &protocol.Hello{Version: protocol.Version, Role: protocol.RoleSlave, Name: "s",
		Kinds: []string{"k"}, Concurrency: 1})
	f.Add(good, true)
	f.Add(protocol.Encode(nil, appHello("a")), false)
	f.Add(protocol.Encode(nil, &protocol.Hello{Version: protocol.Version - 1, Role: protocol.RoleSlave, Name: "old", Kinds: []string{"k"}, Concurrency: 1}), true)
	f.Add(protocol.Encode(nil, &protocol.Results{Results: []protocol.Result{{ID: 1, Attempt: 1, Lease: 2}}}), true)
	f.Add([]byte{}, false)

	m := newMaster(f, f.TempDir(), Options{})
	code := regexp.MustCompile(`^[a-z_]+$`)
	f.Fuzz(func(t *testing.T, frame []byte, slave bool) {
		path, role := "/ws/app", protocol.RoleApp
		if slave {
			path, role = "/ws/slave", protocol.RoleSlave
		}
		ws, _, err := websocket.DefaultDialer.Dial(m.URL()+path, nil)
		if err != nil {
			t.Fatalf("the master stopped serving: %v", err)
		}
		defer ws.Close()
		if err := ws.WriteMessage(websocket.BinaryMessage, frame); err != nil {
			return // closed already: a frame over the handshake limit
		}
		_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, reply, err := ws.ReadMessage()
		if err != nil {
			var ce *websocket.CloseError
			if !errors.As(err, &ce) {
				t.Fatalf("no answer and no close frame: %v", err)
			}
			return
		}
		msg, err := protocol.Decode(reply)
		if err != nil {
			t.Fatalf("undecodable answer: %v", err)
		}
		switch msg := msg.(type) {
		case *protocol.Error:
			if !code.MatchString(msg.Code) {
				t.Fatalf("refusal without a code: %+v", msg)
			}
		case *protocol.Welcome:
			sent, err := protocol.Decode(frame)
			h, ok := sent.(*protocol.Hello)
			if err != nil || !ok {
				t.Fatalf("welcomed %q, which is no Hello (%v)", frame, err)
			}
			if h.Version != protocol.Version || h.Role != role || h.Name == "" || len(h.Name) > protocol.MaxNameBytes {
				t.Fatalf("welcomed %+v on %s", h, path)
			}
			if slave && (len(h.Kinds) == 0 || len(h.Kinds) > protocol.MaxKinds || h.Concurrency < 1 ||
				h.Concurrency > protocol.MaxConcurrency || h.Prefetch < 0 || h.Prefetch > protocol.MaxPrefetch) {
				t.Fatalf("welcomed a slave outside the limits: %+v", h)
			}
		default:
			t.Fatalf("answered a handshake with %T", msg)
		}
	})
}

// A slave of protocol version 1, which knows no leases, is refused: it
// could only send results the master would reject.
func TestFenceVersion1SlaveIsRefused(t *testing.T) {
	m := newMaster(t, t.TempDir(), Options{})
	p := open(t, m, "/ws/slave")
	p.send(&protocol.Hello{Version: 1, Role: protocol.RoleSlave, Name: "old", Kinds: []string{"k"}, Concurrency: 1})
	if e := readAs[*protocol.Error](p); e.Code != protocol.CodeUnsupportedVersion {
		t.Fatalf("refused with %+v", e)
	}
}
