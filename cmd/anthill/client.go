package main

// The scripting commands: submit, get, wait, tasks, cancel, retry, slaves,
// apps and stats. Each makes JSON-RPC 2.0 calls over HTTP to a running
// master (POST <master>/rpc with an admin bearer token) and prints a table,
// or with --json the call's result as the master sent it. They use the
// standard library only and share nothing with the master but the wire:
// results are decoded generically, so a field the master adds shows up in
// --json (and in get, slaves get and stats) without a change here.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/anthill-project/anthill/jsonrpc"
)

func clientCommands() []command {
	return []command{
		{"submit", "submit tasks to a running master", runSubmit},
		{"get", "show a task", runGet},
		{"wait", "wait until tasks are finished", runWait},
		{"tasks", "list tasks", runTasks},
		{"cancel", "cancel a task", runCancel},
		{"retry", "run a failed or canceled task again", runRetry},
		{"slaves", "list the connected slaves, or drain one", runSlaves},
		{"apps", "list the applications", runApps},
		{"stats", "show the master's statistics", runStats},
	}
}

// Exit codes of the client commands. main's run turns an error into one
// with exitCode.
const (
	exitOK           = 0
	exitFailed       = 1 // an RPC error; for wait, a task failed or was canceled
	exitUsage        = 2
	exitTimeout      = 3 // wait: not every task was final in time
	exitUnauthorized = 4 // no token, or the master refused it
	exitUnreachable  = 5 // no connection to the master, or no answer
)

const exitCodesHelp = `exit codes:
  0  ok
  1  error: the master refused the call (a JSON-RPC error), or a task failed or was canceled (wait)
  2  usage: a bad command line
  3  timed out before every task was final (wait)
  4  not authorized: no token found, or the master refused it (HTTP 401)
  5  master unreachable: no connection, or no answer in time`

// exitError carries the exit code of a failed command; any other error
// exits 1 (errUsage 2).
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// exitCode is the process exit code of a command's error.
func exitCode(err error) int {
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.Is(err, errUsage):
		return exitUsage
	}
	if ce, ok := errors.AsType[*exitError](err); ok {
		return ce.code
	}
	return exitFailed
}

const (
	defaultMaster = "http://127.0.0.1:7070"
	// callTimeout bounds one call, on top of the time the call itself asks
	// the master to wait (Tasks.Wait).
	callTimeout = time.Minute
	// maxWaitCall is the longest timeout_ms of one Tasks.Wait; wait loops
	// for longer timeouts.
	maxWaitCall = time.Minute
	// A batch of submit is cut into calls of at most this many tasks and
	// about this many payload bytes.
	batchTasks = 1000
	batchBytes = 8 << 20
	// shortResult is the longest result get and wait print as text.
	shortResult = 1024
)

// clientStdin is what --stdin and --payload-file - read; tests replace it.
var clientStdin io.Reader = os.Stdin

// clientFlags are the flags every client command takes.
type clientFlags struct {
	fs       *flag.FlagSet
	name     string
	synopsis string
	master   string
	token    string
	data     string
	json     bool
}

// newClientFlags makes the flag set of a client command. Its --help shows
// synopsis, about, the flags and the exit codes.
func newClientFlags(name, synopsis, about string, stderr io.Writer) *clientFlags {
	c := &clientFlags{fs: newFlags(name, stderr), name: name, synopsis: synopsis}
	master := os.Getenv("ANTHILL_MASTER")
	if master == "" {
		master = defaultMaster
	}
	c.fs.StringVar(&c.master, "master", master, "URL of the master, http(s):// or ws(s)://; $ANTHILL_MASTER sets the default")
	c.fs.StringVar(&c.token, "token", "", "admin token (default $ANTHILL_TOKEN, else the file admin.token in --data)")
	c.fs.StringVar(&c.data, "data", "./anthill-data", "the master's data dir, where admin.token is read when neither --token nor $ANTHILL_TOKEN is set")
	c.fs.BoolVar(&c.json, "json", false, "print the result as the master sent it, one JSON document")
	c.fs.Usage = func() {
		w := c.fs.Output()
		fmt.Fprintf(w, "usage: anthill %s %s\n\n%s\n\nflags:\n", name, synopsis, about)
		c.fs.PrintDefaults()
		fmt.Fprintf(w, "\n%s\n", exitCodesHelp)
	}
	return c
}

