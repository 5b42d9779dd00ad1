package main

// The task commands: submit, get, wait, tasks, cancel and retry.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"time"

	"github.com/anthill-project/anthill/jsonrpc"
	"github.com/anthill-project/anthill/master/sched"
	"github.com/anthill-project/anthill/protocol"
)

const (
	// maxWaitCall is the longest timeout_ms of one Tasks.Wait; wait loops
	// for longer timeouts.
	maxWaitCall = time.Minute
	// A batch of submit is cut into calls of at most this many tasks and
	// about this many payload bytes.
	batchTasks = 1000
	batchBytes = 8 << 20
)

// --- submit

func runSubmit(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c, o, err := parseSubmit(args, stderr)
	if err != nil {
		return err
	}
	next, err := o.payloads()
	if err != nil {
		return err
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	defer cl.close()
	s := &submitter{ctx: ctx, cl: cl, app: o.app, json: c.json, w: stdout}
	return s.finish(s.submitAll(o.spec, next))
}

// submitOptions are submit's flags once checked.
type submitOptions struct {
	app         string
	spec        jsonrpc.TaskSpec // every task's, but its payload
	payload     []byte
	payloadFile *string // nil without --payload-file; - is stdin
	fromStdin   bool
	count       int
}

func parseSubmit(args []string, stderr io.Writer) (*clientFlags, *submitOptions, error) {
	c := newClientFlags("submit", "--app A --kind K [--payload S | --payload-file F | --stdin] [flags]",
		`Submits tasks and prints their ids, one per line, in submission order.
One task is submitted with Tasks.Submit; several (--count, or several lines
with --stdin) with Tasks.SubmitBatch, in calls of up to 1000 tasks (fewer
when the master's --max-submit-tasks is lower): if a
call fails, the ids of the calls before it are printed and the rest were not
submitted. With --json: {"id":N} for one task, {"ids":[...]} for several.`, stderr)
	fs := c.fs
	app := fs.String("app", "", "application id the tasks belong to (required)")
	kind := fs.String("kind", "", "task kind, a handler the slaves run (required, but for --module)")
	module := fs.String("module", "", "the hash of the WASM module that runs the tasks (anthill modules push); --kind is then wasm")
	payload := fs.String("payload", "", "the payload, as text (default empty)")
	payloadFile := fs.String("payload-file", "", "read the payload from this file; - reads stdin")
	fromStdin := fs.Bool("stdin", false, "submit one task per line of stdin, the line without its line ending as payload")
	priority := fs.Int("priority", 0, "priority: higher runs first under the master's priority strategy")
	timeout := fs.Duration("timeout", 0, "how long one attempt may run (default: the master's --default-timeout)")
	attempts := fs.Int("attempts", 0, "attempts before the task fails for good (default: the master's --default-attempts)")
	key := fs.String("key", "", "routing key")
	count := fs.Int("count", 1, "submit this many tasks with the same payload")
	replicas := fs.Int("replicas", 0, "run each task as this many copies on distinct volunteers (default: the app's, see apps configure)")
	quorum := fs.Int("quorum", 0, "how many copies must agree (default: a majority of --replicas)")
	if err := c.parseNone(args); err != nil {
		return nil, nil, err
	}
	sources := 0
	for _, f := range []string{"payload", "payload-file", "stdin"} {
		if c.wasSet(f) {
			sources++
		}
	}
	if *module != "" && *kind == "" {
		*kind = protocol.KindWASM
	}
	var err error
	switch {
	case *app == "":
		err = c.usageError("--app is required")
	case *kind == "":
		err = c.usageError("--kind is required")
	case sources > 1:
		err = c.usageError("give one of --payload, --payload-file and --stdin")
	case *fromStdin && c.wasSet("count"):
		err = c.usageError("--count repeats one payload: it does not go with --stdin")
	case *count < 1:
		err = c.usageError("--count must be at least 1")
	case *priority < math.MinInt32 || *priority > math.MaxInt32:
		err = c.usageError("--priority must fit in 32 bits")
	case *timeout < 0:
		err = c.usageError("--timeout must not be negative")
	case *attempts < 0 || int64(*attempts) > math.MaxUint32:
		err = c.usageError("--attempts must be from 0 to %d", uint32(math.MaxUint32))
	case *replicas < 0 || *replicas > protocol.MaxReplicas || *quorum < 0 || *quorum > protocol.MaxReplicas:
		err = c.usageError("--replicas and --quorum must be from 0 to %d", protocol.MaxReplicas)
	}
	if err != nil {
		return nil, nil, err
	}
	o := &submitOptions{
		app: *app,
		spec: jsonrpc.TaskSpec{Kind: *kind, Priority: int32(*priority), MaxAttempts: uint32(*attempts), Key: *key, Module: *module,
			Replicas: *replicas, Quorum: *quorum},
		payload: []byte(*payload), fromStdin: *fromStdin, count: *count,
	}
	if *timeout > 0 {
		o.spec.TimeoutMS = max(1, timeout.Milliseconds())
	}
	if c.wasSet("payload-file") {
		o.payloadFile = payloadFile
	}
	return c, o, nil
}

// payloads returns the source of the payloads the flags ask for: next
// returns the next one, false at the end.
func (o *submitOptions) payloads() (next func() ([]byte, bool, error), err error) {
	if o.fromStdin {
		return stdinLines(clientStdin), nil
	}
	p := o.payload
	if o.payloadFile != nil {
		if *o.payloadFile == "-" {
			p, err = io.ReadAll(clientStdin)
		} else {
			p, err = os.ReadFile(*o.payloadFile)
		}
		if err != nil {
			return nil, fmt.Errorf("--payload-file: %w", err)
		}
	}
	left := o.count
	return func() ([]byte, bool, error) {
		if left == 0 {
			return nil, false, nil
		}
		left--
		return p, true, nil
	}, nil
}

// stdinLines returns the lines of r one by one, without their line
// endings; a last line without one counts.
func stdinLines(r io.Reader) func() ([]byte, bool, error) {
	br := bufio.NewReader(r)
	return func() ([]byte, bool, error) {
		line, err := br.ReadBytes('\n')
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
}

// submitter submits tasks in batches and prints their ids as each call
// returns, so that a failed call leaves the ids of those before it on
// stdout. A single task goes by Tasks.Submit, whose --json is {"id":N}.
type submitter struct {
	ctx  context.Context
	cl   *rpcClient
	app  string
	json bool
	w    io.Writer

	batch    []jsonrpc.TaskSpec
	size     int      // payload bytes in batch
	total    int      // tasks read
	ids      []uint64 // --json: every id, printed by finish
	batched  bool     // a SubmitBatch call was made
	maxBatch int      // the master's --max-submit-tasks, once a call learned it
}

// submitAll submits a task of spec for each payload next returns.
func (s *submitter) submitAll(spec jsonrpc.TaskSpec, next func() ([]byte, bool, error)) error {
	for {
		p, ok, err := next()
		if err != nil {
			return err
		}
		if !ok {
			return s.flush(true)
		}
		if len(s.batch) >= s.limit() || (len(s.batch) > 0 && s.size+len(p) > batchBytes) {
			if err := s.flush(false); err != nil {
				return err
			}
		}
		spec.Payload = p
		s.batch = append(s.batch, spec)
		s.size += len(p)
		s.total++
	}
}

// flush submits the batch; last says no task follows.
func (s *submitter) flush(last bool) error {
	switch {
	case len(s.batch) == 0:
		return nil
	case last && !s.batched && len(s.batch) == 1:
		return s.submitOne(s.batch[0])
	}
	s.batched = true
	for len(s.batch) > 0 {
		n := min(len(s.batch), s.limit())
		err := s.submitBatch(s.batch[:n])
		if cap := submitCap(err); cap > 0 && cap < n {
			// The master takes fewer per call than we sent: nothing was
			// stored, so send the same tasks in calls it takes.
			s.maxBatch = cap
			continue
		}
		if err != nil {
			return err
		}
		s.batch = s.batch[n:]
	}
	s.batch, s.size = s.batch[:0], 0
	return nil
}

// limit is the most tasks one SubmitBatch call carries.
func (s *submitter) limit() int {
	if s.maxBatch > 0 {
		return s.maxBatch
	}
	return batchTasks
}

func (s *submitter) submitBatch(tasks []jsonrpc.TaskSpec) error {
	raw, err := s.cl.call(s.ctx, "Tasks.SubmitBatch", jsonrpc.SubmitBatchParams{App: s.app, Tasks: tasks}, 0)
	if err != nil {
		return err
	}
	var res jsonrpc.SubmitBatchResult
	if err := decodeResult("Tasks.SubmitBatch", raw, &res); err != nil {
		return err
	}
	if len(res.IDs) != len(tasks) {
		return fmt.Errorf("Tasks.SubmitBatch: unexpected result for %d tasks: %.200s", len(tasks), raw)
	}
	if s.json {
		s.ids = append(s.ids, res.IDs...)
		return nil
	}
	return printIDs(s.w, res.IDs)
}

// submitCap is the master's --max-submit-tasks when err is the refusal of
// a batch larger than it, else 0.
func submitCap(err error) int {
	rerr, ok := errors.AsType[*jsonrpc.Error](err)
	if !ok || rerr.Code != jsonrpc.CodeQuotaExceeded {
		return 0
	}
	var q struct {
		Quota string `json:"quota"`
		Limit int    `json:"limit"`
	}
	if json.Unmarshal(rerr.Data, &q) != nil || q.Quota != sched.QuotaSubmitTasks {
		return 0
	}
	return q.Limit
}

func (s *submitter) submitOne(spec jsonrpc.TaskSpec) error {
	raw, err := s.cl.call(s.ctx, "Tasks.Submit", jsonrpc.SubmitParams{App: s.app, TaskSpec: spec}, 0)
	if err != nil {
		return err
	}
	if s.json {
		return printJSON(s.w, raw)
	}
	var res jsonrpc.SubmitResult
	if err := decodeResult("Tasks.Submit", raw, &res); err != nil {
		return err
	}
	if res.ID == 0 {
		return fmt.Errorf("Tasks.Submit: unexpected result %.200s", raw)
	}
	return printIDs(s.w, []uint64{res.ID})
}

// finish prints, with --json, the ids of several tasks (or of none) as
// one document, also after err when some calls succeeded, and returns
// err.
func (s *submitter) finish(err error) error {
	if !s.json || !(s.batched || s.total == 0) || (err != nil && len(s.ids) == 0) {
		return err
	}
	res := jsonrpc.SubmitBatchResult{IDs: s.ids}
	if res.IDs == nil {
		res.IDs = []uint64{}
	}
	b, merr := json.Marshal(res)
	if merr != nil {
		return merr
	}
	if perr := printJSON(s.w, b); err == nil {
		err = perr
	}
	return err
}

// --- get

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
	if !*rawOut {
		return show(stdout, c, "Tasks.Get", raw, printTask)
	}
	var t jsonrpc.Task
	if err := decodeResult("Tasks.Get", raw, &t); err != nil {
		return err
	}
	if t.State != "done" {
		msg := fmt.Sprintf("task %d is %s, not done", id, fmtText(t.State))
		if t.Error != "" {
			msg += ": " + t.Error
		}
		return errors.New(msg)
	}
	_, err = stdout.Write(t.Result)
	return err
}

// callWithID makes method's call for the one task id the operands must be.
func callWithID(ctx context.Context, c *clientFlags, operands []string, method string) (uint64, json.RawMessage, error) {
	if len(operands) != 1 {
		return 0, nil, c.usageError("want one task id")
	}
	id, err := c.parseID(operands[0])
	if err != nil {
		return 0, nil, err
	}
	raw, err := c.callOnce(ctx, method, jsonrpc.IDParams{ID: id})
	return id, raw, err
}

// --- wait

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
	ids, err := c.parseIDs(operands)
	if err != nil {
		return err
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	defer cl.close()

	res, raw, err := waitFinal(ctx, cl, ids, *timeout)
	if err != nil {
		return err
	}
	byID := make(map[uint64]*jsonrpc.Task, len(res.Tasks))
	for i := range res.Tasks {
		byID[res.Tasks[i].ID] = &res.Tasks[i]
	}
	switch {
	case c.json:
		err = printJSON(stdout, raw)
	case *rawOut:
		err = writeResults(stdout, ids, byID)
	default:
		err = printWaitLines(stdout, ids, byID)
	}
	if err != nil {
		return err
	}
	return waitOutcome(ids, byID, res.Done, *timeout)
}

// parseIDs parses task id operands, dropping repeats.
func (c *clientFlags) parseIDs(operands []string) ([]uint64, error) {
	var ids []uint64
	seen := make(map[uint64]bool)
	for _, s := range operands {
		id, err := c.parseID(s)
		if err != nil {
			return nil, err
		}
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// waitFinal calls Tasks.Wait until every task is final or timeout ends (a
// negative one never does), in calls of at most maxWaitCall. It returns
// the last result, decoded and as the master sent it.
func waitFinal(ctx context.Context, cl *rpcClient, ids []uint64, timeout time.Duration) (*jsonrpc.WaitResult, json.RawMessage, error) {
	deadline := time.Now().Add(timeout)
	for {
		chunk := maxWaitCall
		if timeout >= 0 {
			chunk = min(chunk, max(0, time.Until(deadline)))
		}
		start := time.Now()
		ms := int64((chunk + time.Millisecond - 1) / time.Millisecond) // rounded up
		raw, err := cl.call(ctx, "Tasks.Wait", jsonrpc.WaitParams{IDs: ids, TimeoutMS: &ms}, chunk)
		if err != nil {
			return nil, nil, err
		}
		var res jsonrpc.WaitResult
		if err := decodeResult("Tasks.Wait", raw, &res); err != nil {
			return nil, nil, err
		}
		if res.Done || (timeout >= 0 && time.Until(deadline) <= 0) {
			return &res, raw, nil
		}
		if time.Since(start) < 100*time.Millisecond && chunk > 0 {
			// The master answered early without every task final: do
			// not spin.
			select {
			case <-ctx.Done():
				return nil, nil, ctx.Err()
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
}

// writeResults writes the result bytes of the done tasks among ids, in
// their order.
func writeResults(w io.Writer, ids []uint64, byID map[uint64]*jsonrpc.Task) error {
	for _, id := range ids {
		if t, ok := byID[id]; ok && t.State == "done" {
			if _, err := w.Write(t.Result); err != nil {
				return err
			}
		}
	}
	return nil
}

// waitOutcome is wait's error: a timeout when a task is not final (and
// the master did not say all were), else a failure when one failed or was
// canceled.
func waitOutcome(ids []uint64, byID map[uint64]*jsonrpc.Task, done bool, timeout time.Duration) error {
	final, failed := 0, 0
	for _, id := range ids {
		t, ok := byID[id]
		switch {
		case !ok:
		case t.State == "done":
			final++
		case t.State == "failed" || t.State == "canceled":
			final++
			failed++
		}
	}
	switch {
	case !done && final < len(ids):
		what := fmt.Sprintf("after %v", timeout)
		if timeout == 0 {
			what = "(--timeout 0 checks once)"
		}
		return &exitError{exitTimeout, fmt.Errorf("timed out %s: %d of %d tasks are not final", what, len(ids)-final, len(ids))}
	case failed > 0:
		return fmt.Errorf("%d of %d tasks failed or were canceled", failed, len(ids))
	}
	return nil
}

// --- tasks

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
	if err := c.parseNone(args); err != nil {
		return err
	}
	if *limit < 0 {
		return c.usageError("--limit must not be negative")
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	defer cl.close()
	p := jsonrpc.ListParams{State: *state, App: *app, Kind: *kind, Limit: *limit, Cursor: *cursor}
	if *newest {
		p.Order = "desc"
	}
	if c.json {
		return listJSON(ctx, cl, p, *all, stdout)
	}
	var tasks []jsonrpc.Task
	next, err := eachPage(ctx, cl, p, *all, func(raw json.RawMessage) (*uint64, error) {
		var page jsonrpc.ListResult
		if err := decodeResult("Tasks.List", raw, &page); err != nil {
			return nil, err
		}
		tasks = append(tasks, page.Tasks...)
		return page.NextCursor, nil
	})
	if err != nil {
		return err
	}
	if err := printTasks(stdout, tasks); err != nil {
		return err
	}
	if next != 0 {
		fmt.Fprintf(stderr, "more tasks: add --cursor %d (and the same filters) for the next page, or use --all\n", next)
	}
	return nil
}

// listJSON prints Tasks.List's result as the master sent it; with all,
// the tasks of every page in one document of the same shape.
func listJSON(ctx context.Context, cl *rpcClient, p jsonrpc.ListParams, all bool, w io.Writer) error {
	if !all {
		raw, err := cl.call(ctx, "Tasks.List", p, 0)
		if err != nil {
			return err
		}
		return printJSON(w, raw)
	}
	type rawPage struct {
		Tasks      []json.RawMessage `json:"tasks"`
		NextCursor *uint64           `json:"next_cursor"`
	}
	res := rawPage{Tasks: []json.RawMessage{}}
	_, err := eachPage(ctx, cl, p, true, func(raw json.RawMessage) (*uint64, error) {
		var page rawPage
		if err := decodeResult("Tasks.List", raw, &page); err != nil {
			return nil, err
		}
		res.Tasks = append(res.Tasks, page.Tasks...)
		res.NextCursor = page.NextCursor
		return page.NextCursor, nil
	})
	if err != nil {
		return err
	}
	b, err := json.Marshal(res)
	if err != nil {
		return err
	}
	return printJSON(w, b)
}

// eachPage calls Tasks.List from p.Cursor on and hands each result to
// page, which returns its next_cursor; with all it follows the cursors to
// the last page. It returns the cursor after the last page fetched, 0 when
// there are no more.
func eachPage(ctx context.Context, cl *rpcClient, p jsonrpc.ListParams, all bool, page func(json.RawMessage) (*uint64, error)) (uint64, error) {
	for {
		raw, err := cl.call(ctx, "Tasks.List", p, 0)
		if err != nil {
			return 0, err
		}
		nc, err := page(raw)
		if err != nil {
			return 0, err
		}
		var next uint64
		if nc != nil {
			next = *nc
		}
		if next != 0 && next == p.Cursor {
			return 0, fmt.Errorf("Tasks.List: the master returned cursor %d again", next)
		}
		p.Cursor = next
		if next == 0 || !all {
			return next, nil
		}
	}
}

// --- cancel, retry

func runCancel(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return taskAction(ctx, args, stdout, stderr, "cancel", "Tasks.Cancel", "canceled",
		`Cancels a task that is not final: a pending task never runs, a running one
is abandoned (its result is dropped). Its application is told it failed.`)
}

func runRetry(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return taskAction(ctx, args, stdout, stderr, "retry", "Tasks.Retry", "queued again",
		`Queues a failed or canceled task again, with a fresh count of attempts.`)
}

// taskAction runs a method that takes one task id and only acts: its
// result, {"ok":true}, says nothing an error would not.
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
