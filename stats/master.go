package stats

import (
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// MaxKinds bounds the kind label: tasks of kinds first seen after this many
// are counted under OtherKind.
const MaxKinds = 200

// OtherKind is the kind label of tasks whose kind came after MaxKinds others.
const OtherKind = "_other"

// Linger is how long a slave's or an application's series stay after it has
// gone, before they are removed.
const Linger = 5 * time.Minute

// State is how a task finished.
type State uint8

// The final states of a task.
const (
	Done State = iota
	Failed
	Canceled
	numStates
)

var stateNames = [numStates]string{"done", "failed", "canceled"}

// String returns the state's label value.
func (s State) String() string {
	if s < numStates {
		return stateNames[s]
	}
	return fmt.Sprintf("State(%d)", uint8(s))
}

// label makes a name a label value: exporters refuse invalid UTF-8
// (Prometheus panics on it).
func label(name string) string { return strings.ToValidUTF8(name, "\uFFFD") }

// Master records the master's numbers. Create it with [NewMaster]. Its
// methods are safe for concurrent use.
type Master struct {
	now     func() time.Time
	started time.Time

	// kinds is copied on write: the hot path loads it without a lock.
	kinds  atomic.Pointer[kindSet]
	kindMu sync.Mutex // serialises writers of kinds

	late atomic.Uint64
	// Replication's events, over every kind: tasks forked into copies,
	// copies issued beyond the first n, copies or ringers judged invalid,
	// ringers sent.
	forked, extraCopies, invalid, ringers atomic.Uint64
	commitOps, commitSeconds              *histogram

	// Accumulators of the second being filled: the hot path adds, Tick swaps.
	acc struct {
		n   [numSeries]atomic.Uint64 // the per-second counts; other slots unused
		lat latHist
	}
	// Gauges, as last set; Tick samples some of them into the series.
	gPending, gRunning, gUnacked, gSlaves, gApps, storeBytes atomic.Int64

	open atomic.Int64 // the second the accumulators are filling

	mu     sync.Mutex // guards ring, slaves, apps, and the handles' fields marked so
	ring   *ring
	slaves map[string]*slaveEntry
	apps   map[string]*App
}

// kindSet is every kind seen. It is never modified once stored.
type kindSet struct {
	byName map[string]*kind // at most MaxKinds
	other  *kind            // the kinds that came after MaxKinds; nil until one did
}

// kind holds the numbers of one kind.
type kind struct {
	label                                    string
	submitted, dispatched, retried, requeued atomic.Uint64
	finished                                 [numStates]atomic.Uint64
	queued                                   atomic.Int64
	latency                                  *histogram // seconds
}

// NewMaster returns a recorder. now is the clock that drives the series;
// nil means time.Now.
func NewMaster(now func() time.Time) *Master {
	if now == nil {
		now = time.Now
	}
	m := &Master{
		now: now, ring: &ring{}, slaves: map[string]*slaveEntry{}, apps: map[string]*App{},
		commitOps: newHistogram(opsBuckets), commitSeconds: newHistogram(commitBuckets),
	}
	m.kinds.Store(&kindSet{byName: map[string]*kind{}})
	m.started = now()
	start := m.started.Unix()
	m.ring.first = start
	m.open.Store(start)
	return m
}

// kind returns the numbers of k, creating them the first time.
func (m *Master) kind(k string) *kind {
	ks := m.kinds.Load()
	if kd, ok := ks.byName[k]; ok {
		return kd
	}
	if ks.other != nil { // the set is full and k is not in it
		return ks.other
	}
	return m.addKind(k)
}

func (m *Master) addKind(k string) *kind {
	m.kindMu.Lock()
	defer m.kindMu.Unlock()
	old := m.kinds.Load()
	if kd, ok := old.byName[k]; ok {
		return kd
	}
	if len(old.byName) >= MaxKinds {
		if old.other == nil {
			m.kinds.Store(&kindSet{byName: old.byName, other: newKind(OtherKind)})
		}
		return m.kinds.Load().other
	}
	kd := newKind(k)
	next := make(map[string]*kind, len(old.byName)+1)
	for name, v := range old.byName {
		next[name] = v
	}
	next[k] = kd
	m.kinds.Store(&kindSet{byName: next})
	return kd
}

func newKind(k string) *kind {
	return &kind{label: label(k), latency: newHistogram(latencyBuckets)}
}

// each calls f for every kind, OtherKind last.
func (ks *kindSet) each(f func(*kind)) {
	for _, kd := range ks.byName {
		f(kd)
	}
	if ks.other != nil {
		f(ks.other)
	}
}

// Submitted records n tasks of kind accepted.
func (m *Master) Submitted(kind string, n int) {
	if n <= 0 {
		return
	}
	m.kind(kind).submitted.Add(uint64(n))
	m.acc.n[sSubmitted].Add(uint64(n))
}

// Dispatched records n tasks of kind sent to a slave.
func (m *Master) Dispatched(kind string, n int) {
	if n <= 0 {
		return
	}
	m.kind(kind).dispatched.Add(uint64(n))
	m.acc.n[sDispatched].Add(uint64(n))
}

// Finished records a task of kind reaching state, latency after it was
// submitted. The latency of canceled tasks is not observed.
func (m *Master) Finished(kind string, state State, latency time.Duration) {
	if state >= numStates {
		return
	}
	kd := m.kind(kind)
	kd.finished[state].Add(1)
	m.acc.n[sDone+int(state)].Add(1)
	if state != Canceled {
		kd.latency.observe(latency.Seconds())
		m.acc.lat.observe(latency)
	}
}

// Retried records a failed attempt of kind that will be tried again.
func (m *Master) Retried(kind string) { m.kind(kind).retried.Add(1) }

// Requeued records n running tasks of kind put back in the queue.
func (m *Master) Requeued(kind string, n int) {
	if n > 0 {
		m.kind(kind).requeued.Add(uint64(n))
	}
}

// LateResult records a result that was ignored: late, duplicate or unknown.
func (m *Master) LateResult() { m.late.Add(1) }

// Forked records a task of kind forked into copies on distinct volunteers.
func (m *Master) Forked(string) { m.forked.Add(1) }

// ExtraCopies records n copies issued because a task's copies disagreed
// or were lost.
func (m *Master) ExtraCopies(_ string, n int) { m.extraCopies.Add(uint64(n)) }

// Invalid records a copy or a ringer whose result was judged wrong.
func (m *Master) Invalid(string) { m.invalid.Add(1) }

// Ringer records a ringer (a task whose answer is known) sent to a
// trusted volunteer as a spot check.
func (m *Master) Ringer(string) { m.ringers.Add(1) }

// Totals are the master's task events since it started, over every kind.
type Totals struct {
	Submitted, Dispatched   uint64
	Done, Failed, Canceled  uint64
	Retried, Requeued, Late uint64
}

// Totals returns the task events recorded so far, summed over the kinds
// (at most MaxKinds+1 of them) rather than counted twice on the hot path.
// Each field is exact; a caller that records under its own lock and reads
// under it too gets them consistent with each other.
func (m *Master) Totals() Totals {
	t := Totals{Late: m.late.Load()}
	m.kinds.Load().each(func(kd *kind) {
		t.Submitted += kd.submitted.Load()
		t.Dispatched += kd.dispatched.Load()
		t.Done += kd.finished[Done].Load()
		t.Failed += kd.finished[Failed].Load()
		t.Canceled += kd.finished[Canceled].Load()
		t.Retried += kd.retried.Load()
		t.Requeued += kd.requeued.Load()
	})
	return t
}

// Commit records one store transaction of ops changes that took d, fsync
// included. The store's committer calls it; it is safe off the master's lock.
func (m *Master) Commit(ops int, d time.Duration) {
	m.commitOps.observe(float64(ops))
	m.commitSeconds.observe(d.Seconds())
	if ops > 0 {
		m.acc.n[sCommitOps].Add(uint64(ops))
	}
}

// SetQueue sets how many tasks of kind wait for a slave. Kinds counted
// under OtherKind overwrite each other: use SetQueues for a full sample.
func (m *Master) SetQueue(kind string, pending int) { m.kind(kind).queued.Store(int64(pending)) }

// SetQueues sets every kind's queue from one sample: levels calls add for
// each kind with waiting tasks. Kinds under OtherKind are summed, and a
// kind absent from the sample reads 0, so the gauge of a kind whose tasks
// are gone does not stay at its last level.
func (m *Master) SetQueues(levels func(add func(kind string, pending int))) {
	sums := map[*kind]int64{}
	levels(func(k string, n int) { sums[m.kind(k)] += int64(n) })
	m.kinds.Load().each(func(kd *kind) { kd.queued.Store(sums[kd]) })
}

// SetTasks sets the numbers of unfinished tasks: pending (queued or waiting
// for a retry), running, and final but not yet acknowledged.
func (m *Master) SetTasks(pending, running, unacked int) {
	m.gPending.Store(int64(pending))
	m.gRunning.Store(int64(running))
	m.gUnacked.Store(int64(unacked))
}

// SetConnections sets the numbers of connected slaves and applications.
func (m *Master) SetConnections(slaves, apps int) {
	m.gSlaves.Store(int64(slaves))
	m.gApps.Store(int64(apps))
}

// SetStoreSize sets the size of the store file.
func (m *Master) SetStoreSize(bytes int64) { m.storeBytes.Store(bytes) }

// Tick closes every second that has passed on the clock: it moves what was
// recorded since the last close into the bucket of the second being closed,
// fills skipped seconds (zero counts, the current gauges), updates what
// the summaries of slaves and applications derive from their counters
// (moving averages, recent seconds, last results) and removes series that
// lingered long enough. It returns at once, without locking, while the clock
// is in the same second.
// A clock that goes back is ignored until it passes the open second again.
func (m *Master) Tick() {
	now := m.now()
	sec := now.Unix()
	if sec <= m.open.Load() {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.tickLocked(now)
}

func (m *Master) tickLocked(now time.Time) {
	sec := now.Unix()
	open := m.open.Load()
	if sec <= open {
		return
	}
	r := m.ring
	var v [numSeries]float64
	for _, i := range [...]int{sSubmitted, sDispatched, sDone, sFailed, sCanceled, sCommitOps} {
		v[i] = float64(m.acc.n[i].Swap(0))
	}
	v[sLatencyMean], v[sLatencyP99] = m.acc.lat.drain()
	v[sPending] = float64(m.gPending.Load())
	v[sRunning] = float64(m.gRunning.Load())
	v[sSlaves] = float64(m.gSlaves.Load())
	v[sApps] = float64(m.gApps.Load())
	for i := range v {
		r.vals[i][slot(open)] = v[i]
	}
	// Skipped seconds: nothing was recorded, the gauges held.
	for s := max(open+1, sec-Window); s < sec; s++ {
		for i := range numSeries {
			switch i {
			case sPending, sRunning, sSlaves, sApps:
				r.vals[i][slot(s)] = v[i]
			default:
				r.vals[i][slot(s)] = 0
			}
		}
	}
	m.open.Store(sec)
	m.tickHandles(now, open, sec)
}

// Series returns series name for the seconds of the window that have
// closed, oldest first, or nil for an unknown name.
func (m *Master) Series(name string) []Point {
	return m.Since(name, time.Time{})
}

// Since returns the closed seconds of series name after the second of t,
// oldest first, or nil for an unknown name. A dashboard passes the time of
// the last point it has.
func (m *Master) Since(name string, t time.Time) []Point {
	i := seriesIndex(name)
	if i < 0 {
		return nil
	}
	since := int64(math.MinInt64)
	if !t.IsZero() {
		since = t.Unix()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.tickLocked(m.now())
	return m.ring.points(i, since, m.open.Load()-1)
}

// Rates are the task events of a window of time that ends now.
type Rates struct {
	Window                        time.Duration // since the master started, when that is shorter than asked
	Submitted, Dispatched, Failed uint64
	Finished                      uint64 // done, failed or canceled
}

// PerSecond is n over the window, zero for an empty window.
func (r Rates) PerSecond(n uint64) float64 {
	if r.Window <= 0 {
		return 0
	}
	return float64(n) / r.Window.Seconds()
}

// Rates returns the events of the seconds of the last window (at most
// Window seconds, the current one as far as it went): those closed from the
// series, the current one from its accumulators, so every event recorded
// is counted exactly once, as in Totals, and none waits for its second to
// close.
func (m *Master) Rates(window time.Duration) Rates {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	m.tickLocked(now)
	open := m.open.Load()
	secs := min(int64(window/time.Second), Window)
	lo := max(m.ring.first, open-secs+1)
	var r Rates
	for s := lo; s < open; s++ {
		i := slot(s)
		v := &m.ring.vals
		r.Submitted += uint64(v[sSubmitted][i])
		r.Dispatched += uint64(v[sDispatched][i])
		r.Failed += uint64(v[sFailed][i])
		r.Finished += uint64(v[sDone][i] + v[sFailed][i] + v[sCanceled][i])
	}
	r.Submitted += m.acc.n[sSubmitted].Load()
	r.Dispatched += m.acc.n[sDispatched].Load()
	r.Failed += m.acc.n[sFailed].Load()
	r.Finished += m.acc.n[sDone].Load() + m.acc.n[sFailed].Load() + m.acc.n[sCanceled].Load()
	from := time.Unix(lo, 0)
	if m.started.After(from) {
		from = m.started
	}
	r.Window = max(now.Sub(from), 0)
	return r
}
