package sched

import "fmt"

// QueuedTask is what a Strategy sees of a pending task.
type QueuedTask struct {
	ID       uint64
	App      string
	Kind     string
	Priority int32
	Key      string
	// Urgent marks a copy of a replicated task that has begun: its task
	// waits for it, so it runs before every task that is not urgent,
	// whatever the strategy's own order. It never changes while queued.
	Urgent bool
	// Slot is the strategy's own bookkeeping (a heap index, a generation);
	// the scheduler never reads it.
	Slot int

	t *task
}

// SlaveView is what a Strategy sees of the slave asking for work.
type SlaveView struct {
	Name  string
	Kinds []string // the kinds it can run, sorted
}

// Strategy decides which pending task a slave runs next. The scheduler
// calls it with its lock held, so implementations need no locking but must be fast:
// Next sits on the dispatch path. A task is Pushed when it becomes pending
// and leaves either through Next or through Remove. Urgent tasks go
// before the others (see QueuedTask.Urgent).
type Strategy interface {
	Name() string
	Push(t *QueuedTask)
	// Next removes and returns the task s should run, or nil when none of
	// the pending tasks is of a kind s runs.
	Next(s *SlaveView) *QueuedTask
	// Remove takes t out of the queue (it was canceled, or finished through
	// a late result while pending).
	Remove(t *QueuedTask)
	// Len counts the pending tasks of one kind.
	Len(kind string) int
	// Empty says no task is pending, of any kind: the scheduler then
	// stops offering work to idle slaves, of which there may be
	// thousands, after the first.
	Empty() bool
}

// Strategy names accepted by NewStrategy.
const (
	StrategyFIFO     = "fifo"
	StrategyPriority = "priority"
)

// NewStrategy returns a built-in strategy by name.
func NewStrategy(name string) (Strategy, error) {
	switch name {
	case "", StrategyFIFO:
		return &fifo{kinds: map[string]*deque{}, urgent: map[string]*deque{}}, nil
	case StrategyPriority:
		return &priority{kinds: map[string]*indexed[*QueuedTask]{}}, nil
	}
	return nil, fmt.Errorf("unknown strategy %q (want %q or %q)", name, StrategyFIFO, StrategyPriority)
}

// fifo runs tasks of each kind in the order they became pending; across
// kinds, the slave gets the oldest head among the kinds it runs, urgent
// tasks first. Removal is lazy: Slot holds a generation, and a deque
// entry whose generation no longer matches is skipped, so Remove is O(1).
type fifo struct {
	kinds  map[string]*deque
	urgent map[string]*deque
	gen    int
	total  int // tasks queued, of every kind
}

type entry struct {
	t   *QueuedTask
	gen int
	seq uint64 // order across kinds
}

type deque struct {
	items []entry
	head  int
	live  int
}

func (q *deque) push(e entry) { q.items = append(q.items, e); q.live++ }

// front drops stale entries and returns the first live one.
func (q *deque) front() *entry {
	for q.head < len(q.items) {
		e := &q.items[q.head]
		if e.t.Slot == e.gen {
			return e
		}
		q.pop()
	}
	return nil
}

func (q *deque) pop() {
	q.items[q.head] = entry{}
	q.head++
	// Reclaim the consumed prefix once it dominates, so memory follows the
	// live length rather than the total ever pushed.
	if q.head > 1024 && q.head*2 > len(q.items) {
		q.items = append(q.items[:0:0], q.items[q.head:]...)
		q.head = 0
	}
}

func (f *fifo) Name() string { return StrategyFIFO }

func (f *fifo) queues(t *QueuedTask) map[string]*deque {
	if t.Urgent {
		return f.urgent
	}
	return f.kinds
}

func (f *fifo) Push(t *QueuedTask) {
	qs := f.queues(t)
	q := qs[t.Kind]
	if q == nil {
		q = &deque{}
		qs[t.Kind] = q
	}
	f.gen++
	t.Slot = f.gen
	q.push(entry{t: t, gen: f.gen, seq: uint64(f.gen)})
	f.total++
}

func (f *fifo) Next(s *SlaveView) *QueuedTask {
	if len(f.urgent) > 0 {
		if t := f.next(f.urgent, s); t != nil {
			return t
		}
	}
	return f.next(f.kinds, s)
}

func (f *fifo) next(qs map[string]*deque, s *SlaveView) *QueuedTask {
	var best *deque
	var bestSeq uint64
	for _, k := range s.Kinds {
		q := qs[k]
		if q == nil || q.live == 0 {
			continue
		}
		if e := q.front(); e != nil && (best == nil || e.seq < bestSeq) {
			best, bestSeq = q, e.seq
		}
	}
	if best == nil {
		return nil
	}
	t := best.front().t
	best.pop()
	best.live--
	f.total--
	t.Slot = 0
	return t
}

func (f *fifo) Remove(t *QueuedTask) {
	if t.Slot == 0 {
		return
	}
	t.Slot = 0
	if q := f.queues(t)[t.Kind]; q != nil {
		q.live--
		f.total--
	}
}

func (f *fifo) Empty() bool { return f.total == 0 }

func (f *fifo) Len(kind string) int {
	n := 0
	if q := f.kinds[kind]; q != nil {
		n += q.live
	}
	if q := f.urgent[kind]; q != nil {
		n += q.live
	}
	return n
}

// priority runs urgent tasks first, then the highest Priority, oldest id
// first among equals.
// Slot is the heap index plus one (zero: not queued).
type priority struct {
	kinds map[string]*indexed[*QueuedTask]
	total int // tasks queued, of every kind
}

func runsBefore(a, b *QueuedTask) bool {
	if a.Urgent != b.Urgent {
		return a.Urgent
	}
	if a.Priority != b.Priority {
		return a.Priority > b.Priority
	}
	return a.ID < b.ID
}

func queuedSlot(t *QueuedTask) *int { return &t.Slot }

func (p *priority) Name() string { return StrategyPriority }

func (p *priority) Push(t *QueuedTask) {
	h := p.kinds[t.Kind]
	if h == nil {
		h = &indexed[*QueuedTask]{less: runsBefore, slot: queuedSlot}
		p.kinds[t.Kind] = h
	}
	h.push(t)
	p.total++
}

func (p *priority) Next(s *SlaveView) *QueuedTask {
	var best *indexed[*QueuedTask]
	for _, k := range s.Kinds {
		h := p.kinds[k]
		if h == nil || h.Len() == 0 {
			continue
		}
		if best == nil || runsBefore(h.peek(), best.peek()) {
			best = h
		}
	}
	if best == nil {
		return nil
	}
	p.total--
	return best.pop()
}

func (p *priority) Remove(t *QueuedTask) {
	if h := p.kinds[t.Kind]; h != nil && t.Slot > 0 {
		h.remove(t)
		p.total--
	}
}

func (p *priority) Empty() bool { return p.total == 0 }

func (p *priority) Len(kind string) int {
	if h := p.kinds[kind]; h != nil {
		return h.Len()
	}
	return 0
}