// parse parses args, flags and operands in any order ("--" ends the
// flags), and returns the operands.
func (c *clientFlags) parse(args []string) ([]string, error) {
	var operands []string
	for {
		if err := c.fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, errUsage
		}
		rest := c.fs.Args()
		if len(rest) == 0 {
			return operands, nil
		}
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return append(operands, rest...), nil
		}
		operands, args = append(operands, rest[0]), rest[1:]
	}
}

// usageError prints a command line problem and returns errUsage.
func (c *clientFlags) usageError(format string, args ...any) error {
	w := c.fs.Output()
	fmt.Fprintf(w, "anthill %s: %s\n", c.name, fmt.Sprintf(format, args...))
	fmt.Fprintf(w, "usage: anthill %s %s   (anthill %s --help for more)\n", c.name, c.synopsis, c.name)
	return errUsage
}

// wasSet reports whether the flag name was given on the command line.
func (c *clientFlags) wasSet(name string) bool {
	set := false
	c.fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// client resolves the master's endpoint and the token.
func (c *clientFlags) client() (*rpcClient, error) {
	endpoint, err := jsonrpc.Endpoint(c.master)
	if err != nil {
		return nil, c.usageError("--master: %v", err)
	}
	token, err := findToken(c.token, c.data)
	if err != nil {
		return nil, err
	}
	// A transport of its own, closed by close: a command leaves no idle
	// connection behind, which matters to tests that run many.
	tr := http.DefaultTransport.(*http.Transport).Clone()
	return &rpcClient{endpoint: endpoint, c: jsonrpc.Client{URL: endpoint, Token: token, HTTP: &http.Client{Transport: tr}}}, nil
}

// findToken returns the admin token: the --token flag, else $ANTHILL_TOKEN,
// else the file admin.token in the data dir.
func findToken(flagToken, dataDir string) (string, error) {
	if t := strings.TrimSpace(flagToken); t != "" {
		return t, nil
	}
	if t := strings.TrimSpace(os.Getenv("ANTHILL_TOKEN")); t != "" {
		return t, nil
	}
	path := filepath.Join(dataDir, jsonrpc.TokenFile)
	f, err := os.Open(path)
	if err != nil {
		return "", &exitError{exitUnauthorized, fmt.Errorf("no admin token: pass --token, set ANTHILL_TOKEN, or point --data at the master's data dir (%v)", err)}
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 4096))
	if err != nil {
		return "", &exitError{exitUnauthorized, fmt.Errorf("admin token: %w", err)}
	}
	t := strings.TrimSpace(string(b))
	if t == "" {
		return "", &exitError{exitUnauthorized, fmt.Errorf("admin token: %s is empty", path)}
	}
	return t, nil
}

// rpcClient makes JSON-RPC calls to one master and turns their failures
// into the exit codes scripts rely on.
type rpcClient struct {
	endpoint string
	c        jsonrpc.Client
}

// close closes the client's idle connections.
func (c *rpcClient) close() { c.c.HTTP.CloseIdleConnections() }

