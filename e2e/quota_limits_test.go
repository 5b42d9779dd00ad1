package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/anthill-project/anthill/appnode"
	"github.com/anthill-project/anthill/internal/testmaster"
	"github.com/anthill-project/anthill/jsonrpc"
	"github.com/anthill-project/anthill/master"
	"github.com/anthill-project/anthill/master/sched"
	"github.com/anthill-project/anthill/protocol"
)

// quotaMaster runs `anthill master` on addr and data with extra flags and
// returns its process and a JSON-RPC client with the admin token.
func quotaMaster(t *testing.T, data string, addr string, flags ...string) (*proc, *jsonrpc.Client) {
	t.Helper()
	args := append([]string{"master", "--listen", addr, "--data", data, "--log-level", "warn"}, flags...)
	mp := start(t, args...)
	mp.line(t, "dashboard at")
	return mp, &jsonrpc.Client{URL: "http://" + addr, Token: readToken(t, data)}
}

// quotaApp is a raw application connection: it submits exactly the frames
// an attacker would.
func quotaApp(t *testing.T, url, name string) *websocket.Conn {
	t.Helper()
	return rawPeer(t, url, "/ws/app", &protocol.Hello{Version: protocol.Version, Role: protocol.RoleApp, Name: name})
}

// quotaSubmit sends a submit of n tasks of kind and returns the master's
// answer to it.
func quotaSubmit(t *testing.T, ws *websocket.Conn, seq uint64, n int, kind string) protocol.Message {
	t.Helper()
	tasks := make([]protocol.NewTask, n)
	for i := range tasks {
		tasks[i] = protocol.NewTask{Kind: kind, Payload: []byte("x")}
	}
	return quotaSend(t, ws, seq, tasks)
}

// quotaSend sends a submit of tasks and returns the master's answer to it.
func quotaSend(t *testing.T, ws *websocket.Conn, seq uint64, tasks []protocol.NewTask) protocol.Message {
	t.Helper()
	if err := ws.WriteMessage(websocket.BinaryMessage, protocol.Encode(nil, &protocol.Submit{Seq: seq, Tasks: tasks})); err != nil {
		t.Fatal(err)
	}
	for {
		_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, frame, err := ws.ReadMessage()
		if err != nil {
			t.Fatalf("waiting for the answer to submit %d: %v", seq, err)
		}
		msg, err := protocol.Decode(frame)
		if err != nil {
			t.Fatal(err)
		}
		switch m := msg.(type) {
		case *protocol.Notify:
			// Acknowledged at once, so the tasks leave the master.
			ids := make([]uint64, len(m.Tasks))
			for i, f := range m.Tasks {
				ids[i] = f.ID
			}
			if err := ws.WriteMessage(websocket.BinaryMessage, protocol.Encode(nil, &protocol.IDs{T: protocol.TypeNotifyAck, IDs: ids})); err != nil {
				t.Fatal(err)
			}
		case *protocol.SubmitAck:
			if m.Seq == seq {
				return m
			}
		case *protocol.SubmitReject:
			if m.Seq == seq {
				return m
			}
		}
	}
}

// quotaRefused checks that msg refuses the whole submit for quota.
func quotaRefused(t *testing.T, msg protocol.Message, quota string) {
	t.Helper()
	rej, ok := msg.(*protocol.SubmitReject)
	if !ok || rej.Code != protocol.CodeQuotaExceeded || rej.Index != -1 || !strings.Contains(rej.Message, quota+" is ") {
		t.Fatalf("got %#v, want a quota_exceeded reject naming %s", msg, quota)
	}
}

// quotaRPCRefused checks that err is the API's quota error naming quota.
func quotaRPCRefused(t *testing.T, err error, quota string, limit int64) {
	t.Helper()
	var re *jsonrpc.Error
	if !errors.As(err, &re) || re.Code != jsonrpc.CodeQuotaExceeded ||
		!strings.Contains(string(re.Data), fmt.Sprintf(`"quota":%q`, quota)) ||
		!strings.Contains(string(re.Data), fmt.Sprintf(`"limit":%d`, limit)) {
		t.Fatalf("got %v (data %s), want code %d naming %s", err, quotaDataOf(re), jsonrpc.CodeQuotaExceeded, quota)
	}
}

