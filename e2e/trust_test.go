package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anthill-project/anthill/appnode"
	"github.com/anthill-project/anthill/internal/testmaster"
	"github.com/anthill-project/anthill/jsonrpc"
	"github.com/anthill-project/anthill/master"
	"github.com/anthill-project/anthill/master/sched"
	"github.com/anthill-project/anthill/master/trust"
	samplewasm "github.com/anthill-project/anthill/samples/wasm"
)

// Trust in volunteers' results, with real processes: stock slaves beside
// a lying one (testdata/liar, a build of the slave package whose sha256
// returns a wrong digest with a probability).

var liar struct {
	once sync.Once
	bin  string
	err  error
}

// startLiar runs a lying volunteer named name that lies with probability
// lie, under the test admin token (so its identity is its name).
func startLiar(t *testing.T, url, name string, lie float64, extra ...string) *proc {
	t.Helper()
	liar.once.Do(func() {
		liar.bin = filepath.Join(filepath.Dir(bin), "liar")
		out, err := exec.Command("go", "build", "-o", liar.bin, "./testdata/liar").CombinedOutput()
		if err != nil {
			liar.err = fmt.Errorf("build the liar: %v\n%s", err, out)
		}
	})
	if liar.err != nil {
		t.Fatal(liar.err)
	}
	return startBin(t, liar.bin, append([]string{"--master", url, "--name", name, "--token", testmaster.AdminToken, "--lie", fmt.Sprint(lie)}, extra...)...)
}

func digest(p []byte) string {
	s := sha256.Sum256(p)
	return hex.EncodeToString(s[:])
}

func shaTasks(n int, replicas, quorum uint8) []*appnode.Task {
	ts := make([]*appnode.Task, n)
	for i := range ts {
		ts[i] = &appnode.Task{Kind: "sha256", Payload: fmt.Appendf(nil, "task-%d", i), Replicas: replicas, Quorum: quorum}
	}
	return ts
}

// pushChunks pushes tasks 500 at a time.
func pushChunks(t *testing.T, app *appnode.Node, tasks []*appnode.Task) {
	t.Helper()
	for i := 0; i < len(tasks); i += 500 {
		push(t, app, tasks[i:min(i+500, len(tasks))]...)
	}
}

// pushAndWait pushes tasks and waits until c has heard of every one.
func pushAndWait(t *testing.T, app *appnode.Node, c *collector, tasks []*appnode.Task) {
	t.Helper()
	pushChunks(t, app, tasks)
	waitFor(t, 120*time.Second, "every task", func() bool { return c.len() == len(tasks) })
}

// checkCopiesDistinct fails unless every copy of the task ran on its own
// volunteer.
func checkCopiesDistinct(t *testing.T, s *sched.Scheduler, id uint64) {
	t.Helper()
	info, err := s.Task(id)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, a := range info.History {
		v, _ := sched.Attribution(a.Slave)
		if a.Slave != "" && seen[v] {
			t.Fatalf("task %d: two copies ran on %s: %+v", id, v, info.History)
		}
		seen[v] = true
	}
}

// Two of three honest volunteers outvote a liar on every task: each
// canonical result is right, the liar's invalid count rises with every
// quorum it sits in, and it is never trusted.
func TestQuorumOutvotesALiar(t *testing.T) {
	m := startMaster(t, master.Options{})
	for _, name := range []string{"honest-1", "honest-2", "honest-3"} {
		startSlave(t, m.URL(), name, "--concurrency", "2")
	}
	startLiar(t, m.URL(), "liar", 1)
	waitSlaves(t, m, 4)
	c := newCollector()
	app := connect(t, m.URL(), "checked", c)
	const n = 2000
	tasks := shaTasks(n, 3, 2)
	pushAndWait(t, app, c, tasks)
	for _, task := range tasks {
		o, _ := c.get(task.ID)
		if o.err != nil || string(o.result) != digest(task.Payload) {
			t.Fatalf("task %d: %q, %v; want the right digest", task.ID, o.result, o.err)
		}
	}
	if d := c.duplicates(); len(d) > 0 {
		t.Fatalf("%d tasks notified twice", len(d))
	}
	s := m.Scheduler()
	for _, task := range tasks[:200] {
		checkCopiesDistinct(t, s, task.ID)
	}
	l := s.VolunteerTrustOf("liar")
	t.Logf("liar: %d valid, %d invalid; honest-1: %+v", l.Valid, l.Invalid, s.VolunteerTrustOf("honest-1"))
	if l.Invalid < 3 || l.Valid != 0 || l.Trusted || l.Credit != 0 {
		t.Errorf("liar's record %+v: want many invalid results, none valid, no trust, no credit", l)
	}
	if h := s.VolunteerTrustOf("honest-1"); h.Valid == 0 || h.Invalid != 0 {
		t.Errorf("honest volunteer's record %+v", h)
	}
}

