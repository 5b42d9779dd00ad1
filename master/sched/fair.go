package sched

// fair shares the slaves' slots between applications by weight: a slave
// asking for work gets a task of the application whose running tasks,
// divided by its weight, are fewest among those with a task it may run.
// With one resource, slots, that is dominant resource fairness (Ghodsi et
// al., 2011): an application that submits ten times more does not get ten
// times the slots, and an application that asks for less than its share
// leaves the rest to the others. Within an application tasks run oldest
// first, per class, as under fifo; urgent copies of replicated tasks go
// before everything, whichever application they are of.
type fair struct {
	apps   map[AppRef]*fairApp
	urgent map[Class]*deque
}

type fairApp struct {
	classes map[Class]*deque
	queued  int
	running int
	weight  int
}

func newFair() *fair {
	return &fair{apps: map[AppRef]*fairApp{}, urgent: map[Class]*deque{}}
}

// StrategyFair shares slots between applications by weight.
const StrategyFair = "fair"

func (f *fair) Name() string { return StrategyFair }

func (f *fair) app(a AppRef) *fairApp {
	fa := f.apps[a]
	if fa == nil {
		fa = &fairApp{classes: map[Class]*deque{}, weight: 1}
		f.apps[a] = fa
	}
	return fa
}

func (f *fair) Push(t QueuedTask) {
	qs := f.urgent
	if !t.Urgent {
		fa := f.app(t.App)
		fa.queued++
		qs = fa.classes
	}
	q := qs[t.Class]
	if q == nil {
		q = &deque{}
		qs[t.Class] = q
	}
	q.push(t)
}

func (f *fair) Next(s *SlaveView) (QueuedTask, bool) {
	if len(f.urgent) > 0 {
		if t, ok := next(f.urgent, s); ok {
			return t, true
		}
	}
	var best *fairApp
	var bestQ *deque
	for _, fa := range f.apps {
		if fa.queued == 0 {
			continue
		}
		// Compare running/weight without dividing: a.r*b.w < b.r*a.w.
		if best != nil {
			l, r := fa.running*best.weight, best.running*fa.weight
			if l > r || l == r && fa.oldest(s) >= best.oldest(s) {
				continue
			}
		}
		if q := fa.head(s); q != nil {
			best, bestQ = fa, q
		}
	}
	if best == nil {
		return QueuedTask{}, false
	}
	best.queued--
	return bestQ.pop(), true
}

// head is the class deque of fa whose oldest task s may run first; nil
// when s may run none of fa's.
func (fa *fairApp) head(s *SlaveView) *deque {
	var best *deque
	for _, c := range s.Classes {
		q := fa.classes[c]
		if q == nil || q.len == 0 {
			continue
		}
		if best == nil || q.front().ID < best.front().ID {
			best = q
		}
	}
	return best
}

// oldest is the id of fa's oldest task s may run; the largest id when
// none, so an application s cannot serve never wins a tie.
func (fa *fairApp) oldest(s *SlaveView) uint64 {
	if q := fa.head(s); q != nil {
		return q.front().ID
	}
	return ^uint64(0)
}

func (f *fair) Filter(keep func(QueuedTask) bool) {
	for c, q := range f.urgent {
		if q.filter(keep); q.len == 0 {
			delete(f.urgent, c)
		}
	}
	for a, fa := range f.apps {
		fa.queued = 0
		for c, q := range fa.classes {
			if q.filter(keep); q.len == 0 {
				delete(fa.classes, c)
			}
			fa.queued += q.len
		}
		if fa.queued == 0 && fa.running == 0 && fa.weight == 1 {
			delete(f.apps, a)
		}
	}
}

// Took and Freed keep the running count the shares are computed from.
func (f *fair) Took(t QueuedTask) { f.app(t.App).running++ }

func (f *fair) Freed(t QueuedTask) {
	if fa := f.apps[t.App]; fa != nil && fa.running > 0 {
		fa.running--
	}
}

// Weigh sets an application's weight, 1 by default: with weights 3 and 1
// two busy applications hold three quarters and a quarter of the slots.
func (f *fair) Weigh(a AppRef, w int) { f.app(a).weight = max(w, 1) }
