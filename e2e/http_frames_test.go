package e2e

import (
	"context"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/anthill-project/anthill/appnode"
	"github.com/anthill-project/anthill/internal/testmaster"
	"github.com/anthill-project/anthill/protocol"
)

// httpHostileMaster is the review's fake master: it welcomes any client
// announcing max_frame_bytes 0 ("no limit"), then streams one 64 MiB
// frame at it. Every Error frame a client sends back is reported on got.
type httpHostileMaster struct {
	url string
	got chan string
}

func httpStartHostileMaster(t *testing.T) *httpHostileMaster {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &httpHostileMaster{url: "ws://" + ln.Addr().String(), got: make(chan string, 64)}
	up := websocket.Upgrader{}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		if _, _, err := ws.ReadMessage(); err != nil { // the Hello
			return
		}
		welcome := &protocol.Welcome{Version: protocol.Version, Session: "evil", Dispatch: protocol.DispatchSend,
			HeartbeatMillis: 5000, MaxFrameBytes: 0, MaxPayloadBytes: 1 << 20}
		if err := ws.WriteMessage(websocket.BinaryMessage, protocol.Encode(nil, welcome)); err != nil {
			return
		}
		go func() {
			fw, err := ws.NextWriter(websocket.BinaryMessage)
			if err != nil {
				return
			}
			chunk := make([]byte, 1<<20)
			for i := range chunk {
				chunk[i] = 0xff
			}
			for range 64 {
				if _, err := fw.Write(chunk); err != nil {
					return // the client hung up: what the test wants
				}
			}
			fw.Close()
		}()
		for {
			_, frame, err := ws.ReadMessage()
			if err != nil {
				return
			}
			if msg, err := protocol.Decode(frame); err == nil {
				if e, ok := msg.(*protocol.Error); ok {
					select {
					case h.got <- e.Code:
					default:
					}
				}
			}
		}
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return h
}

// next is the code of the first Error frame a client sent back.
func (h *httpHostileMaster) next(t *testing.T) string {
	t.Helper()
	select {
	case code := <-h.got:
		return code
	case <-time.After(httpFailsafe):
		t.Fatal("no client told the hostile master why it hung up")
		return ""
	}
}

// A master announcing no frame limit cannot make a real slave process or
// an appnode read a 64 MiB frame: each stops at its own cap and says
// frame_too_large (on the old code they read it all, then called it a bad
// frame).
func TestHTTPClientsCapFramesWhateverTheMasterAnnounces(t *testing.T) {
	t.Run("slave", func(t *testing.T) {
		h := httpStartHostileMaster(t)
		startSlave(t, h.url, "victim")
		if code := h.next(t); code != protocol.CodeFrameTooLarge {
			t.Fatalf("the slave answered the 64 MiB frame with %s, want %s", code, protocol.CodeFrameTooLarge)
		}
	})
	t.Run("appnode", func(t *testing.T) {
		h := httpStartHostileMaster(t)
		ctx, cancel := context.WithTimeout(context.Background(), httpFailsafe)
		defer cancel()
		n, err := appnode.Connect(ctx, appnode.Options{Master: h.url, App: "victim", Logger: testmaster.Logger(t), MaxFrame: 4 << 20})
		if err != nil {
			t.Fatal(err)
		}
		defer func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = n.Shutdown(ctx)
		}()
		if code := h.next(t); code != protocol.CodeFrameTooLarge {
			t.Fatalf("the appnode answered the 64 MiB frame with %s, want %s", code, protocol.CodeFrameTooLarge)
		}
	})
}
