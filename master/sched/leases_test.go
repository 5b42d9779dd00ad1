package sched

import (
	"testing"
	"time"

	"github.com/anthill-project/anthill/protocol"
)

// The lease heap hands back, by deadline, only the attempts still running
// with the lease they were given, and keeps no more dead entries than it
// must: a fast fleet's finished attempts do not pile up until their
// deadlines.
func TestLeaseHeap(t *testing.T) {
	var h leaseHeap
	sl := &Slave{running: map[uint64]*task{}}
	base := time.Unix(1_750_000_000, 0)
	run := func(id uint64, lease uint64, in time.Duration) *task {
		tk := &task{id: id, lease: lease, slave: sl, state: protocol.StateRunning, deadline: base.Add(in)}
		sl.running[id] = tk
		h.add(sl, tk)
		return tk
	}
	a := run(1, 11, 3*time.Second)
	b := run(2, 12, time.Second)
	c := run(3, 13, 2*time.Second)
	c.lease = 99 // taken back and given again: the old entry is dead
	delete(sl.running, b.id)
	if got := h.due(base.Add(2500 * time.Millisecond)); len(got) != 0 {
		t.Fatalf("due before any live deadline: %v", got)
	}
	if got := h.due(base.Add(3 * time.Second)); len(got) != 1 || got[0] != a {
		t.Fatalf("due at a's deadline: %v", got)
	}
	for i := range 100000 {
		id := uint64(100 + i)
		run(id, id, time.Minute)
		delete(sl.running, id) // its result came
	}
	if n := len(h.items); n > 2*4096+1 {
		t.Fatalf("%d entries kept for finished attempts", n)
	}
}