// call invokes method with params (nil for none) and returns its raw
// result. wait is how long the call asks the master to hold it. Errors are
// a *jsonrpc.Error (exit 1), or a *exitError for a refused token (4) and
// an unreachable master (5).
func (c *rpcClient) call(ctx context.Context, method string, params any, wait time.Duration) (json.RawMessage, error) {
	cctx, cancel := context.WithTimeout(ctx, callTimeout+wait)
	defer cancel()
	var raw json.RawMessage
	err := c.c.Call(cctx, method, params, &raw)
	if err == nil {
		return raw, nil
	}
	if rerr, ok := errors.AsType[*jsonrpc.Error](err); ok {
		if rerr.Code == jsonrpc.CodeUnauthorized {
			return nil, &exitError{exitUnauthorized, rerr}
		}
		return nil, rerr
	}
	if herr, ok := errors.AsType[*jsonrpc.HTTPError](err); ok {
		err := fmt.Errorf("%s: %w from %s", method, herr, c.endpoint)
		switch herr.Status {
		case http.StatusUnauthorized:
			return nil, &exitError{exitUnauthorized, fmt.Errorf("unauthorized: the master refused the token (HTTP 401)")}
		case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			return nil, &exitError{exitUnreachable, err}
		}
		return nil, err
	}
	if ctx.Err() != nil { // interrupted
		return nil, ctx.Err()
	}
	if cctx.Err() != nil {
		err = fmt.Errorf("no answer within %v", callTimeout+wait)
	} else if ue, ok := errors.AsType[*url.Error](err); ok {
		err = ue.Err
	}
	return nil, &exitError{exitUnreachable, fmt.Errorf("master unreachable at %s: %w", c.endpoint, err)}
}

// printJSON writes a result as one JSON document and a newline.
func printJSON(w io.Writer, raw json.RawMessage) error {
	_, err := fmt.Fprintf(w, "%s\n", bytes.TrimSpace(raw))
	return err
}

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

// parseID parses a task id operand.
func (c *clientFlags) parseID(s string) (uint64, error) {
	id, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, c.usageError("%q is not a task id", s)
	}
	return id, nil
}

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

// --- slaves, apps, stats

var slaveColumns = []column{
	field("ID", "id"),
	field("NAME", "name"),
	field("HOST", "host"),
	field("OS", "os"),
	field("ARCH", "arch"),
	field("CORES", "cores"),
	field("CONCURRENCY", "concurrency"),
	field("RUNNING", "running"),
	field("DONE", "done"),
	field("FAILED", "failed"),
	field("KINDS", "kinds"),
	field("CONNECTED", "connected_at"),
}

var appColumns = []column{
	field("APP", "app", "name"),
	field("CONNECTED", "connected"),
	field("PUSHED", "pushed"),
	field("PENDING", "pending"),
	field("RUNNING", "running"),
	field("UNFINISHED", "unfinished"),
	field("DONE", "done"),
	field("FAILED", "failed"),
	field("ACKED", "acked"),
	field("UNNOTIFIED", "pending_notifications"),
}

