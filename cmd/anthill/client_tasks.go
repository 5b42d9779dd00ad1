package main

// The task commands: submit, get, wait, tasks, cancel and retry.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/anthill-project/anthill/jsonrpc"
)

// --- submit

func runSubmit(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c := newClientFlags("submit", "--app A --kind K [--payload S | --payload-file F | --stdin] [flags]",
		`Submits tasks and prints their ids, one per line, in submission order.
One task is submitted with Tasks.Submit; several (--count, or several lines
with --stdin) with Tasks.SubmitBatch, in calls of up to 1000 tasks: if a
call fails, the ids of the calls before it are printed and the rest were not
submitted. With --json: {"id":N} for one task, {"ids":[...]} for several.`, stderr)
	fs := c.fs
	app := fs.String("app", "", "application id the tasks belong to (required)")
	kind := fs.String("kind", "", "task kind, a handler the slaves run (required)")
	payload := fs.String("payload", "", "the payload, as text (default empty)")
	payloadFile := fs.String("payload-file", "", "read the payload from this file; - reads stdin")
	fromStdin := fs.Bool("stdin", false, "submit one task per line of stdin, the line without its line ending as payload")
	priority := fs.Int("priority", 0, "priority: higher runs first under the master's priority strategy")
	timeout := fs.Duration("timeout", 0, "how long one attempt may run (default: the master's --default-timeout)")
	attempts := fs.Int("attempts", 0, "attempts before the task fails for good (default: the master's --default-attempts)")
	key := fs.String("key", "", "routing key")
	count := fs.Int("count", 1, "submit this many tasks with the same payload")
	operands, err := c.parse(args)
	if err != nil {
		return err
	}
	sources := 0
	for _, f := range []string{"payload", "payload-file", "stdin"} {
		if c.wasSet(f) {
			sources++
		}
	}
	switch {
	case len(operands) > 0:
		return c.usageError("unexpected arguments: %s", strings.Join(operands, " "))
	case *app == "":
		return c.usageError("--app is required")
	case *kind == "":
		return c.usageError("--kind is required")
	case sources > 1:
		return c.usageError("give one of --payload, --payload-file and --stdin")
	case *fromStdin && c.wasSet("count"):
		return c.usageError("--count repeats one payload: it does not go with --stdin")
	case *count < 1:
		return c.usageError("--count must be at least 1")
	case *priority < math.MinInt32 || *priority > math.MaxInt32:
		return c.usageError("--priority must fit in 32 bits")
	case *timeout < 0:
		return c.usageError("--timeout must not be negative")
	case *attempts < 0 || int64(*attempts) > math.MaxUint32:
		return c.usageError("--attempts must be from 0 to %d", uint32(math.MaxUint32))
	}
	spec := jsonrpc.TaskSpec{Kind: *kind, Priority: int32(*priority), MaxAttempts: uint32(*attempts), Key: *key}
	if *timeout > 0 {
		spec.TimeoutMS = max(1, timeout.Milliseconds())
	}

	// next returns the next payload, false at the end.
	var next func() ([]byte, bool, error)
	switch {
	case *fromStdin:
		r := bufio.NewReader(clientStdin)
		next = func() ([]byte, bool, error) {
			line, err := r.ReadBytes('\n')
			if err == io.EOF {
				if len(line) == 0 {
					return nil, false, nil
				}
				err = nil
			}
			if err != nil {
				return nil, false, fmt.Errorf("reading stdin: %w", err)
			}
			line = bytes.TrimSuffix(line, []byte("\n"))
			return bytes.TrimSuffix(line, []byte("\r")), true, nil
		}
	default:
		p := []byte(*payload)
		if c.wasSet("payload-file") {
			if *payloadFile == "-" {
				p, err = io.ReadAll(clientStdin)
			} else {
				p, err = os.ReadFile(*payloadFile)
			}
			if err != nil {
				return fmt.Errorf("--payload-file: %w", err)
			}
		}
		left := *count
		next = func() ([]byte, bool, error) {
			if left == 0 {
				return nil, false, nil
			}
			left--
			return p, true, nil
		}
	}

	cl, err := c.client()
	if err != nil {
		return err
	}
	defer cl.close()
	var (
		batch   []jsonrpc.TaskSpec
		size    int
		total   int           // tasks read
		ids     []json.Number // --json: every id, printed at the end
		batched bool          // a SubmitBatch call was made
	)
	flush := func(last bool) error {
		if len(batch) == 0 {
			return nil
		}
		if last && !batched && len(batch) == 1 {
			raw, err := cl.call(ctx, "Tasks.Submit", struct {
				App string `json:"app"`
				jsonrpc.TaskSpec
			}{*app, batch[0]}, 0)
			if err != nil {
				return err
			}
			if c.json {
				return printJSON(stdout, raw)
			}
			var res struct {
				ID json.Number `json:"id"`
			}
			if err := json.Unmarshal(raw, &res); err != nil || res.ID == "" {
				return fmt.Errorf("Tasks.Submit: unexpected result %.200s", raw)
			}
			_, err = fmt.Fprintln(stdout, res.ID)
			return err
		}
		batched = true
		raw, err := cl.call(ctx, "Tasks.SubmitBatch", struct {
			App   string             `json:"app"`
			Tasks []jsonrpc.TaskSpec `json:"tasks"`
		}{*app, batch}, 0)
		if err != nil {
			return err
		}
		var res struct {
			IDs []json.Number `json:"ids"`
		}
		if err := json.Unmarshal(raw, &res); err != nil || len(res.IDs) != len(batch) {
			return fmt.Errorf("Tasks.SubmitBatch: unexpected result for %d tasks: %.200s", len(batch), raw)
		}
		batch, size = batch[:0], 0
		if c.json {
			ids = append(ids, res.IDs...)
			return nil
		}
		var b strings.Builder
		for _, id := range res.IDs {
			b.WriteString(id.String())
			b.WriteByte('\n')
		}
		_, err = io.WriteString(stdout, b.String())
		return err
	}
	err = func() error {
		for {
			p, ok, err := next()
			if err != nil {
				return err
			}
			if !ok {
				return flush(true)
			}
			if len(batch) == batchTasks || (len(batch) > 0 && size+len(p) > batchBytes) {
				if err := flush(false); err != nil {
					return err
				}
			}
			s := spec
			s.Payload = p
			batch = append(batch, s)
			size += len(p)
			total++
		}
	}()
	if c.json && (batched || total == 0) && (err == nil || len(ids) > 0) {
		if ids == nil {
			ids = []json.Number{}
		}
		b, merr := json.Marshal(struct {
			IDs []json.Number `json:"ids"`
		}{ids})
		if merr != nil {
			return merr
		}
		if perr := printJSON(stdout, b); err == nil {
			err = perr
		}
	}
	return err
}

