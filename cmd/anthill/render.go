package main

// What the client commands print: every result type is rendered here,
// field by field, as a table (one row per task, slave or app) or as
// "name: value" lines (one task, one slave, the summary). Values are
// formatted by their Go type: []byte is a payload or a result, shown as
// text when it reads as text; times are to the second; a missing value is
// "-". --json bypasses all of it.

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/anthill-project/anthill/jsonrpc"
)

const (
	// shortResult is the longest result or payload printed as text.
	shortResult = 1024
	// maxCell is the widest table cell, in runes; maxErrorCell that of a
	// task's error, which would push the rest of its row off the screen.
	maxCell      = 80
	maxErrorCell = 60
)

// printJSON writes a result as one JSON document and a newline.
func printJSON(w io.Writer, raw json.RawMessage) error {
	_, err := fmt.Fprintf(w, "%s\n", bytes.TrimSpace(raw))
	return err
}

func newTabWriter(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
}

// printTable prints rows under header, each cell cut to maxCell runes.
func printTable(w io.Writer, header []string, rows [][]string) error {
	tw := newTabWriter(w)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		for i, s := range r {
			if i > 0 {
				fmt.Fprint(tw, "\t")
			}
			if s == "" {
				s = "-"
			}
			fmt.Fprint(tw, clipText(s, maxCell))
		}
		fmt.Fprintln(tw)
	}
	return tw.Flush()
}

// field is one line of printFields: a field of a result, named as in the
// result's JSON (nested ones dotted) so that --json and the text agree.
type field struct {
	name, value string
}

// printFields prints "name: value" lines, the values aligned.
func printFields(w io.Writer, fields []field) error {
	tw := newTabWriter(w)
	for _, f := range fields {
		fmt.Fprintf(tw, "%s:\t%s\n", f.name, f.value)
	}
	return tw.Flush()
}

// listFields names the elements of a list name[0], name[1]...; an empty
// list is one line, "-".
func listFields[T any](name string, list []T, value func(*T) string) []field {
	if len(list) == 0 {
		return []field{{name, "-"}}
	}
	fs := make([]field, len(list))
	for i := range list {
		fs[i] = field{fmt.Sprintf("%s[%d]", name, i), value(&list[i])}
	}
	return fs
}

// --- tasks

var taskHeader = []string{"ID", "APP", "KIND", "STATE", "ATTEMPTS", "PRIORITY", "CREATED", "FINISHED", "SLAVE", "ERROR"}

// printTasks prints tasks as the table of the tasks command.
func printTasks(w io.Writer, tasks []jsonrpc.Task) error {
	rows := make([][]string, len(tasks))
	for i := range tasks {
		t := &tasks[i]
		rows[i] = []string{
			fmt.Sprint(t.ID), fmtText(t.App), fmtText(t.Kind), fmtText(t.State),
			fmt.Sprintf("%d/%d", t.Attempts, t.MaxAttempts), fmt.Sprint(t.Priority),
			fmtTime(t.CreatedAt), fmtTime(t.FinishedAt), fmtText(t.Slave), clipText(fmtText(t.Error), maxErrorCell),
		}
	}
	return printTable(w, taskHeader, rows)
}

// printTask prints every field of a task, its attempts one per line.
func printTask(w io.Writer, t *jsonrpc.Task) error {
	fs := []field{
		{"id", fmt.Sprint(t.ID)},
		{"app", fmtText(t.App)},
		{"kind", fmtText(t.Kind)},
	}
	if t.Module != "" {
		fs = append(fs, field{"module", t.Module})
	}
	fs = append(fs, []field{
		{"key", fmtText(t.Key)},
		{"state", fmtText(t.State)},
		{"attempts", fmt.Sprint(t.Attempts)},
		{"max_attempts", fmt.Sprint(t.MaxAttempts)},
		{"priority", fmt.Sprint(t.Priority)},
		{"timeout_ms", fmt.Sprint(t.TimeoutMS)},
		{"created_at", fmtTime(t.CreatedAt)},
		{"started_at", fmtTime(t.StartedAt)},
		{"finished_at", fmtTime(t.FinishedAt)},
		{"slave", fmtText(t.Slave)},
		{"session", fmtText(t.Session)},
	}...)
	// The master leaves an empty payload out, as Tasks.Wait and
	// Tasks.List leave out every payload.
	if len(t.Payload) > 0 {
		fs = append(fs, field{"payload", fmtBytes(t.Payload)})
	}
	fs = append(fs, field{"result", fmtBytes(t.Result)}, field{"error", fmtText(t.Error)})
	if t.Replicas > 0 {
		fs = append(fs, field{"replicas", fmt.Sprint(t.Replicas)}, field{"quorum", fmt.Sprint(t.Quorum)})
	}
	if t.Parent != 0 {
		fs = append(fs, field{"copy_of", fmt.Sprint(t.Parent)})
	}
	if len(t.Copies) > 0 {
		fs = append(fs, listFields("copies", t.Copies, func(c *jsonrpc.Copy) string {
			return fmt.Sprintf("slave=%s session=%s started_at=%s ended_at=%s outcome=%s error=%s",
				fmtText(c.Slave), fmtText(c.Session), fmtTime(c.StartedAt), fmtTime(c.EndedAt), fmtText(c.Outcome), fmtText(c.Error))
		})...)
	}
	fs = append(fs, listFields("history", t.History, func(a *jsonrpc.Attempt) string {
		return fmt.Sprintf("slave=%s session=%s started_at=%s ended_at=%s outcome=%s error=%s",
			fmtText(a.Slave), fmtText(a.Session), fmtTime(&a.StartedAt), fmtTime(a.EndedAt), fmtText(a.Outcome), fmtText(a.Error))
	})...)
	return printFields(w, fs)
}

