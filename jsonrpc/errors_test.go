package jsonrpc

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/anthill-project/anthill/master"
)

func masterOpts(maxPayload int) master.Options { return master.Options{MaxPayload: maxPayload} }

// A call without the right token gets HTTP 401 with a JSON-RPC error body
// and changes nothing.
func TestUnauthorized(t *testing.T) {
	e := start(t, envOpts{})
	submit := `{"jsonrpc":"2.0","id":1,"method":"Tasks.Submit","params":{"app":"intruder","kind":"echo"}}`
	for _, tc := range []struct{ name, auth, msg string }{
		{"no header", "", "missing bearer token"},
		{"wrong token", "Bearer " + testToken + "x", "wrong token"},
		{"empty token", "Bearer ", "empty bearer token"},
		{"prefix of the token", "Bearer " + testToken[:len(testToken)-1], "wrong token"},
		{"basic auth", "Basic dXNlcjpwYXNz", "must be Bearer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, r := e.post(submit, "Authorization", tc.auth)
			if status != http.StatusUnauthorized || r.Error == nil {
				t.Fatalf("HTTP %d, error %v", status, r.Error)
			}
			checkError(t, r.Error, CodeUnauthorized, "unauthorized", tc.msg)
		})
	}
	// The scheme is case-insensitive; a right token passes.
	status, r := e.post(`{"jsonrpc":"2.0","id":1,"method":"Master.Info"}`, "Authorization", "bearer "+testToken)
	if status != http.StatusOK || r.Error != nil {
		t.Fatalf("lower-case bearer: HTTP %d %v", status, r.Error)
	}
	if st := e.m.Scheduler().Stats(); st.Submitted != 0 || len(st.Apps) != 0 {
		t.Fatalf("a refused call changed the master: %d submitted, apps %v", st.Submitted, st.Apps)
	}
	if got := e.list(obj{"app": "intruder"}); len(got) != 0 {
		t.Fatalf("a refused call stored %d tasks", len(got))
	}
	// The header says how to authenticate.
	req, _ := http.NewRequest(http.MethodPost, e.base+Path, strings.NewReader(submit))
	resp, err := e.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if h := resp.Header.Get("WWW-Authenticate"); !strings.HasPrefix(h, "Bearer") {
		t.Fatalf("WWW-Authenticate %q", h)
	}
}

// The envelope: what gorilla would mishandle is answered here, with the
// JSON-RPC code that fits and the id echoed once it is known.
func TestMalformedRequests(t *testing.T) {
	e := start(t, envOpts{})
	for _, tc := range []struct {
		name, body string
		code       int
		id         string // echoed id; "null" when unknown
		msg        string
	}{
		{"empty body", "", CodeParseError, "null", "parse error"},
		{"truncated", `{"jsonrpc":"2.0","id":1,"method":"Master.Info"`, CodeParseError, "null", "parse error"},
		{"not json", `hello`, CodeParseError, "null", "parse error: invalid character"},
		{"trailing garbage", `{"jsonrpc":"2.0","id":1,"method":"Master.Info"} x`, CodeParseError, "null", "parse error"},
		{"two objects", `{"jsonrpc":"2.0","id":1,"method":"Master.Info"}{}`, CodeParseError, "null", "parse error"},
		{"invalid UTF-8", "{\"jsonrpc\":\"2.0\",\"id\":\"\xff\",\"method\":\"Master.Info\"}", CodeParseError, "null", "not valid UTF-8"},
		{"batch", `[{"jsonrpc":"2.0","id":1,"method":"Master.Info"}]`, CodeInvalidRequest, "null", "batch requests are not supported"},
		{"empty batch", `[]`, CodeInvalidRequest, "null", "batch"},
		{"number", `42`, CodeInvalidRequest, "null", "request object"},
		{"notification", `{"jsonrpc":"2.0","method":"Master.Info"}`, CodeInvalidRequest, "null", "id is required"},
		{"null id", `{"jsonrpc":"2.0","id":null,"method":"Master.Info"}`, CodeInvalidRequest, "null", "not null"},
		{"object id", `{"jsonrpc":"2.0","id":{},"method":"Master.Info"}`, CodeInvalidRequest, "null", "id must be a string or a number"},
		{"no version", `{"id":3,"method":"Master.Info"}`, CodeInvalidRequest, "3", `jsonrpc must be "2.0"`},
		{"version 1", `{"jsonrpc":"1.0","id":"a","method":"Master.Info"}`, CodeInvalidRequest, `"a"`, `jsonrpc must be "2.0"`},
		{"no method", `{"jsonrpc":"2.0","id":4}`, CodeInvalidRequest, "4", "method must be a non-empty string"},
		{"number method", `{"jsonrpc":"2.0","id":4,"method":5}`, CodeInvalidRequest, "4", "method must be"},
		{"unknown method", `{"jsonrpc":"2.0","id":5,"method":"Tasks.Explode"}`, CodeMethodNotFound, "5", `method not found: "Tasks.Explode"`},
		{"unknown service", `{"jsonrpc":"2.0","id":5,"method":"Nope"}`, CodeMethodNotFound, "5", "method not found"},
		{"wrong case", `{"jsonrpc":"2.0","id":5,"method":"tasks.get"}`, CodeMethodNotFound, "5", "method not found"},
		{"member case", `{"jsonrpc":"2.0","id":5,"METHOD":"Tasks.Get","method":"Master.Info","Params":{"id":1}}`, 0, "5", ""},
		{"array params", `{"jsonrpc":"2.0","id":6,"method":"Tasks.Get","params":[1]}`, CodeInvalidParams, "6", "params must be an object of named parameters, not an array"},
		{"string params", `{"jsonrpc":"2.0","id":6,"method":"Tasks.Get","params":"x"}`, CodeInvalidParams, "6", "params must be an object"},
		{"fractional id", `{"jsonrpc":"2.0","id":1.5,"method":"Master.Info"}`, 0, "1.5", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, r := e.post(tc.body, "Content-Type", "")
			if status != http.StatusOK {
				t.Errorf("HTTP %d", status)
			}
			id := string(r.ID)
			if id != tc.id {
				t.Errorf("id %s, want %s", id, tc.id)
			}
			if tc.code == 0 {
				if r.Error != nil {
					t.Fatalf("error %v", r.Error)
				}
				return
			}
			if r.Error == nil {
				t.Fatalf("no error; result %s", r.Result)
			}
			checkError(t, r.Error, tc.code, tc.msg)
		})
	}
}