// --- get, wait
// taskResult decodes a task's base64 result.
func taskResult(t object) ([]byte, error) {
	s, _ := t.get("result").(string)
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("task %s: result is not base64: %w", fmtValue("", t.get("id")), err)
	}
	return b, nil
}

func runGet(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c := newClientFlags("get", "[flags] ID",
		`Shows a task. The result (and payload) print as text when they are short
valid UTF-8, quoted when they hold control characters, else as base64:...
--raw writes the result bytes to stdout unchanged instead, and fails (exit 1)
when the task is not done.`, stderr)
	rawOut := c.fs.Bool("raw", false, "write the result bytes to stdout unchanged")
	operands, err := c.parse(args)
	if err != nil {
		return err
	}
	if c.json && *rawOut {
		return c.usageError("give one of --json and --raw")
	}
	id, raw, err := callWithID(ctx, c, operands, "Tasks.Get")
	if err != nil {
		return err
	}
	if c.json {
		return printJSON(stdout, raw)
	}
	v, err := decodeOrdered(raw)
	if err != nil {
		return fmt.Errorf("Tasks.Get: %w", err)
	}
	t, ok := v.(object)
	if !ok {
		return fmt.Errorf("Tasks.Get: unexpected result %.200s", raw)
	}
	if *rawOut {
		if state := fmtValue("", t.get("state")); state != "done" {
			msg := fmt.Sprintf("task %d is %s, not done", id, state)
			if e, _ := t.get("error").(string); e != "" {
				msg += ": " + e
			}
			return errors.New(msg)
		}
		b, err := taskResult(t)
		if err != nil {
			return err
		}
		_, err = stdout.Write(b)
		return err
	}
	return printFields(stdout, t)
}

