package jsonrpc

import (
	"time"

	"github.com/anthill-project/anthill/master/sched"
	"github.com/anthill-project/anthill/stats"
)

// The parameter and result types of every method, as they travel in JSON.
// A Go client may use them with Client.Call; docs/api.md describes the
// same shapes for everyone else. []byte fields are base64 in JSON, times
// RFC 3339 in UTC, durations integer milliseconds (fields ending in _ms).

// TaskSpec is one new task. Zero values take the master's defaults.
type TaskSpec struct {
	Kind        string `json:"kind" rpc:"required"`
	Payload     []byte `json:"payload,omitempty"`
	Priority    int32  `json:"priority,omitempty"`     // higher runs first under the priority strategy
	TimeoutMS   int64  `json:"timeout_ms,omitempty"`   // 0: the master's default timeout
	MaxAttempts uint32 `json:"max_attempts,omitempty"` // 0: the master's default attempts
	Key         string `json:"key,omitempty"`          // routing key
}

// SubmitParams are Tasks.Submit's parameters: the app id and one task.
type SubmitParams struct {
	App string `json:"app" rpc:"required"`
	TaskSpec
}

// SubmitResult is Tasks.Submit's result.
type SubmitResult struct {
	ID uint64 `json:"id"`
}

// SubmitBatchParams are Tasks.SubmitBatch's parameters.
type SubmitBatchParams struct {
	App   string     `json:"app" rpc:"required"`
	Tasks []TaskSpec `json:"tasks" rpc:"required"`
}

// SubmitBatchResult is Tasks.SubmitBatch's result: the ids in the order of
// the tasks.
type SubmitBatchResult struct {
	IDs []uint64 `json:"ids"`
}

// IDParams name one task: Tasks.Get, Tasks.Cancel, Tasks.Retry.
type IDParams struct {
	ID uint64 `json:"id" rpc:"required"`
}

// WaitParams are Tasks.Wait's parameters. TimeoutMS nil means 30 s.
type WaitParams struct {
	IDs       []uint64 `json:"ids" rpc:"required"`
	TimeoutMS *int64   `json:"timeout_ms,omitempty"`
}

// WaitResult is Tasks.Wait's result: the tasks among the ids that are
// final, in the order of the ids; Done says that is all of them.
type WaitResult struct {
	Tasks []Task `json:"tasks"`
	Done  bool   `json:"done"`
}

// ListParams are Tasks.List's parameters; empty fields do not filter.
type ListParams struct {
	State  string `json:"state,omitempty"` // pending, running, done, failed or canceled
	App    string `json:"app,omitempty"`
	Kind   string `json:"kind,omitempty"`
	Limit  int    `json:"limit,omitempty"`  // 1 to 1000; default 100
	Cursor uint64 `json:"cursor,omitempty"` // a previous page's NextCursor
	Order  string `json:"order,omitempty"`  // "asc" (default, oldest first) or "desc"
}

// ListResult is a page of Tasks.List in the order asked for. NextCursor is
// nil on the last page.
type ListResult struct {
	Tasks      []Task  `json:"tasks"`
	NextCursor *uint64 `json:"next_cursor"`
}

// OKResult is the result of methods that only act.
type OKResult struct {
	OK bool `json:"ok"`
}

// Task is a task as the API shows it. Payload is filled by Tasks.Get only.
// Times are nil until reached. History is never nil: [] before the first
// attempt.
type Task struct {
	ID          uint64     `json:"id"`
	App         string     `json:"app"`
	Kind        string     `json:"kind"`
	Key         string     `json:"key"`
	State       string     `json:"state"`
	Attempts    uint32     `json:"attempts"`
	MaxAttempts uint32     `json:"max_attempts"`
	Priority    int32      `json:"priority"`
	TimeoutMS   int64      `json:"timeout_ms"`
	CreatedAt   *time.Time `json:"created_at"`
	StartedAt   *time.Time `json:"started_at"`
	FinishedAt  *time.Time `json:"finished_at"`
	Slave       string     `json:"slave"`
	Payload     []byte     `json:"payload,omitempty"`
	Result      []byte     `json:"result"`
	Error       string     `json:"error"`
	History     []Attempt  `json:"history"` // the most recent attempts (at most 16), oldest first
}

