package sched

import (
	"slices"
	"testing"
)

// Classes of the tests' kinds.
const (
	ca Class = iota + 1
	cb
	cc
	ck
)

func qt(id uint64, c Class, prio int32) QueuedTask {
	return QueuedTask{ID: id, Class: c, Priority: prio}
}

func view(cs ...Class) *SlaveView { return &SlaveView{Classes: cs} }

func drain(q *queue, v *SlaveView) []uint64 {
	var ids []uint64
	for t, ok := q.next(v); ok; t, ok = q.next(v) {
		ids = append(ids, t.ID)
	}
	return ids
}

func newTestQueue(t *testing.T, name string) *queue {
	t.Helper()
	s, err := NewStrategy(name)
	if err != nil {
		t.Fatal(err)
	}
	return newQueue(s)
}

func TestFIFOOrderAcrossKinds(t *testing.T) {
	q := newTestQueue(t, StrategyFIFO)
	q.push(qt(1, ca, 0))
	q.push(qt(2, cb, 9))
	q.push(qt(3, ca, 0))
	q.push(qt(4, cc, 0))
	if got := drain(q, view(ca, cb)); !slices.Equal(got, []uint64{1, 2, 3}) {
		t.Fatalf("fifo order %v, want [1 2 3]", got)
	}
	if q.len(cc) != 1 {
		t.Fatalf("class c: %d pending, want 1 (no slave of that class asked)", q.len(cc))
	}
}

func TestFIFORemoveAndRequeue(t *testing.T) {
	q := newTestQueue(t, StrategyFIFO)
	a, b, c := qt(1, ck, 0), qt(2, ck, 0), qt(3, ck, 0)
	q.push(a)
	q.push(b)
	q.push(c)
	q.remove(b)
	// a is taken, then comes back (a retry): it goes to the tail.
	v := view(ck)
	if got, _ := q.next(v); got != a {
		t.Fatalf("first = %v", got.ID)
	}
	q.push(a)
	if got := drain(q, v); !slices.Equal(got, []uint64{3, 1}) {
		t.Fatalf("after remove and requeue: %v, want [3 1]", got)
	}
	if q.len(ck) != 0 || !q.empty() {
		t.Fatalf("len %d after drain", q.len(ck))
	}
}

// A task removed and pushed again (a retry of a canceled task) is handed
// out once, whichever of its two entries the strategy returns first.
func TestRemovedThenPushedAgainRunsOnce(t *testing.T) {
	for _, name := range []string{StrategyFIFO, StrategyPriority, StrategyFair} {
		q := newTestQueue(t, name)
		a := qt(1, ck, 0)
		q.push(a)
		q.push(qt(2, ck, 0))
		q.remove(a)
		q.push(a)
		if got := drain(q, view(ck)); len(got) != 2 || !slices.Contains(got, 1) || !slices.Contains(got, 2) {
			t.Errorf("%s: %v, want 1 and 2 once each", name, got)
		}
	}
}

func TestPriorityOrder(t *testing.T) {
	q := newTestQueue(t, StrategyPriority)
	q.push(qt(1, ca, 0))
	q.push(qt(2, cb, 5))
	q.push(qt(3, ca, 5))
	q.push(qt(4, ca, -1))
	q.push(qt(5, cb, 0))
	x := qt(6, ca, 9)
	q.push(x)
	q.remove(x)
	if got := drain(q, view(ca, cb)); !slices.Equal(got, []uint64{2, 3, 1, 5, 4}) {
		t.Fatalf("priority order %v, want [2 3 1 5 4]", got)
	}
}

func TestUnknownStrategy(t *testing.T) {
	if _, err := NewStrategy("random"); err == nil {
		t.Fatal("unknown strategy accepted")
	}
}

// The deque gives memory back as it drains, or a long-lived master would
// keep every task it ever queued.
func TestFIFOGivesMemoryBack(t *testing.T) {
	f := &fifo{classes: map[Class]*deque{}, urgent: map[Class]*deque{}}
	q := newQueue(f)
	for range 10 {
		for i := range 5000 {
			q.push(qt(uint64(i+1), ck, 0))
		}
		if n := len(drain(q, view(ck))); n != 5000 {
			t.Fatalf("drained %d", n)
		}
	}
	if d := f.classes[ck]; len(d.chunks) > 1 {
		t.Fatalf("deque kept %d chunks after draining", len(d.chunks))
	}
}

