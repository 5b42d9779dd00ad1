package web

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/anthill-project/anthill/master"
)

// BenchmarkLiveUpdate builds and encodes one second's update of a live feed,
// as each open dashboard does every second, for a master that has seen 10
// and 1,000 slaves. Each slave row carries a minute of sparkline, so the
// update grows with the slaves; bytes is its size on the wire.
func BenchmarkLiveUpdate(b *testing.B) {
	for _, n := range []int{10, 1000} {
		b.Run(fmt.Sprintf("slaves-%d", n), func(b *testing.B) {
			m, err := master.New(master.Options{Listen: "127.0.0.1:0", Data: b.TempDir(), NoSync: true})
			if err != nil {
				b.Fatal(err)
			}
			s, err := New(m.Scheduler(), Options{Token: "live-update-benchmark-token-0123456789"})
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- m.Run(ctx) }()
			defer func() {
				cancel()
				if err := <-done; err != nil {
					b.Error(err)
				}
				s.Close()
			}()
			for i := range n {
				m.Metrics().SlaveSeen(fmt.Sprintf("slave-%04d", i), 4).Result(true, time.Millisecond)
			}
			var size int
			for b.Loop() {
				buf, err := json.Marshal(s.snapshot(time.Now().Add(-time.Second), false))
				if err != nil {
					b.Fatal(err)
				}
				size = len(buf)
			}
			b.ReportMetric(float64(size), "bytes")
		})
	}
}
