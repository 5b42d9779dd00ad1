package stats

import (
	"cmp"
	"math"
	"slices"
	"sync/atomic"
	"time"
)

// Slave is one session of a slave, returned by [Master.SlaveSeen]. The
// master keeps it with the connection and reports results through it.
// Sessions with the same name share their series.
type Slave struct {
	m     *Master
	e     *slaveEntry
	slots int
	gone  atomic.Bool

	// The session's own counts, beside the name's.
	dispatched, done, failed, busyNs, rejected atomic.Uint64
}

// SessionCounts are one session's numbers since it connected.
type SessionCounts struct {
	Dispatched, Done, Failed uint64
	Rejected                 uint64        // results the master did not count (see [Slave.Rejected])
	Busy                     time.Duration // summed handler time
}

// Dispatched records n tasks sent to the session.
func (s *Slave) Dispatched(n int) { s.dispatched.Add(uint64(n)) }

// Session returns the session's numbers.
func (s *Slave) Session() SessionCounts {
	return SessionCounts{
		Dispatched: s.dispatched.Load(), Done: s.done.Load(), Failed: s.failed.Load(),
		Rejected: s.rejected.Load(), Busy: time.Duration(s.busyNs.Load()),
	}
}

// slaveEntry is everything recorded under one slave name.
type slaveEntry struct {
	name                   string
	label                  string
	nDone, nFailed, busyNs atomic.Uint64
	nRejected              atomic.Uint64

	// Guarded by Master.mu.
	sessions, nSlots    int
	reconnects          uint64
	goneAt              time.Time
	lastSeen            time.Time
	prevTasks, prevBusy uint64
	rate, busyRate      float64 // per second, moving averages
	recent              recent  // results per second
}

// later returns the later of a and b: a clock that steps back must not make
// a name look seen earlier than it was.
func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// SlaveSeen records a session of slave name, which runs slots tasks at once,
// and returns its handle. Seeing a name that is connected or lingering counts
// a reconnect. Call [Slave.Gone] when the session ends.
func (m *Master) SlaveSeen(name string, slots int) *Slave {
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.slaves[name]
	if e == nil {
		e = &slaveEntry{name: name, label: label(name)}
		m.slaves[name] = e
	} else {
		e.reconnects++
	}
	e.sessions++
	e.nSlots += slots
	e.goneAt = time.Time{}
	e.lastSeen = later(e.lastSeen, m.now())
	return &Slave{m: m, e: e, slots: slots}
}

// Result records a result of the slave: ok or failed, after runTime in its
// handler. It reads no clock: [Master.Tick] dates results by the second it
// closes.
func (s *Slave) Result(ok bool, runTime time.Duration) {
	e := s.e
	if ok {
		e.nDone.Add(1)
		s.done.Add(1)
	} else {
		e.nFailed.Add(1)
		s.failed.Add(1)
	}
	if runTime > 0 {
		e.busyNs.Add(uint64(runTime))
		s.busyNs.Add(uint64(runTime))
	}
}

// Rejected records a result of the slave that the master did not count:
// one for a task the session held no lease of, or over the size limits.
func (s *Slave) Rejected() {
	s.e.nRejected.Add(1)
	s.rejected.Add(1)
}

// Gone records the end of the session. When a name has no session left its
// series linger for [Linger], then go. Calling Gone again does nothing.
func (s *Slave) Gone() {
	if s.gone.Swap(true) {
		return
	}
	m, e := s.m, s.e
	m.mu.Lock()
	defer m.mu.Unlock()
	e.sessions--
	e.nSlots -= s.slots
	if e.sessions == 0 {
		e.goneAt = m.now()
		e.lastSeen = later(e.lastSeen, e.goneAt)
	}
}

