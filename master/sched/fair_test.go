package sched

import (
	"testing"

	"github.com/anthill-project/anthill/protocol"
)

// Two apps, one with ten times the other's tasks queued: fair gives each
// half of the slots while both have work, and by weight when weighed;
// fifo gives the older app every slot.
func TestFairSharesSlotsByWeight(t *testing.T) {
	for _, tc := range []struct {
		strategy string
		weight   int
		wantBig  int // of 8 slots
	}{
		{StrategyFIFO, 1, 8},
		{StrategyFair, 1, 4},
		{StrategyFair, 3, 6},
	} {
		st, err := NewStrategy(tc.strategy)
		if err != nil {
			t.Fatal(err)
		}
		q := newQueue(st)
		if w, ok := st.(Weigher); ok {
			w.Weigh(1, tc.weight)
		}
		keeper, _ := st.(SlotKeeper)
		id := uint64(1)
		for range 100 {
			q.push(QueuedTask{ID: id, Class: ck, App: 1})
			id++
		}
		for range 10 {
			q.push(QueuedTask{ID: id, Class: ck, App: 2})
			id++
		}
		big := 0
		var held []QueuedTask
		for range 8 {
			task, ok := q.next(view(ck))
			if !ok {
				t.Fatal("nothing to run")
			}
			if keeper != nil {
				keeper.Took(task)
			}
			held = append(held, task)
			if task.App == 1 {
				big++
			}
		}
		if big != tc.wantBig {
			t.Errorf("%s, weight %d: the big app holds %d of 8 slots, want %d", tc.strategy, tc.weight, big, tc.wantBig)
		}
		// A slot the small app frees goes back to it: its share is
		// below the big one's.
		if keeper != nil && tc.weight == 1 {
			for _, h := range held {
				if h.App == 2 {
					keeper.Freed(h)
					break
				}
			}
			if task, _ := q.next(view(ck)); task.App != 2 {
				t.Errorf("the freed slot went to app %d", task.App)
			}
		}
	}
}

// A slave that may run only the big app's kind still gets work: fair
// never leaves a slot idle for a share it cannot serve.
func TestFairServesWhatASlaveRuns(t *testing.T) {
	q := newTestQueue(t, StrategyFair)
	st := q.strategy.(*fair)
	q.push(QueuedTask{ID: 1, Class: ca, App: 1})
	q.push(QueuedTask{ID: 2, Class: cb, App: 2})
	q.push(QueuedTask{ID: 3, Class: ca, App: 1})
	st.Took(QueuedTask{ID: 9, Class: ca, App: 1}) // app 1 holds a slot already
	if got := drain(q, view(ca)); len(got) != 2 || got[0] != 1 || got[1] != 3 {
		t.Fatalf("a slave of class a ran %v, want [1 3]", got)
	}
	if got := drain(q, view(ca, cb)); len(got) != 1 || got[0] != 2 {
		t.Fatalf("then %v, want [2]", got)
	}
}

// Under the scheduler: the first frame of a slave (four tasks, its slow
// start) holds three of the small app's, weighed 3, and one of the big
// one's, though it submitted first and ten times more; the weight
// survives a restart.
func TestFairUnderTheScheduler(t *testing.T) {
	h := newHarness(t, Options{Strategy: StrategyFair})
	if err := h.s.ConfigureApp("small", AppConfig{Weight: 3}); err != nil {
		t.Fatal(err)
	}
	h.submit("big", tasksOf("k", 100)...)
	h.submit("small", tasksOf("k", 10)...)
	_, so := h.slave("s", 8, "k")
	count := func(d *protocol.Dispatch) map[string]int {
		n := map[string]int{}
		for _, task := range d.Tasks {
			info, err := h.s.Task(task.ID)
			if err != nil {
				t.Fatal(err)
			}
			n[info.App]++
		}
		return n
	}
	if n := count(readAs[*protocol.Dispatch](t, so)); n["small"] != 3 || n["big"] != 1 {
		t.Fatalf("first frame: %v, want 3 of small (weight 3) and 1 of big", n)
	}
	h.restart()
	if c := h.s.AppConfigOf("small"); c.Weight != 3 {
		t.Fatalf("after a restart the weight is %d", c.Weight)
	}
	_, so = h.slave("s2", 8, "k")
	if n := count(readAs[*protocol.Dispatch](t, so)); n["small"] != 3 || n["big"] != 1 {
		t.Fatalf("after the restart: %v, want 3 of small and 1 of big", n)
	}
}
