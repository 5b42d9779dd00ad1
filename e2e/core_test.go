package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/anthill-project/anthill/appnode"
	"github.com/anthill-project/anthill/internal/testmaster"
	"github.com/anthill-project/anthill/master"
	"github.com/anthill-project/anthill/protocol"
)

func push(t *testing.T, n *appnode.Node, tasks ...*appnode.Task) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := n.PushTasks(ctx, tasks); err != nil {
		t.Fatalf("push: %v", err)
	}
}

func echoTasks(n int) []*appnode.Task {
	ts := make([]*appnode.Task, n)
	for i := range ts {
		ts[i] = &appnode.Task{Kind: "echo", Payload: []byte(fmt.Sprintf("task-%d", i))}
	}
	return ts
}

// checkAll waits for every task to finish and checks each was reported
// exactly once with its own payload echoed back.
func checkEchoed(t *testing.T, c *collector, tasks []*appnode.Task) {
	t.Helper()
	waitFor(t, 60*time.Second, fmt.Sprintf("%d notifications", len(tasks)), func() bool { return c.len() >= len(tasks) })
	for _, task := range tasks {
		o, ok := c.get(task.ID)
		if !ok {
			t.Fatalf("task %d never reported", task.ID)
		}
		if o.err != nil || string(o.result) != string(task.Payload) {
			t.Fatalf("task %d: result %q err %v, want %q", task.ID, o.result, o.err, task.Payload)
		}
	}
	if d := c.duplicates(); len(d) > 0 {
		t.Fatalf("%d tasks reported more than once, e.g. %d", len(d), d[0])
	}
	if c.len() != len(tasks) {
		t.Fatalf("%d notifications for %d tasks", c.len(), len(tasks))
	}
}

func TestEchoThroughSlaveProcesses(t *testing.T) {
	for _, dispatch := range []string{protocol.DispatchSend, protocol.DispatchPoll} {
		t.Run(dispatch, func(t *testing.T) {
			m := startMaster(t, master.Options{Dispatch: dispatch})
			startSlave(t, m.URL(), "s1", "--concurrency", "4")
			startSlave(t, m.URL(), "s2", "--concurrency", "4")
			// Both first: the first slave to connect could run the whole
			// batch before the second has finished its handshake.
			waitSlaves(t, m, 2)
			c := newCollector()
			app := connect(t, m.URL(), "echo-app", c)
			tasks := echoTasks(2000)
			push(t, app, tasks...)
			checkEchoed(t, c, tasks)
			st := m.Scheduler().Stats()
			for _, s := range st.Slaves {
				if s.Done == 0 {
					t.Errorf("slave %s ran nothing; dispatch should use every slave", s.Name)
				}
			}
		})
	}
}

func TestBuiltinKindsAndFailures(t *testing.T) {
	m := startMaster(t, master.Options{RetryBackoff: time.Millisecond})
	startSlave(t, m.URL(), "s1")
	c := newCollector()
	app := connect(t, m.URL(), "kinds", c)
	sha := &appnode.Task{Kind: "sha256", Payload: []byte("anthill")}
	slp := &appnode.Task{Kind: "sleep", Payload: []byte("20")}
	fail := &appnode.Task{Kind: "fail", Payload: []byte("it broke"), MaxAttempts: 3}
	slow := &appnode.Task{Kind: "sleep", Payload: []byte("60000"), Timeout: 200 * time.Millisecond, MaxAttempts: 2}
	orphan := &appnode.Task{Kind: "no-such-kind"}
	push(t, app, sha, slp, fail, slow, orphan)
	waitFor(t, 30*time.Second, "4 results", func() bool { return c.len() == 4 })

	sum := sha256.Sum256([]byte("anthill"))
	if o, _ := c.get(sha.ID); string(o.result) != hex.EncodeToString(sum[:]) {
		t.Errorf("sha256 = %q", o.result)
	}
	if o, _ := c.get(slp.ID); o.err != nil || string(o.result) != "20" {
		t.Errorf("sleep = %q, %v", o.result, o.err)
	}
	var te *appnode.TaskError
	o, _ := c.get(fail.ID)
	if !errors.As(o.err, &te) || te.State != protocol.StateFailed || te.Attempts != 3 || te.Message != "it broke" {
		t.Errorf("fail: %#v", o.err)
	}
	o, _ = c.get(slow.ID)
	if !errors.As(o.err, &te) || te.Attempts != 2 || !strings.Contains(te.Message, "timeout") {
		t.Errorf("timeout: %v", o.err)
	}
	// A kind nobody runs waits, visibly.
	if _, ok := c.get(orphan.ID); ok {
		t.Error("a task of a kind no slave runs finished")
	}
	var found bool
	for _, k := range m.Scheduler().Stats().Kinds {
		if k.Kind == "no-such-kind" {
			found = k.Pending == 1 && k.Slaves == 0
		}
	}
	if !found {
		t.Errorf("stats do not show the waiting kind: %+v", m.Scheduler().Stats().Kinds)
	}
}