// App is an application as the master knows it, returned by [Master.App].
type App struct {
	m         *Master
	name      string
	label     string
	nPushed   atomic.Uint64
	nFinished [numStates]atomic.Uint64
	nInFlight atomic.Int64
	latency   *histogram // seconds

	// Guarded by Master.mu.
	goneAt       time.Time // zero while known
	prevFinished uint64
	rate         float64 // finished per second, moving average
	recent       recent  // finished per second
}

// App returns the handle of application name, creating it the first time
// and bringing back one that lingers. Call [App.Gone] when the master
// forgets the application.
func (m *Master) App(name string) *App {
	m.mu.Lock()
	defer m.mu.Unlock()
	if a := m.apps[name]; a != nil {
		a.goneAt = time.Time{}
		return a
	}
	a := &App{m: m, name: name, label: label(name), latency: newHistogram(latencyBuckets)}
	m.apps[name] = a
	return a
}

// Pushed records n tasks pushed by the application.
func (a *App) Pushed(n int) {
	if n > 0 {
		a.nPushed.Add(uint64(n))
	}
}

// InFlight sets how many of the application's tasks are not yet final.
func (a *App) InFlight(n int) {
	a.nInFlight.Store(int64(n))
}

// Finished records one of the application's tasks reaching state, latency
// after it was submitted. The latency of canceled tasks is not observed.
func (a *App) Finished(state State, latency time.Duration) {
	if state >= numStates {
		return
	}
	a.nFinished[state].Add(1)
	if state != Canceled {
		a.latency.observe(latency.Seconds())
	}
}

// Counts returns the tasks the application pushed and those that finished
// in each state.
func (a *App) Counts() (pushed, done, failed, canceled uint64) {
	return a.nPushed.Load(), a.nFinished[Done].Load(), a.nFinished[Failed].Load(), a.nFinished[Canceled].Load()
}

// Gone records that the master forgot the application. Its series linger
// for [Linger], then go, unless [Master.App] brings it back.
func (a *App) Gone() {
	a.m.mu.Lock()
	defer a.m.mu.Unlock()
	if a.goneAt.IsZero() {
		a.goneAt = a.m.now()
	}
}

// Remove drops the application's numbers and series at once, without the
// [Linger] of [App.Gone]: the master calls it for an application it forgot
// after an idle time, which already served as the linger, so that a flood
// of application names cannot keep their labels alive. The handle must not
// be used afterwards; [Master.App] makes a new one.
func (a *App) Remove() {
	a.m.mu.Lock()
	defer a.m.mu.Unlock()
	if a.m.apps[a.name] == a {
		delete(a.m.apps, a.name)
	}
}

// tickHandles closes second open for the slaves and apps, sec being the one
// now open: what they recorded since the last call counts for open, the
// seconds between are zero. It removes the slaves and apps gone for Linger.
// Called under m.mu.
func (m *Master) tickHandles(now time.Time, open, sec int64) {
	dt := float64(sec - open)
	alpha := 1 - math.Exp(-dt/60) // one-minute moving average
	for name, e := range m.slaves {
		if e.sessions == 0 && !e.goneAt.IsZero() && now.Sub(e.goneAt) >= Linger {
			delete(m.slaves, name)
			continue
		}
		tasks, busy := e.nDone.Load()+e.nFailed.Load(), e.busyNs.Load()
		n := tasks - e.prevTasks
		e.rate += alpha * (float64(n)/dt - e.rate)
		e.busyRate += alpha * (float64(busy-e.prevBusy)/1e9/dt - e.busyRate)
		e.prevTasks, e.prevBusy = tasks, busy
		e.recent.close(open, sec, float64(n))
		if n > 0 {
			e.lastSeen = later(e.lastSeen, time.Unix(open, 0))
		}
	}
	for name, a := range m.apps {
		if !a.goneAt.IsZero() && now.Sub(a.goneAt) >= Linger {
			delete(m.apps, name)
			continue
		}
		var fin uint64
		for s := range numStates {
			fin += a.nFinished[s].Load()
		}
		n := fin - a.prevFinished
		a.rate += alpha * (float64(n)/dt - a.rate)
		a.prevFinished = fin
		a.recent.close(open, sec, float64(n))
	}
}

