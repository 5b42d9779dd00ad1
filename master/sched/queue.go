package sched

// queue is the scheduler's side of its Strategy: it counts what is
// pending per class, and takes entries back lazily. Taking an entry out
// of a strategy's structure could cost a walk; instead remove counts the
// id as stale, next skips a stale entry when the strategy hands it out,
// and once stale entries outnumber live ones (and a few thousand), one
// Filter drops them all. Two entries of one id are interchangeable (see
// QueuedTask), so it does not matter which of them is skipped.
type queue struct {
	strategy Strategy
	live     map[Class]int
	total    int
	stale    map[uint64]int32
	nstale   int
}

func newQueue(st Strategy) *queue {
	return &queue{strategy: st, live: map[Class]int{}, stale: map[uint64]int32{}}
}

func (q *queue) push(t QueuedTask) {
	q.strategy.Push(t)
	q.live[t.Class]++
	q.total++
}

// remove takes back t, which must be queued.
func (q *queue) remove(t QueuedTask) {
	q.stale[t.ID]++
	q.nstale++
	q.uncount(t)
	if q.nstale > compactAt && q.nstale > q.total {
		q.compact()
	}
}

// compactAt is the stale entries a queue lets pile up before it filters.
const compactAt = 4096

func (q *queue) uncount(t QueuedTask) {
	if q.live[t.Class]--; q.live[t.Class] <= 0 {
		delete(q.live, t.Class)
	}
	q.total--
}

// skip reports whether t is stale, and forgets one stale entry of its id.
func (q *queue) skip(t QueuedTask) bool {
	n := q.stale[t.ID]
	if n == 0 {
		return false
	}
	if n == 1 {
		delete(q.stale, t.ID)
	} else {
		q.stale[t.ID] = n - 1
	}
	q.nstale--
	return true
}

func (q *queue) compact() {
	q.strategy.Filter(func(t QueuedTask) bool { return !q.skip(t) })
	// What is left was removed twice, or was never handed to the
	// strategy: nothing holds it any more.
	clear(q.stale)
	q.nstale = 0
}

// next removes and returns the task v runs next.
func (q *queue) next(v *SlaveView) (QueuedTask, bool) {
	for {
		t, ok := q.strategy.Next(v)
		if !ok {
			return t, false
		}
		if q.skip(t) {
			continue
		}
		q.uncount(t)
		return t, true
	}
}

// len counts the pending tasks of class c.
func (q *queue) len(c Class) int { return q.live[c] }

// empty says no task is pending, of any class: the scheduler then stops
// offering work to idle slaves, of which there may be thousands, after
// the first.
func (q *queue) empty() bool { return q.total == 0 }