// A liar that lies on one task in twenty earns trust now and then, runs
// tasks as single copies, and is caught by the spot checks: ringers and
// replicated checks of the trusted.
func TestSpotChecksCatchAnOccasionalLiar(t *testing.T) {
	m := startMaster(t, master.Options{Trust: trust.Policy{Threshold: 5, SpotMin: 0.2}})
	if err := m.Scheduler().ConfigureApp("adaptive", sched.AppConfig{Replicas: 2, Adaptive: true}); err != nil {
		t.Fatal(err)
	}
	startSlave(t, m.URL(), "honest-1", "--concurrency", "2")
	startSlave(t, m.URL(), "honest-2", "--concurrency", "2")
	startLiar(t, m.URL(), "sometimes", 0.05)
	waitSlaves(t, m, 3)
	c := newCollector()
	app := connect(t, m.URL(), "adaptive", c)
	const n = 3000
	tasks := shaTasks(n, 0, 0)
	pushAndWait(t, app, c, tasks)
	wrong, single := 0, 0
	for _, task := range tasks {
		if o, _ := c.get(task.ID); o.err != nil || string(o.result) != digest(task.Payload) {
			wrong++
		}
		if info, _ := m.Scheduler().Task(task.ID); info.Replicas == 0 {
			single++
		}
	}
	v := m.Scheduler().VolunteerTrustOf("sometimes")
	x := m.Scheduler().Metrics().Export()
	t.Logf("%d of %d tasks ran as a single copy; %d wrong results accepted; ringers %d, invalid %d; liar %+v",
		single, n, wrong, x.Ringers, x.Invalid, v)
	if single == 0 {
		t.Error("no task ran as a single copy: nobody earned trust")
	}
	if v.Invalid == 0 {
		t.Errorf("the occasional liar was never caught: %+v", v)
	}
	if need := v.Apps[0].Need; need <= 5 {
		t.Errorf("the liar's threshold is %d: a caught liar must need a longer streak", need)
	}
	if x.Ringers == 0 {
		t.Error("no ringer was sent")
	}
	if wrong > n/20 {
		t.Errorf("%d wrong results accepted of %d: more than the liar's share of single copies could make", wrong, n)
	}
}

// A master killed with SIGKILL in the middle of quorums finishes them
// after its restart: every task right, each notified once.
func TestMasterKilledMidQuorum(t *testing.T) {
	addr := freePort(t)
	data := t.TempDir()
	url := "ws://" + addr
	args := []string{"master", "--listen", addr, "--data", data, "--heartbeat", "500ms", "--log-level", "warn"}
	mp := start(t, args...)
	mp.line(t, "listening on")
	for _, name := range []string{"v1", "v2", "v3"} {
		startSlave(t, url, name, "--concurrency", "2")
	}
	c := newCollector()
	app := connect(t, url, "crashy", c)
	const n = 3000
	tasks := make([]*appnode.Task, n)
	for i := range tasks {
		// A millisecond each: slow enough to be caught mid-quorum.
		tasks[i] = &appnode.Task{Kind: "sleep", Payload: []byte("1"), Replicas: 3, Quorum: 2}
	}
	pushChunks(t, app, tasks)
	waitFor(t, 60*time.Second, "some results", func() bool { return c.len() > 100 })
	mp.kill9()
	before := c.len()
	if before >= n {
		t.Fatalf("all %d tasks finished before the kill; the test proves nothing", n)
	}
	mp = start(t, args...)
	mp.line(t, "listening on")
	waitFor(t, 120*time.Second, "every task after the restart", func() bool { return c.len() == n })
	for _, task := range tasks {
		if o, _ := c.get(task.ID); o.err != nil || string(o.result) != "1" {
			t.Fatalf("task %d: %q, %v", task.ID, o.result, o.err)
		}
	}
	if d := c.duplicates(); len(d) > 0 {
		t.Fatalf("%d duplicate notifications, e.g. %d", len(d), d[0])
	}
	t.Logf("killed after %d of %d notifications", before, n)
}