func quotaDataOf(e *jsonrpc.Error) string {
	if e == nil {
		return ""
	}
	return string(e.Data)
}

// H2, the task flood: submits past the queue quotas, whether through an
// appnode, a raw socket or the JSON-RPC API, are refused whole with
// quota_exceeded; what was accepted before is untouched and runs.
func TestQuotaTaskFloodIsRefusedAndLosesNothing(t *testing.T) {
	addr, data := freePort(t), t.TempDir()
	_, rpc := quotaMaster(t, data, addr, "--max-queued-tasks", "50", "--max-queued-tasks-per-app", "30",
		"--max-submit-tasks", "40", "--max-queued-bytes-per-app", "100000")
	url := "ws://" + addr
	c := newCollector()
	app := connect(t, url, "honest", c)
	tasks := echoTasks(30)
	push(t, app, tasks...)

	// The appnode sees a clear error, and stays usable.
	err := app.PushTask(context.Background(), &appnode.Task{Kind: "echo", Payload: []byte("one too many")})
	var rej *appnode.RejectError
	if !errors.As(err, &rej) || rej.Code != protocol.CodeQuotaExceeded || !strings.Contains(rej.Message, "max-queued-tasks-per-app is 30") {
		t.Fatalf("push past the per-app quota: %v", err)
	}

	ctx := context.Background()
	big := jsonrpc.SubmitParams{App: "script", TaskSpec: jsonrpc.TaskSpec{Kind: "echo", Payload: make([]byte, 100001)}}
	err = rpc.Call(ctx, "Tasks.Submit", big, &jsonrpc.SubmitResult{})
	quotaRPCRefused(t, err, "max-queued-bytes-per-app", 100000)

	// The appnode knows the submit cap from the Welcome and refuses first.
	err = app.PushTasks(ctx, echoTasks(41))
	if !errors.As(err, &rej) || rej.Code != protocol.CodeQuotaExceeded || !strings.Contains(rej.Message, "at most 40") {
		t.Fatalf("push past the submit cap: %v", err)
	}

	flood := quotaApp(t, url, "flood")
	quotaRefused(t, quotaSubmit(t, flood, 1, 41, "echo"), "max-submit-tasks")
	quotaRefused(t, quotaSubmit(t, flood, 2, 21, "echo"), "max-queued-tasks")
	if _, ok := quotaSubmit(t, flood, 3, 20, "echo").(*protocol.SubmitAck); !ok {
		t.Fatal("a submit within every quota was refused")
	}
	quotaRefused(t, quotaSubmit(t, flood, 4, 1, "echo"), "max-queued-tasks")

	var ids jsonrpc.SubmitBatchResult
	err = rpc.Call(ctx, "Tasks.SubmitBatch", jsonrpc.SubmitBatchParams{App: "script", Tasks: []jsonrpc.TaskSpec{{Kind: "echo"}}}, &ids)
	quotaRPCRefused(t, err, "max-queued-tasks", 50)

	// Everything accepted runs, once a slave comes.
	startSlave(t, url, "worker", "--concurrency", "4")
	waitFor(t, 60*time.Second, "the honest app's tasks", func() bool { return c.len() == len(tasks) })
	checkEchoed(t, c, tasks)
	// With the queue drained, the quota lets work in again.
	push(t, app, echoTasks(1)...)
}

