package jsonrpc

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"unicode/utf8"

	"go.uber.org/goleak"

	"github.com/anthill-project/anthill/internal/testmaster"
	"github.com/anthill-project/anthill/master"
	"github.com/anthill-project/anthill/sandbox"
	"github.com/anthill-project/anthill/slave"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const testToken = "test-token-0123456789abcdef"

// env is a real master on 127.0.0.1:0 with its store in a temp dir, the
// API attached, and optionally a real in-process slave named "s1" running
// the built-in kinds.
type env struct {
	t     testing.TB
	m     *master.Master
	h     http.Handler
	base  string // http://127.0.0.1:port
	dir   string
	hc    *http.Client
	slave *slave.Slave
}

type envOpts struct {
	master master.Options
	rpc    Options
	slave  bool
}

func start(t testing.TB, o envOpts) *env {
	t.Helper()
	dir := t.TempDir()
	mo := o.master
	mo.Data = dir
	if mo.Version == "" {
		mo.Version = "test"
	}
	ro := o.rpc
	if ro.Token == "" {
		ro.Token = testToken
	}
	var h http.Handler
	m := testmaster.Start(t, mo, func(m *master.Master) (err error) {
		if ro.Identities == nil {
			ro.Identities = m
		}
		if ro.Modules == nil {
			ro.Modules = m
		}
		h, err = New(m.Scheduler(), ro)
		m.Handle(Path, h)
		return err
	})
	e := &env{t: t, m: m, h: h, base: "http://" + m.Addr().String(), dir: dir,
		hc: &http.Client{Transport: &http.Transport{}}}
	// Cleanups run last first: the HTTP client and the slave go before the
	// master.
	t.Cleanup(e.hc.CloseIdleConnections)
	if o.slave {
		reg := sandbox.NewRegistry()
		slave.RegisterBuiltins(reg)
		// Enrolled as the identity "s1", so results name it so.
		token, err := m.EnrollVolunteer("s1")
		if err != nil {
			t.Fatal(err)
		}
		s, err := slave.New(slave.Options{Master: m.URL(), Token: token, Registry: reg, Name: "s1", Concurrency: 4, Grace: -1})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		sdone := make(chan error, 1)
		go func() { sdone <- s.Run(ctx) }()
		t.Cleanup(func() {
			cancel()
			if err := <-sdone; err != nil {
				t.Errorf("slave run: %v", err)
			}
		})
		e.slave = s
	}
	return e
}

// reply is a JSON-RPC response as received.
type reply struct {
	Version string          `json:"jsonrpc"`
	Result  json.RawMessage `json:"result"`
	Error   *Error          `json:"error"`
	ID      json.RawMessage `json:"id"`
}

// post sends a raw body with the test token and returns the HTTP status
// and the decoded response; the body must be a JSON-RPC response.
func (e *env) post(body string, header ...string) (int, reply) {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.base+Path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testToken)
	for i := 0; i+1 < len(header); i += 2 {
		if header[i+1] == "" {
			req.Header.Del(header[i])
		} else {
			req.Header.Set(header[i], header[i+1])
		}
	}
	resp, err := e.hc.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp.StatusCode, mustReply(e.t, raw)
}

// mustReply checks raw is one JSON-RPC 2.0 response: jsonrpc "2.0", an id
// member, and exactly one of result and error.
func mustReply(t testing.TB, raw []byte) reply {
	t.Helper()
	if !utf8.Valid(raw) {
		t.Fatalf("response is not UTF-8: %q", raw)
	}
	var members map[string]json.RawMessage
	if err := json.Unmarshal(raw, &members); err != nil {
		t.Fatalf("response is not a JSON object: %v: %q", err, raw)
	}
	var r reply
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatalf("response: %v: %q", err, raw)
	}
	_, hasResult := members["result"]
	_, hasError := members["error"]
	_, hasID := members["id"]
	if r.Version != "2.0" || !hasID || hasResult == hasError {
		t.Fatalf("not a JSON-RPC 2.0 response: %s", raw)
	}
	if hasError && (r.Error == nil || r.Error.Code == 0 || r.Error.Message == "") {
		t.Fatalf("error without code or message: %s", raw)
	}
	return r
}