// An app's validator module, run by the master, decides agreement: a
// volunteer whose numbers differ from the others' in the last digits
// agrees under samples/wasm/validator's tolerance, one whose numbers are
// off does not, and without the validator neither does.
func TestValidatorModuleDecidesAgreement(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	code, err := samplewasm.Build(ctx, "validator")
	if err != nil {
		t.Fatal(err)
	}
	// A master process: the validator runs in it, as the anthill binary
	// runs it (not under the race detector of this test binary).
	addr, data := freePort(t), t.TempDir()
	base, url := "http://"+addr, "ws://"+addr
	mp := start(t, "master", "--listen", addr, "--data", data, "--log-level", "warn")
	mp.line(t, "listening on")
	rpc := &jsonrpc.Client{URL: base, Token: readToken(t, data)}
	var up struct {
		Hash string `json:"hash"`
	}
	call(t, rpc, "Modules.Upload", map[string]any{"wasm": code, "name": "validator"}, &up)
	startSlave(t, url, "exact", "--concurrency", "2")
	startLiar(t, url, "rounds", 0, "--echo-add", "1e-12")
	waitFor(t, 30*time.Second, "two slaves", func() bool {
		var l jsonrpc.SlaveList
		call(t, rpc, "Slaves.List", nil, &l)
		return len(l.Slaves) == 2
	})
	c := newCollector()
	app := connectAs(t, url, "floats", readToken(t, data), c)
	submit := func(conf map[string]any) *appnode.Task {
		t.Helper()
		conf["app"] = "floats"
		call(t, rpc, "Apps.Configure", conf, nil)
		task := &appnode.Task{Kind: "echo", Payload: []byte("3.14159265358979"), MaxAttempts: 1}
		push(t, app, task)
		return task
	}
	// By bytes the two disagree, and the third copy it takes waits for a
	// third volunteer.
	plain := submit(map[string]any{"replicas": 2, "validator": ""})
	waitFor(t, 30*time.Second, "two answers and a copy waiting", func() bool {
		var ti jsonrpc.Task
		call(t, rpc, "Tasks.Get", map[string]any{"id": plain.ID}, &ti)
		return len(ti.Copies) == 3 && ti.Copies[0].Outcome == "done" && ti.Copies[1].Outcome == "done" && ti.Copies[2].Outcome == "waiting"
	})
	call(t, rpc, "Tasks.Cancel", map[string]any{"id": plain.ID}, nil)
	checked := submit(map[string]any{"replicas": 2, "validator": up.Hash})
	// The master compiles the 2 MB module at its first comparison.
	waitFor(t, 60*time.Second, "the validated task", func() bool { _, ok := c.get(checked.ID); return ok })
	if o, _ := c.get(checked.ID); o.err != nil || !strings.HasPrefix(string(o.result), "3.1415926535") {
		t.Fatalf("with the validator: %q, %v; want the agreed number", o.result, o.err)
	}
	if err := rpc.Call(ctx, "Modules.Delete", map[string]any{"hash": up.Hash}, nil); err == nil {
		t.Error("a validator in use was deleted")
	}
}
