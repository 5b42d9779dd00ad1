// Package stats keeps Anthill's numbers — the master's tasks, queues, store
// and connections, each slave's and each application's work — and serves
// them two ways: as Prometheus metrics on a registry the caller passes in,
// and as in-memory per-second series of the last hour for the dashboard and
// the Stats RPC.
//
// It imports nothing of ours and decides nothing: callers say what happened.
// It never registers on the global Prometheus registry and starts no
// goroutine. Every recording method is safe for concurrent use, never blocks
// on I/O and does not allocate once a kind, slave or app has been seen, so the
// master may call it from its hot paths while holding its own lock.
//
// # Metrics
//
// All names start with anthill_ and carry their unit: counters end in
// _total, durations in _seconds, sizes in _bytes. Labels are bounded:
//
//   - kind: at most [MaxKinds] values; later kinds are counted as "_other".
//   - slave: one value per connected slave name. When a slave's last session
//     goes, its series stay for [Linger] (so a flapping slave keeps its
//     counters and its reconnects are counted) and are then removed.
//   - app: one value per application the master knows. After [App.Gone] the
//     series stay for [Linger] and are then removed.
//   - state: done, failed, canceled (tasks finished) or pending, running,
//     unacked (tasks by state).
//
// Rates are left to Prometheus. Useful queries:
//
//	dispatch rate        rate(anthill_tasks_dispatched_total[1m])
//	results per second   sum(rate(anthill_tasks_finished_total[1m]))
//	mean task latency    rate(anthill_task_latency_seconds_sum[5m]) / rate(anthill_task_latency_seconds_count[5m])
//	slave busy fraction  rate(anthill_slave_busy_seconds_total[1m]) / anthill_slave_slots
//	slave mean task time rate(anthill_slave_busy_seconds_total[5m]) / sum without(state) (rate(anthill_slave_tasks_total[5m]))
//
// # Totals
//
// Master.Totals and App.Counts give the same events summed over kinds: the
// master's Stats, the Stats.Summary RPC and the dashboard read them, so
// there is one count of everything and it lives here.
//
// # Time series
//
// [Master.Tick] closes the seconds that have passed on the clock given to
// [NewMaster]: what was recorded since the previous closing goes into the
// bucket of the second being closed, seconds nobody recorded in are zero, and
// gauges are sampled. The master calls Tick from its timer loop (every 20 ms),
// so an event lands at most one tick late; reads call it too. [Window]
// buckets are kept per series; [Master.Series] and [Master.Since] read them.
//
// Per slave name and per application, Tick keeps only what a dashboard row
// needs, since there can be many: a one-minute moving average of finished
// tasks and the last [RecentSeconds] seconds of them, rather than [Window]
// buckets each. [Master.Slaves] and [Master.Apps] return them, with each
// slave's last-seen time. Tick derives all of it from the handles' counters
// and dates a slave's last result to the second it closes, so that recording
// a result stays a few atomic adds with no clock read.
//
// # Lock order
//
// The caller may hold its own locks while calling into stats. Stats calls
// out only to the clock, which must not take the caller's locks; so the
// locks inside stats are always the last taken. Tick, the reads and the
// Seen/Gone calls take a short internal mutex; the recording calls take
// none once their kind is known.
package stats