func runSlaves(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c := newClientFlags("slaves", "[flags] [get ID | drain ID]",
		`Lists the connected slave sessions (Slaves.List). "get ID" shows one
(Slaves.Get); "drain ID" stops dispatching to it, letting what it runs
finish (Slaves.Drain). ID is the session id of the first column: a slave
that reconnects gets a new one.`, stderr)
	operands, err := c.parse(args)
	if err != nil {
		return err
	}
	var method string
	switch {
	case len(operands) == 0:
		method = "Slaves.List"
	case len(operands) == 2 && operands[0] == "get":
		method = "Slaves.Get"
	case len(operands) == 2 && operands[0] == "drain":
		method = "Slaves.Drain"
	default:
		return c.usageError("unexpected arguments: %s", strings.Join(operands, " "))
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	defer cl.close()
	var params any
	if len(operands) == 2 {
		params = map[string]any{"id": operands[1]}
	}
	raw, err := cl.call(ctx, method, params, 0)
	if err != nil {
		return err
	}
	if c.json {
		return printJSON(stdout, raw)
	}
	switch method {
	case "Slaves.Drain":
		_, err := fmt.Fprintf(stdout, "slave %s draining\n", operands[1])
		return err
	case "Slaves.Get":
		return printResultFields(stdout, method, raw)
	}
	return printListTable(stdout, method, raw, "slaves", slaveColumns)
}

func runApps(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c := newClientFlags("apps", "[flags]",
		`Lists the application ids the master knows, with their task counts
(Apps.List).`, stderr)
	return listCommand(ctx, c, args, stdout, "Apps.List", "apps", appColumns)
}

func runStats(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c := newClientFlags("stats", "[flags]",
		`Shows the master's statistics (Stats.Summary): tasks by state, connected
slaves, throughput. Nested fields print as dotted names.`, stderr)
	raw, err := callWithoutOperands(ctx, c, args, "Stats.Summary")
	if err != nil {
		return err
	}
	if c.json {
		return printJSON(stdout, raw)
	}
	return printResultFields(stdout, "Stats.Summary", raw)
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
	cl, err := c.client()
	if err != nil {
		return 0, nil, err
	}
	defer cl.close()
	raw, err := cl.call(ctx, method, map[string]any{"id": id}, 0)
	return id, raw, err
}

// callWithoutOperands parses flags for a command that takes no operands
// and makes its one parameterless call.
func callWithoutOperands(ctx context.Context, c *clientFlags, args []string, method string) (json.RawMessage, error) {
	operands, err := c.parse(args)
	if err != nil {
		return nil, err
	}
	if len(operands) > 0 {
		return nil, c.usageError("unexpected arguments: %s", strings.Join(operands, " "))
	}
	cl, err := c.client()
	if err != nil {
		return nil, err
	}
	defer cl.close()
	return cl.call(ctx, method, nil, 0)
}

// listCommand runs a command without operands that prints the list in
// field of method's result as a table.
func listCommand(ctx context.Context, c *clientFlags, args []string, stdout io.Writer, method, listKey string, cols []column) error {
	raw, err := callWithoutOperands(ctx, c, args, method)
	if err != nil {
		return err
	}
	if c.json {
		return printJSON(stdout, raw)
	}
	return printListTable(stdout, method, raw, listKey, cols)
}

func printListTable(w io.Writer, method string, raw json.RawMessage, listKey string, cols []column) error {
	v, err := decodeOrdered(raw)
	res, _ := v.(object)
	if err != nil || res == nil {
		return fmt.Errorf("%s: unexpected result %.200s", method, raw)
	}
	list, _ := res.get(listKey).([]any)
	rows := make([]object, 0, len(list))
	for _, x := range list {
		o, _ := x.(object)
		rows = append(rows, o)
	}
	return printTable(w, cols, rows)
}

func printResultFields(w io.Writer, method string, raw json.RawMessage) error {
	v, err := decodeOrdered(raw)
	res, _ := v.(object)
	if err != nil || res == nil {
		return fmt.Errorf("%s: unexpected result %.200s", method, raw)
	}
	return printFields(w, res)
}

// --- generic output

// object is a decoded JSON object that keeps its members' order. Values
// are object, []any, string, json.Number, bool or nil.
type object []member

type member struct {
	key string
	val any
}

func (o object) lookup(key string) (any, bool) {
	for _, m := range o {
		if m.key == key {
			return m.val, true
		}
	}
	return nil, false
}

func (o object) get(key string) any {
	v, _ := o.lookup(key)
	return v
}

// decodeOrdered decodes one JSON value, keeping the order of members.
func decodeOrdered(raw []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	v, err := decodeValue(dec)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("trailing data after the result")
	}
	return v, nil
}

func decodeValue(dec *json.Decoder) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return tok, nil
	}
	switch d {
	case '{':
		o := object{}
		for dec.More() {
			k, err := dec.Token()
			if err != nil {
				return nil, err
			}
			v, err := decodeValue(dec)
			if err != nil {
				return nil, err
			}
			o = append(o, member{k.(string), v})
		}
		_, err := dec.Token()
		return o, err
	case '[':
		a := []any{}
		for dec.More() {
			v, err := decodeValue(dec)
			if err != nil {
				return nil, err
			}
			a = append(a, v)
		}
		_, err := dec.Token()
		return a, err
	}
	return nil, fmt.Errorf("unexpected %v", d)
}

// column is one column of a table: value returns a row's cell, false when
// the row lacks the field. A column no row has is left out.
type column struct {
	title string
	value func(object) (string, bool)
}

// field is a column showing the first of keys a row has.
func field(title string, keys ...string) column {
	return column{title, func(o object) (string, bool) {
		for _, k := range keys {
			if v, ok := o.lookup(k); ok {
				return clipText(fmtValue(k, v), 80), true
			}
		}
		return "", false
	}}
}