func runWait(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c := newClientFlags("wait", "[--timeout D] [flags] ID...",
		`Waits until every task is final (done, failed or canceled), then prints
one line per task: id, state, and the result (as get prints it) or the error.
Exits 0 when every task is done, 1 when one failed or was canceled, 3 when
the timeout ended first (then the lines show the tasks final so far and
"unfinished" for the others). --timeout 0 checks once; a negative one waits
without limit. --json prints the last Tasks.Wait result; --raw writes the
result bytes of the done tasks to stdout, in the order of the ids.`, stderr)
	timeout := c.fs.Duration("timeout", 30*time.Second, "how long to wait")
	rawOut := c.fs.Bool("raw", false, "write the result bytes of the done tasks to stdout unchanged")
	operands, err := c.parse(args)
	if err != nil {
		return err
	}
	if len(operands) == 0 {
		return c.usageError("want at least one task id")
	}
	if c.json && *rawOut {
		return c.usageError("give one of --json and --raw")
	}
	var ids []uint64
	seen := make(map[uint64]bool)
	for _, s := range operands {
		id, err := c.parseID(s)
		if err != nil {
			return err
		}
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	defer cl.close()

	deadline := time.Now().Add(*timeout)
	var (
		raw  json.RawMessage
		done bool
		byID map[string]object
	)
	for {
		chunk := maxWaitCall
		if *timeout >= 0 {
			chunk = min(chunk, max(0, time.Until(deadline)))
		}
		start := time.Now()
		ms := (chunk + time.Millisecond - 1) / time.Millisecond // rounded up
		raw, err = cl.call(ctx, "Tasks.Wait", map[string]any{"ids": ids, "timeout_ms": int64(ms)}, chunk)
		if err != nil {
			return err
		}
		v, err := decodeOrdered(raw)
		res, _ := v.(object)
		if err != nil || res == nil {
			return fmt.Errorf("Tasks.Wait: unexpected result %.200s", raw)
		}
		done, _ = res.get("done").(bool)
		tasks, _ := res.get("tasks").([]any)
		byID = make(map[string]object, len(tasks))
		for _, x := range tasks {
			if t, ok := x.(object); ok {
				byID[fmtValue("", t.get("id"))] = t
			}
		}
		if done || (*timeout >= 0 && time.Until(deadline) <= 0) {
			break
		}
		if time.Since(start) < 100*time.Millisecond && chunk > 0 {
			// The master answered early without every task final: do
			// not spin.
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(200 * time.Millisecond):
			}
		}
	}

	final, failed := 0, 0
	tw := tabwriter.NewWriter(stdout, 0, 8, 2, ' ', 0)
	for _, id := range ids {
		key := strconv.FormatUint(id, 10)
		t, ok := byID[key]
		state := "unfinished"
		if ok {
			state = fmtValue("", t.get("state"))
		}
		switch state {
		case "done":
			final++
		case "failed", "canceled":
			final++
			failed++
		default:
			ok = false
		}
		switch {
		case c.json:
		case *rawOut:
			if state == "done" {
				b, err := taskResult(t)
				if err != nil {
					return err
				}
				if _, err := stdout.Write(b); err != nil {
					return err
				}
			}
		case !ok:
			fmt.Fprintf(tw, "%s\t%s\t\n", key, state)
		case state == "done":
			fmt.Fprintf(tw, "%s\t%s\t%s\n", key, state, fmtValue("result", t.get("result")))
		default:
			fmt.Fprintf(tw, "%s\t%s\t%s\n", key, state, fmtValue("error", t.get("error")))
		}
	}
	if c.json {
		if err := printJSON(stdout, raw); err != nil {
			return err
		}
	} else if err := tw.Flush(); err != nil {
		return err
	}
	switch {
	case !done && final < len(ids):
		what := fmt.Sprintf("after %v", *timeout)
		if *timeout == 0 {
			what = "(--timeout 0 checks once)"
		}
		return &exitError{exitTimeout, fmt.Errorf("timed out %s: %d of %d tasks are not final", what, len(ids)-final, len(ids))}
	case failed > 0:
		return fmt.Errorf("%d of %d tasks failed or were canceled", failed, len(ids))
	}
	return nil
}

// --- tasks, cancel, retry

var taskColumns = []column{
	field("ID", "id"),
	field("APP", "app"),
	field("KIND", "kind"),
	field("STATE", "state"),
	{"ATTEMPTS", func(o object) (string, bool) {
		a, ok := o.lookup("attempts")
		if !ok {
			return "", false
		}
		if m, ok := o.lookup("max_attempts"); ok {
			return fmtValue("", a) + "/" + fmtValue("", m), true
		}
		return fmtValue("", a), true
	}},
	field("PRIORITY", "priority"),
	field("CREATED", "created_at"),
	field("FINISHED", "finished_at"),
	field("SLAVE", "slave"),
	{"ERROR", func(o object) (string, bool) {
		v, ok := o.lookup("error")
		return clipText(fmtValue("error", v), 60), ok
	}},
}

