package stats

import (
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// MaxKinds bounds the kind label: tasks of kinds first seen after this many
// are counted under OtherKind.
const MaxKinds = 200

// OtherKind is the kind label of tasks whose kind came after MaxKinds others.
const OtherKind = "_other"

// Linger is how long a slave's or an application's series stay after it has
// gone, before their labels are removed.
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

// Buckets. Task latency runs from milliseconds (echo) to hours (a long job
// waiting in a queue); a commit from tens of microseconds to a slow disk's
// second; a commit holds from one change to the store's batch limit.
var (
	latencyBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 1800}
	commitBuckets  = prometheus.ExponentialBuckets(50e-6, 2, 16) // 50 µs .. 1.6 s
	opsBuckets     = prometheus.ExponentialBuckets(1, 2, 14)     // 1 .. 8192
)

// Master records the master's numbers. Create it with [NewMaster]. Its
// methods are safe for concurrent use.
type Master struct {
	now     func() time.Time
	started time.Time

	// Prometheus collectors.
	submitted, dispatched, retried, requeued *prometheus.CounterVec // kind
	finished                                 *prometheus.CounterVec // kind, state
	latency                                  *prometheus.HistogramVec
	queued                                   *prometheus.GaugeVec // kind
	tasks                                    *prometheus.GaugeVec // state
	pending, running, unacked                prometheus.Gauge
	late                                     prometheus.Counter
	commitOps, commitSeconds                 prometheus.Histogram
	storeBytes                               prometheus.Gauge
	slavesConn, appsConn                     prometheus.Gauge

	slaveTasks      *prometheus.CounterVec // slave, state (done|failed)
	slaveBusy       *prometheus.CounterVec // slave
	slaveReconnects *prometheus.CounterVec // slave
	slaveSlots      *prometheus.GaugeVec   // slave
	slaveConnected  *prometheus.GaugeVec   // slave

	appPushed   *prometheus.CounterVec // app
	appFinished *prometheus.CounterVec // app, state
	appInFlight *prometheus.GaugeVec   // app
	appLatency  *prometheus.HistogramVec

	// kinds is copied on write: the hot path loads it without a lock.
	kinds  atomic.Pointer[map[string]*kind]
	kindMu sync.Mutex // serialises writers of kinds
	other  *kind      // created with the first overflowing kind, under kindMu

	// Accumulators of the second being filled: the hot path adds, Tick swaps.
	acc struct {
		n   [numSeries]atomic.Uint64 // the per-second counts; other slots unused
		lat latHist
	}
	// Gauges sampled by Tick.
	gPending, gRunning, gSlaves, gApps atomic.Int64

	open atomic.Int64 // the second the accumulators are filling

	// Totals over every kind, for Totals: summing the Prometheus
	// counters would mean walking every kind's collectors.
	total struct {
		submitted, dispatched, retried, requeued, late atomic.Uint64
		finished                                       [numStates]atomic.Uint64
	}

	mu     sync.Mutex // guards ring, slaves, apps, and the handles' fields marked so
	ring   *ring
	slaves map[string]*slaveEntry
	apps   map[string]*App
}

// kind holds the resolved collectors of one kind.
type kind struct {
	submitted, dispatched, retried, requeued prometheus.Counter
	finished                                 [numStates]prometheus.Counter
	latency                                  prometheus.Observer
	queued                                   prometheus.Gauge
}

