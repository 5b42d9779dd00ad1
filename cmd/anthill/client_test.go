package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anthill-project/anthill/jsonrpc"
)

// The client commands are tested against fakeMaster, a JSON-RPC 2.0 peer
// over HTTP that is as strict as the master's API: it checks the bearer
// token, the envelope, the method names and the parameter names (an
// unknown one is refused), and answers errors with the master's codes.
// End-to-end tests against a real master live elsewhere.

const fakeToken = "0123456789abcdef0123456789abcdef"

type fakeCall struct {
	method string
	params map[string]json.RawMessage
	auth   string
}

type fakeMethod struct {
	allowed  []string // parameter names; others are refused
	required []string
	fn       func(p map[string]json.RawMessage) (any, *jsonrpc.Error)
}

type fakeMaster struct {
	t     *testing.T
	srv   *httptest.Server
	token string // "" accepts any token

	mu     sync.Mutex
	calls  []fakeCall
	tasks  map[uint64]map[string]any
	nextID uint64
	apps   []map[string]any
}

func newFakeMaster(t *testing.T) *fakeMaster {
	t.Setenv("ANTHILL_TOKEN", "")
	t.Setenv("ANTHILL_MASTER", "")
	f := &fakeMaster{t: t, token: fakeToken, tasks: make(map[uint64]map[string]any), nextID: 1,
		apps: []map[string]any{{"name": "render", "connected": true, "pushed": 10, "unfinished": 2, "done": 7, "failed": 1, "acked": 6, "pending_notifications": 2}}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

// run runs a client command against f with the right token.
func (f *fakeMaster) run(name string, args ...string) (stdout, stderr string, code int) {
	f.t.Helper()
	return runClient(f.t, append([]string{name, "--master", f.srv.URL, "--token", fakeToken}, args...)...)
}

// runClient runs a client command the way main's run does and returns
// what it printed and its exit code.
func runClient(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	for _, c := range clientCommands() {
		if c.name != args[0] {
			continue
		}
		var out, errb bytes.Buffer
		err := c.run(context.Background(), args[1:], &out, &errb)
		code := exitCode(err)
		if code != exitOK && code != exitUsage {
			fmt.Fprintf(&errb, "anthill %s: %v\n", args[0], err)
		}
		t.Logf("anthill %s -> exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out.String(), errb.String())
		return out.String(), errb.String(), code
	}
	t.Fatalf("no client command %q", args[0])
	return "", "", 0
}

func (f *fakeMaster) callsOf(method string) []fakeCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	var cs []fakeCall
	for _, c := range f.calls {
		if c.method == method {
			cs = append(cs, c)
		}
	}
	return cs
}

func (f *fakeMaster) ncalls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls)
}

// addTask stores a task and returns its id.
func (f *fakeMaster) addTask(app, kind, state string, result []byte, errMsg string) uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	id := f.nextID
	f.nextID++
	f.tasks[id] = map[string]any{
		"id": id, "app": app, "kind": kind, "key": "", "state": state, "attempts": 1, "max_attempts": 3,
		"priority": 0, "timeout_ms": 60000, "created_at": "2025-03-01T10:00:00.123Z", "started_at": nil,
		"finished_at": nil, "slave": "s-1", "session": "a1", "result": result, "error": errMsg, "history": []any{},
	}
	return id
}

func (f *fakeMaster) setState(id uint64, state string, result []byte, errMsg string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t := f.tasks[id]
	t["state"], t["result"], t["error"] = state, result, errMsg
	t["finished_at"] = "2025-03-01T10:00:05Z"
}

func isFinal(state any) bool { return state == "done" || state == "failed" || state == "canceled" }

