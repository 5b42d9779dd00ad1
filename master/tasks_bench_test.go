package master

import (
	"context"
	"fmt"
	"testing"

	"github.com/anthill-project/anthill/protocol"
)

// BenchmarkTasks lists pages of a store of 100,000 tasks, one in a thousand
// canceled and the rest waiting, as the dashboard and Tasks.List do. Waiting
// tasks are live, so each is copied under the master's lock: the time per
// call bounds how long dispatch may wait behind an operator paging.
func BenchmarkTasks(b *testing.B) {
	m := newMaster(b, b.TempDir(), Options{NoSync: true})
	batch := make([]protocol.NewTask, 1000)
	for i := range batch {
		batch[i] = protocol.NewTask{Kind: "echo", Payload: []byte(fmt.Sprintf("payload-%d", i))}
	}
	for range 100 {
		first, err := m.Submit(context.Background(), "bench", batch)
		if err != nil {
			b.Fatal(err)
		}
		if err := m.Cancel(first + 500); err != nil {
			b.Fatal(err)
		}
	}
	for _, bc := range []struct {
		name string
		f    TaskFilter
	}{
		{"page-50", TaskFilter{Limit: 50, Desc: true}},
		{"canceled-1000", TaskFilter{State: protocol.StateCanceled, Limit: 1000}},
		{"app-mismatch-1000", TaskFilter{App: "nobody", Limit: 1000}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				if _, _, err := m.Tasks(bc.f); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