// NewMaster registers the master's metrics on reg and returns the recorder.
// A nil reg records without exporting. now is the clock that drives the
// series; nil means time.Now. Registering two Masters on one registry fails.
func NewMaster(reg prometheus.Registerer, now func() time.Time) (*Master, error) {
	if now == nil {
		now = time.Now
	}
	m := &Master{now: now, ring: &ring{}, slaves: map[string]*slaveEntry{}, apps: map[string]*App{}}
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	}
	gauge := func(name, help string, labels ...string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels)
	}
	hist := func(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
		return prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, labels)
	}

	m.submitted = counter("anthill_tasks_submitted_total", "Tasks accepted from applications and the API.", "kind")
	m.dispatched = counter("anthill_tasks_dispatched_total", "Tasks sent to slaves, retries and re-queues included.", "kind")
	m.finished = counter("anthill_tasks_finished_total", "Tasks that reached a final state.", "kind", "state")
	m.retried = counter("anthill_tasks_retried_total", "Failed attempts scheduled for another try.", "kind")
	m.requeued = counter("anthill_tasks_requeued_total", "Running tasks put back in the queue because their slave vanished or their lease expired.", "kind")
	m.latency = hist("anthill_task_latency_seconds", "Time from submission to the final state of done and failed tasks.", latencyBuckets, "kind")
	m.queued = gauge("anthill_queued_tasks", "Tasks waiting for a slave, by kind.", "kind")
	m.tasks = gauge("anthill_tasks", "Unfinished tasks by state: pending, running, or final but not acknowledged (unacked).", "state")
	m.late = prometheus.NewCounter(prometheus.CounterOpts{Name: "anthill_late_results_total", Help: "Results ignored because they were late, duplicate or for an unknown task."})
	m.commitOps = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "anthill_store_commit_ops", Help: "Changes per store transaction (group commit batch size).", Buckets: opsBuckets})
	m.commitSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "anthill_store_commit_duration_seconds", Help: "Duration of a store transaction, fsync included.", Buckets: commitBuckets})
	m.storeBytes = prometheus.NewGauge(prometheus.GaugeOpts{Name: "anthill_store_size_bytes", Help: "Size of the store file."})
	m.slavesConn = prometheus.NewGauge(prometheus.GaugeOpts{Name: "anthill_slaves_connected", Help: "Slave connections."})
	m.appsConn = prometheus.NewGauge(prometheus.GaugeOpts{Name: "anthill_apps_connected", Help: "Application connections."})

	m.slaveTasks = counter("anthill_slave_tasks_total", "Results a slave returned, by state (done or failed).", "slave", "state")
	m.slaveBusy = counter("anthill_slave_busy_seconds_total", "Handler time a slave reported, summed over its slots.", "slave")
	m.slaveReconnects = counter("anthill_slave_reconnects_total", "Times a slave came back while its series lingered.", "slave")
	m.slaveSlots = gauge("anthill_slave_slots", "Tasks a slave runs at once (its concurrency), summed over its sessions.", "slave")
	m.slaveConnected = gauge("anthill_slave_connected", "Live sessions of a slave name: normally 1, 0 while its series linger.", "slave")

	m.appPushed = counter("anthill_app_tasks_pushed_total", "Tasks an application pushed.", "app")
	m.appFinished = counter("anthill_app_tasks_finished_total", "An application's tasks that reached a final state.", "app", "state")
	m.appInFlight = gauge("anthill_app_tasks_in_flight", "An application's tasks not yet final.", "app")
	m.appLatency = hist("anthill_app_task_latency_seconds", "Time from submission to the final state of an application's done and failed tasks.", latencyBuckets, "app")

	m.pending = m.tasks.WithLabelValues("pending")
	m.running = m.tasks.WithLabelValues("running")
	m.unacked = m.tasks.WithLabelValues("unacked")

	if reg != nil {
		cs := []prometheus.Collector{
			m.submitted, m.dispatched, m.finished, m.retried, m.requeued, m.latency, m.queued, m.tasks,
			m.late, m.commitOps, m.commitSeconds, m.storeBytes, m.slavesConn, m.appsConn,
			m.slaveTasks, m.slaveBusy, m.slaveReconnects, m.slaveSlots, m.slaveConnected,
			m.appPushed, m.appFinished, m.appInFlight, m.appLatency,
		}
		for i, c := range cs {
			if err := reg.Register(c); err != nil {
				for _, done := range cs[:i] {
					reg.Unregister(done)
				}
				return nil, fmt.Errorf("stats: register metrics: %w", err)
			}
		}
	}

	m.kinds.Store(&map[string]*kind{})
	m.started = now()
	start := m.started.Unix()
	m.ring.first = start
	m.open.Store(start)
	return m, nil
}

// kind returns the collectors of k, creating them the first time.
func (m *Master) kind(k string) *kind {
	if kd, ok := (*m.kinds.Load())[k]; ok {
		return kd
	}
	return m.addKind(k)
}

func (m *Master) addKind(k string) *kind {
	m.kindMu.Lock()
	defer m.kindMu.Unlock()
	old := *m.kinds.Load()
	if kd, ok := old[k]; ok {
		return kd
	}
	if len(old) >= MaxKinds {
		if m.other == nil {
			m.other = m.newKind(OtherKind)
		}
		return m.other
	}
	kd := m.newKind(k)
	next := make(map[string]*kind, len(old)+1)
	for name, v := range old {
		next[name] = v
	}
	next[k] = kd
	m.kinds.Store(&next)
	return kd
}

