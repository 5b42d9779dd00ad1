package web

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/anthill-project/anthill/internal/testmaster"
	"github.com/anthill-project/anthill/master"
)

// BenchmarkLiveUpdate builds and encodes one second's update of a live feed,
// as each open dashboard does every second, for a master that has seen 10
// and 1,000 slaves. Each slave row carries a minute of sparkline, so the
// update grows with the slaves; bytes is its size on the wire.
func BenchmarkLiveUpdate(b *testing.B) {
	for _, n := range []int{10, 1000} {
		b.Run(fmt.Sprintf("slaves-%d", n), func(b *testing.B) {
			var s *Server
			m := testmaster.Start(b, master.Options{NoSync: true}, func(m *master.Master) (err error) {
				s, err = New(m.Scheduler(), Options{Token: "live-update-benchmark-token-0123456789"})
				return err
			})
			b.Cleanup(func() { s.Close() })
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
