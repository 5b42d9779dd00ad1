package slave

import (
	"context"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/anthill-project/anthill/protocol"
)

// BenchmarkEcho measures a slave's throughput on no-op echo tasks against a
// peer that keeps its window full, as the master's sending pattern does.
// Tasks carry a timeout, as every task from the master does.
func BenchmarkEcho(b *testing.B) {
	const prefetch = 2048
	n := b.N
	done := make(chan int, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		if _, _, err := ws.ReadMessage(); err != nil {
			return
		}
		send := func(m protocol.Message) error {
			return ws.WriteMessage(websocket.BinaryMessage, protocol.Encode(nil, m))
		}
		if send(welcome(protocol.DispatchSend)) != nil {
			return
		}
		next, got, frames := 0, 0, 0
		fill := func(k int) error {
			var d protocol.Dispatch
			for ; k > 0 && next < n; k-- {
				next++
				d.Tasks = append(d.Tasks, protocol.Task{ID: uint64(next), Attempt: 1, Kind: "echo", Timeout: time.Minute, Payload: []byte("payload!")})
			}
			if len(d.Tasks) == 0 {
				return nil
			}
			return send(&d)
		}
		if fill(runtime.NumCPU()+prefetch) != nil {
			return
		}
		for got < n {
			_, frame, err := ws.ReadMessage()
			if err != nil {
				return
			}
			m, err := protocol.Decode(frame)
			if err != nil {
				b.Error(err)
				return
			}
			if rs, ok := m.(*protocol.Results); ok {
				got += len(rs.Results)
				frames++
				if fill(len(rs.Results)) != nil {
					return
				}
			}
		}
		done <- frames
		for { // until the slave closes
			if _, _, err := ws.ReadMessage(); err != nil {
				return
			}
		}
	}))
	defer srv.Close()
	s, err := New(Options{Master: srv.URL, Registry: builtins(), Prefetch: prefetch})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	b.ResetTimer()
	go func() { errc <- s.Run(ctx) }()
	frames := <-done
	b.StopTimer()
	cancel()
	if err := <-errc; err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "tasks/s")
	b.ReportMetric(float64(n)/float64(frames), "results/frame")
}
