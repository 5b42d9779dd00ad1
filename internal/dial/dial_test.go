package dial

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/goleak"

	"github.com/anthill-project/anthill/internal/wire"
	"github.com/anthill-project/anthill/protocol"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// master is a fake master on 127.0.0.1: it reads the Hello, then hands
// the raw socket to answer, which speaks for the master.
type master struct {
	url   string
	hello chan *protocol.Hello
}

func newMaster(t *testing.T, answer func(ws *websocket.Conn)) *master {
	t.Helper()
	m := &master{hello: make(chan *protocol.Hello, 1)}
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		socks  []*websocket.Conn
		closed bool
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		wg.Add(1) // before the upgrade, while srv.Close still waits for us
		defer wg.Done()
		ws, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			t.Errorf("master: upgrade: %v", err)
			return
		}
		defer ws.Close()
		mu.Lock()
		socks = append(socks, ws)
		if closed {
			ws.Close()
		}
		mu.Unlock()
		_, frame, err := ws.ReadMessage()
		if err != nil {
			t.Errorf("master: read hello: %v", err)
			return
		}
		msg, err := protocol.Decode(frame)
		h, ok := msg.(*protocol.Hello)
		if err != nil || !ok {
			t.Errorf("master: first frame %v, %v; want hello", msg, err)
			return
		}
		m.hello <- h
		answer(ws)
	}))
	// net/http forgets hijacked connections: close them ourselves so
	// every answer returns before goleak looks.
	t.Cleanup(func() {
		srv.Close()
		mu.Lock()
		closed = true
		for _, ws := range socks {
			ws.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	m.url = "ws" + strings.TrimPrefix(srv.URL, "http")
	return m
}

func send(t *testing.T, ws *websocket.Conn, msgs ...protocol.Message) {
	t.Helper()
	for _, m := range msgs {
		if err := ws.WriteMessage(websocket.BinaryMessage, protocol.Encode(nil, m)); err != nil {
			t.Errorf("master: send %s: %v", m.Type(), err)
		}
	}
}

// heard is what the client told the master before it closed.
type heard struct {
	msgs      []protocol.Message
	closeCode int // 0: the socket closed without a close frame
}

// listen reads until the client goes.
func listen(ws *websocket.Conn) heard {
	var h heard
	for {
		_, frame, err := ws.ReadMessage()
		if err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				h.closeCode = ce.Code
			}
			return h
		}
		if m, err := protocol.Decode(frame); err == nil {
			h.msgs = append(h.msgs, m)
		}
	}
}

func welcome() *protocol.Welcome {
	return &protocol.Welcome{Version: protocol.Version, Session: "s1", HeartbeatMillis: 1000, MaxFrameBytes: 1 << 10}
}

func hello() *protocol.Hello {
	return &protocol.Hello{Version: protocol.Version, Role: protocol.RoleApp, Name: "test"}
}