func rpcErr(code int, format string, args ...any) *jsonrpc.Error {
	return &jsonrpc.Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

func (f *fakeMaster) methods() map[string]fakeMethod {
	task := func(p map[string]json.RawMessage) (map[string]any, *jsonrpc.Error) {
		var id uint64
		if err := json.Unmarshal(p["id"], &id); err != nil {
			return nil, rpcErr(-32602, "invalid params: id: must be a non-negative integer")
		}
		t, ok := f.tasks[id]
		if !ok {
			return nil, rpcErr(-32004, "task %d not found", id)
		}
		return t, nil
	}
	specKeys := []string{"kind", "payload", "priority", "timeout_ms", "max_attempts", "key"}
	newTask := func(app string, spec map[string]json.RawMessage) (uint64, *jsonrpc.Error) {
		if err := checkParams(spec, specKeys, []string{"kind"}); err != nil {
			return 0, err
		}
		var kind string
		var payload []byte
		json.Unmarshal(spec["kind"], &kind)
		if raw, ok := spec["payload"]; ok {
			if err := json.Unmarshal(raw, &payload); err != nil {
				return 0, rpcErr(-32602, "invalid params: payload: must be a base64 string")
			}
		}
		id := f.nextID
		f.nextID++
		f.tasks[id] = map[string]any{"id": id, "app": app, "kind": kind, "state": "pending", "payload": payload}
		return id, nil
	}
	return map[string]fakeMethod{
		"Tasks.Submit": {append([]string{"app"}, specKeys...), []string{"app", "kind"}, func(p map[string]json.RawMessage) (any, *jsonrpc.Error) {
			var app string
			json.Unmarshal(p["app"], &app)
			spec := copyParams(p)
			delete(spec, "app")
			id, err := newTask(app, spec)
			if err != nil {
				return nil, err
			}
			return map[string]any{"id": id}, nil
		}},
		"Tasks.SubmitBatch": {[]string{"app", "tasks"}, []string{"app", "tasks"}, func(p map[string]json.RawMessage) (any, *jsonrpc.Error) {
			var app string
			var specs []map[string]json.RawMessage
			json.Unmarshal(p["app"], &app)
			if err := json.Unmarshal(p["tasks"], &specs); err != nil || len(specs) == 0 {
				return nil, rpcErr(-32602, "invalid params: tasks: must be a non-empty array of objects")
			}
			ids := []uint64{}
			for _, s := range specs {
				id, err := newTask(app, s)
				if err != nil {
					return nil, err
				}
				ids = append(ids, id)
			}
			return map[string]any{"ids": ids}, nil
		}},
		"Tasks.Get": {[]string{"id"}, []string{"id"}, func(p map[string]json.RawMessage) (any, *jsonrpc.Error) {
			return task(p)
		}},
		"Tasks.Wait": {[]string{"ids", "timeout_ms"}, []string{"ids"}, nil}, // see wait
		"Tasks.List": {[]string{"state", "app", "kind", "limit", "cursor"}, nil, func(p map[string]json.RawMessage) (any, *jsonrpc.Error) {
			var q struct {
				State, App, Kind string
				Limit            int
				Cursor           uint64
			}
			b, _ := json.Marshal(p)
			json.Unmarshal(b, &q)
			if q.Limit == 0 {
				q.Limit = 100
			}
			var ids []uint64
			for id := range f.tasks {
				ids = append(ids, id)
			}
			slices.Sort(ids)
			out := []map[string]any{}
			var next any
			for _, id := range ids {
				t := f.tasks[id]
				if id <= q.Cursor || (q.State != "" && t["state"] != q.State) || (q.App != "" && t["app"] != q.App) || (q.Kind != "" && t["kind"] != q.Kind) {
					continue
				}
				if len(out) == q.Limit {
					next = out[len(out)-1]["id"]
					break
				}
				out = append(out, t)
			}
			return map[string]any{"tasks": out, "next_cursor": next}, nil
		}},
		"Tasks.Cancel": {[]string{"id"}, []string{"id"}, func(p map[string]json.RawMessage) (any, *jsonrpc.Error) {
			t, err := task(p)
			if err != nil {
				return nil, err
			}
			if isFinal(t["state"]) {
				return nil, rpcErr(-32009, "task %v is already %v", t["id"], t["state"])
			}
			t["state"] = "canceled"
			return map[string]any{"ok": true}, nil
		}},
		"Tasks.Retry": {[]string{"id"}, []string{"id"}, func(p map[string]json.RawMessage) (any, *jsonrpc.Error) {
			t, err := task(p)
			if err != nil {
				return nil, err
			}
			if t["state"] != "failed" && t["state"] != "canceled" {
				return nil, rpcErr(-32009, "task %v is %v: only a failed or canceled task can be retried", t["id"], t["state"])
			}
			t["state"] = "pending"
			return map[string]any{"ok": true}, nil
		}},
		"Slaves.List": {nil, nil, func(map[string]json.RawMessage) (any, *jsonrpc.Error) {
			return map[string]any{"slaves": []any{fakeSlave}}, nil
		}},
		"Slaves.Get": {[]string{"id"}, []string{"id"}, func(p map[string]json.RawMessage) (any, *jsonrpc.Error) {
			if string(p["id"]) != `"s-1"` {
				return nil, rpcErr(-32004, "slave session %s not found", p["id"])
			}
			return fakeSlave, nil
		}},
		"Slaves.Drain": {[]string{"id"}, []string{"id"}, func(p map[string]json.RawMessage) (any, *jsonrpc.Error) {
			var id string
			if err := json.Unmarshal(p["id"], &id); err != nil {
				return nil, rpcErr(-32602, "invalid params: id: must be a string")
			}
			if id != "s-1" {
				return nil, rpcErr(-32004, "slave session %q not found", id)
			}
			return map[string]any{"ok": true}, nil
		}},
		"Apps.List": {nil, nil, func(map[string]json.RawMessage) (any, *jsonrpc.Error) {
			return map[string]any{"apps": f.apps}, nil
		}},
		"Stats.Summary": {nil, nil, func(map[string]json.RawMessage) (any, *jsonrpc.Error) {
			return json.RawMessage(`{"tasks":{"pending":3,"running":1,"unacked":0,"submitted":46,"dispatched":44,"done":42,"failed":1,"canceled":0,"retried":0,"requeued":0,"late_results":0},
				"slaves":{"connected":2,"concurrency":8,"running":1},"kinds":[{"kind":"echo","pending":3,"slaves":2}],
				"throughput":{"window_ms":60000,"finished":43,"failed":1,"finished_per_sec":12.5,"submitted_per_sec":0.38333672831176474,"dispatched_per_sec":0},
				"dispatch_latency_estimate_ms":null,"store":{"commits":90,"ops":181,"last_batch_ops":2,"last_commit_ms":0.4,"mean_commit_ms":0.25},"uptime_ms":5000}`), nil
		}},
	}
}

var fakeSlave = map[string]any{
	"id": "s-1", "identity": "lab-7", "name": "box-1", "remote": "192.0.2.7:5000", "host": "box", "os": "linux", "arch": "amd64", "cores": 8,
	"concurrency": 4, "window": 8, "running": 2, "done": 10, "failed": 1, "kinds": []string{"echo", "sha256"},
	"draining": false, "dispatched": 12, "busy_ms": 431, "connected_at": "2025-03-01T09:00:00.5Z",
}

func copyParams(p map[string]json.RawMessage) map[string]json.RawMessage {
	c := make(map[string]json.RawMessage, len(p))
	for k, v := range p {
		c[k] = v
	}
	return c
}

func checkParams(p map[string]json.RawMessage, allowed, required []string) *jsonrpc.Error {
	var names []string
	for k := range p {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		if !slices.Contains(allowed, k) {
			return rpcErr(-32602, "invalid params: %s: unknown parameter", k)
		}
	}
	for _, k := range required {
		if v, ok := p[k]; !ok || string(v) == "null" {
			return rpcErr(-32602, "invalid params: %s: is required", k)
		}
	}
	return nil
}

// wait is Tasks.Wait: a long poll until every task is final or timeout_ms
// ends; the result holds the final tasks.
func (f *fakeMaster) wait(ctx context.Context, p map[string]json.RawMessage) (any, *jsonrpc.Error) {
	var ids []uint64
	if err := json.Unmarshal(p["ids"], &ids); err != nil || len(ids) == 0 {
		return nil, rpcErr(-32602, "invalid params: ids: must hold at least one task id")
	}
	timeout := int64(30000)
	if raw, ok := p["timeout_ms"]; ok {
		if err := json.Unmarshal(raw, &timeout); err != nil || timeout < 0 || timeout > 60000 {
			return nil, rpcErr(-32602, "invalid params: timeout_ms: must be from 0 to 60000")
		}
	}
	deadline := time.Now().Add(time.Duration(timeout) * time.Millisecond)
	for {
		f.mu.Lock()
		done := []map[string]any{}
		for _, id := range ids {
			t, ok := f.tasks[id]
			if !ok {
				f.mu.Unlock()
				return nil, rpcErr(-32004, "task %d not found", id)
			}
			if isFinal(t["state"]) {
				done = append(done, t)
			}
		}
		out, _ := json.Marshal(map[string]any{"tasks": done, "done": len(done) == len(ids)})
		f.mu.Unlock()
		if len(done) == len(ids) || !time.Now().Before(deadline) || ctx.Err() != nil {
			return json.RawMessage(out), nil
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (f *fakeMaster) serve(w http.ResponseWriter, r *http.Request) {
	reply := func(status int, id json.RawMessage, result any, e *jsonrpc.Error) {
		msg := map[string]any{"jsonrpc": "2.0", "id": id}
		if e != nil {
			msg["error"] = e
		} else {
			msg["result"] = result
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(msg)
	}
	auth := r.Header.Get("Authorization")
	if f.token != "" && auth != "Bearer "+f.token {
		reply(http.StatusUnauthorized, nil, nil, rpcErr(-32001, "unauthorized: wrong token"))
		return
	}
	if r.URL.Path != "/rpc" || r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
		http.Error(w, "not the RPC endpoint", http.StatusNotFound)
		return
	}
	var req struct {
		Version string                     `json:"jsonrpc"`
		ID      json.RawMessage            `json:"id"`
		Method  string                     `json:"method"`
		Params  map[string]json.RawMessage `json:"params"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		reply(http.StatusOK, nil, nil, rpcErr(-32700, "parse error: %v", err))
		return
	}
	if req.Version != "2.0" || len(req.ID) == 0 || req.Params == nil {
		reply(http.StatusOK, req.ID, nil, rpcErr(-32600, "invalid request: want jsonrpc 2.0, an id and params an object"))
		return
	}
	f.mu.Lock()
	f.calls = append(f.calls, fakeCall{req.Method, req.Params, auth})
	f.mu.Unlock()
	m, ok := f.methods()[req.Method]
	if !ok {
		reply(http.StatusOK, req.ID, nil, rpcErr(-32601, "method not found: %q", req.Method))
		return
	}
	if e := checkParams(req.Params, m.allowed, m.required); e != nil {
		reply(http.StatusOK, req.ID, nil, e)
		return
	}
	var res any
	var e *jsonrpc.Error
	if req.Method == "Tasks.Wait" {
		res, e = f.wait(r.Context(), req.Params)
	} else {
		f.mu.Lock()
		res, e = m.fn(req.Params)
		if b, err := json.Marshal(res); err == nil { // snapshot under the lock
			res = json.RawMessage(b)
		}
		f.mu.Unlock()
	}
	reply(http.StatusOK, req.ID, res, e)
}

// params decodes a call's params for comparison.
func params(t *testing.T, c fakeCall) map[string]any {
	t.Helper()
	b, _ := json.Marshal(c.params)
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func wantParams(t *testing.T, c fakeCall, want string) {
	t.Helper()
	var w map[string]any
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatal(err)
	}
	if got := params(t, c); !reflect.DeepEqual(got, w) {
		t.Errorf("%s params = %v, want %v", c.method, got, w)
	}
}

func wantCode(t *testing.T, code, want int) {
	t.Helper()
	if code != want {
		t.Errorf("exit code %d, want %d", code, want)
	}
}

// wantOutput compares a command's output with want, whose first newline
// only keeps the literal readable.
func wantOutput(t *testing.T, what, got, want string) {
	t.Helper()
	if want = strings.TrimPrefix(want, "\n"); got != want {
		t.Errorf("%s printed:\n%s\nwant:\n%s", what, got, want)
	}
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func TestSubmitOneTask(t *testing.T) {
	f := newFakeMaster(t)
	out, _, code := f.run("submit", "--app", "a", "--kind", "echo", "--payload", "hi",
		"--priority", "5", "--timeout", "1.5s", "--attempts", "2", "--key", "k")
	wantCode(t, code, 0)
	if out != "1\n" {
		t.Errorf("stdout %q, want the id", out)
	}
	calls := f.callsOf("Tasks.Submit")
	if len(calls) != 1 {
		t.Fatalf("%d Tasks.Submit calls", len(calls))
	}
	if calls[0].auth != "Bearer "+fakeToken {
		t.Errorf("Authorization %q", calls[0].auth)
	}
	wantParams(t, calls[0], `{"app":"a","kind":"echo","payload":"`+b64("hi")+`","priority":5,"timeout_ms":1500,"max_attempts":2,"key":"k"}`)

	// Options left out are not sent: the master applies its defaults.
	out, _, code = f.run("submit", "--app", "a", "--kind", "echo", "--json")
	wantCode(t, code, 0)
	if strings.TrimSpace(out) != `{"id":2}` {
		t.Errorf("--json stdout %q", out)
	}
	wantParams(t, f.callsOf("Tasks.Submit")[1], `{"app":"a","kind":"echo"}`)
}

func TestSubmitPayloadFile(t *testing.T) {
	f := newFakeMaster(t)
	path := filepath.Join(t.TempDir(), "p.bin")
	payload := []byte{0, 1, 2, 0xff, '\n'}
	if err := os.WriteFile(path, payload, 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, code := f.run("submit", "--app", "a", "--kind", "sha256", "--payload-file", path)
	wantCode(t, code, 0)
	wantParams(t, f.callsOf("Tasks.Submit")[0], `{"app":"a","kind":"sha256","payload":"`+base64.StdEncoding.EncodeToString(payload)+`"}`)

	setStdin(t, "from stdin\n")
	_, _, code = f.run("submit", "--app", "a", "--kind", "echo", "--payload-file", "-")
	wantCode(t, code, 0)
	wantParams(t, f.callsOf("Tasks.Submit")[1], `{"app":"a","kind":"echo","payload":"`+b64("from stdin\n")+`"}`)

	_, stderr, code := f.run("submit", "--app", "a", "--kind", "echo", "--payload-file", filepath.Join(t.TempDir(), "missing"))
	wantCode(t, code, 1)
	if !strings.Contains(stderr, "anthill submit: --payload-file:") {
		t.Errorf("stderr %q", stderr)
	}
}

func setStdin(t *testing.T, s string) {
	old := clientStdin
	clientStdin = strings.NewReader(s)
	t.Cleanup(func() { clientStdin = old })
}

func TestSubmitBatch(t *testing.T) {
	f := newFakeMaster(t)
	out, _, code := f.run("submit", "--app", "a", "--kind", "echo", "--payload", "x", "--count", "3", "--priority", "1")
	wantCode(t, code, 0)
	if out != "1\n2\n3\n" {
		t.Errorf("stdout %q", out)
	}
	calls := f.callsOf("Tasks.SubmitBatch")
	if len(calls) != 1 || len(f.callsOf("Tasks.Submit")) != 0 {
		t.Fatalf("calls: %d SubmitBatch, %d Submit", len(calls), len(f.callsOf("Tasks.Submit")))
	}
	x := `{"kind":"echo","payload":"` + b64("x") + `","priority":1}`
	wantParams(t, calls[0], `{"app":"a","tasks":[`+x+`,`+x+`,`+x+`]}`)

	// --stdin: one task per line, every line, without its line ending.
	setStdin(t, "a\nb\r\n\nc")
	out, _, code = f.run("submit", "--app", "a", "--kind", "echo", "--stdin", "--json")
	wantCode(t, code, 0)
	if strings.TrimSpace(out) != `{"ids":[4,5,6,7]}` {
		t.Errorf("--json stdout %q", out)
	}
	wantParams(t, f.callsOf("Tasks.SubmitBatch")[1], `{"app":"a","tasks":[{"kind":"echo","payload":"`+b64("a")+`"},{"kind":"echo","payload":"`+b64("b")+`"},{"kind":"echo"},{"kind":"echo","payload":"`+b64("c")+`"}]}`)

	// One line is one task: Tasks.Submit.
	setStdin(t, "only\n")
	out, _, code = f.run("submit", "--app", "a", "--kind", "echo", "--stdin")
	wantCode(t, code, 0)
	if out != "8\n" || len(f.callsOf("Tasks.Submit")) != 1 {
		t.Errorf("stdout %q, %d Submit calls", out, len(f.callsOf("Tasks.Submit")))
	}

	// No lines: nothing to submit.
	setStdin(t, "")
	n := f.ncalls()
	out, _, code = f.run("submit", "--app", "a", "--kind", "echo", "--stdin")
	wantCode(t, code, 0)
	if out != "" || f.ncalls() != n {
		t.Errorf("empty stdin: stdout %q, %d calls", out, f.ncalls()-n)
	}
}

func TestSubmitLargeBatchIsSplit(t *testing.T) {
	f := newFakeMaster(t)
	out, _, code := f.run("submit", "--app", "a", "--kind", "echo", "--count", "2500")
	wantCode(t, code, 0)
	lines := strings.Fields(out)
	if len(lines) != 2500 || lines[0] != "1" || lines[2499] != "2500" {
		t.Errorf("%d ids printed, first %q", len(lines), lines[0])
	}
	var sizes []int
	for _, c := range f.callsOf("Tasks.SubmitBatch") {
		var tasks []any
		json.Unmarshal(c.params["tasks"], &tasks)
		sizes = append(sizes, len(tasks))
	}
	if !slices.Equal(sizes, []int{1000, 1000, 500}) {
		t.Errorf("batch sizes %v", sizes)
	}
}

func TestSubmitRPCErrorAndUsage(t *testing.T) {
	f := newFakeMaster(t)
	for _, args := range [][]string{
		{"--kind", "echo"},
		{"--app", "a"},
		{"--app", "a", "--kind", "echo", "--payload", "x", "--stdin"},
		{"--app", "a", "--kind", "echo", "--payload", "x", "--payload-file", "f"},
		{"--app", "a", "--kind", "echo", "--stdin", "--count", "2"},
		{"--app", "a", "--kind", "echo", "--count", "0"},
		{"--app", "a", "--kind", "echo", "--priority", "9999999999"},
		{"--app", "a", "--kind", "echo", "--attempts", "-1"},
		{"--app", "a", "--kind", "echo", "--timeout", "-1s"},
		{"--app", "a", "--kind", "echo", "extra"},
		{"--app", "a", "--kind", "echo", "--no-such-flag"},
		{"--app", "a", "--kind", "echo", "--master", "ftp://x"},
	} {
		_, stderr, code := f.run("submit", args...)
		wantCode(t, code, exitUsage)
		if stderr == "" {
			t.Errorf("%v: nothing on stderr", args)
		}
	}
	if n := f.ncalls(); n != 0 {
		t.Errorf("%d calls made for bad command lines", n)
	}
}

func TestGet(t *testing.T) {
	f := newFakeMaster(t)
	id := f.addTask("render", "echo", "done", []byte("hello world"), "")
	bin := f.addTask("render", "sha256", "done", []byte{0xff, 0, 1}, "")
	nl := f.addTask("render", "echo", "done", []byte("two\nlines"), "")
	failed := f.addTask("render", "fail", "failed", nil, "boom")

	// Flags may follow the id.
	out, _, code := f.run("get", fmt.Sprint(id))
	wantCode(t, code, 0)
	wantParams(t, f.callsOf("Tasks.Get")[0], `{"id":1}`)
	wantOutput(t, "get", out, `
id:            1
app:           render
kind:          echo
key:           -
state:         done
attempts:      1
max_attempts:  3
priority:      0
timeout_ms:    60000
created_at:    2025-03-01T10:00:00Z
started_at:    -
finished_at:   -
slave:         s-1
session:       a1
result:        hello world
error:         -
history:       -
`)
	// A payload shows before the result, each attempt on its own line.
	f.mu.Lock()
	f.tasks[id]["payload"] = []byte("in\x00")
	f.tasks[id]["history"] = []map[string]any{
		{"slave": "s-0", "session": "a0", "started_at": "2025-03-01T10:00:00.5Z", "ended_at": "2025-03-01T10:00:01Z", "outcome": "lost", "error": "slave gone"},
		{"slave": "s-1", "session": "a1", "started_at": "2025-03-01T10:00:02Z", "ended_at": nil, "outcome": "running", "error": ""},
	}
	f.mu.Unlock()
	out, _, _ = f.run("get", fmt.Sprint(id))
	if want := "slave:         s-1\nsession:       a1\npayload:       \"in\\x00\"\nresult:        hello world\n"; !strings.Contains(out, want) {
		t.Errorf("get output lacks %q:\n%s", want, out)
	}
	if want := "\nhistory[0]:    slave=s-0 session=a0 started_at=2025-03-01T10:00:00Z ended_at=2025-03-01T10:00:01Z outcome=lost error=slave gone\n" +
		"history[1]:    slave=s-1 session=a1 started_at=2025-03-01T10:00:02Z ended_at=- outcome=running error=-\n"; !strings.HasSuffix(out, want) {
		t.Errorf("get output does not end in %q:\n%s", want, out)
	}
	out, _, _ = f.run("get", fmt.Sprint(bin))
	if !strings.Contains(out, "base64:"+base64.StdEncoding.EncodeToString([]byte{0xff, 0, 1})) {
		t.Errorf("binary result not shown as base64:\n%s", out)
	}
	out, _, _ = f.run("get", fmt.Sprint(nl))
	if !strings.Contains(out, `"two\nlines"`) {
		t.Errorf("text with a newline not quoted:\n%s", out)
	}

	out, _, code = f.run("get", fmt.Sprint(bin), "--raw")
	wantCode(t, code, 0)
	if out != "\xff\x00\x01" {
		t.Errorf("--raw wrote %q", out)
	}
	_, stderr, code := f.run("get", "--raw", fmt.Sprint(failed))
	wantCode(t, code, 1)
	if !strings.Contains(stderr, "failed, not done: boom") {
		t.Errorf("stderr %q", stderr)
	}

	out, _, code = f.run("get", fmt.Sprint(id), "--json")
	wantCode(t, code, 0)
	var doc map[string]any
	if err := json.Unmarshal([]byte(out), &doc); err != nil || doc["result"] != b64("hello world") || doc["state"] != "done" {
		t.Errorf("--json output %q (%v)", out, err)
	}

	_, stderr, code = f.run("get", "99")
	wantCode(t, code, 1)
	if !strings.Contains(stderr, "anthill get: task 99 not found (code -32004)") {
		t.Errorf("stderr %q", stderr)
	}
	for _, args := range [][]string{{}, {"x"}, {"1", "2"}, {"1", "--raw", "--json"}} {
		_, _, code = f.run("get", args...)
		wantCode(t, code, exitUsage)
	}
}

func TestWait(t *testing.T) {
	f := newFakeMaster(t)
	a := f.addTask("app", "echo", "done", []byte("A"), "")
	b := f.addTask("app", "echo", "running", nil, "")
	time.AfterFunc(100*time.Millisecond, func() { f.setState(b, "done", []byte("B"), "") })

	out, _, code := f.run("wait", fmt.Sprint(a), fmt.Sprint(b), fmt.Sprint(a))
	wantCode(t, code, 0)
	if !strings.Contains(out, "1  done  A") || !strings.Contains(out, "2  done  B") {
		t.Errorf("stdout:\n%s", out)
	}
	wantParams(t, f.callsOf("Tasks.Wait")[0], `{"ids":[1,2],"timeout_ms":30000}`)

	out, _, code = f.run("wait", "--raw", fmt.Sprint(a), fmt.Sprint(b))
	wantCode(t, code, 0)
	if out != "AB" {
		t.Errorf("--raw wrote %q", out)
	}

	// One call asks for at most a minute.
	_, _, code = f.run("wait", "--timeout", "5m", "--json", fmt.Sprint(a))
	wantCode(t, code, 0)
	calls := f.callsOf("Tasks.Wait")
	wantParams(t, calls[len(calls)-1], `{"ids":[1],"timeout_ms":60000}`)
}

func TestWaitFailed(t *testing.T) {
	f := newFakeMaster(t)
	a := f.addTask("app", "echo", "done", []byte("A"), "")
	b := f.addTask("app", "fail", "failed", nil, "boom")
	c := f.addTask("app", "echo", "canceled", nil, "canceled")
	out, stderr, code := f.run("wait", fmt.Sprint(a), fmt.Sprint(b), fmt.Sprint(c))
	wantCode(t, code, 1)
	if !strings.Contains(out, "2  failed    boom") || !strings.Contains(out, "3  canceled") {
		t.Errorf("stdout:\n%s", out)
	}
	if !strings.Contains(stderr, "anthill wait: 2 of 3 tasks failed or were canceled") {
		t.Errorf("stderr %q", stderr)
	}
}

func TestWaitTimeout(t *testing.T) {
	f := newFakeMaster(t)
	a := f.addTask("app", "echo", "done", []byte("A"), "")
	b := f.addTask("app", "sleep", "running", nil, "")
	start := time.Now()
	out, stderr, code := f.run("wait", "--timeout", "300ms", fmt.Sprint(a), fmt.Sprint(b))
	wantCode(t, code, exitTimeout)
	if d := time.Since(start); d < 300*time.Millisecond || d > 10*time.Second {
		t.Errorf("waited %v for a 300ms timeout", d)
	}
	if !strings.Contains(out, "2  unfinished") || !strings.Contains(out, "1  done") {
		t.Errorf("stdout:\n%s", out)
	}
	if !strings.Contains(stderr, "timed out after 300ms: 1 of 2 tasks are not final") {
		t.Errorf("stderr %q", stderr)
	}
	wantParams(t, f.callsOf("Tasks.Wait")[0], `{"ids":[1,2],"timeout_ms":300}`)

	// --timeout 0 checks once.
	_, _, code = f.run("wait", "--timeout", "0", "--json", fmt.Sprint(b))
	wantCode(t, code, exitTimeout)
	calls := f.callsOf("Tasks.Wait")
	wantParams(t, calls[len(calls)-1], `{"ids":[2],"timeout_ms":0}`)

	_, stderr, code = f.run("wait", "7")
	wantCode(t, code, 1)
	if !strings.Contains(stderr, "(code -32004)") {
		t.Errorf("stderr %q", stderr)
	}
	_, _, code = f.run("wait")
	wantCode(t, code, exitUsage)
}

func TestTasks(t *testing.T) {
	f := newFakeMaster(t)
	for i := range 5 {
		state := "pending"
		if i%2 == 0 {
			state = "done"
		}
		f.addTask("render", "echo", state, nil, "")
	}
	f.setState(3, "failed", nil, strings.Repeat("x", 200))

	out, stderr, code := f.run("tasks", "--limit", "2")
	wantCode(t, code, 0)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "ID ") || !strings.Contains(lines[0], "ATTEMPTS") || !strings.Contains(lines[1], "1/3") {
		t.Errorf("stdout:\n%s", out)
	}
	if !strings.Contains(stderr, "add --cursor 2 (and the same filters) for the next page") {
		t.Errorf("stderr %q", stderr)
	}
	wantParams(t, f.callsOf("Tasks.List")[0], `{"limit":2}`)

	out, stderr, code = f.run("tasks", "--limit", "2", "--all")
	wantCode(t, code, 0)
	if n := len(strings.Split(strings.TrimSpace(out), "\n")); n != 6 || stderr != "" {
		t.Errorf("--all: %d lines, stderr %q:\n%s", n, stderr, out)
	}
	if !strings.Contains(out, strings.Repeat("x", 59)+"…") || strings.Contains(out, strings.Repeat("x", 61)) {
		t.Errorf("a long error is not clipped:\n%s", out)
	}
	calls := f.callsOf("Tasks.List")[1:]
	var cursors []any
	for _, c := range calls {
		cursors = append(cursors, params(t, c)["cursor"])
	}
	if !reflect.DeepEqual(cursors, []any{nil, 2.0, 4.0}) {
		t.Errorf("cursors sent %v", cursors)
	}

	out, _, code = f.run("tasks", "--all", "--limit", "2", "--json")
	wantCode(t, code, 0)
	var doc struct {
		Tasks      []map[string]any `json:"tasks"`
		NextCursor *uint64          `json:"next_cursor"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil || len(doc.Tasks) != 5 || doc.NextCursor != nil {
		t.Errorf("--all --json: %d tasks (%v):\n%s", len(doc.Tasks), err, out)
	}

	out, _, code = f.run("tasks", "--state", "done", "--app", "render", "--kind", "echo", "--cursor", "1", "--json")
	wantCode(t, code, 0)
	all := f.callsOf("Tasks.List")
	wantParams(t, all[len(all)-1], `{"state":"done","app":"render","kind":"echo","cursor":1}`)
	if err := json.Unmarshal([]byte(out), &doc); err != nil || len(doc.Tasks) != 1 || doc.Tasks[0]["id"] != 5.0 {
		t.Errorf("filtered: %v\n%s", err, out)
	}

	out, _, code = f.run("tasks", "--state", "canceled")
	wantCode(t, code, 0)
	if strings.TrimSpace(out) != "ID  APP  KIND  STATE  ATTEMPTS  PRIORITY  CREATED  FINISHED  SLAVE  ERROR" {
		t.Errorf("empty list: %q", out)
	}
	_, _, code = f.run("tasks", "--limit", "-1")
	wantCode(t, code, exitUsage)
}

func TestCancelRetry(t *testing.T) {
	f := newFakeMaster(t)
	id := f.addTask("app", "sleep", "pending", nil, "")
	out, _, code := f.run("cancel", fmt.Sprint(id))
	wantCode(t, code, 0)
	if out != "task 1 canceled\n" {
		t.Errorf("stdout %q", out)
	}
	wantParams(t, f.callsOf("Tasks.Cancel")[0], `{"id":1}`)

	_, stderr, code := f.run("cancel", fmt.Sprint(id))
	wantCode(t, code, 1)
	if !strings.Contains(stderr, "anthill cancel: task 1 is already canceled (code -32009)") {
		t.Errorf("stderr %q", stderr)
	}

	out, _, code = f.run("retry", "--json", fmt.Sprint(id))
	wantCode(t, code, 0)
	if strings.TrimSpace(out) != `{"ok":true}` {
		t.Errorf("stdout %q", out)
	}
	wantParams(t, f.callsOf("Tasks.Retry")[0], `{"id":1}`)
	_, _, code = f.run("retry", fmt.Sprint(id))
	wantCode(t, code, 1)
	_, _, code = f.run("retry")
	wantCode(t, code, exitUsage)
}

func TestSlavesAppsStats(t *testing.T) {
	f := newFakeMaster(t)
	out, _, code := f.run("slaves")
	wantCode(t, code, 0)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "ID ") || !strings.Contains(lines[1], "box-1") || !strings.Contains(lines[1], "lab-7") ||
		!strings.Contains(lines[1], "echo,sha256") || !strings.Contains(lines[1], "2025-03-01T09:00:00Z") {
		t.Errorf("slaves:\n%s", out)
	}
	wantParams(t, f.callsOf("Slaves.List")[0], `{}`)

	out, _, code = f.run("slaves", "drain", "s-1")
	wantCode(t, code, 0)
	if out != "slave s-1 draining\n" {
		t.Errorf("drain: %q", out)
	}
	wantParams(t, f.callsOf("Slaves.Drain")[0], `{"id":"s-1"}`)
	_, stderr, code := f.run("slaves", "drain", "s-9")
	wantCode(t, code, 1)
	if !strings.Contains(stderr, "(code -32004)") {
		t.Errorf("stderr %q", stderr)
	}
	out, _, code = f.run("slaves", "get", "s-1")
	wantCode(t, code, 0)
	wantOutput(t, "slaves get", out, `
id:            s-1
identity:      lab-7
name:          box-1
remote:        192.0.2.7:5000
host:          box
os:            linux
arch:          amd64
cores:         8
concurrency:   4
window:        8
kinds:         echo,sha256
running:       2
draining:      false
dispatched:    12
done:          10
failed:        1
busy_ms:       431
connected_at:  2025-03-01T09:00:00Z
`)
	_, _, code = f.run("slaves", "kill", "s-1")
	wantCode(t, code, exitUsage)

	out, _, code = f.run("apps")
	wantCode(t, code, 0)
	wantOutput(t, "apps", out, `
APP     CONNECTED  PUSHED  UNFINISHED  DONE  FAILED  ACKED  UNNOTIFIED
render  true       10      2           7     1       6      2
`)
	f.apps = []map[string]any{}
	out, _, _ = f.run("apps")
	wantOutput(t, "apps without apps", out, `
APP  CONNECTED  PUSHED  UNFINISHED  DONE  FAILED  ACKED  UNNOTIFIED
`)

	// In the master's order, nested fields dotted, rates to three decimals.
	out, _, code = f.run("stats")
	wantCode(t, code, 0)
	wantOutput(t, "stats", out, `
tasks.pending:                  3
tasks.running:                  1
tasks.unacked:                  0
tasks.submitted:                46
tasks.dispatched:               44
tasks.done:                     42
tasks.failed:                   1
tasks.canceled:                 0
tasks.retried:                  0
tasks.requeued:                 0
tasks.late_results:             0
slaves.connected:               2
slaves.concurrency:             8
slaves.running:                 1
kinds[0]:                       kind=echo pending=3 slaves=2
throughput.window_ms:           60000
throughput.finished:            43
throughput.failed:              1
throughput.finished_per_sec:    12.5
throughput.submitted_per_sec:   0.383
throughput.dispatched_per_sec:  0
dispatch_latency_estimate_ms:   -
store.commits:                  90
store.ops:                      181
store.mean_commit_ms:           0.25
uptime_ms:                      5000
`)
	out, _, _ = f.run("stats", "--json")
	if !json.Valid([]byte(out)) || !strings.Contains(out, `"uptime_ms":5000`) {
		t.Errorf("stats --json: %q", out)
	}
}

func TestExitCodes(t *testing.T) {
	f := newFakeMaster(t)
	id := fmt.Sprint(f.addTask("app", "echo", "done", nil, ""))

	_, stderr, code := runClient(t, "get", "--master", f.srv.URL, "--token", "wrong-token-wrong-token", id)
	wantCode(t, code, exitUnauthorized)
	if !strings.Contains(stderr, "anthill get: unauthorized: wrong token (code -32001)") {
		t.Errorf("stderr %q", stderr)
	}

	// A master that is not listening.
	dead := httptest.NewServer(http.NotFoundHandler())
	url := dead.URL
	dead.Close()
	_, stderr, code = runClient(t, "stats", "--master", url, "--token", fakeToken)
	wantCode(t, code, exitUnreachable)
	if !strings.Contains(stderr, "anthill stats: master unreachable at "+url+"/rpc") {
		t.Errorf("stderr %q", stderr)
	}

	// A proxy in front of a master that is down.
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "bad gateway", http.StatusBadGateway)
	}))
	defer proxy.Close()
	_, _, code = runClient(t, "stats", "--master", proxy.URL, "--token", fakeToken)
	wantCode(t, code, exitUnreachable)

	// Something that is not a master at all.
	other := httptest.NewServer(http.NotFoundHandler())
	defer other.Close()
	_, stderr, code = runClient(t, "stats", "--master", other.URL, "--token", fakeToken)
	wantCode(t, code, 1)
	if !strings.Contains(stderr, "not a JSON-RPC response") {
		t.Errorf("stderr %q", stderr)
	}

	// A 401 without a JSON-RPC body.
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "go away", http.StatusUnauthorized)
	}))
	defer plain.Close()
	_, _, code = runClient(t, "apps", "--master", plain.URL, "--token", fakeToken)
	wantCode(t, code, exitUnauthorized)
}

