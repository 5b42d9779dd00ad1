package stats

import (
	"cmp"
	"slices"
	"time"
)

// Export is everything a Master holds for an exporter (stats/promexport
// turns it into Prometheus metrics). Each number is read once, atomically,
// but not all of them under one lock. Rows are keyed by
// label value, sorted by it, one per value: names that become the same
// label once made valid UTF-8 (and a kind named like OtherKind) share a row,
// their numbers summed. Only what exists has a row: a kind once recorded,
// a slave name or an application until it has lingered for [Linger].
type Export struct {
	Kinds  []KindRow
	Slaves []SlaveRow
	Apps   []AppRow

	Late uint64 // results ignored: late, duplicate or unknown
	// Replication: tasks forked into copies, copies beyond the first n,
	// copies and ringers judged invalid, ringers sent.
	Forked, ExtraCopies, Invalid, Ringers uint64
	Pending, Running, Unacked             int64 // unfinished tasks, as last set by [Master.SetTasks]
	SlavesConnected                       int64 // as last set by [Master.SetConnections]
	AppsConnected                         int64
	StoreBytes                            int64
	CommitOps                             Histogram // changes per store transaction
	CommitSeconds                         Histogram // duration of a store transaction
}

// KindRow is the numbers of one task kind.
type KindRow struct {
	Kind                                     string // the label: valid UTF-8, or OtherKind
	Submitted, Dispatched, Retried, Requeued uint64
	Finished                                 [numStates]uint64 // by State
	Queued                                   int64             // as last set by [Master.SetQueue]
	Latency                                  Histogram         // seconds, of done and failed tasks
}

// SlaveRow is the numbers of one slave name, over its sessions.
type SlaveRow struct {
	Slave        string // the label: the name made valid UTF-8
	Done, Failed uint64
	Busy         time.Duration // summed handler time
	Reconnects   uint64
	Rejected     uint64 // results the master did not count
	Slots        int    // summed over its live sessions
	Sessions     int    // live sessions; 0 while it lingers
}

// AppRow is the numbers of one application.
type AppRow struct {
	App      string // the label: the name made valid UTF-8
	Pushed   uint64
	Finished [numStates]uint64 // by State
	InFlight int64             // as last set by [App.InFlight]
	Latency  Histogram         // seconds, of done and failed tasks
}

// Export returns the master's numbers for an exporter. Like the other reads
// it first closes the seconds that have passed, so a slave or application
// that has lingered long enough is gone from it.
func (m *Master) Export() Export {
	x := Export{
		Late:   m.late.Load(),
		Forked: m.forked.Load(), ExtraCopies: m.extraCopies.Load(), Invalid: m.invalid.Load(), Ringers: m.ringers.Load(),
		Pending: m.gPending.Load(), Running: m.gRunning.Load(), Unacked: m.gUnacked.Load(),
		SlavesConnected: m.gSlaves.Load(), AppsConnected: m.gApps.Load(),
		StoreBytes: m.storeBytes.Load(),
		CommitOps:  m.commitOps.read(), CommitSeconds: m.commitSeconds.read(),
	}
	m.kinds.Load().each(func(kd *kind) {
		r := KindRow{
			Kind:      kd.label,
			Submitted: kd.submitted.Load(), Dispatched: kd.dispatched.Load(),
			Retried: kd.retried.Load(), Requeued: kd.requeued.Load(),
			Queued: kd.queued.Load(), Latency: kd.latency.read(),
		}
		for s := range r.Finished {
			r.Finished[s] = kd.finished[s].Load()
		}
		x.Kinds = append(x.Kinds, r)
	})
	x.Kinds = mergeRows(x.Kinds, func(r *KindRow) string { return r.Kind }, func(r, o *KindRow) {
		r.Submitted += o.Submitted
		r.Dispatched += o.Dispatched
		r.Retried += o.Retried
		r.Requeued += o.Requeued
		addStates(&r.Finished, &o.Finished)
		r.Queued += o.Queued
		r.Latency.add(o.Latency)
	})

	m.mu.Lock()
	defer m.mu.Unlock()
	m.tickLocked(m.now())
	for _, e := range m.slaves {
		x.Slaves = append(x.Slaves, SlaveRow{
			Slave: e.label, Done: e.nDone.Load(), Failed: e.nFailed.Load(),
			Busy: time.Duration(e.busyNs.Load()), Reconnects: e.reconnects, Rejected: e.nRejected.Load(),
			Slots: e.nSlots, Sessions: e.sessions,
		})
	}
	x.Slaves = mergeRows(x.Slaves, func(r *SlaveRow) string { return r.Slave }, func(r, o *SlaveRow) {
		r.Done += o.Done
		r.Failed += o.Failed
		r.Busy += o.Busy
		r.Reconnects += o.Reconnects
		r.Rejected += o.Rejected
		r.Slots += o.Slots
		r.Sessions += o.Sessions
	})
	for _, a := range m.apps {
		r := AppRow{App: a.label, Pushed: a.nPushed.Load(), InFlight: a.nInFlight.Load(), Latency: a.latency.read()}
		for s := range r.Finished {
			r.Finished[s] = a.nFinished[s].Load()
		}
		x.Apps = append(x.Apps, r)
	}
	x.Apps = mergeRows(x.Apps, func(r *AppRow) string { return r.App }, func(r, o *AppRow) {
		r.Pushed += o.Pushed
		addStates(&r.Finished, &o.Finished)
		r.InFlight += o.InFlight
		r.Latency.add(o.Latency)
	})
	return x
}

// mergeRows sorts rows by label and folds each run of one label into its
// first row with add: an exporter must not see a label value twice.
func mergeRows[R any](rows []R, label func(*R) string, add func(into, from *R)) []R {
	slices.SortFunc(rows, func(a, b R) int { return cmp.Compare(label(&a), label(&b)) })
	out := rows[:0]
	for i := range rows {
		if n := len(out); n > 0 && label(&out[n-1]) == label(&rows[i]) {
			add(&out[n-1], &rows[i])
			continue
		}
		out = append(out, rows[i])
	}
	return out
}

func addStates(into, from *[numStates]uint64) {
	for s := range into {
		into[s] += from[s]
	}
}