func TestHTTPMethodAndContentType(t *testing.T) {
	e := start(t, envOpts{})
	req, _ := http.NewRequest(http.MethodGet, e.base+Path, nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := e.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "POST" {
		t.Fatalf("GET: HTTP %d, Allow %q", resp.StatusCode, resp.Header.Get("Allow"))
	}
	checkError(t, mustReply(t, raw).Error, CodeInvalidRequest, "use POST")
	// curl -d and urllib send form-urlencoded; any Content-Type is read as JSON.
	for _, ct := range []string{"application/x-www-form-urlencoded", "text/plain", "application/json; charset=utf-8", ""} {
		status, r := e.post(`{"jsonrpc":"2.0","id":1,"method":"Master.Info"}`, "Content-Type", ct)
		if status != http.StatusOK || r.Error != nil {
			t.Fatalf("Content-Type %q: HTTP %d %v", ct, status, r.Error)
		}
	}
}

func TestInvalidParams(t *testing.T) {
	e := start(t, envOpts{})
	long := strings.Repeat("k", 129)
	for _, tc := range []struct {
		method, params string
		field, msg     string
	}{
		{"Tasks.Submit", `{"app":"a"}`, "kind", "invalid params: kind: must not be empty"},
		{"Tasks.Submit", `{"app":"a","kind":""}`, "kind", "invalid params: kind: must not be empty"},
		{"Tasks.Submit", `{"app":"a","kind":null}`, "kind", "invalid params: kind: must not be empty"},
		{"Tasks.Submit", `{"kind":"echo"}`, "app", "invalid params: app: is required"},
		{"Tasks.Submit", `{"app":"","kind":"echo"}`, "app", "invalid params: app: must be 1 to 128 bytes"},
		{"Tasks.Submit", `{"app":"a","kind":"echo","knd":"x"}`, "knd", "invalid params: knd: unknown parameter"},
		{"Tasks.Submit", `{"app":"a","Kind":"echo"}`, "Kind", "invalid params: Kind: unknown parameter"},
		{"Tasks.Submit", `{"app":"a","kind":7}`, "kind", "invalid params: kind: must be a string"},
		{"Tasks.Submit", `{"app":"a","kind":"echo","priority":"high"}`, "priority", "invalid params: priority: must be an integer from -2147483648 to 2147483647"},
		{"Tasks.Submit", `{"app":"a","kind":"echo","priority":2147483648}`, "priority", "priority: must be an integer"},
		{"Tasks.Submit", `{"app":"a","kind":"echo","payload":"not base64!"}`, "payload", "invalid params: payload: must be a base64 string"},
		{"Tasks.Submit", `{"app":"a","kind":"echo","timeout_ms":-1}`, "timeout_ms", "invalid params: timeout_ms: must not be negative"},
		{"Tasks.Submit", `{"app":"a","kind":"echo","timeout_ms":1.5}`, "timeout_ms", "invalid params: timeout_ms: must be an integer"},
		{"Tasks.Submit", `{"app":"a","kind":"echo","max_attempts":-1}`, "max_attempts", "invalid params: max_attempts: must be an integer from 0 to 4294967295"},
		{"Tasks.Submit", `{"app":"a","kind":"` + long + `"}`, "kind", "invalid params: kind: is longer than 128 bytes"},
		{"Tasks.Submit", `{"app":"a","kind":"echo","max_attempts":5000}`, "max_attempts", "invalid params: max_attempts: exceeds 1000"},
		{"Tasks.Submit", `{"app":"a","kind":"echo","timeout_ms":100000000000}`, "timeout_ms", "invalid params: timeout_ms: of 27777h46m40s exceeds the limit of 24h0m0s"},
		{"Tasks.Submit", `{"app":"a","kind":"echo","key":"` + strings.Repeat("k", 1025) + `"}`, "key", "invalid params: key: is longer than 1024 bytes"},
		{"Tasks.SubmitBatch", `{"app":"a"}`, "tasks", "invalid params: tasks: is required"},
		{"Tasks.SubmitBatch", `{"app":"a","tasks":[]}`, "tasks", "invalid params: tasks: must hold at least one task"},
		{"Tasks.SubmitBatch", `{"app":"a","tasks":{}}`, "tasks", "invalid params: tasks: must be an array of objects"},
		{"Tasks.SubmitBatch", `{"app":"a","tasks":[1]}`, "tasks[0]", "invalid params: tasks[0]: must be an object"},
		{"Tasks.Get", `{}`, "id", "invalid params: id: is required"},
		{"Tasks.Get", `{"id":-1}`, "id", "invalid params: id: must be a non-negative integer"},
		{"Tasks.Get", `{"id":"12"}`, "id", "invalid params: id: must be a non-negative integer"},
		{"Tasks.Wait", `{"ids":[]}`, "ids", "invalid params: ids: must hold at least one task id"},
		{"Tasks.Wait", `{"ids":[1,"2"]}`, "ids", "invalid params: ids: must be an array of non-negative integers"},
		{"Tasks.Wait", `{"ids":[1],"timeout_ms":60001}`, "timeout_ms", "invalid params: timeout_ms: must be from 0 to 60000"},
		{"Tasks.Wait", `{"ids":[1],"timeout_ms":-5}`, "timeout_ms", "invalid params: timeout_ms: must be from 0 to 60000"},
		{"Tasks.List", `{"state":"sleeping"}`, "state", "invalid params: state: must be one of pending, running, done, failed, canceled"},
		{"Tasks.List", `{"limit":5000}`, "limit", "invalid params: limit: must be from 1 to 1000"},
		{"Tasks.List", `{"cursor":-1}`, "cursor", "invalid params: cursor: must be a non-negative integer"},
		{"Tasks.List", `{"order":"random"}`, "order", `invalid params: order: must be "asc" or "desc"`},
		{"Tasks.Cancel", `{"id":true}`, "id", "invalid params: id: must be a non-negative integer"},
		{"Slaves.Get", `{"id":5}`, "id", "invalid params: id: must be a string"},
		{"Slaves.Drain", `{}`, "id", "invalid params: id: is required"},
		{"Master.Info", `{"verbose":true}`, "verbose", "invalid params: verbose: unknown parameter"},
		{"Stats.Summary", `{"x":1}`, "x", "invalid params: x: unknown parameter"},
	} {
		t.Run(tc.method+" "+tc.params[:min(len(tc.params), 40)], func(t *testing.T) {
			err := e.wantError(tc.method, tc.params, CodeInvalidParams, tc.msg)
			var data struct{ Field string }
			if len(err.Data) > 0 && string(err.Data) != "null" {
				if jerr := json.Unmarshal(err.Data, &data); jerr != nil {
					t.Fatalf("data %s: %v", err.Data, jerr)
				}
			}
			if data.Field != tc.field {
				t.Errorf("data.field %q, want %q", data.Field, tc.field)
			}
		})
	}
	if st := e.m.Scheduler().Stats(); st.Submitted != 0 {
		t.Fatalf("invalid calls submitted %d tasks", st.Submitted)
	}
}

func TestUnknownTask(t *testing.T) {
	e := start(t, envOpts{})
	const id = 42
	for _, m := range []string{"Tasks.Get", "Tasks.Cancel", "Tasks.Retry"} {
		err := e.wantError(m, obj{"id": id}, CodeNotFound, "task 42 not found")
		if string(err.Data) != `{"id":42}` {
			t.Errorf("%s: data %s", m, err.Data)
		}
	}
	known := e.submit("a", "nobody-runs-this", "")
	e.wantError("Tasks.Wait", obj{"ids": []uint64{known, id}, "timeout_ms": 0}, CodeNotFound, "task 42 not found")
}

// One bad task refuses the whole batch, naming its index; nothing is
// stored.
func TestBatchRejected(t *testing.T) {
	e := start(t, envOpts{master: masterOpts(64)})
	ok := obj{"kind": "echo", "payload": []byte("x")}
	for _, tc := range []struct {
		name  string
		tasks []any
		code  int
		index int
		msg   string
	}{
		{"empty kind", []any{ok, ok, obj{"kind": ""}, ok}, CodeInvalidParams, 2, "invalid params: tasks[2].kind: must not be empty"},
		{"bad type", []any{ok, obj{"kind": "echo", "priority": "x"}}, CodeInvalidParams, 1, "invalid params: tasks[1].priority: must be an integer"},
		{"unknown field", []any{obj{"kind": "echo", "app": "x"}}, CodeInvalidParams, 0, "invalid params: tasks[0].app: unknown parameter"},
		{"master's limit", []any{ok, obj{"kind": "echo", "max_attempts": 2000}}, CodeInvalidParams, 1, "invalid params: tasks[1].max_attempts: exceeds 1000"},
		{"payload too large", []any{ok, ok, ok, obj{"kind": "echo", "payload": make([]byte, 65)}}, CodeTooLarge, 3, "payload too large: tasks[3].payload is 65 bytes; the limit is 64"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := e.wantError("Tasks.SubmitBatch", obj{"app": "bad-batch", "tasks": tc.tasks}, tc.code, tc.msg)
			var data struct{ Index *int }
			if jerr := json.Unmarshal(err.Data, &data); jerr != nil || data.Index == nil || *data.Index != tc.index {
				t.Errorf("data %s: want index %d", err.Data, tc.index)
			}
		})
	}
	if got := e.list(obj{"app": "bad-batch"}); len(got) != 0 {
		t.Fatalf("a refused batch stored %d tasks", len(got))
	}
	if st := e.m.Scheduler().Stats(); st.Submitted != 0 {
		t.Fatalf("refused batches counted %d submitted", st.Submitted)
	}
}