// SlaveSummary is what the dashboard shows of one slave name.
type SlaveSummary struct {
	Name         string
	Sessions     int // live sessions; 0 while the series linger
	Slots        int
	Done, Failed uint64
	Reconnects   uint64
	Busy         time.Duration // summed handler time
	MeanTaskTime time.Duration // Busy / (Done + Failed)
	Throughput   float64       // results per second, one-minute moving average
	BusyFraction float64       // of its slots, one-minute moving average
	// Recent is the results (done and failed) of each of the last
	// RecentSeconds closed seconds, oldest first, for a sparkline; seconds
	// before the name was seen are zero. It is always RecentSeconds long.
	Recent []float64
	// LastSeen is the latest of: a session seen, the end of the name's last
	// session, and the start of the last closed second with a result.
	// Results are dated by their second so that recording them reads no
	// clock.
	LastSeen time.Time
	Gone     time.Time // when the last session ended; zero while connected
}

// Slaves returns the slaves with series, sorted by name.
func (m *Master) Slaves() []SlaveSummary {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.tickLocked(m.now())
	out := make([]SlaveSummary, 0, len(m.slaves))
	last := m.open.Load() - 1
	recent := make([]float64, 0, RecentSeconds*len(m.slaves)) // one allocation for all
	for _, e := range m.slaves {
		s := SlaveSummary{
			Name: e.name, Sessions: e.sessions, Slots: e.nSlots,
			Done: e.nDone.Load(), Failed: e.nFailed.Load(), Reconnects: e.reconnects,
			Busy: time.Duration(e.busyNs.Load()), Throughput: e.rate,
			LastSeen: e.lastSeen, Gone: e.goneAt,
		}
		i := len(recent)
		recent = e.recent.appendTo(recent, last)
		s.Recent = recent[i:len(recent):len(recent)] // an append by the caller must not reach the next
		if n := s.Done + s.Failed; n > 0 {
			s.MeanTaskTime = s.Busy / time.Duration(n)
		}
		if e.nSlots > 0 {
			s.BusyFraction = e.busyRate / float64(e.nSlots)
		}
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b SlaveSummary) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// AppSummary is what the dashboard shows of one application.
type AppSummary struct {
	Name                   string
	Pushed                 uint64
	InFlight               int
	Done, Failed, Canceled uint64
	MeanLatency            time.Duration // of done and failed tasks, since the master started
	Throughput             float64       // tasks finished (any state) per second, one-minute moving average
	// Recent is the tasks finished (any state) in each of the last
	// RecentSeconds closed seconds, oldest first, for a sparkline; seconds
	// before the application was known are zero. It is always RecentSeconds
	// long.
	Recent []float64
	Gone   time.Time // when the master forgot it; zero while known
}

// Apps returns the applications with series, sorted by name.
func (m *Master) Apps() []AppSummary {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.tickLocked(m.now())
	out := make([]AppSummary, 0, len(m.apps))
	last := m.open.Load() - 1
	recent := make([]float64, 0, RecentSeconds*len(m.apps)) // one allocation for all
	for _, a := range m.apps {
		s := AppSummary{
			Name: a.name, Pushed: a.nPushed.Load(), InFlight: int(a.nInFlight.Load()),
			Done: a.nFinished[Done].Load(), Failed: a.nFinished[Failed].Load(),
			Canceled: a.nFinished[Canceled].Load(), Throughput: a.rate, Gone: a.goneAt,
		}
		i := len(recent)
		recent = a.recent.appendTo(recent, last)
		s.Recent = recent[i:len(recent):len(recent)]
		if n, sum := a.latency.total(); n > 0 {
			s.MeanLatency = time.Duration(math.Round(sum / float64(n) * 1e9))
		}
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b AppSummary) int { return cmp.Compare(a.Name, b.Name) })
	return out
}