// printTable prints rows under the columns at least one row has (every
// column when there are no rows).
func printTable(w io.Writer, cols []column, rows []object) error {
	var shown []column
	for _, c := range cols {
		for _, r := range rows {
			if _, ok := c.value(r); ok {
				shown = append(shown, c)
				break
			}
		}
	}
	if len(rows) == 0 {
		shown = cols
	}
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	for i, c := range shown {
		if i > 0 {
			fmt.Fprint(tw, "\t")
		}
		fmt.Fprint(tw, c.title)
	}
	fmt.Fprintln(tw)
	for _, r := range rows {
		for i, c := range shown {
			if i > 0 {
				fmt.Fprint(tw, "\t")
			}
			s, ok := c.value(r)
			if !ok || s == "" {
				s = "-"
			}
			fmt.Fprint(tw, s)
		}
		fmt.Fprintln(tw)
	}
	return tw.Flush()
}

// printFields prints an object as "name: value" lines in its order;
// nested objects print as dotted names, lists of objects one element per
// line.
func printFields(w io.Writer, o object) error {
	var lines []member
	flatten("", o, &lines)
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	for _, l := range lines {
		fmt.Fprintf(tw, "%s:\t%s\n", l.key, fmtValue(l.key, l.val))
	}
	return tw.Flush()
}

func flatten(prefix string, v any, out *[]member) {
	join := func(k string) string {
		if prefix == "" {
			return k
		}
		return prefix + "." + k
	}
	switch x := v.(type) {
	case object:
		if len(x) == 0 && prefix != "" {
			*out = append(*out, member{prefix, nil})
		}
		for _, m := range x {
			flatten(join(m.key), m.val, out)
		}
	case []any:
		for _, e := range x {
			if _, ok := e.(object); ok {
				for i, e := range x {
					*out = append(*out, member{fmt.Sprintf("%s[%d]", prefix, i), e})
				}
				return
			}
		}
		*out = append(*out, member{prefix, v})
	default:
		*out = append(*out, member{prefix, v})
	}
}

// fmtValue formats a value for a human. key picks the format of strings:
// result and payload are base64 bytes, names ending in _at are times.
func fmtValue(key string, v any) string {
	if i := strings.LastIndexByte(key, '.'); i >= 0 {
		key = key[i+1:]
	}
	switch x := v.(type) {
	case nil:
		return "-"
	case string:
		switch {
		case key == "result" || key == "payload":
			b, err := base64.StdEncoding.DecodeString(x)
			if err != nil {
				return quoteIfNeeded(x)
			}
			return fmtBytes(b)
		case strings.HasSuffix(key, "_at"):
			return fmtTime(x)
		case x == "":
			return "-"
		}
		return quoteIfNeeded(x)
	case json.Number:
		return fmtNumber(x)
	case bool:
		return strconv.FormatBool(x)
	case []any:
		if len(x) == 0 {
			return "-"
		}
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = fmtValue(key, e)
		}
		return strings.Join(parts, ",")
	case object:
		parts := make([]string, len(x))
		for i, m := range x {
			parts[i] = m.key + "=" + fmtValue(m.key, m.val)
		}
		return strings.Join(parts, " ")
	}
	return fmt.Sprint(v)
}

// fmtNumber shows integers as they are and other numbers to three
// decimals at most.
func fmtNumber(n json.Number) string {
	s := n.String()
	if !strings.ContainsAny(s, ".eE") {
		return s
	}
	f, err := n.Float64()
	if err != nil {
		return s
	}
	s = strconv.FormatFloat(f, 'f', 3, 64)
	return strings.TrimSuffix(strings.TrimRight(s, "0"), ".")
}

// fmtBytes shows a result or payload: as text when it is short, valid
// UTF-8, Go-quoted when it holds control characters; else as base64:...
func fmtBytes(b []byte) string {
	if len(b) == 0 {
		return `""`
	}
	if len(b) <= shortResult && utf8.Valid(b) {
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

// fmtTime shows an RFC 3339 time to the second; a zero time is "-".
func fmtTime(s string) string {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return quoteIfNeeded(s)
	}
	if t.IsZero() {
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
