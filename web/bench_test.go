package web_test

import (
	"fmt"
	"io"
	"net/http"
	"testing"

	"github.com/anthill-project/anthill/protocol"
	"github.com/anthill-project/anthill/web"
)

// BenchmarkTaskPage serves pages of the tasks list over HTTP from a store
// of 100,000 tasks, one in a thousand canceled: the cost of an operator
// paging through a big job on the dashboard.
func BenchmarkTaskPage(b *testing.B) {
	e := newEnv(b, web.Options{})
	const n = 100_000
	batch := make([]protocol.NewTask, 1000)
	for i := range batch {
		batch[i] = protocol.NewTask{Kind: "echo", Payload: []byte(fmt.Sprintf("payload-%d", i))}
	}
	var first uint64
	for i := 0; i < n/len(batch); i++ {
		id := e.submit("bench", batch...)
		if i == 0 {
			first = id
		}
		if err := e.m.Scheduler().Cancel(id + 500); err != nil {
			b.Fatal(err)
		}
	}
	c := e.client()
	e.login(c)
	for _, bc := range []struct{ name, q string }{
		{"newest", "limit=50"},
		{"deep", fmt.Sprintf("limit=50&order=asc&cursor=%d", first+90_000)},
		{"sparse-filter", "limit=50&state=canceled"},
		{"no-such-app", "limit=50&app=nobody"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				resp, err := c.Get(e.base + "/ui/tasks?" + bc.q)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					b.Fatal(resp.Status)
				}
			}
		})
	}
}