// H2, the kind flood: a submit that brings a kind past --max-kinds is
// refused; the quota counts the kinds the master holds, so kinds whose
// tasks are gone make room again.
func TestQuotaKindFloodIsRefused(t *testing.T) {
	addr, data := freePort(t), t.TempDir()
	quotaMaster(t, data, addr, "--max-kinds", "3")
	url := "ws://" + addr
	ws := quotaApp(t, url, "kinds")
	if _, ok := quotaSubmit(t, ws, 1, 2, "echo").(*protocol.SubmitAck); !ok {
		t.Fatal("first kind refused")
	}
	if _, ok := quotaSubmit(t, ws, 2, 2, "k2").(*protocol.SubmitAck); !ok {
		t.Fatal("second kind refused")
	}
	// One frame with many new kinds is refused whole.
	tasks := make([]protocol.NewTask, 1000)
	for i := range tasks {
		tasks[i] = protocol.NewTask{Kind: fmt.Sprintf("flood-%d", i)}
	}
	quotaRefused(t, quotaSend(t, ws, 3, tasks), "max-kinds")
	quotaRefused(t, quotaSend(t, ws, 4, tasks[:2]), "max-kinds")
	if _, ok := quotaSend(t, ws, 5, tasks[:1]).(*protocol.SubmitAck); !ok {
		t.Fatal("a third kind was refused")
	}
	quotaRefused(t, quotaSubmit(t, ws, 6, 1, "k4"), "max-kinds")
	// Tasks of a held kind are still welcome.
	if _, ok := quotaSubmit(t, ws, 7, 5, "k2").(*protocol.SubmitAck); !ok {
		t.Fatal("tasks of a known kind were refused")
	}
	// Once the echo tasks are done and acknowledged, their kind no longer
	// counts.
	startSlave(t, url, "worker")
	waitFor(t, 60*time.Second, "a fourth kind to fit", func() bool {
		_, ok := quotaSubmit(t, ws, uint64(time.Now().UnixNano()), 1, "k5").(*protocol.SubmitAck)
		return ok
	})
}

// quotaMetrics scrapes the master's /metrics.
func quotaMetrics(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %d %v", resp.StatusCode, err)
	}
	return string(b)
}

