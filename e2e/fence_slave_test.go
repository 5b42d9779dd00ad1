package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/anthill-project/anthill/appnode"
	"github.com/anthill-project/anthill/master"
)

// The stock slave keeps within the master's --max-result itself: an
// output over it fails the attempt with a message saying so, and the
// honest slave is not held to have sent a rejected result.
func TestFenceStockSlaveKeepsWithinMaxResult(t *testing.T) {
	m := startMaster(t, master.Options{MaxResult: 64})
	c := newCollector()
	app := connect(t, m.URL(), "bounded", c)
	big := &appnode.Task{Kind: "echo", Payload: make([]byte, 100), MaxAttempts: 1}
	small := &appnode.Task{Kind: "echo", Payload: []byte("fits")}
	push(t, app, big, small)
	startSlave(t, m.URL(), "honest")
	waitFor(t, 30*time.Second, "both tasks", func() bool { return c.len() == 2 })
	if o, _ := c.get(big.ID); o.err == nil || !strings.Contains(o.err.Error(), "result of 100 bytes exceeds the master's limit of 64") {
		t.Fatalf("oversized echo: %q %v", o.result, o.err)
	}
	if o, _ := c.get(small.ID); o.err != nil || string(o.result) != "fits" {
		t.Fatalf("small echo: %q %v", o.result, o.err)
	}
	if st := m.Scheduler().Stats(); len(st.Slaves) != 1 || st.Slaves[0].RejectedResults != 0 {
		t.Fatalf("the honest slave: %+v", st.Slaves)
	}
}
