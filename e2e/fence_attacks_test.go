package e2e

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/anthill-project/anthill/appnode"
	"github.com/anthill-project/anthill/master"
	"github.com/anthill-project/anthill/master/sched"
	"github.com/anthill-project/anthill/protocol"
)

// These replay the review's attacks on dispatch integrity (C2, H1, M2, M3)
// against a real master, with raw WebSocket slaves speaking the protocol.

// fenceSlaveHello is a raw slave's Hello.
func fenceSlaveHello(name string, concurrency, prefetch int, kinds ...string) *protocol.Hello {
	return &protocol.Hello{Version: protocol.Version, Role: protocol.RoleSlave, Name: name, Kinds: kinds,
		Concurrency: concurrency, Prefetch: prefetch}
}

// fenceRead reads the next frame of ws as a T, skipping none.
func fenceRead[T protocol.Message](t *testing.T, ws *websocket.Conn) T {
	t.Helper()
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, frame, err := ws.ReadMessage()
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	msg, err := protocol.Decode(frame)
	if err != nil {
		t.Fatal(err)
	}
	v, ok := msg.(T)
	if !ok {
		t.Fatalf("got %T %+v", msg, msg)
	}
	return v
}

func fenceSend(t *testing.T, ws *websocket.Conn, m protocol.Message) {
	t.Helper()
	if err := ws.WriteMessage(websocket.BinaryMessage, protocol.Encode(nil, m)); err != nil {
		t.Fatal(err)
	}
}

