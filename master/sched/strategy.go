package sched

import "fmt"

// QueuedTask is what a Strategy sees of a pending task: a small value with
// no pointers, so that ten million queued tasks cost a strategy about 32
// bytes each and the garbage collector nothing to scan. A task's entry
// never changes while it is queued, so two entries of one id (one the
// scheduler has taken back, see queue) are interchangeable.
type QueuedTask struct {
	ID uint64
	// Key is a hash of the task's key, 0 when it has none: tasks of one
	// key share it.
	Key uint64
	// Class is what the task runs: its kind, or its WASM module. A
	// slave's view lists the classes it may run.
	Class Class
	// App is the task's application.
	App      AppRef
	Priority int32
	// Urgent marks a copy of a replicated task that has begun: its task
	// waits for it, so it runs before every task that is not urgent,
	// whatever the strategy's own order.
	Urgent bool
}

// Class names a kind, or a WASM module, by a small number the scheduler
// hands out (see Scheduler.classLocked).
type Class uint32

// AppRef names an application by a small number the scheduler hands out.
type AppRef uint32

// SlaveView is what a Strategy sees of the slave asking for work.
type SlaveView struct {
	Name    string
	Classes []Class // the classes it may run, sorted
}

// Strategy decides which pending task a slave runs next. The scheduler
// calls it with its lock held, so implementations need no locking but
// must be fast: Next sits on the dispatch path. A task is Pushed when it
// becomes pending and leaves through Next. Urgent tasks go before the
// others.
//
// A strategy never removes a task itself: when the scheduler takes a
// queued task back (canceled, or finished by a late result), it forgets
// the entry, skips it when Next returns it, and now and then asks the
// strategy to Filter out what it forgot.
type Strategy interface {
	Name() string
	Push(t QueuedTask)
	// Next removes and returns the task s should run; false when none of
	// the tasks held is of a class s runs.
	Next(s *SlaveView) (QueuedTask, bool)
	// Filter keeps only the entries keep accepts, in their order.
	Filter(keep func(QueuedTask) bool)
}

// SlotKeeper is a Strategy that places tasks by the slots they hold: the
// scheduler tells it when a task it handed out takes a slot of a slave
// and when the slot is free again (a result, a requeue, a cancel, the
// slave gone).
type SlotKeeper interface {
	Took(t QueuedTask)
	Freed(t QueuedTask)
}

// Weigher is a Strategy that shares by application weight (see
// AppConfig.Weight).
type Weigher interface {
	Weigh(app AppRef, weight int)
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
		return &fifo{classes: map[Class]*deque{}, urgent: map[Class]*deque{}}, nil
	case StrategyPriority:
		return &priority{classes: map[Class]*taskHeap{}}, nil
	case StrategyFair:
		return newFair(), nil
	}
	return nil, fmt.Errorf("unknown strategy %q (want %q, %q or %q)", name, StrategyFIFO, StrategyPriority, StrategyFair)
}

// fifo runs the tasks of each class in the order they became pending;
// across classes the slave gets the head with the lowest id, the oldest
// task, urgent ones first.
type fifo struct {
	classes map[Class]*deque
	urgent  map[Class]*deque
}

func (f *fifo) Name() string { return StrategyFIFO }

func (f *fifo) Push(t QueuedTask) {
	qs := f.classes
	if t.Urgent {
		qs = f.urgent
	}
	q := qs[t.Class]
	if q == nil {
		q = &deque{}
		qs[t.Class] = q
	}
	q.push(t)
}

func (f *fifo) Next(s *SlaveView) (QueuedTask, bool) {
	if len(f.urgent) > 0 {
		if t, ok := next(f.urgent, s); ok {
			return t, true
		}
	}
	return next(f.classes, s)
}

func next(qs map[Class]*deque, s *SlaveView) (QueuedTask, bool) {
	var best *deque
	for _, c := range s.Classes {
		q := qs[c]
		if q == nil || q.len == 0 {
			continue
		}
		if best == nil || q.front().ID < best.front().ID {
			best = q
		}
	}
	if best == nil {
		return QueuedTask{}, false
	}
	return best.pop(), true
}

func (f *fifo) Filter(keep func(QueuedTask) bool) {
	for _, qs := range [...]map[Class]*deque{f.classes, f.urgent} {
		for c, q := range qs {
			q.filter(keep)
			if q.len == 0 {
				delete(qs, c)
			}
		}
	}
}

// deque is a FIFO of tasks in chunks of a fixed size, so a queue of
// millions grows by a chunk at a time rather than by copying itself into
// an array twice its size, and gives memory back as it drains.
type deque struct {
	chunks [][]QueuedTask // each of cap chunkLen; the first is read from head
	head   int
	len    int
}

const chunkLen = 1024

func (q *deque) push(t QueuedTask) {
	if n := len(q.chunks); n == 0 || len(q.chunks[n-1]) == chunkLen {
		q.chunks = append(q.chunks, make([]QueuedTask, 0, chunkLen))
	}
	last := &q.chunks[len(q.chunks)-1]
	*last = append(*last, t)
	q.len++
}

func (q *deque) front() *QueuedTask { return &q.chunks[0][q.head] }

func (q *deque) pop() QueuedTask {
	t := q.chunks[0][q.head]
	q.head++
	q.len--
	if q.head == len(q.chunks[0]) {
		// The first chunk is read to its end: drop it (the last one
		// too, so an empty deque holds nothing).
		q.chunks[0] = nil
		q.chunks = q.chunks[1:]
		q.head = 0
	}
	return t
}

func (q *deque) filter(keep func(QueuedTask) bool) {
	var out deque
	for q.len > 0 {
		if t := q.pop(); keep(t) {
			out.push(t)
		}
	}
	*q = out
}

// priority runs urgent tasks first, then the highest Priority, the lowest
// id among equals.
type priority struct {
	classes map[Class]*taskHeap
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

func (p *priority) Name() string { return StrategyPriority }

func (p *priority) Push(t QueuedTask) {
	h := p.classes[t.Class]
	if h == nil {
		h = &taskHeap{}
		p.classes[t.Class] = h
	}
	h.push(t)
}

func (p *priority) Next(s *SlaveView) (QueuedTask, bool) {
	var best *taskHeap
	for _, c := range s.Classes {
		h := p.classes[c]
		if h == nil || len(h.items) == 0 {
			continue
		}
		if best == nil || runsBefore(h.peek(), best.peek()) {
			best = h
		}
	}
	if best == nil {
		return QueuedTask{}, false
	}
	return best.pop(), true
}

func (p *priority) Filter(keep func(QueuedTask) bool) {
	for c, h := range p.classes {
		h.filter(func(t *QueuedTask) bool { return keep(*t) })
		if len(h.items) == 0 {
			delete(p.classes, c)
		}
	}
}

// taskHeap is a heap of tasks by runsBefore.
type taskHeap = values[QueuedTask, *QueuedTask]

func (t *QueuedTask) before(o *QueuedTask) bool { return runsBefore(t, o) }