// printWaitLines prints wait's line per id: the id, the state, and the
// result of a done task or the error of a failed or canceled one.
// byID holds the final tasks; the others are "unfinished".
func printWaitLines(w io.Writer, ids []uint64, byID map[uint64]*jsonrpc.Task) error {
	tw := newTabWriter(w)
	for _, id := range ids {
		t, ok := byID[id]
		switch {
		case !ok:
			fmt.Fprintf(tw, "%d\t%s\t\n", id, "unfinished")
		case t.State == "done":
			fmt.Fprintf(tw, "%d\t%s\t%s\n", id, t.State, fmtBytes(t.Result))
		case t.State == "failed" || t.State == "canceled":
			fmt.Fprintf(tw, "%d\t%s\t%s\n", id, t.State, fmtText(t.Error))
		default: // not final, though the master said it was
			fmt.Fprintf(tw, "%d\t%s\t\n", id, fmtText(t.State))
		}
	}
	return tw.Flush()
}

// printIDs prints task ids one per line, in one write so that a script
// reading them never sees half a line.
func printIDs(w io.Writer, ids []uint64) error {
	var b strings.Builder
	for _, id := range ids {
		b.WriteString(strconv.FormatUint(id, 10))
		b.WriteByte('\n')
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// --- slaves, apps, stats

var slaveHeader = []string{"ID", "IDENTITY", "NAME", "HOST", "OS", "ARCH", "CORES", "CONCURRENCY", "RUNNING", "DONE", "FAILED", "KINDS", "CONNECTED"}

func printSlaves(w io.Writer, l *jsonrpc.SlaveList) error {
	rows := make([][]string, len(l.Slaves))
	for i := range l.Slaves {
		s := &l.Slaves[i]
		rows[i] = []string{
			fmtText(s.ID), fmtText(s.Identity), fmtText(s.Name), fmtText(s.Host), fmtText(s.OS), fmtText(s.Arch),
			fmt.Sprint(s.Cores), fmt.Sprint(s.Concurrency), fmt.Sprint(s.Running),
			fmt.Sprint(s.Done), fmt.Sprint(s.Failed), fmtList(s.Kinds), fmtTime(&s.ConnectedAt),
		}
	}
	return printTable(w, slaveHeader, rows)
}

func printSlave(w io.Writer, s *jsonrpc.Slave) error {
	return printFields(w, []field{
		{"id", fmtText(s.ID)},
		{"identity", fmtText(s.Identity)},
		{"name", fmtText(s.Name)},
		{"remote", fmtText(s.Remote)},
		{"host", fmtText(s.Host)},
		{"os", fmtText(s.OS)},
		{"arch", fmtText(s.Arch)},
		{"cores", fmt.Sprint(s.Cores)},
		{"concurrency", fmt.Sprint(s.Concurrency)},
		{"window", fmt.Sprint(s.Window)},
		{"kinds", fmtList(s.Kinds)},
		{"running", fmt.Sprint(s.Running)},
		{"draining", strconv.FormatBool(s.Draining)},
		{"dispatched", fmt.Sprint(s.Dispatched)},
		{"done", fmt.Sprint(s.Done)},
		{"failed", fmt.Sprint(s.Failed)},
		{"busy_ms", fmt.Sprint(s.BusyMS)},
		{"connected_at", fmtTime(&s.ConnectedAt)},
	})
}

var appHeader = []string{"APP", "CONNECTED", "PUSHED", "UNFINISHED", "DONE", "FAILED", "ACKED", "UNNOTIFIED"}

func printApps(w io.Writer, l *jsonrpc.AppList) error {
	rows := make([][]string, len(l.Apps))
	for i := range l.Apps {
		a := &l.Apps[i]
		rows[i] = []string{
			fmtText(a.Name), strconv.FormatBool(a.Connected), fmt.Sprint(a.Pushed), fmt.Sprint(a.Unfinished),
			fmt.Sprint(a.Done), fmt.Sprint(a.Failed), fmt.Sprint(a.Acked), fmt.Sprint(a.PendingNotifications),
		}
	}
	return printTable(w, appHeader, rows)
}

func printSummary(w io.Writer, s *jsonrpc.Summary) error {
	t, sl, tp := &s.Tasks, &s.Slaves, &s.Throughput
	fs := []field{
		{"tasks.pending", fmt.Sprint(t.Pending)},
		{"tasks.running", fmt.Sprint(t.Running)},
		{"tasks.unacked", fmt.Sprint(t.Unacked)},
		{"tasks.submitted", fmt.Sprint(t.Submitted)},
		{"tasks.dispatched", fmt.Sprint(t.Dispatched)},
		{"tasks.done", fmt.Sprint(t.Done)},
		{"tasks.failed", fmt.Sprint(t.Failed)},
		{"tasks.canceled", fmt.Sprint(t.Canceled)},
		{"tasks.retried", fmt.Sprint(t.Retried)},
		{"tasks.requeued", fmt.Sprint(t.Requeued)},
		{"tasks.late_results", fmt.Sprint(t.LateResults)},
		{"slaves.connected", fmt.Sprint(sl.Connected)},
		{"slaves.concurrency", fmt.Sprint(sl.Concurrency)},
		{"slaves.running", fmt.Sprint(sl.Running)},
	}
	fs = append(fs, listFields("kinds", s.Kinds, func(k *jsonrpc.KindCount) string {
		return fmt.Sprintf("kind=%s pending=%d slaves=%d", fmtText(k.Kind), k.Pending, k.Slaves)
	})...)
	latency := "-" // nothing was dispatched in the window
	if s.DispatchLatencyEstimateMS != nil {
		latency = fmtFloat(*s.DispatchLatencyEstimateMS)
	}
	fs = append(fs,
		field{"throughput.window_ms", fmt.Sprint(tp.WindowMS)},
		field{"throughput.finished", fmt.Sprint(tp.Finished)},
		field{"throughput.failed", fmt.Sprint(tp.Failed)},
		field{"throughput.finished_per_sec", fmtFloat(tp.FinishedPerSec)},
		field{"throughput.submitted_per_sec", fmtFloat(tp.SubmittedPerSec)},
		field{"throughput.dispatched_per_sec", fmtFloat(tp.DispatchedPerSec)},
		field{"dispatch_latency_estimate_ms", latency},
		field{"store.commits", fmt.Sprint(s.Store.Commits)},
		field{"store.ops", fmt.Sprint(s.Store.Ops)},
		field{"store.mean_commit_ms", fmtFloat(s.Store.MeanCommitMS)},
		field{"uptime_ms", fmt.Sprint(s.UptimeMS)},
	)
	return printFields(w, fs)
}

// --- values

// fmtText shows a string, "-" when it is empty.
func fmtText(s string) string {
	if s == "" {
		return "-"
	}
	return quoteIfNeeded(s)
}

// fmtList shows a list of strings comma-separated, "-" when it is empty.
func fmtList(list []string) string {
	if len(list) == 0 {
		return "-"
	}
	parts := make([]string, len(list))
	for i, s := range list {
		parts[i] = fmtText(s)
	}
	return strings.Join(parts, ",")
}

// fmtFloat shows a whole number as it is, others to three decimals at
// most: a rate of 0.38333672831176474 is 0.383.
func fmtFloat(f float64) string {
	if f == math.Trunc(f) && math.Abs(f) < 1e21 {
		return strconv.FormatFloat(f, 'f', -1, 64)
	}
	s := strconv.FormatFloat(f, 'f', 3, 64)
	return strings.TrimSuffix(strings.TrimRight(s, "0"), ".")
}

// fmtBytes shows a result or payload: "-" for none (JSON null), as text
// when it is short valid UTF-8, Go-quoted when it holds control
// characters; else as base64:...
func fmtBytes(b []byte) string {
	switch {
	case b == nil:
		return "-"
	case len(b) == 0:
		return `""`
	case len(b) <= shortResult && utf8.Valid(b):
		return quoteIfNeeded(string(b))
	}
	return "base64:" + base64.StdEncoding.EncodeToString(b)
}

// quoteIfNeeded quotes s when it would not read back as itself: it holds
// control or invisible characters, or looks quoted or base64-tagged.
func quoteIfNeeded(s string) string {
	if strings.ContainsFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) ||
		strings.HasPrefix(s, `"`) || strings.HasPrefix(s, "base64:") {
		return strconv.Quote(s)
	}
	return s
}

// fmtTime shows a time to the second, in the zone the master sent it in
// (UTC); a time not reached (nil, or zero) is "-".
func fmtTime(t *time.Time) string {
	if t == nil || t.IsZero() {
		return "-"
	}
	return t.Format(time.RFC3339)
}

// clipText cuts s to n runes.
func clipText(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}