func fenceTask(t *testing.T, m *master.Master, id uint64) sched.TaskInfo {
	t.Helper()
	info, err := m.Scheduler().Task(id)
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// C2: a slave announcing only echo takes its bait and answers FORGED for
// the ids around it. Nothing it was not given changes, it is disconnected
// with bad_result once it keeps at it, and an honest slave later runs the
// tasks with their real results.
func TestFenceForgedResultsAreRejected(t *testing.T) {
	m := startMaster(t, master.Options{})
	c := newCollector()
	app := connect(t, m.URL(), "payroll", c)
	secret := []*appnode.Task{
		{Kind: "sha256", Payload: []byte("salary 1")}, {Kind: "sha256", Payload: []byte("salary 2")},
		{Kind: "sha256", Payload: []byte("salary 3")}, {Kind: "sleep", Payload: []byte("1")},
	}
	push(t, app, secret...)
	bait := &appnode.Task{Kind: "echo", Payload: []byte("bait")}
	push(t, app, bait)

	// Prefetch 63: frames of up to 64 results decode (see the M2 test).
	forger := rawPeer(t, m.URL(), "/ws/slave", fenceSlaveHello("evil-volunteer", 1, 63, "echo"))
	d := fenceRead[*protocol.Dispatch](t, forger)
	if len(d.Tasks) != 1 || d.Tasks[0].ID != bait.ID {
		t.Fatalf("bait dispatch %+v", d.Tasks)
	}
	var forged protocol.Results
	for id := bait.ID - 20; id <= bait.ID+20; id++ {
		if id != bait.ID {
			forged.Results = append(forged.Results, protocol.Result{ID: id, Attempt: 1, Lease: d.Tasks[0].Lease, Output: []byte("FORGED")})
		}
	}
	fenceSend(t, forger, &forged)
	waitFor(t, 10*time.Second, "the forgeries counted", func() bool {
		st := m.Scheduler().Stats()
		return len(st.Slaves) == 1 && st.Slaves[0].RejectedResults == uint64(len(forged.Results))
	})
	for _, task := range secret {
		if info := fenceTask(t, m, task.ID); info.State != protocol.StatePending || info.Attempts != 0 || info.Result != nil {
			t.Fatalf("task %d after the forgery: %+v", task.ID, info)
		}
	}
	fenceSend(t, forger, &forged) // 80 in a row: past max(64, window)
	expectError(t, forger, protocol.CodeBadResult)

	startSlave(t, m.URL(), "honest")
	// The bait, taken back from the forger, finishes too: wait for the
	// secret tasks themselves.
	waitFor(t, 30*time.Second, "the secret tasks", func() bool {
		for _, task := range secret {
			if _, ok := c.get(task.ID); !ok {
				return false
			}
		}
		return true
	})
	for _, task := range secret[:3] {
		o, _ := c.get(task.ID)
		sum := sha256.Sum256(task.Payload)
		if o.err != nil || string(o.result) != hex.EncodeToString(sum[:]) {
			t.Fatalf("task %d: %q %v", task.ID, o.result, o.err)
		}
	}
	if o, _ := c.get(secret[3].ID); o.err != nil || string(o.result) != "1" {
		t.Fatalf("sleep task: %q %v", o.result, o.err)
	}
}

// C2, late lease: a result for an expired lease is ignored without
// penalty, and the attempt that took over is not abandoned: its own result
// finishes the task.
func TestFenceLateLeaseIsIgnored(t *testing.T) {
	m := startMaster(t, master.Options{LeaseGrace: time.Millisecond})
	c := newCollector()
	app := connect(t, m.URL(), "late", c)
	task := &appnode.Task{Kind: "k", Timeout: 50 * time.Millisecond, MaxAttempts: 3}
	push(t, app, task)
	slow := rawPeer(t, m.URL(), "/ws/slave", fenceSlaveHello("slow", 1, 0, "k"))
	first := fenceRead[*protocol.Dispatch](t, slow).Tasks[0]
	waitFor(t, 10*time.Second, "the lease to expire", func() bool {
		return fenceTask(t, m, task.ID).State == protocol.StatePending
	})
	fast := rawPeer(t, m.URL(), "/ws/slave", fenceSlaveHello("fast", 1, 0, "k"))
	second := fenceRead[*protocol.Dispatch](t, fast).Tasks[0]
	if second.Attempt != 2 || second.Lease == first.Lease {
		t.Fatalf("second dispatch %+v after %+v", second, first)
	}
	fenceSend(t, slow, &protocol.Results{Results: []protocol.Result{{ID: first.ID, Attempt: first.Attempt, Lease: first.Lease, Output: []byte("late")}}})
	waitFor(t, 10*time.Second, "the late result counted", func() bool { return m.Scheduler().Stats().LateResults == 1 })
	if info := fenceTask(t, m, task.ID); info.State != protocol.StateRunning || !strings.HasPrefix(info.Slave, "fast/") {
		t.Fatalf("after the late result: %+v", info)
	}
	fenceSend(t, fast, &protocol.Results{Results: []protocol.Result{{ID: second.ID, Attempt: second.Attempt, Lease: second.Lease, Output: []byte("fast")}}})
	waitFor(t, 10*time.Second, "the result", func() bool { return c.len() == 1 })
	if o, _ := c.get(task.ID); o.err != nil || string(o.result) != "fast" {
		t.Fatalf("outcome %q %v", o.result, o.err)
	}
	for _, sl := range m.Scheduler().Stats().Slaves {
		if sl.RejectedResults != 0 {
			t.Fatalf("an honest late result was held against %s: %+v", sl.Name, sl)
		}
	}
}

// H1: a burner asks for concurrency 4096 and prefetch 65536, reads its
// dispatch and drops the connection, three times over 1000 tasks. It gets
// the slow start's window only, and each round costs at most the attempts
// of that window; none of the tasks fails. A burner that first grows its
// window with real results costs only its concurrency when it vanishes.
func TestFenceBurnerCannotFailTheQueue(t *testing.T) {
	m := startMaster(t, master.Options{})
	c := newCollector()
	app := connect(t, m.URL(), "burnt", c)
	tasks := make([]*appnode.Task, 1000)
	for i := range tasks {
		tasks[i] = &appnode.Task{Kind: "burnme"}
	}
	push(t, app, tasks...)
	attempts := func() (total uint32, failed int) {
		for _, task := range tasks {
			info := fenceTask(t, m, task.ID)
			total += info.Attempts
			if info.State == protocol.StateFailed {
				failed++
			}
		}
		return total, failed
	}
	gone := func() {
		waitFor(t, 10*time.Second, "the burner gone", func() bool { return len(m.Scheduler().Stats().Slaves) == 0 })
	}
	for round := 1; round <= 3; round++ {
		ws := rawPeer(t, m.URL(), "/ws/slave", fenceSlaveHello("burner", protocol.MaxConcurrency, protocol.MaxPrefetch, "burnme"))
		d := fenceRead[*protocol.Dispatch](t, ws)
		if len(d.Tasks) > sched.SlowStartWindow {
			t.Fatalf("round %d: took %d tasks, over the slow start of %d", round, len(d.Tasks), sched.SlowStartWindow)
		}
		ws.UnderlyingConn().Close() // drop the TCP connection
		gone()
		if total, failed := attempts(); failed != 0 || total > uint32(round*sched.SlowStartWindow) {
			t.Fatalf("after round %d: %d attempts spent, %d tasks failed", round, total, failed)
		}
	}
	before, _ := attempts()

	// Concurrency 1: deliver 20 results to grow the window, then vanish.
	ws := rawPeer(t, m.URL(), "/ws/slave", fenceSlaveHello("grower", 1, 100, "burnme"))
	var held []protocol.Task
	for range 20 {
		for len(held) == 0 {
			held = append(held, fenceRead[*protocol.Dispatch](t, ws).Tasks...)
		}
		x := held[0]
		held = held[1:]
		fenceSend(t, ws, &protocol.Results{Results: []protocol.Result{{ID: x.ID, Attempt: x.Attempt, Lease: x.Lease, Output: []byte("ok")}}})
	}
	waitFor(t, 10*time.Second, "a window of 21", func() bool {
		st := m.Scheduler().Stats()
		return len(st.Slaves) == 1 && st.Slaves[0].Running == 21
	})
	ws.UnderlyingConn().Close()
	gone()
	after, failed := attempts()
	// 20 finished attempts, plus the one task it could have started.
	if failed != 0 || after-before != 20+1 {
		t.Fatalf("the grower's session cost %d attempts (want 21: 20 results and 1 lost), %d failed", after-before, failed)
	}
}

// M2: a results frame declaring more results than the slave's window
// closes that connection with bad_frame, before the master allocates for
// them; another slave stays connected.
func TestFenceResultsFrameOverTheWindow(t *testing.T) {
	m := startMaster(t, master.Options{})
	bystander := rawPeer(t, m.URL(), "/ws/slave", fenceSlaveHello("bystander", 1, 0, "k"))
	ws := rawPeer(t, m.URL(), "/ws/slave", fenceSlaveHello("bigframe", 1, 0, "k"))
	const n = 2_000_000 // 12 MB of minimal results: 144 MB decoded
	frame := binary.AppendUvarint([]byte{byte(protocol.TypeResults)}, n)
	frame = append(frame, make([]byte, 6*n)...)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if err := ws.WriteMessage(websocket.BinaryMessage, frame); err != nil {
		t.Fatal(err)
	}
	expectError(t, ws, protocol.CodeBadFrame)
	runtime.ReadMemStats(&after)
	// The master reads the frame itself (12 MB); decoding it would take
	// twelve times that.
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 64<<20 {
		t.Fatalf("refusing the frame allocated %d MB", grew>>20)
	}
	if st := m.Scheduler().Stats(); len(st.Slaves) != 1 || st.Slaves[0].Name != "bystander" || st.LateResults != 0 {
		t.Fatalf("after the big frame: %+v", st.Slaves)
	}
	fenceSend(t, bystander, &protocol.Request{N: 1})
}

// M3: a result over --max-result fails its attempt with a message saying
// so, and the application hears of the error, not of the bytes.
func TestFenceOversizedResultBecomesAnError(t *testing.T) {
	m := startMaster(t, master.Options{MaxResult: 1024})
	c := newCollector()
	app := connect(t, m.URL(), "victim", c)
	task := &appnode.Task{Kind: "k", MaxAttempts: 1}
	push(t, app, task)
	ws := rawPeer(t, m.URL(), "/ws/slave", fenceSlaveHello("poisoner", 1, 0, "k"))
	x := fenceRead[*protocol.Dispatch](t, ws).Tasks[0]
	fenceSend(t, ws, &protocol.Results{Results: []protocol.Result{{ID: x.ID, Attempt: x.Attempt, Lease: x.Lease, Output: make([]byte, 2000)}}})
	waitFor(t, 10*time.Second, "the outcome", func() bool { return c.len() == 1 })
	o, _ := c.get(task.ID)
	if o.err == nil || !strings.Contains(o.err.Error(), "result of 2000 bytes exceeds the limit of 1024") || o.result != nil {
		t.Fatalf("outcome %q %v", o.result, o.err)
	}
	if st := m.Scheduler().Stats(); st.Slaves[0].RejectedResults != 1 {
		t.Fatalf("rejected %d", st.Slaves[0].RejectedResults)
	}
}
