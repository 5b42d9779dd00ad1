package web

import (
	"bytes"
	"compress/flate"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/anthill-project/anthill/internal/testmaster"
	"github.com/anthill-project/anthill/master"
	"github.com/anthill-project/anthill/stats"
)

// BenchmarkLiveUpdate builds and encodes one second's update of the live
// feeds, as the hub does once a second for all of them, for a master that
// has seen 10 and 1,000 slaves: the delta every open feed gets, and the
// delta with the full update a joining (or lagging) feed gets as well.
// Each slave row of a full update carries a minute of sparkline, so it
// grows with the slaves; bytes is the size of the last updates built,
// uncompressed (the delta's and the full one's together), deflated-bytes
// about what a browser that negotiated compression receives.
func BenchmarkLiveUpdate(b *testing.B) {
	for _, n := range []int{10, 1000} {
		for _, full := range []bool{false, true} {
			name := fmt.Sprintf("slaves-%d/delta", n)
			if full {
				name += "+full"
			}
			b.Run(name, func(b *testing.B) {
				var s *Server
				m := testmaster.Start(b, master.Options{NoSync: true}, func(m *master.Master) (err error) {
					s, err = New(m.Scheduler(), Options{Token: "live-update-benchmark-token-0123456789"})
					return err
				})
				b.Cleanup(func() { s.Close() })
				for i := range n {
					m.Metrics().SlaveSeen(fmt.Sprintf("slave-%04d", i), 4).Result(true, time.Millisecond)
				}
				h := newHub(s)
				if _, _, err := h.build(true); err != nil { // the sparklines a delta starts from
					b.Fatal(err)
				}
				var size int
				for b.Loop() {
					delta, fullMsg, err := h.build(full)
					if err != nil {
						b.Fatal(err)
					}
					size = len(delta) + len(fullMsg)
				}
				b.ReportMetric(float64(size), "bytes")
				delta, fullMsg, _ := h.build(full)
				b.ReportMetric(float64(deflated(delta)+deflated(fullMsg)), "deflated-bytes")
			})
		}
	}
}

// BenchmarkLiveFeeds keeps N live feeds open on a master that has seen
// 1,000 busy slaves and measures what each feed costs per second of
// watching, end to end: building, encoding and writing the updates, and
// the process's share of reading them (the feeds are read in this process,
// as a browser would read them, and discarded). One op is one second: one
// update to every feed. cpu-ms/s is this process's CPU time (user and
// system) per second of wall time, the master's own work and the fleet's
// included, so what the feeds cost is the difference from feeds-0;
// bytes/feed/s is the payload of an update as sent, uncompressed (these
// clients do not negotiate compression). The first update of each feed,
// which carries the history, is not counted.
func BenchmarkLiveFeeds(b *testing.B) {
	for _, deflate := range []bool{false, true} {
		for _, feeds := range []int{0, 1, 10, 32} {
			if deflate && feeds == 0 {
				continue
			}
			name := fmt.Sprintf("feeds-%d/slaves-1000", feeds)
			if deflate {
				name += "/deflate"
			}
			b.Run(name, func(b *testing.B) { benchFeeds(b, feeds, 1000, deflate) })
		}
	}
}

func benchFeeds(b *testing.B, feeds, slaves int, deflate bool) {
	var s *Server
	m := testmaster.Start(b, master.Options{NoSync: true}, func(m *master.Master) (err error) {
		s, err = New(m.Scheduler(), Options{Token: "live-update-benchmark-token-0123456789", MaxLive: max(feeds, 1)})
		if err == nil {
			m.Handle("/", s)
		}
		return err
	})
	b.Cleanup(func() { s.Close() })
	// A busy fleet: every slave has a result every quarter second,
	// so every row and every sparkline moves every second.
	hs := make([]*stats.Slave, slaves)
	for i := range hs {
		hs[i] = m.Metrics().SlaveSeen(fmt.Sprintf("slave-%04d", i), 4)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			for _, h := range hs {
				h.Result(true, time.Millisecond)
			}
			select {
			case <-t.C:
			case <-stop:
				return
			}
		}
	})
	defer func() { close(stop); wg.Wait() }()

	hdr := http.Header{"Cookie": {sessionCookie + "=" + s.auth.issue()}}
	var got, size, wire atomic.Int64
	var readers sync.WaitGroup
	dialer := websocket.Dialer{
		EnableCompression: deflate,
		NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			return countingConn{c, &wire}, err
		},
	}
	conns := make([]*websocket.Conn, feeds)
	for i := range conns {
		ws, _, err := dialer.Dial("ws://"+m.Addr().String()+"/ui/live", hdr)
		if err != nil {
			b.Fatal(err)
		}
		conns[i] = ws
		if _, _, err := ws.ReadMessage(); err != nil { // the history
			b.Fatal(err)
		}
	}
	for _, ws := range conns {
		readers.Go(func() {
			for {
				_, r, err := ws.NextReader()
				if err != nil {
					return
				}
				n, _ := io.Copy(io.Discard, r)
				size.Add(n)
				got.Add(1)
			}
		})
	}
	defer func() {
		for _, ws := range conns {
			ws.Close()
		}
		readers.Wait()
	}()
	// Start on a fresh second, the updates before it discarded.
	time.Sleep(time.Second)
	got.Store(0)
	size.Store(0)
	wire.Store(0)
	cpu0, wall0 := cpuTime(), time.Now()
	want := int64(0)
	for b.Loop() {
		if feeds == 0 {
			time.Sleep(time.Second)
			continue
		}
		want += int64(feeds)
		for got.Load() < want {
			time.Sleep(5 * time.Millisecond)
		}
	}
	cpu, wall := cpuTime()-cpu0, time.Since(wall0)
	b.ReportMetric(float64(cpu)/float64(time.Millisecond)/wall.Seconds(), "cpu-ms/s")
	if n := got.Load(); n > 0 {
		b.ReportMetric(float64(size.Load())/float64(n), "bytes/feed/s")
		b.ReportMetric(float64(wire.Load())/float64(n), "wire-bytes/feed/s")
	}
}

// countingConn counts the bytes read from the connection: what a feed
// costs the network, compressed or not.
type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// cpuTime is the CPU time this process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// deflated is the size of b compressed as the WebSocket's permessage-deflate
// does by default (level 1, no context kept between messages).
func deflated(b []byte) int {
	if b == nil {
		return 0
	}
	var buf bytes.Buffer
	w, _ := flate.NewWriter(&buf, 1)
	w.Write(b)
	w.Close()
	return buf.Len()
}