// Stale entries are filtered out once they outnumber the live ones, so a
// mass cancel of a class no slave runs does not keep its entries.
func TestRemovedEntriesAreFilteredOut(t *testing.T) {
	for _, name := range []string{StrategyFIFO, StrategyPriority, StrategyFair} {
		q := newTestQueue(t, name)
		n := 3 * compactAt
		for i := range n {
			q.push(qt(uint64(i+1), ck, int32(i%7)))
		}
		for i := range n - 10 {
			q.remove(qt(uint64(i+1), ck, int32(i%7)))
		}
		if q.nstale > compactAt {
			t.Errorf("%s: %d stale entries kept", name, q.nstale)
		}
		got := drain(q, view(ck))
		slices.Sort(got)
		want := make([]uint64, 10)
		for i := range want {
			want[i] = uint64(n - 10 + i + 1)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: after filtering %v, want %v", name, got, want)
		}
	}
}

func BenchmarkFIFOPushNext(b *testing.B) {
	s, _ := NewStrategy(StrategyFIFO)
	q := newQueue(s)
	v := view(1, 2, 3, 4, 5)
	for i := 0; b.Loop(); i++ {
		q.push(qt(uint64(i+1), 1, 0))
		q.next(v)
	}
}

func TestUrgentTasksGoFirst(t *testing.T) {
	for _, name := range []string{StrategyFIFO, StrategyPriority, StrategyFair} {
		q := newTestQueue(t, name)
		q.push(qt(1, ca, 5))
		q.push(qt(2, cb, 0))
		u := qt(9, cb, 0)
		u.Urgent = true
		q.push(u)
		q.push(qt(3, ca, 0))
		if n := q.len(cb); n != 2 {
			t.Errorf("%s: len(b) = %d, want 2, the urgent task counted", name, n)
		}
		got := drain(q, view(ca, cb))
		if len(got) != 4 || got[0] != 9 {
			t.Errorf("%s: order %v, want the urgent 9 first", name, got)
		}
		// Removed while queued, an urgent task is gone from its count.
		v := qt(10, cc, 0)
		v.Urgent = true
		q.push(v)
		q.remove(v)
		if _, ok := q.next(view(cc)); q.len(cc) != 0 || ok {
			t.Errorf("%s: a removed urgent task is still queued (%d)", name, q.len(cc))
		}
	}
}

func TestEmptyCountsEveryClass(t *testing.T) {
	for _, name := range []string{StrategyFIFO, StrategyPriority, StrategyFair} {
		q := newTestQueue(t, name)
		if !q.empty() {
			t.Errorf("%s: a new queue is not empty", name)
		}
		a, b := qt(1, ca, 0), qt(2, cb, 0)
		b.Urgent = true
		q.push(a)
		q.push(b)
		q.remove(a)
		if q.empty() {
			t.Errorf("%s: empty with b queued", name)
		}
		if got, _ := q.next(view(cb)); got != b || !q.empty() {
			t.Errorf("%s: not empty once b was taken", name)
		}
	}
}

// BenchmarkStrategyNext is a dispatch against a deep queue and a large
// fleet, per strategy: 1,000,000 pending tasks of 4 apps and 8 classes,
// 10,000 slaves each declaring 3 classes, each iteration one Next and
// one Push (a task taken, one submitted), with fair's slot counts kept.
func BenchmarkStrategyNext(b *testing.B) {
	for _, name := range []string{StrategyFIFO, StrategyPriority, StrategyFair} {
		b.Run(name, func(b *testing.B) {
			st, _ := NewStrategy(name)
			q := newQueue(st)
			keeper, _ := st.(SlotKeeper)
			entry := func(id uint64) QueuedTask {
				return QueuedTask{ID: id, Class: Class(1 + id%8), App: AppRef(id % 4), Priority: int32(id % 5)}
			}
			id := uint64(1)
			for ; id <= 1_000_000; id++ {
				q.push(entry(id))
			}
			views := make([]*SlaveView, 10000)
			for i := range views {
				views[i] = view(Class(1+i%8), Class(1+(i+3)%8), Class(1+(i+5)%8))
				slices.Sort(views[i].Classes)
			}
			var held []QueuedTask
			for i := 0; b.Loop(); i++ {
				t, ok := q.next(views[i%len(views)])
				if !ok {
					b.Fatal("nothing to run")
				}
				if keeper != nil {
					keeper.Took(t)
					if held = append(held, t); len(held) > len(views) {
						keeper.Freed(held[0])
						held = held[1:]
					}
				}
				q.push(entry(id))
				id++
			}
		})
	}
}