func TestOpenReturnsTheWelcomeAndALiveConnection(t *testing.T) {
	m := newMaster(t, func(ws *websocket.Conn) {
		send(t, ws, welcome(), &protocol.Request{N: 7})
		listen(ws)
	})
	c, w, err := Open(context.Background(), m.url, hello(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer HangUp(c)
	if h := <-m.hello; h.Name != "test" || h.Role != protocol.RoleApp || h.Version != protocol.Version {
		t.Errorf("the master got %+v", h)
	}
	if *w != *welcome() {
		t.Errorf("welcome = %+v", w)
	}
	frame, err := c.Read()
	if err != nil {
		t.Fatal(err)
	}
	msg, err := protocol.Decode(frame)
	if r, ok := msg.(*protocol.Request); err != nil || !ok || r.N != 7 {
		t.Fatalf("first frame after the welcome: %v, %v; want request 7", msg, err)
	}
}

func TestRefusals(t *testing.T) {
	future := welcome()
	future.Version = protocol.Version + 1
	for name, tc := range map[string]struct {
		answer protocol.Message
		code   string
		fatal  bool
	}{
		"unauthorized":                {&protocol.Error{Code: protocol.CodeUnauthorized, Message: "bad token"}, protocol.CodeUnauthorized, true},
		"unsupported_version":         {&protocol.Error{Code: protocol.CodeUnsupportedVersion, Message: "v0"}, protocol.CodeUnsupportedVersion, true},
		"bad_handshake":               {&protocol.Error{Code: protocol.CodeBadHandshake, Message: "no name"}, protocol.CodeBadHandshake, true},
		"replaced":                    {&protocol.Error{Code: protocol.CodeReplaced, Message: "newer connection"}, protocol.CodeReplaced, true},
		"shutting_down":               {&protocol.Error{Code: protocol.CodeShuttingDown, Message: "restarting"}, protocol.CodeShuttingDown, false},
		"internal":                    {&protocol.Error{Code: protocol.CodeInternal, Message: "disk"}, protocol.CodeInternal, false},
		"welcome of a future version": {future, protocol.CodeUnsupportedVersion, true},
	} {
		t.Run(name, func(t *testing.T) {
			m := newMaster(t, func(ws *websocket.Conn) { send(t, ws, tc.answer) })
			c, _, err := Open(context.Background(), m.url, hello(), Options{})
			if c != nil {
				t.Fatal("a refused Open returned a connection")
			}
			var re *RefusedError
			var pe *protocol.Error
			if !errors.As(err, &re) || !errors.As(err, &pe) || pe.Code != tc.code {
				t.Fatalf("Open = %v; want a *RefusedError with code %s", err, tc.code)
			}
			if Fatal(err) != tc.fatal {
				t.Errorf("Fatal(%v) = %v", err, !tc.fatal)
			}
			t.Logf("Open: %v", err)
		})
	}
}

func TestFatalOnlyForProtocolErrors(t *testing.T) {
	for _, err := range []error{nil, errors.New(protocol.CodeUnauthorized), context.Canceled} {
		if Fatal(err) {
			t.Errorf("Fatal(%v) = true", err)
		}
	}
}

// A first frame that is not a Welcome or an Error fails the attempt, and
// retrying is allowed: it is not a refusal.
func TestBadFirstFrame(t *testing.T) {
	for name, tc := range map[string]struct {
		answer func(ws *websocket.Conn) error
		want   string
	}{
		"not a welcome": {func(ws *websocket.Conn) error {
			return ws.WriteMessage(websocket.BinaryMessage, protocol.Encode(nil, &protocol.Dispatch{}))
		}, "got dispatch"},
		"text": {func(ws *websocket.Conn) error {
			return ws.WriteMessage(websocket.TextMessage, protocol.Encode(nil, welcome()))
		}, "text frame on a binary protocol"},
		"undecodable": {func(ws *websocket.Conn) error {
			return ws.WriteMessage(websocket.BinaryMessage, []byte{200, 1, 2})
		}, "wait for welcome"},
		"closed": {func(ws *websocket.Conn) error { return ws.Close() }, "wait for welcome"},
	} {
		t.Run(name, func(t *testing.T) {
			m := newMaster(t, func(ws *websocket.Conn) {
				if err := tc.answer(ws); err != nil {
					t.Errorf("master: %v", err)
				}
			})
			_, _, err := Open(context.Background(), m.url, hello(), Options{})
			var re *RefusedError
			if err == nil || errors.As(err, &re) || Fatal(err) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Open = %v; want a retryable error saying %q", err, tc.want)
			}
			t.Logf("Open: %v", err)
		})
	}
}

// The first frame is read with protocol.MaxHandshakeBytes, whatever the
// Welcome then announces.
func TestHandshakeFrameLimit(t *testing.T) {
	padded := func(size int) *protocol.Welcome {
		w := welcome()
		w.Session = ""
		w.Session = strings.Repeat("x", size-len(protocol.Encode(nil, w)))
		return w
	}
	for _, tc := range []struct {
		size int
		ok   bool
	}{{protocol.MaxHandshakeBytes, true}, {protocol.MaxHandshakeBytes + 1, false}} {
		m := newMaster(t, func(ws *websocket.Conn) {
			send(t, ws, padded(tc.size))
			listen(ws)
		})
		c, _, err := Open(context.Background(), m.url, hello(), Options{})
		if tc.ok {
			if err != nil {
				t.Fatalf("a first frame of %d bytes: %v", tc.size, err)
			}
			HangUp(c)
			continue
		}
		if !errors.Is(err, websocket.ErrReadLimit) || Fatal(err) {
			t.Fatalf("a first frame of %d bytes: Open = %v; want a read limit error", tc.size, err)
		}
	}
}

func TestOpenStopsWhenContextEnds(t *testing.T) {
	m := newMaster(t, func(ws *websocket.Conn) { listen(ws) }) // never answers
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-m.hello
		cancel()
	}()
	_, _, err := Open(ctx, m.url, hello(), Options{})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Open = %v; want context.Canceled", err)
	}
}

func TestOpenUnreachable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(srv.Close)
	url := "ws" + strings.TrimPrefix(srv.URL, "http")
	_, _, err := Open(context.Background(), url, hello(), Options{})
	if err == nil || Fatal(err) || !strings.Contains(err.Error(), "HTTP 404") {
		t.Fatalf("Open on a plain HTTP server = %v", err)
	}
	srv.Close()
	if _, _, err := Open(context.Background(), url, hello(), Options{}); err == nil || Fatal(err) {
		t.Fatalf("Open with nothing listening = %v", err)
	}
}