// H2, the app-name flood: past --max-apps a new application is refused
// with quota_exceeded, over the WebSocket and the API; applications with
// nothing left are forgotten after --app-idle, series and all, and make
// room for others.
func TestQuotaAppFloodIsRefusedAndIdleAppsAreForgotten(t *testing.T) {
	addr, data := freePort(t), t.TempDir()
	_, rpc := quotaMaster(t, data, addr, "--max-apps", "3", "--app-idle", "1s")
	url := "ws://" + addr
	c := newCollector()
	var flood []*appnode.Node
	for i := range 3 {
		n := connect(t, url, fmt.Sprintf("flood-app-%d", i), c)
		push(t, n, echoTasks(1)...)
		flood = append(flood, n)
	}
	// Refused in place of its Welcome.
	over, _, err := websocket.DefaultDialer.Dial(url+"/ws/app", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer over.Close()
	hello := &protocol.Hello{Version: protocol.Version, Role: protocol.RoleApp, Name: "one-too-many", Token: testmaster.AdminToken}
	if err := over.WriteMessage(websocket.BinaryMessage, protocol.Encode(nil, hello)); err != nil {
		t.Fatal(err)
	}
	_ = over.SetReadDeadline(time.Now().Add(10 * time.Second))
	expectError(t, over, protocol.CodeQuotaExceeded)
	err = rpc.Call(context.Background(), "Tasks.Submit", jsonrpc.SubmitParams{App: "script", TaskSpec: jsonrpc.TaskSpec{Kind: "echo"}}, &jsonrpc.SubmitResult{})
	quotaRPCRefused(t, err, "max-apps", 3)
	if m := quotaMetrics(t, addr); !strings.Contains(m, `app="flood-app-0"`) {
		t.Fatal("no series of a known app on /metrics")
	}

	// The flood's tasks run and are acknowledged; then its apps go.
	startSlave(t, url, "worker")
	waitFor(t, 30*time.Second, "the flood's tasks", func() bool { return c.len() == 3 })
	for i, n := range flood {
		waitFor(t, 30*time.Second, "acknowledgements", func() bool { return quotaAppDone(t, rpc, fmt.Sprintf("flood-app-%d", i)) })
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_ = n.Shutdown(ctx)
		cancel()
	}
	waitFor(t, 30*time.Second, "the idle apps forgotten", func() bool {
		return !strings.Contains(quotaMetrics(t, addr), `app="flood-app-`)
	})
	quotaApp(t, url, "newcomer") // room again
	if _, ok := quotaSubmit(t, quotaApp(t, url, "newcomer-2"), 1, 1, "echo").(*protocol.SubmitAck); !ok {
		t.Fatal("a new app refused after the idle ones were forgotten")
	}
}

// quotaAppDone reports whether every task of app is final and
// acknowledged: the API lists none that is pending or running, and Apps.List
// shows no notification waiting.
func quotaAppDone(t *testing.T, rpc *jsonrpc.Client, app string) bool {
	t.Helper()
	var apps struct {
		Apps []struct {
			Name                 string `json:"name"`
			PendingNotifications int    `json:"pending_notifications"`
			Unfinished           int    `json:"unfinished"`
			Acked                int    `json:"acked"`
		} `json:"apps"`
	}
	call(t, rpc, "Apps.List", struct{}{}, &apps)
	for _, a := range apps.Apps {
		if a.Name == app {
			return a.PendingNotifications == 0 && a.Unfinished == 0 && a.Acked == 1
		}
	}
	return false
}

// quotaSlave is a raw slave connection that runs kinds the way an
// attacker would.
func quotaSlave(t *testing.T, url, name string, kinds ...string) *websocket.Conn {
	t.Helper()
	return rawPeer(t, url, "/ws/slave", &protocol.Hello{Version: protocol.Version, Role: protocol.RoleSlave,
		Name: name, Kinds: kinds, Concurrency: protocol.MaxConcurrency, Prefetch: protocol.MaxPrefetch})
}

// quotaDispatched reads ws until a dispatch arrives.
func quotaDispatched(t *testing.T, ws *websocket.Conn) *protocol.Dispatch {
	t.Helper()
	for {
		_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, frame, err := ws.ReadMessage()
		if err != nil {
			t.Fatalf("waiting for a dispatch: %v", err)
		}
		if d, ok := quotaDecoded(frame).(*protocol.Dispatch); ok {
			return d
		}
	}
}

// M3, the poison notification: a result that makes the notify frame
// larger than the frame limit is delivered to the application as an error
// saying so, once, instead of a frame the application must refuse on
// every reconnect.
func TestQuotaPoisonNotificationBecomesAnError(t *testing.T) {
	const maxFrame = 64 << 10
	m := startMaster(t, master.Options{MaxFrame: maxFrame, MaxPayload: 1 << 10})
	kind := strings.Repeat("k", protocol.MaxKindBytes)
	ws := quotaSlave(t, m.URL(), "poisoner", kind)
	c := newCollector()
	app := connect(t, m.URL(), "victim", c)
	task := &appnode.Task{Kind: kind, Payload: []byte("hi"), MaxAttempts: 1}
	push(t, app, task)
	d := quotaDispatched(t, ws)
	// The largest result the master reads: the results frame is exactly
	// maxFrame bytes.
	r := protocol.Result{ID: d.Tasks[0].ID, Attempt: d.Tasks[0].Attempt, Lease: d.Tasks[0].Lease}
	r.Output = make([]byte, maxFrame-len(protocol.Encode(nil, &protocol.Results{Results: []protocol.Result{r}}))-2)
	frame := protocol.Encode(nil, &protocol.Results{Results: []protocol.Result{r}})
	if len(frame) > maxFrame || len(frame) < maxFrame-8 {
		t.Fatalf("results frame of %d bytes", len(frame))
	}
	if err := ws.WriteMessage(websocket.BinaryMessage, frame); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the notification", func() bool { return c.len() == 1 })
	o, _ := c.get(task.ID)
	var te *appnode.TaskError
	// The master refuses a result over --max-result before it could make
	// the notification too large; were one stored, the notification would
	// say it does not fit a frame. Either way the app hears of it once.
	if !errors.As(o.err, &te) || !(strings.Contains(te.Message, "exceeds the limit") || strings.Contains(te.Message, "does not fit a notify frame")) {
		t.Fatalf("outcome: %q %v", o.result, o.err)
	}
	// One session all along: the app never had to reconnect. Its
	// acknowledgement reaches the master a frame after the notification.
	waitFor(t, 30*time.Second, "the app connected with its notification acknowledged", func() bool {
		st := m.Scheduler().Stats()
		return len(st.Apps) == 1 && st.Apps[0].Connected && st.Apps[0].Acked == 1
	})
}

// H3, a peer that does not read: a slave that never reads holds no more
// than its slow-start window, whatever window it asks for, so the master
// cannot pile payloads up for it; an application that never reads its
// notifications has the frames queued for it bounded in bytes, and past the
// bound it is dropped as too slow, long before its read deadline. Nothing
// is lost: its next connection gets every result.
func TestQuotaNonReadingPeersAreBoundedByBytes(t *testing.T) {
	log := &quotaLog{t: t}
	m := startMaster(t, master.Options{MaxFrame: 1 << 20, MaxPayload: 64 << 10, SendQueueBytes: 256 << 10,
		Heartbeat: time.Hour, Logger: slog.New(slog.NewTextHandler(log, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	sponge := quotaSlave(t, m.URL(), "sponge", "echo")
	waitSlaves(t, m, 1)
	ws := quotaApp(t, m.URL(), "heavy")
	tasks := make([]*appnode.Task, 0, 300)
	for seq := uint64(1); len(tasks) < cap(tasks); seq++ {
		batch := make([]protocol.NewTask, 10)
		for i := range batch {
			batch[i] = protocol.NewTask{Kind: "echo", Payload: bytes.Repeat([]byte{byte(len(tasks) + i)}, 64<<10)}
		}
		ack, ok := quotaSend(t, ws, seq, batch).(*protocol.SubmitAck)
		if !ok {
			t.Fatalf("submit %d refused", seq)
		}
		for i := range batch {
			tasks = append(tasks, &appnode.Task{ID: ack.FirstID + uint64(i), Kind: "echo", Payload: batch[i].Payload})
		}
	}
	for _, sl := range m.Scheduler().Stats().Slaves {
		if sl.Running > sched.SlowStartWindow {
			t.Fatalf("the silent slave holds %d tasks; a new session holds at most %d", sl.Running, sched.SlowStartWindow)
		}
	}
	sponge.Close()
	// From here on the application reads nothing; a real slave runs its
	// 300 results of 64 KiB into notifications for it.
	startSlave(t, m.URL(), "reader", "--concurrency", "4")
	waitFor(t, 60*time.Second, "the silent app dropped", func() bool {
		st := m.Scheduler().Stats()
		return len(st.Apps) == 1 && !st.Apps[0].Connected
	})
	if !log.has("peer too slow; dropping it") {
		t.Fatal("the app was not dropped for its queue")
	}
	ws.Close()
	c := newCollector()
	connect(t, m.URL(), "heavy", c)
	waitFor(t, 60*time.Second, "every task", func() bool { return c.len() == len(tasks) })
	checkEchoed(t, c, tasks)
}

// M4: a task retried after its acknowledgement keeps its record through
// the retention sweep, and a restart finds it pending.
func TestQuotaRetriedTaskSurvivesRetention(t *testing.T) {
	addr, data := freePort(t), t.TempDir()
	mp, rpc := quotaMaster(t, data, addr, "--retention", "1s")
	url := "ws://" + addr
	ctx := context.Background()
	var failing, canary jsonrpc.SubmitResult
	if err := rpc.Call(ctx, "Tasks.Submit", jsonrpc.SubmitParams{App: "m4", TaskSpec: jsonrpc.TaskSpec{Kind: "fail", Payload: []byte("no"), MaxAttempts: 1}}, &failing); err != nil {
		t.Fatal(err)
	}
	sl := startSlave(t, url, "worker")
	quotaState(t, rpc, failing.ID, "failed")
	// The canary finishes after the failed task, so once it is swept the
	// failed task's old retention entry has been reached too.
	if err := rpc.Call(ctx, "Tasks.Submit", jsonrpc.SubmitParams{App: "m4", TaskSpec: jsonrpc.TaskSpec{Kind: "echo"}}, &canary); err != nil {
		t.Fatal(err)
	}
	quotaState(t, rpc, canary.ID, "done")
	sl.stop(t)
	waitFor(t, 30*time.Second, "the slave gone", func() bool { return quotaSlaves(t, rpc) == 0 })
	call(t, rpc, "Tasks.Retry", map[string]uint64{"id": failing.ID}, &struct{}{})
	waitFor(t, 60*time.Second, "a retention sweep", func() bool {
		var re *jsonrpc.Error
		err := rpc.Call(ctx, "Tasks.Get", map[string]uint64{"id": canary.ID}, &struct{}{})
		return errors.As(err, &re) && re.Code == jsonrpc.CodeNotFound
	})
	quotaState(t, rpc, failing.ID, "pending")
	mp.kill9()
	_, rpc = quotaMaster(t, data, addr, "--retention", "1s")
	quotaState(t, rpc, failing.ID, "pending")
}

// quotaState waits until task id is in state.
func quotaState(t *testing.T, rpc *jsonrpc.Client, id uint64, state string) {
	t.Helper()
	var last string
	defer func() {
		if t.Failed() {
			t.Logf("task %d was last seen as %s", id, last)
		}
	}()
	waitFor(t, 30*time.Second, fmt.Sprintf("task %d %s", id, state), func() bool {
		var got struct {
			State string `json:"state"`
		}
		if err := rpc.Call(context.Background(), "Tasks.Get", map[string]uint64{"id": id}, &got); err != nil {
			last = err.Error()
			return false
		}
		last = got.State
		return got.State == state
	})
}

func quotaSlaves(t *testing.T, rpc *jsonrpc.Client) int {
	t.Helper()
	var got struct {
		Slaves []struct{} `json:"slaves"`
	}
	call(t, rpc, "Slaves.List", struct{}{}, &got)
	return len(got.Slaves)
}

func quotaDecoded(frame []byte) protocol.Message {
	m, _ := protocol.Decode(frame)
	return m
}

// quotaLog keeps the master's log lines for a test to search, and shows
// them in the test's log.
type quotaLog struct {
	t     *testing.T
	mu    sync.Mutex
	lines []string
}

func (l *quotaLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, string(p))
	l.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func (l *quotaLog) has(s string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, line := range l.lines {
		if strings.Contains(line, s) {
			return true
		}
	}
	return false
}

// H3, the requeue: a slave that vanishes holding large tasks sends them
// back to the queue with small state records; the payloads, written once
// when the tasks were accepted, are not written again, and the tasks still
// run with them.
func TestQuotaRequeueWritesOnlySmallRecords(t *testing.T) {
	m := startMaster(t, master.Options{})
	ws := quotaSlave(t, m.URL(), "vanishing", "echo")
	waitSlaves(t, m, 1)
	c := newCollector()
	app := connect(t, m.URL(), "large", c)
	const n, size = 20, 512 << 10
	tasks := make([]*appnode.Task, n)
	for i := range tasks {
		tasks[i] = &appnode.Task{Kind: "echo", Payload: bytes.Repeat([]byte{byte(i)}, size)}
	}
	for i := 0; i < n; i += 5 {
		push(t, app, tasks[i:i+5]...)
	}
	// The slave holds its slow-start window of them.
	held := 0
	for held < sched.SlowStartWindow {
		held += len(quotaDispatched(t, ws).Tasks)
	}
	before := m.Scheduler().Stats().Store.Bytes
	ws.Close()
	waitFor(t, 30*time.Second, "the requeue committed", func() bool { return m.Scheduler().Stats().Store.Bytes > before })
	if wrote := m.Scheduler().Stats().Store.Bytes - before; wrote > uint64(held)*1024 {
		t.Fatalf("re-queueing %d tasks of %d bytes wrote %d bytes", held, size, wrote)
	}
	startSlave(t, m.URL(), "reader")
	waitFor(t, 60*time.Second, "every task", func() bool { return c.len() == n })
	checkEchoed(t, c, tasks)
}
