// Package promexport shows a [stats.Master]'s numbers as Prometheus metrics:
// a collector that reads [stats.Master.Export] at each scrape, and the
// handler that serves a registry on /metrics. It only translates; it keeps
// no count of its own and decides no label (stats does), so that stats, and
// the scheduler recording into it, need neither Prometheus nor net/http.
// It never registers on the global registry, so one process can run several
// masters, each on its own.
//
// # Metrics
//
// All names start with anthill_ and carry their unit: counters end in
// _total, durations in _seconds, sizes in _bytes. Labels are bounded by the
// rules of stats:
//
//   - kind: at most [stats.MaxKinds] values; later kinds are counted as
//     "_other".
//   - slave: one value per connected slave name. When a slave's last session
//     goes, its series stay for [stats.Linger] (so a flapping slave keeps its
//     counters and its reconnects are counted) and are then removed.
//   - app: one value per application the master knows. After
//     [stats.App.Gone] the series stay for [stats.Linger] and are then
//     removed.
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
package promexport

import (
	"fmt"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/anthill-project/anthill/stats"
)

// Register registers m's metrics on reg. Registering a second Master, or
// the same one twice, on one registry fails and leaves the registry as it
// was.
func Register(reg prometheus.Registerer, m *stats.Master) error {
	if err := reg.Register(&collector{m: m}); err != nil {
		return fmt.Errorf("promexport: register metrics: %w", err)
	}
	return nil
}

// Handler serves the metrics of reg in the Prometheus exposition formats,
// for the master's /metrics. It registers nothing of its own on reg.
func Handler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

// The metrics. Their names, help texts and labels are what dashboards and
// alerts depend on: change them only on purpose.
var (
	submitted  = desc("anthill_tasks_submitted_total", "Tasks accepted from applications and the API.", "kind")
	dispatched = desc("anthill_tasks_dispatched_total", "Tasks sent to slaves, retries and re-queues included.", "kind")
	finished   = desc("anthill_tasks_finished_total", "Tasks that reached a final state.", "kind", "state")
	retried    = desc("anthill_tasks_retried_total", "Failed attempts scheduled for another try.", "kind")
	requeued   = desc("anthill_tasks_requeued_total", "Running tasks put back in the queue because their slave vanished or their lease expired.", "kind")
	latency    = desc("anthill_task_latency_seconds", "Time from submission to the final state of done and failed tasks.", "kind")
	queued     = desc("anthill_queued_tasks", "Tasks waiting for a slave, by kind.", "kind")
	tasks      = desc("anthill_tasks", "Unfinished tasks by state: pending, running, or final but not acknowledged (unacked).", "state")
	late       = desc("anthill_late_results_total", "Results ignored because they were late, duplicate or for an unknown task.")
	forked     = desc("anthill_replicated_tasks_total", "Tasks forked into copies on distinct volunteers.")
	extra      = desc("anthill_extra_copies_total", "Copies issued beyond a task's replicas because its copies disagreed or were lost.")
	invalid    = desc("anthill_invalid_results_total", "Copies and ringers whose result was judged wrong.")
	ringers    = desc("anthill_ringers_total", "Ringers (tasks whose answer is known) sent to trusted volunteers as spot checks.")
	commitOps  = desc("anthill_store_commit_ops", "Changes per store transaction (group commit batch size).")
	commitSecs = desc("anthill_store_commit_duration_seconds", "Duration of a store transaction, fsync included.")
	storeBytes = desc("anthill_store_size_bytes", "Size of the store file.")
	slavesConn = desc("anthill_slaves_connected", "Slave connections.")
	appsConn   = desc("anthill_apps_connected", "Application connections.")

	slaveTasks      = desc("anthill_slave_tasks_total", "Results a slave returned, by state (done or failed).", "slave", "state")
	slaveBusy       = desc("anthill_slave_busy_seconds_total", "Handler time a slave reported, summed over its slots.", "slave")
	slaveRejected   = desc("anthill_slave_rejected_results_total", "Results of a slave the master did not count: without a lease of the session, or over the size limits.", "slave")
	slaveReconnects = desc("anthill_slave_reconnects_total", "Times a slave came back while its series lingered.", "slave")
	slaveSlots      = desc("anthill_slave_slots", "Tasks a slave runs at once (its concurrency), summed over its sessions.", "slave")
	slaveConnected  = desc("anthill_slave_connected", "Live sessions of a slave name: normally 1, 0 while its series linger.", "slave")

	appPushed   = desc("anthill_app_tasks_pushed_total", "Tasks an application pushed.", "app")
	appFinished = desc("anthill_app_tasks_finished_total", "An application's tasks that reached a final state.", "app", "state")
	appInFlight = desc("anthill_app_tasks_in_flight", "An application's tasks not yet final.", "app")
	appLatency  = desc("anthill_app_task_latency_seconds", "Time from submission to the final state of an application's done and failed tasks.", "app")

	all = []*prometheus.Desc{
		submitted, dispatched, finished, retried, requeued, latency, queued, tasks,
		late, forked, extra, invalid, ringers, commitOps, commitSecs, storeBytes, slavesConn, appsConn,
		slaveTasks, slaveBusy, slaveRejected, slaveReconnects, slaveSlots, slaveConnected,
		appPushed, appFinished, appInFlight, appLatency,
	}
)