func TestPayloadTooLarge(t *testing.T) {
	e := start(t, envOpts{master: masterOpts(1024)})
	e.wantError("Tasks.Submit", obj{"app": "big", "kind": "echo", "payload": make([]byte, 1025)}, CodeTooLarge,
		"payload too large: payload is 1025 bytes; the limit is 1024")
	e.submit("big", "nobody-runs-this", string(make([]byte, 1024))) // the limit itself is fine

	// A body over MaxBody is refused before it is read whole.
	h, err := New(e.m.Scheduler(), Options{Token: testToken, MaxBody: 4096})
	if err != nil {
		t.Fatal(err)
	}
	body := fmt.Sprintf(`{"jsonrpc":"2.0","id":1,"method":"Tasks.Submit","params":{"app":"big","kind":"echo","payload":"%s"}}`, strings.Repeat("A", 8192))
	req := httptest.NewRequest(http.MethodPost, Path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+testToken)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusRequestEntityTooLarge {
		t.Fatalf("HTTP %d", rec.Code)
	}
	checkError(t, mustReply(t, rec.Body.Bytes()).Error, CodeTooLarge, "request body exceeds 4096 bytes")
	if got := e.list(obj{"app": "big"}); len(got) != 1 {
		t.Fatalf("%d tasks of app big, want the one at the limit", len(got))
	}
}

func TestNewValidates(t *testing.T) {
	e := start(t, envOpts{})
	for _, o := range []Options{{}, {Token: "short"}, {Token: "has a space in the token"}, {Token: testToken, MaxWait: -1}} {
		if _, err := New(e.m.Scheduler(), o); err == nil {
			t.Errorf("New(%+v) accepted", o)
		}
	}
	if _, err := New(nil, Options{Token: testToken}); err == nil {
		t.Error("New(nil master) accepted")
	}
}
