// Package stats keeps Anthill's numbers — the master's tasks, queues, store
// and connections, each slave's and each application's work — in plain
// atomics, and serves them as totals, as in-memory per-second series of the
// last hour for the dashboard and the Stats RPC, and as an [Export] for a
// metrics exporter.
//
// It imports nothing of ours, nor Prometheus nor net/http, so that the
// scheduler that records into it knows no transport; it decides nothing:
// callers say what happened. It starts no goroutine. Every recording method
// is safe for concurrent use, never blocks on I/O and does not allocate once
// a kind, slave or app has been seen, so the master may call it from its hot
// paths while holding its own lock.
//
// # Export
//
// [Master.Export] hands an exporter every number with the labels it may
// show, and stats/promexport is the one that does, as Prometheus metrics (it
// documents their names). The label rules are kept here, so that every
// exporter shows the same, bounded, set:
//
//   - kind: at most [MaxKinds] values; later kinds are counted as [OtherKind].
//   - slave: one value per slave name. When a slave's last session goes, its
//     row stays for [Linger] (so a flapping slave keeps its counters and its
//     reconnects are counted) and is then removed.
//   - app: one value per application the master knows. After [App.Gone] its
//     row stays for [Linger] and is then removed.
//   - every label value is valid UTF-8.
//
// # Totals
//
// [Master.Totals] sums over the kinds the very counters that Export shows,
// and [App.Counts] reads an application's: the master's Stats, the
// Stats.Summary RPC, the dashboard and /metrics all read them, so there is
// one count of everything and it lives here.
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
