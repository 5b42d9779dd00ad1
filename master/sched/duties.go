package sched

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/anthill-project/anthill/protocol"
)

// The background duties. One ticker and the one lock serve them all; each
// duty is a named method with its own interval, run on the tick when it is
// due, so none of them walks state more often than it needs to.

// tick is the ticker's period: the finest interval a duty may have.
const tick = 20 * time.Millisecond

// Intervals of the duties.
const (
	// Retries are due to the millisecond of their backoff.
	retriesEvery = tick
	// The series close one-second buckets; the check is cheap.
	seriesEvery = tick
	// Leases are coarse (a timeout plus seconds of grace).
	leasesEvery = 100 * time.Millisecond
	// The gauges are levels Prometheus scrapes every few seconds.
	gaugesEvery = time.Second
	// Idle applications are forgotten after minutes; the walk is bounded
	// by MaxApps.
	appsEvery = time.Second
	// Acknowledged tasks outlive their retention by at most this much.
	retentionEvery = 10 * time.Second
	// retentionBatch bounds the deletions of one sweep.
	retentionBatch = 50000
	// slowDuty is how long a duty may hold the lock before it is logged.
	slowDuty = 100 * time.Millisecond
)

// duty is one background job on the scheduler's ticker.
type duty struct {
	name  string
	every time.Duration
	run   func(s *Scheduler, now time.Time, c *change)
	last  time.Time
}

func newDuties() []duty {
	return []duty{
		{name: "retries", every: retriesEvery, run: (*Scheduler).retryDue},
		{name: "leases", every: leasesEvery, run: (*Scheduler).expireLeases},
		{name: "series", every: seriesEvery, run: (*Scheduler).closeSeries},
		{name: "gauges", every: gaugesEvery, run: (*Scheduler).sampleGauges},
		{name: "retention", every: retentionEvery, run: (*Scheduler).sweepRetention},
		{name: "apps", every: appsEvery, run: (*Scheduler).forgetApps},
	}
}

// due reports whether d should run at now. A clock that stepped back makes
// it due rather than silent until the clock catches up.
func (d *duty) due(now time.Time) bool {
	return now.Sub(d.last) >= d.every || now.Before(d.last)
}

// runDuties runs the ticker until ctx ends.
func (s *Scheduler) runDuties(ctx context.Context) {
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.tick()
	}
}

// tick runs every duty that is due, then fills the slaves the duties gave
// work to and commits what they changed.
func (s *Scheduler) tick() {
	now := s.opts.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	var c change
	for i := range s.duties {
		d := &s.duties[i]
		if d.due(now) {
			d.last = now
			start := time.Now()
			d.run(s, now, &c)
			if took := time.Since(start); took > slowDuty {
				s.opts.Logger.Warn("background duty ran long, holding the scheduler", "duty", d.name, "took", took)
			}
		}
	}
	s.pumpLocked()
	s.commitChangeLocked(&c)
}

// retryDue queues the tasks whose retry backoff has passed.
func (s *Scheduler) retryDue(now time.Time, _ *change) {
	for s.retries.Len() > 0 && !s.retries.peek().retryAt.After(now) {
		t := s.retries.pop()
		s.pushLocked(t)
	}
}

// expireLeases takes back the tasks whose slave sent no result within the
// task's timeout plus the lease grace. As in DetachSlave, only the oldest
// Concurrency tasks the slave holds could have started: an expired one
// among them costs an attempt, one queued behind them goes back as
// returned. The leases come from a heap by deadline, so a tick looks at
// the leases that ended, not at every slave.
func (s *Scheduler) expireLeases(now time.Time, c *change) {
	var expired map[*Slave][]*task
	for _, t := range s.leases.due(now) {
		if expired == nil {
			expired = map[*Slave][]*task{}
		}
		expired[t.slave] = append(expired[t.slave], t)
	}
	for sl, expired := range expired {
		var held []uint64
		for _, t := range sl.running {
			if t.slave == sl && t.state == protocol.StateRunning {
				held = append(held, t.seq)
			}
		}
		slices.Sort(held)
		lastStarted := held[min(sl.hello.Concurrency, len(held))-1]
		for _, t := range expired {
			// The slave keeps the slot until it answers; the task may run
			// elsewhere meanwhile.
			if t.seq <= lastStarted {
				s.requeueLocked(t, OutcomeLost, fmt.Sprintf("no result from slave %s within the lease of %v", sl.view.Name, t.timeout+s.opts.LeaseGrace), now, c)
			} else {
				s.requeueLocked(t, OutcomeReturned, fmt.Sprintf("slave %s did not start the task within the lease of %v", sl.view.Name, t.timeout+s.opts.LeaseGrace), now, c)
			}
		}
	}
}

// closeSeries lets stats close the seconds that ended.
func (s *Scheduler) closeSeries(time.Time, *change) { s.metrics.Tick() }

// sampleGauges sets what the metrics show as levels rather than events.
func (s *Scheduler) sampleGauges(time.Time, *change) {
	pending, running, unacked, apps := s.retries.Len(), 0, 0, 0
	// liveKinds is bounded by MaxKinds, and stats labels the first
	// stats.MaxKinds of them, summing the rest under one label.
	s.metrics.SetQueues(func(add func(string, int)) {
		for k := range s.liveKinds {
			n := s.queue.len(s.classes[k])
			if k == protocol.KindWASM {
				for _, m := range s.modules {
					n += s.queue.len(m.class)
				}
			}
			pending += n
			if n > 0 {
				add(k, n)
			}
		}
	})
	for sl := range s.slaves {
		running += len(sl.running)
	}
	for _, a := range s.apps {
		unacked += len(a.pending) + len(a.sent)
		if a.out != nil {
			apps++
		}
		pushed, done, failed, canceled := a.metrics.Counts()
		if final := done + failed + canceled; pushed >= final {
			a.metrics.InFlight(int(pushed - final))
		}
	}
	s.metrics.SetTasks(pending, running, unacked)
	s.metrics.SetConnections(len(s.slaves), apps)
}

// sweepRetention deletes acknowledged tasks past the retention, oldest
// first.
func (s *Scheduler) sweepRetention(now time.Time, c *change) {
	cut := now.Add(-s.opts.Retention)
	n := 0
	for n < len(s.expiry) && s.expiry[n].at.Before(cut) && n < retentionBatch {
		// A task retried after its acknowledgement is live again: its
		// record is the new run's, not the one that expired.
		if id := s.expiry[n].id; s.tasks[id] == nil {
			c.b.DeleteTask(id)
		}
		n++
	}
	s.expiry = s.expiry[n:]
}
