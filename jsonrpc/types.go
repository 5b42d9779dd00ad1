package jsonrpc

import (
	"github.com/anthill-project/anthill/internal/view"
	"github.com/anthill-project/anthill/stats"
)

// The parameter and result types of every method, as they travel in JSON.
// A Go client may use them with Client.Call; docs/api.md describes the
// same shapes for everyone else. []byte fields are base64 in JSON, times
// RFC 3339 in UTC, durations integer milliseconds (fields ending in _ms).

// TaskSpec is one new task. Zero values take the master's defaults.
type TaskSpec struct {
	Kind        string `json:"kind,omitempty"` // required, but for a task that names a module (then "wasm")
	Payload     []byte `json:"payload,omitempty"`
	Priority    int32  `json:"priority,omitempty"`     // higher runs first under the priority strategy
	TimeoutMS   int64  `json:"timeout_ms,omitempty"`   // 0: the master's default timeout
	MaxAttempts uint32 `json:"max_attempts,omitempty"` // 0: the master's default attempts
	Key         string `json:"key,omitempty"`          // routing key
	Module      string `json:"module,omitempty"`       // kind "wasm": the hash of the module that runs it (Modules.Upload)
	// Replicas is how many copies run on distinct volunteers, Quorum how
	// many of them must agree (0: a majority); 0 and 0: the app's
	// defaults (Apps.Configure).
	Replicas int `json:"replicas,omitempty"`
	Quorum   int `json:"quorum,omitempty"`
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

// OKResult is the result of methods that only act.
type OKResult struct {
	OK bool `json:"ok"`
}

// SessionParams name one slave session: Slaves.Get, Slaves.Drain.
type SessionParams struct {
	ID string `json:"id" rpc:"required"`
}

// SlaveList is Slaves.List's result, by name.
type SlaveList struct {
	Slaves []Slave `json:"slaves"`
}

// AppList is Apps.List's result, by name.
type AppList struct {
	Apps []App `json:"apps"`
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

// The shapes of tasks, slaves, applications and the summary are the
// operator's view (internal/view), the same the dashboard and the CLI
// read; they are named here for Go clients.
type (
	// Task is a task as the API shows it. Payload is filled by Tasks.Get
	// only. Times are nil until reached. History is never nil.
	Task = view.Task
	// Attempt is one run of a task on a slave.
	Attempt = view.Attempt
	// Copy is one copy of a replicated task.
	Copy = view.Copy
	// ListResult is a page of Tasks.List in the order asked for.
	// NextCursor is nil on the last page.
	ListResult = view.Page
	// Slave is one connected slave session.
	Slave = view.Slave
	// App is one application id.
	App = view.App
	// Summary is Stats.Summary's result.
	Summary = view.Summary
	// TaskCounts, SlaveCounts, KindCount and Throughput are parts of a
	// Summary.
	TaskCounts  = view.TaskCounts
	SlaveCounts = view.SlaveCounts
	KindCount   = view.KindCount
	Throughput  = view.Throughput
	// MasterInfo is Master.Info's result.
	MasterInfo = view.Info
)
