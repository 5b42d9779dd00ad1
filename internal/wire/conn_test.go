package wire

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// pair returns a client Conn and the server's raw socket.
func pair(t *testing.T, heartbeat time.Duration, queue int) (*Conn, *websocket.Conn) {
	t.Helper()
	srvConn := make(chan *websocket.Conn, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			t.Error(err)
			return
		}
		srvConn <- ws
	}))
	t.Cleanup(srv.Close)
	ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	c := New(ws, heartbeat, queue)
	peer := <-srvConn
	t.Cleanup(func() {
		c.Close()
		peer.Close()
		c.Wait()
	})
	return c, peer
}

func TestSendReadAndClose(t *testing.T) {
	c, peer := pair(t, time.Second, 8)
	if !c.Send([]byte{1, 2, 3}) {
		t.Fatal("send refused")
	}
	if _, b, err := peer.ReadMessage(); err != nil || string(b) != "\x01\x02\x03" {
		t.Fatalf("peer got %v %v", b, err)
	}
	if err := peer.WriteMessage(websocket.BinaryMessage, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	if b, err := c.Read(); err != nil || string(b) != "hi" {
		t.Fatalf("read %q %v", b, err)
	}
	// The last message goes out before the close frame, with the code.
	c.CloseWith([]byte("bye"), websocket.CloseGoingAway, "stopping")
	if _, b, err := peer.ReadMessage(); err != nil || string(b) != "bye" {
		t.Fatalf("last message %q %v", b, err)
	}
	_, _, err := peer.ReadMessage()
	if !websocket.IsCloseError(err, websocket.CloseGoingAway) {
		t.Fatalf("close: %v", err)
	}
	if c.Send([]byte{1}) {
		t.Fatal("send accepted after close")
	}
	if err := c.SendWait(context.Background(), []byte{1}); !errors.Is(err, ErrClosed) {
		t.Fatalf("SendWait after close: %v", err)
	}
}

func TestReadLimit(t *testing.T) {
	c, peer := pair(t, time.Second, 8)
	c.SetReadLimit(10)
	_ = peer.WriteMessage(websocket.BinaryMessage, make([]byte, 10))
	if b, err := c.Read(); err != nil || len(b) != 10 {
		t.Fatalf("frame at the limit: %d %v", len(b), err)
	}
	_ = peer.WriteMessage(websocket.BinaryMessage, make([]byte, 11))
	if _, err := c.Read(); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("frame over the limit: %v", err)
	}
}

func TestTextFrameRefused(t *testing.T) {
	c, peer := pair(t, time.Second, 8)
	_ = peer.WriteMessage(websocket.TextMessage, []byte("{}"))
	if _, err := c.Read(); err == nil {
		t.Fatal("text frame accepted")
	}
}

// A full queue is reported at once rather than blocking the caller: the
// master must never wait on a slow peer.
func TestSendNeverBlocks(t *testing.T) {
	c, _ := pair(t, time.Second, 1)
	big := make([]byte, 4<<20) // the peer never reads: writes back up
	refused := false
	for i := 0; i < 1000 && !refused; i++ {
		refused = !c.Send(big)
	}
	if !refused {
		t.Fatal("Send accepted 1000 frames of 4 MiB that nobody reads")
	}
}

// A peer that stops answering pings is detected within two heartbeats.
func TestSilentPeerTimesOut(t *testing.T) {
	c, peer := pair(t, 50*time.Millisecond, 8)
	peer.SetPingHandler(func(string) error { return nil }) // swallow pings, never pong
	go func() {
		for {
			if _, _, err := peer.ReadMessage(); err != nil {
				return
			}
		}
	}()
	if _, err := c.Read(); err == nil {
		t.Fatal("read from a silent peer succeeded")
	}
}

// H3: a peer that does not read pins at most the queue's bytes, however
// many frames the count would allow; what the writer took off the queue
// no longer counts.
func TestSendQueueBoundedInBytes(t *testing.T) {
	c, _ := pair(t, time.Second, 1024)
	const limit = 1 << 20
	c.SetQueueBytes(limit)
	frame := make([]byte, 64<<10)
	sent := 0
	for i := 0; i < 1024 && c.Send(frame); i++ {
		sent++
		if q := c.QueuedBytes(); q > limit {
			t.Fatalf("%d bytes queued, over the bound of %d", q, limit)
		}
	}
	// The peer never reads: whatever the socket absorbed, the rest stops
	// at the bound, far below the 1024 frames (64 MiB) the count allows.
	if sent == 1024 {
		t.Fatalf("Send accepted all %d frames of %d bytes that nobody reads", sent, len(frame))
	}
}

// A frame larger than the bound still goes out when nothing waits, so a
// bound below the frame limit cannot stall a connection for good.
func TestSendQueueTakesOneLargeFrame(t *testing.T) {
	c, peer := pair(t, time.Second, 8)
	c.SetQueueBytes(10)
	if !c.Send(make([]byte, 100)) {
		t.Fatal("a lone frame over the bound was refused")
	}
	if _, b, err := peer.ReadMessage(); err != nil || len(b) != 100 {
		t.Fatalf("peer got %d bytes, %v", len(b), err)
	}
	waitQueued(t, c, 0)
}

func waitQueued(t *testing.T, c *Conn, want int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for c.QueuedBytes() != want {
		if time.Now().After(deadline) {
			t.Fatalf("%d bytes queued, want %d", c.QueuedBytes(), want)
		}
		time.Sleep(time.Millisecond)
	}
}