func TestPayloadTooLargeIsRefused(t *testing.T) {
	m := startMaster(t, master.Options{MaxPayload: 1000})
	startSlave(t, m.URL(), "s1")
	c := newCollector()
	app := connect(t, m.URL(), "big", c)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := app.PushTasks(ctx, []*appnode.Task{{Kind: "echo"}, {Kind: "echo", Payload: make([]byte, 1001)}})
	var rej *appnode.RejectError
	if !errors.As(err, &rej) || rej.Code != protocol.CodePayloadTooLarge || rej.Index != 1 {
		t.Fatalf("oversized payload: %v", err)
	}
	// Nothing of the refused batch was stored; the connection still works.
	ok := echoTasks(10)
	push(t, app, ok...)
	checkEchoed(t, c, ok)
	if s := m.Scheduler().Stats(); s.Submitted != 10 {
		t.Fatalf("submitted %d, want 10: the refused batch must store nothing", s.Submitted)
	}
}

// A slave killed with SIGKILL mid-task loses nothing: its tasks finish on
// the other slave and the application hears of each once.
func TestSlaveKilledMidTask(t *testing.T) {
	m := startMaster(t, master.Options{Heartbeat: 200 * time.Millisecond})
	victim := startSlave(t, m.URL(), "victim", "--concurrency", "8")
	waitSlaves(t, m, 1)
	c := newCollector()
	app := connect(t, m.URL(), "survivor", c)
	tasks := make([]*appnode.Task, 200)
	for i := range tasks {
		tasks[i] = &appnode.Task{Kind: "sleep", Payload: []byte("20")}
	}
	push(t, app, tasks...)
	waitFor(t, 10*time.Second, "victim busy", func() bool {
		st := m.Scheduler().Stats()
		return len(st.Slaves) == 1 && st.Slaves[0].Running > 0 && st.Slaves[0].Done > 0
	})
	victim.kill9()
	startSlave(t, m.URL(), "rescuer", "--concurrency", "8")
	waitFor(t, 60*time.Second, "all tasks", func() bool { return c.len() == len(tasks) })
	for _, task := range tasks {
		if o, _ := c.get(task.ID); o.err != nil {
			t.Fatalf("task %d: %v", task.ID, o.err)
		}
	}
	if d := c.duplicates(); len(d) > 0 {
		t.Fatalf("duplicates: %v", d)
	}
	if st := m.Scheduler().Stats(); st.Requeued == 0 {
		t.Fatal("no task was re-queued: the kill did not hit running work")
	}
}

// The master is killed with SIGKILL while thousands of accepted tasks are
// queued or running, then restarted on the same data dir: every accepted
// task finishes and the app hears of each exactly once.
func TestMasterKilledAndRestarted(t *testing.T) {
	addr := freePort(t)
	data := t.TempDir()
	url := "ws://" + addr
	args := []string{"master", "--listen", addr, "--data", data, "--heartbeat", "500ms", "--log-level", "warn"}
	mp := start(t, args...)
	mp.line(t, "listening on")
	startSlave(t, url, "s1", "--concurrency", "4")
	startSlave(t, url, "s2", "--concurrency", "4")
	c := newCollector()
	app := connect(t, url, "crashy", c)
	const n = 5000
	tasks := make([]*appnode.Task, n)
	for i := range tasks {
		tasks[i] = &appnode.Task{Kind: "sleep", Payload: []byte("1")}
	}
	for i := 0; i < n; i += 500 {
		push(t, app, tasks[i:i+500]...)
	}
	waitFor(t, 30*time.Second, "some results", func() bool { return c.len() > 100 })
	before := c.len()
	mp.kill9()
	if before >= n {
		t.Fatalf("all %d tasks finished before the kill; the test proves nothing", n)
	}
	t.Logf("killed the master after %d of %d notifications", before, n)
	mp = start(t, args...)
	mp.line(t, "listening on")
	waitFor(t, 90*time.Second, "all tasks after restart", func() bool { return c.len() == n })
	for _, task := range tasks {
		if o, _ := c.get(task.ID); o.err != nil {
			t.Fatalf("task %d: %v", task.ID, o.err)
		}
	}
	if d := c.duplicates(); len(d) > 0 {
		t.Fatalf("%d duplicate notifications, e.g. %d", len(d), d[0])
	}
}

// An application that goes away while its results arrive gets every one
// it missed when it comes back under the same app id.
func TestAppReconnectsAndGetsMissedResults(t *testing.T) {
	m := startMaster(t, master.Options{})
	startSlave(t, m.URL(), "s1", "--concurrency", "4")
	first := newCollector()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	app, err := appnode.Connect(ctx, appnode.Options{Master: m.URL(), App: "flaky", Token: testmaster.AdminToken, TaskFinished: first.finished})
	if err != nil {
		t.Fatal(err)
	}
	tasks := make([]*appnode.Task, 300)
	for i := range tasks {
		tasks[i] = &appnode.Task{Kind: "sleep", Payload: []byte("5")}
	}
	push(t, app, tasks...)
	waitFor(t, 30*time.Second, "first results", func() bool { return first.len() > 0 })
	if err := app.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	seen := first.len()
	if seen == len(tasks) {
		t.Fatal("every result arrived before the disconnect; the test proves nothing")
	}
	second := newCollector()
	connect(t, m.URL(), "flaky", second)
	waitFor(t, 30*time.Second, "the rest", func() bool { return first.len()+second.len() == len(tasks) })
	for _, task := range tasks {
		_, a := first.get(task.ID)
		_, b := second.get(task.ID)
		if a == b {
			t.Fatalf("task %d reported %v times across the two connections", task.ID, map[bool]int{true: 2, false: 0}[a])
		}
	}
}