func TestTokenDiscovery(t *testing.T) {
	f := newFakeMaster(t)
	f.token = "" // accept any token; check which one was sent
	data := t.TempDir()
	if err := os.WriteFile(filepath.Join(data, "admin.token"), []byte("file-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sent := func(args ...string) (string, int) {
		t.Helper()
		_, _, code := runClient(t, append([]string{"stats", "--master", f.srv.URL, "--data", data}, args...)...)
		calls := f.callsOf("Stats.Summary")
		if code != 0 || len(calls) == 0 {
			return "", code
		}
		return strings.TrimPrefix(calls[len(calls)-1].auth, "Bearer "), code
	}

	t.Setenv("ANTHILL_TOKEN", "env-token")
	if tok, _ := sent("--token", "flag-token"); tok != "flag-token" {
		t.Errorf("--token, $ANTHILL_TOKEN and a file: sent %q", tok)
	}
	if tok, _ := sent(); tok != "env-token" {
		t.Errorf("$ANTHILL_TOKEN and a file: sent %q", tok)
	}
	t.Setenv("ANTHILL_TOKEN", "")
	if tok, _ := sent(); tok != "file-token" {
		t.Errorf("a file: sent %q", tok)
	}

	n := f.ncalls()
	_, stderr, code := runClient(t, "stats", "--master", f.srv.URL, "--data", t.TempDir())
	wantCode(t, code, exitUnauthorized)
	if !strings.Contains(stderr, "no admin token") || f.ncalls() != n {
		t.Errorf("no token: stderr %q, %d calls", stderr, f.ncalls()-n)
	}
}

func TestMasterURL(t *testing.T) {
	for in, want := range map[string]string{
		"ws://127.0.0.1:7070":        "http://127.0.0.1:7070/rpc",
		"wss://m.example.org":        "https://m.example.org/rpc",
		"http://m:7070/":             "http://m:7070/rpc",
		"http://m:7070/rpc":          "http://m:7070/rpc",
		"https://m/anthill":          "https://m/anthill/rpc",
		"127.0.0.1:7070":             "http://127.0.0.1:7070/rpc",
		" HTTP://M:1 ":               "http://M:1/rpc",
		"ftp://m":                    "",
		"http://":                    "",
		"http://m:7070/rpc?x=1#frag": "http://m:7070/rpc",
	} {
		got, err := jsonrpc.Endpoint(in)
		if (err != nil) != (want == "") || got != want {
			t.Errorf("Endpoint(%q) = %q, %v; want %q", in, got, err, want)
		}
	}

	// ws:// works, and $ANTHILL_MASTER is the default.
	f := newFakeMaster(t)
	_, _, code := runClient(t, "apps", "--master", strings.Replace(f.srv.URL, "http://", "ws://", 1), "--token", fakeToken)
	wantCode(t, code, 0)
	t.Setenv("ANTHILL_MASTER", f.srv.URL)
	_, _, code = runClient(t, "apps", "--token", fakeToken)
	wantCode(t, code, 0)
	if n := len(f.callsOf("Apps.List")); n != 2 {
		t.Errorf("%d Apps.List calls, want 2", n)
	}
}

func TestClientHelp(t *testing.T) {
	for _, c := range clientCommands() {
		_, stderr, code := runClient(t, c.name, "--help")
		wantCode(t, code, 0)
		for _, want := range []string{"usage: anthill " + c.name, "-master", "-token", "-json", exitCodesHelp} {
			if !strings.Contains(stderr, want) {
				t.Errorf("anthill %s --help lacks %q", c.name, want)
			}
		}
	}
}

// Every command, built in or client, has one name, a summary and a body;
// and the client commands are all reachable from the command list.
func TestCommandNames(t *testing.T) {
	seen := make(map[string]bool)
	for _, c := range commands() {
		if seen[c.name] {
			t.Errorf("command %q declared twice", c.name)
		}
		seen[c.name] = true
		if c.summary == "" || c.run == nil {
			t.Errorf("command %q lacks a summary or a run", c.name)
		}
	}
	for _, c := range clientCommands() {
		if !seen[c.name] {
			t.Errorf("client command %q is not in commands()", c.name)
		}
	}
}

func TestFmtBytes(t *testing.T) {
	for in, want := range map[string]string{
		"":                        `""`,
		"hello":                   "hello",
		"héllo wörld":             "héllo wörld",
		"a\tb":                    `"a\tb"`,
		`"quoted"`:                `"\"quoted\""`,
		"base64:abc":              `"base64:abc"`,
		"\xff\xfe":                "base64://4=",
		"\x00":                    `"\x00"`,
		strings.Repeat("a", 1025): "base64:" + base64.StdEncoding.EncodeToString([]byte(strings.Repeat("a", 1025))),
	} {
		if got := fmtBytes([]byte(in)); got != want {
			t.Errorf("fmtBytes(%q) = %q, want %q", in, got, want)
		}
	}
	if got := fmtBytes(nil); got != "-" {
		t.Errorf("fmtBytes(nil) = %q: a null result is none", got)
	}
}

// Rates print as the master's JSON shows them, cut to three decimals.
func TestFmtFloat(t *testing.T) {
	for in, want := range map[float64]string{
		0: "0", 14: "14", 12.5: "12.5", 0.38333672831176474: "0.383", 8163.3: "8163.3",
		0.0004: "0", 1e22: "10000000000000000000000", 123456789012345680000: "123456789012345680000",
	} {
		if got := fmtFloat(in); got != want {
			t.Errorf("fmtFloat(%v) = %q, want %q", in, got, want)
		}
	}
}

func TestClientLeavesNoConnections(t *testing.T) {
	f := newFakeMaster(t)
	for range 3 {
		if _, _, code := f.run("apps"); code != 0 {
			t.Fatalf("exit code %d", code)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		buf := make([]byte, 1<<20)
		stacks := string(buf[:runtime.Stack(buf, true)])
		if !strings.Contains(stacks, "(*persistConn).readLoop") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("client connections left open:\n%s", stacks)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