func (m *Master) newKind(k string) *kind {
	label := strings.ToValidUTF8(k, "\uFFFD") // Prometheus panics on invalid UTF-8
	kd := &kind{
		submitted:  m.submitted.WithLabelValues(label),
		dispatched: m.dispatched.WithLabelValues(label),
		retried:    m.retried.WithLabelValues(label),
		requeued:   m.requeued.WithLabelValues(label),
		latency:    m.latency.WithLabelValues(label),
		queued:     m.queued.WithLabelValues(label),
	}
	for s := range numStates {
		kd.finished[s] = m.finished.WithLabelValues(label, stateNames[s])
	}
	return kd
}

// Submitted records n tasks of kind accepted.
func (m *Master) Submitted(kind string, n int) {
	if n <= 0 {
		return
	}
	m.kind(kind).submitted.Add(float64(n))
	m.acc.n[sSubmitted].Add(uint64(n))
	m.total.submitted.Add(uint64(n))
}

// Dispatched records n tasks of kind sent to a slave.
func (m *Master) Dispatched(kind string, n int) {
	if n <= 0 {
		return
	}
	m.kind(kind).dispatched.Add(float64(n))
	m.acc.n[sDispatched].Add(uint64(n))
	m.total.dispatched.Add(uint64(n))
}

// Finished records a task of kind reaching state, latency after it was
// submitted. The latency of canceled tasks is not observed.
func (m *Master) Finished(kind string, state State, latency time.Duration) {
	if state >= numStates {
		return
	}
	kd := m.kind(kind)
	kd.finished[state].Inc()
	m.acc.n[sDone+int(state)].Add(1)
	m.total.finished[state].Add(1)
	if state != Canceled {
		kd.latency.Observe(latency.Seconds())
		m.acc.lat.observe(latency)
	}
}

// Retried records a failed attempt of kind that will be tried again.
func (m *Master) Retried(kind string) {
	m.kind(kind).retried.Inc()
	m.total.retried.Add(1)
}

// Requeued records n running tasks of kind put back in the queue.
func (m *Master) Requeued(kind string, n int) {
	if n > 0 {
		m.kind(kind).requeued.Add(float64(n))
		m.total.requeued.Add(uint64(n))
	}
}

// LateResult records a result that was ignored: late, duplicate or unknown.
func (m *Master) LateResult() {
	m.late.Inc()
	m.total.late.Add(1)
}

// Totals are the master's task events since it started, over every kind.
type Totals struct {
	Submitted, Dispatched   uint64
	Done, Failed, Canceled  uint64
	Retried, Requeued, Late uint64
}

// Totals returns the task events recorded so far. Each field is exact; a
// caller that records under its own lock and reads under it too gets them
// consistent with each other.
func (m *Master) Totals() Totals {
	return Totals{
		Submitted: m.total.submitted.Load(), Dispatched: m.total.dispatched.Load(),
		Done: m.total.finished[Done].Load(), Failed: m.total.finished[Failed].Load(),
		Canceled: m.total.finished[Canceled].Load(),
		Retried:  m.total.retried.Load(), Requeued: m.total.requeued.Load(), Late: m.total.late.Load(),
	}
}

// Commit records one store transaction of ops changes that took d, fsync
// included. The store's committer calls it; it is safe off the master's lock.
func (m *Master) Commit(ops int, d time.Duration) {
	m.commitOps.Observe(float64(ops))
	m.commitSeconds.Observe(d.Seconds())
	if ops > 0 {
		m.acc.n[sCommitOps].Add(uint64(ops))
	}
}

// SetQueue sets how many tasks of kind wait for a slave.
func (m *Master) SetQueue(kind string, pending int) { m.kind(kind).queued.Set(float64(pending)) }

// SetTasks sets the numbers of unfinished tasks: pending (queued or waiting
// for a retry), running, and final but not yet acknowledged.
func (m *Master) SetTasks(pending, running, unacked int) {
	m.pending.Set(float64(pending))
	m.running.Set(float64(running))
	m.unacked.Set(float64(unacked))
	m.gPending.Store(int64(pending))
	m.gRunning.Store(int64(running))
}

// SetConnections sets the numbers of connected slaves and applications.
func (m *Master) SetConnections(slaves, apps int) {
	m.slavesConn.Set(float64(slaves))
	m.appsConn.Set(float64(apps))
	m.gSlaves.Store(int64(slaves))
	m.gApps.Store(int64(apps))
}

// SetStoreSize sets the size of the store file.
func (m *Master) SetStoreSize(bytes int64) { m.storeBytes.Set(float64(bytes)) }

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
