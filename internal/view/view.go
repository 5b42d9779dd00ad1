// Package view is the operator's view of a master, as JSON: one shape for
// a task, a slave, an application and the summary, built in one place from
// the scheduler's snapshot and stats' numbers. jsonrpc serves it, the
// dashboard serves it, the CLI reads it. It holds no state and does no
// I/O; presentation (previews, tables) stays with each consumer.
//
// Conventions, the same in every shape: ids are JSON numbers (they stay
// below 2^53, so JavaScript reads them exactly: see Task.ID); times are
// RFC 3339 in UTC, null when not reached; durations are integer or
// fractional milliseconds in fields ending in _ms; bytes are base64.
package view

import (
	"cmp"
	"slices"
	"time"

	"github.com/anthill-project/anthill/master/sched"
	"github.com/anthill-project/anthill/stats"
)

// Source is what a view is built from. A *sched.Scheduler is one.
type Source interface {
	Stats() sched.Stats
	Info() sched.Info
	MaxPayload() int
	Metrics() *stats.Master
}

// ThroughputWindow is the span the summary's rates cover.
const ThroughputWindow = time.Minute

// Time is t for JSON: nil when zero, else in UTC.
func Time(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

func millis(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// Task is a task as operators see it. Payload is filled where a single
// task is read (Tasks.Get), Result wherever the caller wants it; their
// sizes always are.
type Task struct {
	// ID is the task's id. Ids start from the master's clock in
	// microseconds, which stays below 2^53 until the year 2255.
	ID           uint64     `json:"id"`
	App          string     `json:"app"`
	Kind         string     `json:"kind"`
	Module       string     `json:"module,omitempty"` // kind "wasm": the module's hash
	Key          string     `json:"key"`
	State        string     `json:"state"`
	Attempts     uint32     `json:"attempts"`
	MaxAttempts  uint32     `json:"max_attempts"`
	Priority     int32      `json:"priority"`
	TimeoutMS    int64      `json:"timeout_ms"`
	CreatedAt    *time.Time `json:"created_at"`
	StartedAt    *time.Time `json:"started_at"`
	FinishedAt   *time.Time `json:"finished_at"`
	Slave        string     `json:"slave"`   // the volunteer identity of the last attempt
	Session      string     `json:"session"` // and its session ("" in records from before identities)
	PayloadBytes int        `json:"payload_bytes"`
	ResultBytes  int        `json:"result_bytes"`
	Payload      []byte     `json:"payload,omitempty"`
	Result       []byte     `json:"result"`
	Error        string     `json:"error"`
	History      []Attempt  `json:"history"` // the most recent attempts (at most 16), oldest first; never null
	// Replicas and Quorum are what the task asked for, 0 for its app's
	// defaults; once it ran replicated, what it ran with. Copies are its
	// copies on distinct volunteers; Parent is set on a copy read by id.
	Replicas uint8  `json:"replicas,omitempty"`
	Quorum   uint8  `json:"quorum,omitempty"`
	Copies   []Copy `json:"copies,omitempty"`
	Parent   uint64 `json:"parent,omitempty"`
}

// Attempt is one run of a task on a slave. Outcome is running, done,
// failed, timeout, lost, returned or canceled.
type Attempt struct {
	Slave     string     `json:"slave"`   // the volunteer identity that ran it
	Session   string     `json:"session"` // its session ("" in records from before identities)
	StartedAt time.Time  `json:"started_at"`
	EndedAt   *time.Time `json:"ended_at"` // nil while it runs
	Outcome   string     `json:"outcome"`
	Error     string     `json:"error"` // at most 256 bytes
}

// TaskOf is ti's view, payload and result included.
func TaskOf(ti *sched.TaskInfo) Task {
	t := Task{
		ID: ti.ID, App: ti.App, Kind: ti.Kind, Module: ti.Module, Key: ti.Key, State: ti.State.String(),
		Attempts: ti.Attempts, MaxAttempts: ti.MaxAttempts, Priority: ti.Priority,
		TimeoutMS: ti.Timeout.Milliseconds(), CreatedAt: Time(ti.CreatedAt),
		StartedAt: Time(ti.StartedAt), FinishedAt: Time(ti.FinishedAt),
		PayloadBytes: len(ti.Payload), ResultBytes: len(ti.Result),
		Payload: ti.Payload, Result: ti.Result, Error: ti.Err,
		History:  make([]Attempt, len(ti.History)),
		Replicas: ti.Replicas, Quorum: ti.Quorum, Parent: ti.Parent, Copies: copiesOf(ti),
	}
	t.Slave, t.Session = sched.Attribution(ti.Slave)
	for i, a := range ti.History {
		id, session := sched.Attribution(a.Slave)
		t.History[i] = Attempt{Slave: id, Session: session, StartedAt: a.Started.UTC(), EndedAt: Time(a.Ended), Outcome: a.Outcome.String(), Error: a.Err}
	}
	return t
}

// Page is a page of a task listing in the order asked for. NextCursor is
// nil on the last page.
type Page struct {
	Tasks      []Task  `json:"tasks"`
	NextCursor *uint64 `json:"next_cursor"`
}

// PageOf is the view of a page sched.Tasks returned, without payloads;
// withResults keeps the results.
func PageOf(tasks []sched.TaskInfo, next uint64, withResults bool) Page {
	p := Page{Tasks: make([]Task, len(tasks))}
	for i := range tasks {
		p.Tasks[i] = TaskOf(&tasks[i])
		p.Tasks[i].Payload = nil
		if !withResults {
			p.Tasks[i].Result = nil
		}
	}
	if next != 0 {
		p.NextCursor = &next
	}
	return p
}

// Info describes the master.
type Info struct {
	Version    string    `json:"version"`
	Protocol   int       `json:"protocol"` // the WebSocket protocol version
	Strategy   string    `json:"strategy"`
	Dispatch   string    `json:"dispatch"`
	DataDir    string    `json:"data_dir"`
	StartedAt  time.Time `json:"started_at"`
	UptimeMS   int64     `json:"uptime_ms"`
	MaxPayload int       `json:"max_payload"` // bytes, before base64
}

// InfoOf describes src.
func InfoOf(src Source) Info {
	in := src.Info()
	return Info{
		Version: in.Version, Protocol: in.Protocol, Strategy: in.Strategy, Dispatch: in.Dispatch,
		DataDir: in.Data, StartedAt: in.Started.UTC(), UptimeMS: in.Uptime.Milliseconds(),
		MaxPayload: src.MaxPayload(),
	}
}

// Summary is the master's numbers at a glance.
type Summary struct {
	Tasks      TaskCounts  `json:"tasks"`
	Slaves     SlaveCounts `json:"slaves"`
	Kinds      []KindCount `json:"kinds"`
	Throughput Throughput  `json:"throughput"`
	// DispatchLatencyEstimateMS estimates how long a task submitted now
	// waits before it is dispatched: the pending tasks divided by the
	// dispatch rate of the throughput window (Little's law). Nil when
	// nothing was dispatched in the window.
	DispatchLatencyEstimateMS *float64 `json:"dispatch_latency_estimate_ms"`
	Store                     Store    `json:"store"`
	UptimeMS                  int64    `json:"uptime_ms"`
}

// TaskCounts: Pending, Running and Unacked are now; the rest count events
// since the master started.
type TaskCounts struct {
	Pending     int    `json:"pending"` // queued or waiting for a retry
	Running     int    `json:"running"`
	Unacked     int    `json:"unacked"` // final, their application not yet told
	Submitted   uint64 `json:"submitted"`
	Dispatched  uint64 `json:"dispatched"`
	Done        uint64 `json:"done"`
	Failed      uint64 `json:"failed"`
	Canceled    uint64 `json:"canceled"`
	Retried     uint64 `json:"retried"`
	Requeued    uint64 `json:"requeued"`
	LateResults uint64 `json:"late_results"`
}

// SlaveCounts sums the connected slaves.
type SlaveCounts struct {
	Connected   int `json:"connected"`
	Concurrency int `json:"concurrency"` // tasks they run at once
	Running     int `json:"running"`
}

// KindCount shows per task kind what waits and how many slaves run it.
type KindCount struct {
	Kind    string `json:"kind"`
	Pending int    `json:"pending"`
	Slaves  int    `json:"slaves"`
}

// Throughput is measured over the window that ends now: the last minute,
// or since the master started when that is shorter.
type Throughput struct {
	WindowMS         int64   `json:"window_ms"`
	Finished         uint64  `json:"finished"` // done, failed or canceled in the window
	Failed           uint64  `json:"failed"`   // failed in the window
	FinishedPerSec   float64 `json:"finished_per_sec"`
	SubmittedPerSec  float64 `json:"submitted_per_sec"`
	DispatchedPerSec float64 `json:"dispatched_per_sec"`
}

// Store shows group commit at work: how many changes share a commit and
// what a commit, fsync included, costs.
type Store struct {
	Commits      uint64  `json:"commits"`
	Ops          uint64  `json:"ops"`
	LastBatchOps int     `json:"last_batch_ops"`
	LastCommitMS float64 `json:"last_commit_ms"`
	MeanCommitMS float64 `json:"mean_commit_ms"`
}

// Slave is one connected slave session and its numbers since it
// connected. Identity is who it is; Name only the label it chose.
type Slave struct {
	ID          string   `json:"id"` // the session: a reconnect gets a new one
	Identity    string   `json:"identity"`
	Name        string   `json:"name"`
	Remote      string   `json:"remote"` // the address it connects from
	Host        string   `json:"host"`
	OS          string   `json:"os"`
	Arch        string   `json:"arch"`
	Cores       int      `json:"cores"`
	Concurrency int      `json:"concurrency"`
	Window      int      `json:"window"`     // tasks it may hold now: a slow start, growing with results
	MaxWindow   int      `json:"max_window"` // concurrency + prefetch, capped by the master's --max-window
	Kinds       []string `json:"kinds"`
	Running     int      `json:"running"`  // tasks dispatched to it and not finished
	Draining    bool     `json:"draining"` // takes no more work
	Dispatched  uint64   `json:"dispatched"`
	Done        uint64   `json:"done"`
	Failed      uint64   `json:"failed"`
	// RejectedResults counts results it sent for tasks it held no lease
	// of, or over the size limits; too many in a row disconnect it.
	RejectedResults uint64    `json:"rejected_results"`
	BusyMS          int64     `json:"busy_ms"` // summed handler time
	ConnectedAt     time.Time `json:"connected_at"`
}

// SlaveName is everything under one volunteer identity: its live sessions
// (usually one, none once it has gone and its numbers linger) and the
// numbers kept for it across reconnects. Name is the identity, never a
// self-chosen label: two volunteers calling themselves the same are two
// rows. Labels are the labels its sessions chose.
type SlaveName struct {
	Name         string     `json:"name"`
	Labels       []string   `json:"labels"`
	Sessions     []string   `json:"sessions"`
	Host         string     `json:"host"`
	Platform     string     `json:"platform"` // os/arch
	Cores        int        `json:"cores"`
	Slots        int        `json:"slots"` // concurrency of its sessions
	Running      int        `json:"running"`
	Draining     bool       `json:"draining"` // every session takes no more work
	Done         uint64     `json:"done"`
	Failed       uint64     `json:"failed"`
	Reconnects   uint64     `json:"reconnects"`
	Throughput   float64    `json:"throughput"`    // results/s, one-minute moving average
	BusyFraction float64    `json:"busy_fraction"` // of its slots, one-minute moving average
	MeanTaskMS   float64    `json:"mean_task_ms"`
	LastSeen     *time.Time `json:"last_seen"`
	Recent       []float64  `json:"recent"` // results per second, the last minute, oldest first
}

// App is one application id. Counters run since the master started.
type App struct {
	Name                 string `json:"name"`
	Connected            bool   `json:"connected"`
	Pushed               uint64 `json:"pushed"`
	Unfinished           uint64 `json:"unfinished"` // pushed and not yet final
	Done                 uint64 `json:"done"`
	Failed               uint64 `json:"failed"`   // failed or canceled
	Canceled             uint64 `json:"canceled"` // of those, canceled
	Acked                uint64 `json:"acked"`
	PendingNotifications int    `json:"pending_notifications"`
	// Throughput is tasks finished per second, a one-minute moving
	// average; ETASeconds is Unfinished at that rate, nil when idle.
	Throughput    float64   `json:"throughput"`
	ETASeconds    *float64  `json:"eta_s"`
	MeanLatencyMS float64   `json:"mean_latency_ms"` // submit to final, done and failed tasks
	Recent        []float64 `json:"recent"`          // tasks finished per second, the last minute
}

// Overview is everything the numbers show at one moment, read from the
// source once.
type Overview struct {
	Summary Summary     `json:"summary"`
	Slaves  []Slave     `json:"slaves"` // sessions, by identity
	Names   []SlaveName `json:"names"`  // volunteer identities, live or lingering, by name
	Apps    []App       `json:"apps"`   // by name
}

// Build reads src once and joins the scheduler's state with stats'
// numbers.
func Build(src Source) Overview {
	st := src.Stats()
	met := src.Metrics()
	return Overview{
		Summary: summaryOf(&st, met),
		Slaves:  slavesOf(&st),
		Names:   namesOf(&st, met.Slaves()),
		Apps:    appsOf(&st, met.Apps()),
	}
}

// Summarize is Build's summary alone, for callers that need no lists.
func Summarize(src Source) Summary {
	st := src.Stats()
	return summaryOf(&st, src.Metrics())
}

// Slaves is Build's sessions alone.
func Slaves(src Source) []Slave {
	st := src.Stats()
	return slavesOf(&st)
}

// Apps is Build's applications alone.
func Apps(src Source) []App {
	st := src.Stats()
	return appsOf(&st, src.Metrics().Apps())
}

func summaryOf(st *sched.Stats, met *stats.Master) Summary {
	s := Summary{
		Tasks: TaskCounts{
			Pending: st.Pending, Running: st.Running, Unacked: st.Unacked,
			Submitted: st.Submitted, Dispatched: st.Dispatched, Done: st.Done, Failed: st.Failed,
			Canceled: st.Canceled, Retried: st.Retried, Requeued: st.Requeued, LateResults: st.LateResults,
		},
		Kinds:    make([]KindCount, len(st.Kinds)),
		UptimeMS: st.Uptime.Milliseconds(),
		Store: Store{
			Commits: st.Store.Commits, Ops: st.Store.Ops, LastBatchOps: st.Store.LastBatchOps,
			LastCommitMS: millis(st.Store.LastCommit),
		},
	}
	if st.Store.Commits > 0 {
		s.Store.MeanCommitMS = millis(st.Store.TotalCommit) / float64(st.Store.Commits)
	}
	for i, k := range st.Kinds {
		s.Kinds[i] = KindCount{k.Kind, k.Pending, k.Slaves}
	}
	for _, sl := range st.Slaves {
		s.Slaves.Connected++
		s.Slaves.Concurrency += sl.Concurrency
		s.Slaves.Running += sl.Running
	}
	r := met.Rates(ThroughputWindow)
	s.Throughput = Throughput{
		WindowMS: r.Window.Milliseconds(), Finished: r.Finished, Failed: r.Failed,
		FinishedPerSec: r.PerSecond(r.Finished), SubmittedPerSec: r.PerSecond(r.Submitted),
		DispatchedPerSec: r.PerSecond(r.Dispatched),
	}
	if rate := s.Throughput.DispatchedPerSec; rate > 0 {
		est := float64(st.Pending) / rate * 1000
		s.DispatchLatencyEstimateMS = &est
	}
	return s
}

func slavesOf(st *sched.Stats) []Slave {
	out := make([]Slave, len(st.Slaves))
	for i, sl := range st.Slaves {
		out[i] = Slave{
			ID: sl.Session, Identity: sl.Identity, Name: sl.Name, Remote: sl.Remote, Host: sl.Host, OS: sl.OS, Arch: sl.Arch, Cores: sl.Cores,
			Concurrency: sl.Concurrency, Window: sl.Window, Kinds: sl.Kinds, Running: sl.Running,
			Draining: sl.Draining, Dispatched: sl.Dispatched, Done: sl.Done, Failed: sl.Failed,
			RejectedResults: sl.RejectedResults, MaxWindow: sl.MaxWindow,
			BusyMS: sl.Busy.Milliseconds(), ConnectedAt: sl.Connected.UTC(),
		}
		if out[i].Kinds == nil {
			out[i].Kinds = []string{}
		}
	}
	return out
}

// namesOf joins the live sessions with the numbers stats keeps per name.
// Stats knows every name a session has (SlaveSeen), and its LastSeen
// already counts the sessions' connections.
func namesOf(st *sched.Stats, sums []stats.SlaveSummary) []SlaveName {
	rows := map[string]*SlaveName{}
	for _, sl := range st.Slaves {
		row := rows[sl.Identity]
		if row == nil {
			row = &SlaveName{Name: sl.Identity, Host: sl.Host, Platform: sl.OS + "/" + sl.Arch, Cores: sl.Cores, Draining: true}
			rows[sl.Identity] = row
		}
		row.Sessions = append(row.Sessions, sl.Session)
		if !slices.Contains(row.Labels, sl.Name) {
			row.Labels = append(row.Labels, sl.Name)
		}
		row.Slots += sl.Concurrency
		row.Running += sl.Running
		row.Draining = row.Draining && sl.Draining
	}
	for _, ss := range sums {
		row := rows[ss.Name]
		if row == nil { // gone, its numbers linger
			row = &SlaveName{Name: ss.Name, Slots: ss.Slots}
			rows[ss.Name] = row
		}
		row.Done, row.Failed, row.Reconnects = ss.Done, ss.Failed, ss.Reconnects
		row.Throughput, row.BusyFraction = ss.Throughput, ss.BusyFraction
		row.MeanTaskMS = millis(ss.MeanTaskTime)
		row.Recent, row.LastSeen = ss.Recent, Time(ss.LastSeen)
	}
	out := make([]SlaveName, 0, len(rows))
	for _, row := range rows {
		if len(row.Sessions) == 0 {
			row.Sessions, row.Draining = []string{}, false
		}
		if row.Labels == nil {
			row.Labels = []string{}
		}
		slices.Sort(row.Labels)
		if row.Recent == nil {
			row.Recent = []float64{}
		}
		out = append(out, *row)
	}
	slices.SortFunc(out, func(a, b SlaveName) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// appsOf joins the scheduler's applications with stats' numbers of them.
func appsOf(st *sched.Stats, sums []stats.AppSummary) []App {
	byName := make(map[string]*stats.AppSummary, len(sums))
	for i := range sums {
		byName[sums[i].Name] = &sums[i]
	}
	out := make([]App, len(st.Apps))
	for i, a := range st.Apps {
		app := App{
			Name: a.Name, Connected: a.Connected, Pushed: a.Pushed, Done: a.Done, Failed: a.Failed,
			Acked: a.Acked, PendingNotifications: a.PendingNotifications, Recent: []float64{},
		}
		if final := a.Done + a.Failed; a.Pushed > final {
			app.Unfinished = a.Pushed - final
		}
		if s := byName[a.Name]; s != nil {
			app.Canceled = s.Canceled
			app.Throughput, app.Recent = s.Throughput, s.Recent
			app.MeanLatencyMS = millis(s.MeanLatency)
		}
		if app.Unfinished > 0 && app.Throughput > 0 {
			eta := float64(app.Unfinished) / app.Throughput
			app.ETASeconds = &eta
		}
		out[i] = app
	}
	return out
}

// Series is each named series' seconds closed after since, oldest first,
// [] rather than null for a series with none: the shape of Stats.Series
// and of the dashboard's charts.
func Series(met *stats.Master, names []string, since time.Time) map[string][]stats.Point {
	out := make(map[string][]stats.Point, len(names))
	for _, n := range names {
		pts := met.Since(n, since)
		if pts == nil {
			pts = []stats.Point{}
		}
		out[n] = pts
	}
	return out
}
