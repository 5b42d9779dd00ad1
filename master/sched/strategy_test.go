package sched

import (
	"testing"
)

func qt(id uint64, kind string, prio int32) *QueuedTask {
	return &QueuedTask{ID: id, Kind: kind, Priority: prio}
}

func drain(s Strategy, v *SlaveView) []uint64 {
	var ids []uint64
	for t := s.Next(v); t != nil; t = s.Next(v) {
		ids = append(ids, t.ID)
	}
	return ids
}

func equal(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestFIFOOrderAcrossKinds(t *testing.T) {
	s, _ := NewStrategy(StrategyFIFO)
	s.Push(qt(1, "a", 0))
	s.Push(qt(2, "b", 9))
	s.Push(qt(3, "a", 0))
	s.Push(qt(4, "c", 0))
	got := drain(s, &SlaveView{Kinds: []string{"a", "b"}})
	if !equal(got, []uint64{1, 2, 3}) {
		t.Fatalf("fifo order %v, want [1 2 3]", got)
	}
	if s.Len("c") != 1 {
		t.Fatalf("kind c: %d pending, want 1 (no slave of that kind asked)", s.Len("c"))
	}
}

func TestFIFORemoveAndRequeue(t *testing.T) {
	s, _ := NewStrategy(StrategyFIFO)
	a, b, c := qt(1, "k", 0), qt(2, "k", 0), qt(3, "k", 0)
	s.Push(a)
	s.Push(b)
	s.Push(c)
	s.Remove(b)
	s.Remove(b) // twice is harmless
	// a is taken, then comes back (a retry): it goes to the tail.
	v := &SlaveView{Kinds: []string{"k"}}
	if got := s.Next(v); got != a {
		t.Fatalf("first = %v", got.ID)
	}
	s.Push(a)
	if got := drain(s, v); !equal(got, []uint64{3, 1}) {
		t.Fatalf("after remove and requeue: %v, want [3 1]", got)
	}
	if s.Len("k") != 0 {
		t.Fatalf("len %d after drain", s.Len("k"))
	}
}

func TestPriorityOrder(t *testing.T) {
	s, _ := NewStrategy(StrategyPriority)
	s.Push(qt(1, "a", 0))
	s.Push(qt(2, "b", 5))
	s.Push(qt(3, "a", 5))
	s.Push(qt(4, "a", -1))
	s.Push(qt(5, "b", 0))
	x := qt(6, "a", 9)
	s.Push(x)
	s.Remove(x)
	got := drain(s, &SlaveView{Kinds: []string{"a", "b"}})
	if !equal(got, []uint64{2, 3, 1, 5, 4}) {
		t.Fatalf("priority order %v, want [2 3 1 5 4]", got)
	}
}

func TestUnknownStrategy(t *testing.T) {
	if _, err := NewStrategy("random"); err == nil {
		t.Fatal("unknown strategy accepted")
	}
}

// The deque must give memory back as it drains, or a long-lived master
// would keep every task it ever queued.
func TestFIFOCompacts(t *testing.T) {
	f := &fifo{kinds: map[string]*deque{}}
	v := &SlaveView{Kinds: []string{"k"}}
	for round := 0; round < 10; round++ {
		for i := range 5000 {
			f.Push(qt(uint64(i), "k", 0))
		}
		if n := len(drain(f, v)); n != 5000 {
			t.Fatalf("drained %d", n)
		}
	}
	if q := f.kinds["k"]; len(q.items)-q.head > 5000 || cap(q.items) > 40000 {
		t.Fatalf("deque kept %d items (cap %d) after draining", len(q.items), cap(q.items))
	}
}

func BenchmarkFIFOPushNext(b *testing.B) {
	s, _ := NewStrategy(StrategyFIFO)
	v := &SlaveView{Kinds: []string{"echo", "fail", "mandelbrot", "sha256", "sleep"}}
	ts := make([]*QueuedTask, 1024)
	for i := range ts {
		ts[i] = qt(uint64(i), "echo", 0)
	}
	for i := 0; b.Loop(); i++ {
		s.Push(ts[i%1024])
		s.Next(v)
	}
}

func TestUrgentTasksGoFirst(t *testing.T) {
	for _, name := range []string{StrategyFIFO, StrategyPriority} {
		s, _ := NewStrategy(name)
		s.Push(qt(1, "a", 5))
		s.Push(qt(2, "b", 0))
		u := qt(9, "b", 0)
		u.Urgent = true
		s.Push(u)
		s.Push(qt(3, "a", 0))
		if n := s.Len("b"); n != 2 {
			t.Errorf("%s: Len(b) = %d, want 2, the urgent task counted", name, n)
		}
		got := drain(s, &SlaveView{Kinds: []string{"a", "b"}})
		if len(got) != 4 || got[0] != 9 {
			t.Errorf("%s: order %v, want the urgent 9 first", name, got)
		}
		// Removed while queued, an urgent task is gone from its count.
		v := qt(10, "c", 0)
		v.Urgent = true
		s.Push(v)
		s.Remove(v)
		if n := s.Len("c"); n != 0 || s.Next(&SlaveView{Kinds: []string{"c"}}) != nil {
			t.Errorf("%s: a removed urgent task is still queued (%d)", name, n)
		}
	}
}

func TestEmptyCountsEveryKind(t *testing.T) {
	for _, name := range []string{StrategyFIFO, StrategyPriority} {
		s, _ := NewStrategy(name)
		if !s.Empty() {
			t.Errorf("%s: a new strategy is not empty", name)
		}
		a, b := qt(1, "a", 0), qt(2, "b", 0)
		b.Urgent = true
		s.Push(a)
		s.Push(b)
		s.Remove(a)
		s.Remove(a) // twice counts once
		if s.Empty() {
			t.Errorf("%s: empty with b queued", name)
		}
		if s.Next(&SlaveView{Kinds: []string{"b"}}) != b || !s.Empty() {
			t.Errorf("%s: not empty once b was taken", name)
		}
	}
}