func runTasks(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c := newClientFlags("tasks", "[--state S] [--app A] [--kind K] [--newest] [--limit N] [--cursor C] [--all] [flags]",
		`Lists tasks in ascending id order (--newest: descending), a page at a time
(Tasks.List). When there are more, the command for the next page is printed
to stderr; --all fetches every page (with --json, one document holding every
task).`, stderr)
	fs := c.fs
	state := fs.String("state", "", "only tasks in this state: pending, running, done, failed or canceled")
	app := fs.String("app", "", "only tasks of this application")
	kind := fs.String("kind", "", "only tasks of this kind")
	limit := fs.Int("limit", 0, "tasks per page (default: the master's, 100)")
	cursor := fs.Uint64("cursor", 0, "start after this cursor, a previous page's next_cursor")
	all := fs.Bool("all", false, "fetch every page")
	newest := fs.Bool("newest", false, "newest first")
	operands, err := c.parse(args)
	if err != nil {
		return err
	}
	if len(operands) > 0 {
		return c.usageError("unexpected arguments: %s", strings.Join(operands, " "))
	}
	if *limit < 0 {
		return c.usageError("--limit must not be negative")
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	defer cl.close()
	params := make(map[string]any)
	for k, v := range map[string]string{"state": *state, "app": *app, "kind": *kind} {
		if v != "" {
			params[k] = v
		}
	}
	if *limit > 0 {
		params["limit"] = *limit
	}
	if *newest {
		params["order"] = "desc"
	}
	next := *cursor
	var (
		rows     []object
		rawTasks []json.RawMessage // --json --all
		nextRaw  json.RawMessage
	)
	for {
		if next > 0 {
			params["cursor"] = next
		}
		raw, err := cl.call(ctx, "Tasks.List", params, 0)
		if err != nil {
			return err
		}
		if c.json && !*all {
			return printJSON(stdout, raw)
		}
		var page struct {
			Tasks      []json.RawMessage `json:"tasks"`
			NextCursor json.RawMessage   `json:"next_cursor"`
		}
		if err := json.Unmarshal(raw, &page); err != nil {
			return fmt.Errorf("Tasks.List: unexpected result %.200s", raw)
		}
		nextRaw = page.NextCursor
		for _, t := range page.Tasks {
			if c.json {
				rawTasks = append(rawTasks, t)
				continue
			}
			v, err := decodeOrdered(t)
			if err != nil {
				return fmt.Errorf("Tasks.List: %w", err)
			}
			o, _ := v.(object)
			rows = append(rows, o)
		}
		var nc uint64
		if s := string(bytes.TrimSpace(page.NextCursor)); s != "" && s != "null" {
			if nc, err = strconv.ParseUint(s, 10, 64); err != nil {
				return fmt.Errorf("Tasks.List: next_cursor %.50s is not a cursor", s)
			}
		}
		if nc != 0 && nc == next {
			return fmt.Errorf("Tasks.List: the master returned cursor %d again", nc)
		}
		next = nc
		if next == 0 || !*all {
			break
		}
	}
	if c.json {
		if rawTasks == nil {
			rawTasks = []json.RawMessage{}
		}
		if len(nextRaw) == 0 {
			nextRaw = json.RawMessage("null")
		}
		b, err := json.Marshal(struct {
			Tasks      []json.RawMessage `json:"tasks"`
			NextCursor json.RawMessage   `json:"next_cursor"`
		}{rawTasks, nextRaw})
		if err != nil {
			return err
		}
		return printJSON(stdout, b)
	}
	if err := printTable(stdout, taskColumns, rows); err != nil {
		return err
	}
	if next != 0 {
		fmt.Fprintf(stderr, "more tasks: add --cursor %d (and the same filters) for the next page, or use --all\n", next)
	}
	return nil
}

func runCancel(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return taskAction(ctx, args, stdout, stderr, "cancel", "Tasks.Cancel", "canceled",
		`Cancels a task that is not final: a pending task never runs, a running one
is abandoned (its result is dropped). Its application is told it failed.`)
}

func runRetry(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return taskAction(ctx, args, stdout, stderr, "retry", "Tasks.Retry", "queued again",
		`Queues a failed or canceled task again, with a fresh count of attempts.`)
}

// taskAction runs a method that takes one task id and only acts.
func taskAction(ctx context.Context, args []string, stdout, stderr io.Writer, name, method, done, about string) error {
	c := newClientFlags(name, "[flags] ID", about, stderr)
	operands, err := c.parse(args)
	if err != nil {
		return err
	}
	id, raw, err := callWithID(ctx, c, operands, method)
	if err != nil {
		return err
	}
	if c.json {
		return printJSON(stdout, raw)
	}
	_, err = fmt.Fprintf(stdout, "task %d %s\n", id, done)
	return err
}