// collector reads its Master at each scrape. Its descriptors are fixed, so
// the registry checks them at registration and refuses a second Master.
type collector struct{ m *stats.Master }

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range all {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	x := c.m.Export()
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	histogram := func(d *prometheus.Desc, h stats.Histogram, labels ...string) {
		buckets := make(map[float64]uint64, len(h.Bounds))
		for i, le := range h.Bounds {
			buckets[le] = h.Cumulative[i]
		}
		ch <- prometheus.MustNewConstHistogram(d, h.Count, h.Sum, buckets, labels...)
	}

	for _, k := range x.Kinds {
		counter(submitted, float64(k.Submitted), k.Kind)
		counter(dispatched, float64(k.Dispatched), k.Kind)
		for s, n := range k.Finished {
			counter(finished, float64(n), k.Kind, stats.State(s).String())
		}
		counter(retried, float64(k.Retried), k.Kind)
		counter(requeued, float64(k.Requeued), k.Kind)
		histogram(latency, k.Latency, k.Kind)
		gauge(queued, float64(k.Queued), k.Kind)
	}
	gauge(tasks, float64(x.Pending), "pending")
	gauge(tasks, float64(x.Running), "running")
	gauge(tasks, float64(x.Unacked), "unacked")
	counter(late, float64(x.Late))
	counter(forked, float64(x.Forked))
	counter(extra, float64(x.ExtraCopies))
	counter(invalid, float64(x.Invalid))
	counter(ringers, float64(x.Ringers))
	histogram(commitOps, x.CommitOps)
	histogram(commitSecs, x.CommitSeconds)
	gauge(storeBytes, float64(x.StoreBytes))
	gauge(slavesConn, float64(x.SlavesConnected))
	gauge(appsConn, float64(x.AppsConnected))

	for _, s := range x.Slaves {
		counter(slaveTasks, float64(s.Done), s.Slave, stats.Done.String())
		counter(slaveTasks, float64(s.Failed), s.Slave, stats.Failed.String())
		counter(slaveBusy, s.Busy.Seconds(), s.Slave)
		counter(slaveRejected, float64(s.Rejected), s.Slave)
		counter(slaveReconnects, float64(s.Reconnects), s.Slave)
		gauge(slaveSlots, float64(s.Slots), s.Slave)
		gauge(slaveConnected, float64(s.Sessions), s.Slave)
	}
	for _, a := range x.Apps {
		counter(appPushed, float64(a.Pushed), a.App)
		for s, n := range a.Finished {
			counter(appFinished, float64(n), a.App, stats.State(s).String())
		}
		gauge(appInFlight, float64(a.InFlight), a.App)
		histogram(appLatency, a.Latency, a.App)
	}
}