// Attempt is one run of a task on a slave. Outcome is running, done,
// failed, timeout, lost, returned or canceled (see docs/api.md).
type Attempt struct {
	Slave     string     `json:"slave"`
	StartedAt time.Time  `json:"started_at"`
	EndedAt   *time.Time `json:"ended_at"` // nil while it runs
	Outcome   string     `json:"outcome"`
	Error     string     `json:"error"` // at most 256 bytes
}

// SessionParams name one slave session: Slaves.Get, Slaves.Drain.
type SessionParams struct {
	ID string `json:"id" rpc:"required"`
}

// SlaveList is Slaves.List's result, by name.
type SlaveList struct {
	Slaves []Slave `json:"slaves"`
}

// Slave is one connected slave session.
type Slave struct {
	ID          string    `json:"id"` // the session: a reconnect gets a new one
	Name        string    `json:"name"`
	Host        string    `json:"host"`
	OS          string    `json:"os"`
	Arch        string    `json:"arch"`
	Cores       int       `json:"cores"`
	Concurrency int       `json:"concurrency"`
	Window      int       `json:"window"` // concurrency + prefetch
	Kinds       []string  `json:"kinds"`
	Running     int       `json:"running"`  // tasks dispatched to it and not finished
	Draining    bool      `json:"draining"` // takes no more work
	Dispatched  uint64    `json:"dispatched"`
	Done        uint64    `json:"done"`
	Failed      uint64    `json:"failed"`
	BusyMS      int64     `json:"busy_ms"` // summed handler time
	ConnectedAt time.Time `json:"connected_at"`
}

// AppList is Apps.List's result, by name.
type AppList struct {
	Apps []App `json:"apps"`
}

// App is one application id. Counters run since the master started;
// Unfinished is derived from them (see docs/api.md).
type App struct {
	Name                 string `json:"name"`
	Connected            bool   `json:"connected"`
	Pushed               uint64 `json:"pushed"`
	Unfinished           uint64 `json:"unfinished"`
	Done                 uint64 `json:"done"`
	Failed               uint64 `json:"failed"` // failed or canceled
	Acked                uint64 `json:"acked"`
	PendingNotifications int    `json:"pending_notifications"`
}

// Summary is Stats.Summary's result.
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
// or since the master started when that is shorter (see docs/api.md).
type Throughput struct {
	WindowMS         int64   `json:"window_ms"`
	Finished         uint64  `json:"finished"` // done, failed or canceled in the window
	FinishedPerSec   float64 `json:"finished_per_sec"`
	SubmittedPerSec  float64 `json:"submitted_per_sec"`
	DispatchedPerSec float64 `json:"dispatched_per_sec"`
}

// SeriesParams selects Stats.Series.
type SeriesParams struct {
	// Names of the series; empty means all of them.
	Names []string `json:"names"`
	// Since is a Unix time in seconds: only seconds after it are returned.
	// Zero means the last five minutes. The master keeps one hour.
	Since int64 `json:"since"`
}

// SeriesResult is Stats.Series's result: each series by name, one point
// per second, oldest first.
type SeriesResult struct {
	Series map[string][]stats.Point `json:"series"`
}

// MasterInfo is Master.Info's result.
type MasterInfo struct {
	Version    string    `json:"version"`
	Protocol   int       `json:"protocol"` // the WebSocket protocol version
	Strategy   string    `json:"strategy"`
	Dispatch   string    `json:"dispatch"`
	DataDir    string    `json:"data_dir"`
	StartedAt  time.Time `json:"started_at"`
	UptimeMS   int64     `json:"uptime_ms"`
	MaxPayload int       `json:"max_payload"` // bytes, before base64
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

func taskOut(ti *sched.TaskInfo, withPayload bool) Task {
	t := Task{
		ID: ti.ID, App: ti.App, Kind: ti.Kind, Key: ti.Key, State: ti.State.String(),
		Attempts: ti.Attempts, MaxAttempts: ti.MaxAttempts, Priority: ti.Priority,
		TimeoutMS: ti.Timeout.Milliseconds(), CreatedAt: timePtr(ti.CreatedAt),
		StartedAt: timePtr(ti.StartedAt), FinishedAt: timePtr(ti.FinishedAt),
		Slave: ti.Slave, Result: ti.Result, Error: ti.Err,
		History: make([]Attempt, len(ti.History)),
	}
	for i, a := range ti.History {
		t.History[i] = Attempt{Slave: a.Slave, StartedAt: a.Started.UTC(), EndedAt: timePtr(a.Ended), Outcome: a.Outcome.String(), Error: a.Err}
	}
	if withPayload {
		t.Payload = ti.Payload
	}
	return t
}