// call invokes method with params (marshalled) and decodes the result into
// out; it fails the test on a JSON-RPC error.
func (e *env) call(method string, params, out any) {
	e.t.Helper()
	if err := e.try(method, params, out); err != nil {
		e.t.Fatalf("%s %s: %v", method, mustJSON(e.t, params), err)
	}
}

// try is call returning the JSON-RPC error.
func (e *env) try(method string, params, out any) *Error {
	e.t.Helper()
	body := `{"jsonrpc":"2.0","id":7,"method":` + string(mustJSON(e.t, method)) + `,"params":` + string(mustJSON(e.t, params)) + `}`
	status, r := e.post(body)
	if string(r.ID) != "7" {
		e.t.Fatalf("%s: response id %s, want 7", method, r.ID)
	}
	if r.Error != nil {
		if status != http.StatusOK {
			e.t.Fatalf("%s: HTTP %d with error %v", method, status, r.Error)
		}
		return r.Error
	}
	if status != http.StatusOK {
		e.t.Fatalf("%s: HTTP %d", method, status)
	}
	if out != nil {
		if err := json.Unmarshal(r.Result, out); err != nil {
			e.t.Fatalf("%s result %s: %v", method, r.Result, err)
		}
	}
	return nil
}

// wantError invokes method and checks it fails with code and a message
// containing each of msgs.
func (e *env) wantError(method string, params any, code int, msgs ...string) *Error {
	e.t.Helper()
	err := e.try(method, params, nil)
	if err == nil {
		e.t.Fatalf("%s %s succeeded; want error %d", method, mustJSON(e.t, params), code)
	}
	checkError(e.t, err, code, msgs...)
	return err
}

func checkError(t testing.TB, err *Error, code int, msgs ...string) {
	t.Helper()
	if err.Code != code {
		t.Errorf("error %d %q; want code %d", err.Code, err.Message, code)
	}
	for _, m := range msgs {
		if !strings.Contains(err.Message, m) {
			t.Errorf("error message %q does not contain %q", err.Message, m)
		}
	}
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	if raw, ok := v.(string); ok && strings.HasPrefix(raw, "{") {
		return []byte(raw) // params given as literal JSON
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// obj is shorthand for params.
type obj = map[string]any

// submit submits one task and returns its id.
func (e *env) submit(app, kind, payload string, extra ...any) uint64 {
	e.t.Helper()
	p := obj{"app": app, "kind": kind, "payload": []byte(payload)}
	for i := 0; i+1 < len(extra); i += 2 {
		p[extra[i].(string)] = extra[i+1]
	}
	var r SubmitResult
	e.call("Tasks.Submit", p, &r)
	if r.ID == 0 {
		e.t.Fatal("Tasks.Submit returned id 0")
	}
	return r.ID
}

// waitAll waits (long poll, up to a minute) until the tasks are final.
func (e *env) waitAll(ids ...uint64) []Task {
	e.t.Helper()
	var r WaitResult
	e.call("Tasks.Wait", obj{"ids": ids, "timeout_ms": 60000}, &r)
	if !r.Done || len(r.Tasks) != len(ids) {
		e.t.Fatalf("Tasks.Wait %v: done=%v with %d tasks", ids, r.Done, len(r.Tasks))
	}
	return r.Tasks
}

func (e *env) get(id uint64) Task {
	e.t.Helper()
	var task Task
	e.call("Tasks.Get", obj{"id": id}, &task)
	return task
}

// list collects every page of Tasks.List for params (limit per page).
func (e *env) list(params obj) []Task {
	e.t.Helper()
	var all []Task
	for pages := 0; ; pages++ {
		if pages > 1000 {
			e.t.Fatal("Tasks.List does not end")
		}
		var r ListResult
		e.call("Tasks.List", params, &r)
		all = append(all, r.Tasks...)
		if r.NextCursor == nil {
			return all
		}
		params["cursor"] = *r.NextCursor
	}
}