// session opens a connection to a master that sends frames after its
// Welcome and reports what the client told it before closing.
func session(t *testing.T, frames ...[]byte) (*wire.Conn, <-chan heard) {
	t.Helper()
	got := make(chan heard, 1)
	m := newMaster(t, func(ws *websocket.Conn) {
		send(t, ws, welcome())
		for _, f := range frames {
			if err := ws.WriteMessage(websocket.BinaryMessage, f); err != nil {
				t.Errorf("master: %v", err)
			}
		}
		got <- listen(ws)
	})
	c, _, err := Open(context.Background(), m.url, hello(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	return c, got
}

func TestReadLoopHandsMessagesOverInOrder(t *testing.T) {
	c, got := session(t,
		protocol.Encode(nil, &protocol.Request{N: 1}),
		protocol.Encode(nil, &protocol.Request{N: 2}),
		protocol.Encode(nil, &protocol.Error{Code: protocol.CodeShuttingDown, Message: "bye"}))
	var ns []uint32
	err := ReadLoop(c, func(m protocol.Message) error {
		r, ok := m.(*protocol.Request)
		if !ok {
			t.Errorf("handle got %T", m)
			return nil
		}
		ns = append(ns, r.N)
		return nil
	})
	HangUp(c)
	var re *RefusedError
	if !errors.As(err, &re) || re.Err.Code != protocol.CodeShuttingDown || Fatal(err) {
		t.Fatalf("ReadLoop = %v; want the master's shutting_down", err)
	}
	if len(ns) != 2 || ns[0] != 1 || ns[1] != 2 {
		t.Fatalf("handled %v", ns)
	}
	if h := <-got; h.closeCode != websocket.CloseNormalClosure || len(h.msgs) != 0 {
		t.Fatalf("after an Error the client sent %v and closed with %d; want a normal close", h.msgs, h.closeCode)
	}
}

// A frame the client cannot take ends the session with an Error naming
// the fault; the error says why too.
func TestReadLoopRefusesBadFrames(t *testing.T) {
	errUnexpected := errors.New("unexpected request")
	for name, tc := range map[string]struct {
		frame     []byte
		code      string
		closeCode int
		want      error
	}{
		"undecodable": {[]byte{200, 1, 2}, protocol.CodeBadFrame, websocket.CloseUnsupportedData, nil},
		"refused":     {protocol.Encode(nil, &protocol.Request{N: 1}), protocol.CodeBadFrame, websocket.CloseUnsupportedData, errUnexpected},
		"too large":   {make([]byte, welcome().MaxFrameBytes+1), protocol.CodeFrameTooLarge, websocket.CloseMessageTooBig, wire.ErrTooLarge},
	} {
		t.Run(name, func(t *testing.T) {
			c, got := session(t, tc.frame)
			err := ReadLoop(c, func(protocol.Message) error { return errUnexpected })
			HangUp(c)
			if err == nil || Fatal(err) || (tc.want != nil && !errors.Is(err, tc.want)) {
				t.Fatalf("ReadLoop = %v; want a retryable error wrapping %v", err, tc.want)
			}
			t.Logf("ReadLoop: %v", err)
			h := <-got
			if len(h.msgs) != 1 || h.closeCode != tc.closeCode {
				t.Fatalf("the client sent %v and closed with %d; want one Error and %d", h.msgs, h.closeCode, tc.closeCode)
			}
			if e, ok := h.msgs[0].(*protocol.Error); !ok || e.Code != tc.code || e.Message == "" {
				t.Fatalf("the client sent %v; want a %s Error saying why", h.msgs[0], tc.code)
			}
		})
	}
}

func TestReadLoopEndsWhenTheMasterGoes(t *testing.T) {
	got := make(chan struct{})
	m := newMaster(t, func(ws *websocket.Conn) {
		send(t, ws, welcome())
		<-got
	})
	c, _, err := Open(context.Background(), m.url, hello(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	close(got) // the master's handler returns and closes the socket
	err = ReadLoop(c, func(protocol.Message) error { return nil })
	HangUp(c)
	if err == nil || Fatal(err) {
		t.Fatalf("ReadLoop = %v; want a read error", err)
	}
}

func TestBackoffBounds(t *testing.T) {
	lo, hi := 100*time.Millisecond, 10*time.Second
	b := Backoff{Min: lo, Max: hi}
	for n := range 40 {
		ceil := min(lo<<min(n, 20), hi)
		for range 100 {
			c := b // the same attempt, again
			if d := c.Next(); d < ceil/2 || d > ceil {
				t.Fatalf("attempt %d: %v outside [%v, %v]", n, d, ceil/2, ceil)
			}
		}
		b.Next()
	}
	b.Reset()
	if d := b.Next(); d < lo/2 || d > lo {
		t.Fatalf("after Reset: %v outside [%v, %v]", d, lo/2, lo)
	}
}

func TestBackoffEdges(t *testing.T) {
	var zero Backoff
	if d := zero.Next(); d != 0 {
		t.Errorf("the zero Backoff waits %v", d)
	}
	inverted := Backoff{Min: time.Second, Max: time.Millisecond}
	for range 5 {
		if d := inverted.Next(); d < time.Second/2 || d > time.Second {
			t.Fatalf("Max below Min: %v outside [0.5s, 1s]", d)
		}
	}
	huge := Backoff{Min: time.Second, Max: 1<<63 - 1}
	for n := range 100 {
		if d := huge.Next(); d <= 0 {
			t.Fatalf("attempt %d with no practical Max: %v", n, d)
		}
	}
}
