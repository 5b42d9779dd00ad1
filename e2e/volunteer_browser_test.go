package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/gorilla/websocket"

	"github.com/anthill-project/anthill/master"
	"github.com/anthill-project/anthill/protocol"
)

// A person opens the invitation link an operator gave them, gives two
// cores and presses Start: headless Chromium then runs WASM tasks as a
// slave of a real master, in Web Workers. The results are the ones Go
// computes natively; a module that exits non-zero, one whose bytes do not
// match its hash, one that outlives its timeout, one whose output is over
// the master's limit, one that traps and one that grows past the memory
// bound each come back as failures that say why, and
// the cores go on; pause stops new work and resume takes it again; Stop
// hands back what runs and leaves.
func TestVolunteerBrowser(t *testing.T) {
	for _, dispatch := range []string{protocol.DispatchSend, protocol.DispatchPoll} {
		t.Run(dispatch, func(t *testing.T) { volunteerSession(t, dispatch) })
	}
}

func volunteerSession(t *testing.T, dispatch string) {
	// A short heartbeat: the session must live through many of them, on
	// the pongs the browser sends by itself.
	log, lines := newVolunteerLog(t)
	m, front := volunteerMaster(t, master.Options{Dispatch: dispatch, MaxResult: 4096, Heartbeat: 200 * time.Millisecond, Logger: log})
	base := front.URL
	code := volunteerBuildModule(t)
	hash := volunteerUpload(t, m, "sha.wasm", code)
	// A second module, whose bytes something on the way swaps for the
	// first's.
	forged := volunteerUpload(t, m, "forged.wasm", volunteerVariant(code, "forged"))
	front.serveInstead(forged, code)
	trap := volunteerUpload(t, m, "trap.wasm", volunteerTrapModule())
	token, err := m.EnrollVolunteer("alice-browser")
	if err != nil {
		t.Fatal(err)
	}
	b := newBrowser(t)

	// The invitation link: the page keeps the token and takes it out of
	// the address bar.
	volunteerOpen(b, base, "/volunteer#token="+token)
	if got := eval[string](b, `localStorage.getItem('anthill.volunteer.token') || ''`); got != token {
		t.Fatalf("stored token %q, want the invitation's", got)
	}
	if h := eval[string](b, `location.hash`); h != "" {
		t.Errorf("the token stays in the address bar: %q", h)
	}
	eval[bool](b, `document.getElementById('cores').value = '2', true`)
	b.run("start", chromedp.Click("#start"))
	b.waitJS("connected", `document.getElementById('state').dataset.state === 'connected'`)
	waitSlaves(t, m, 1)
	sl := m.Scheduler().Stats().Slaves[0]
	if sl.Identity != "alice-browser" || sl.Concurrency != 2 || fmt.Sprint(sl.Kinds) != "[wasm]" {
		t.Errorf("the master runs the page as %+v, want the invited volunteer with 2 cores of wasm", sl)
	}
	if got := eval[string](b, `document.getElementById('volunteer').textContent`); got != "alice-browser" {
		t.Errorf("the page says it runs as %q", got)
	}

	app := volunteerConnectApp(t, m, "volunteer-app")

	// Work: results equal Go's.
	var tasks []protocol.NewTask
	var want []string
	for i := range 24 {
		p := fmt.Sprintf("task %d of the browser volunteer %s", i, strings.Repeat("x", i*37))
		tasks = append(tasks, volunteerTask(hash, p))
		want = append(want, volunteerSum(p))
	}
	ids := app.submit(tasks...)
	for i, f := range app.wait("24 results", ids...) {
		if f.State != protocol.StateDone || string(f.Result) != want[i] {
			t.Fatalf("task %d: %s %q %q, want done %q", f.ID, f.State, f.Result, f.Err, want[i])
		}
	}
	b.waitJS("24 done on the page", `document.getElementById('v-done').dataset.value === '24'`)
	if cpu := eval[float64](b, `Number(document.getElementById('v-cpu').dataset.value)`); cpu <= 0 {
		t.Errorf("CPU time shown %v µs after 24 tasks", cpu)
	}
	b.waitJS("the module held", `document.getElementById('v-modules').dataset.value === '1'`)
	for _, c := range front.credentials() {
		if c != "Bearer "+token {
			t.Fatalf("a module fetch presented %q, want the volunteer token", c)
		}
	}
	if n := len(front.credentials()); n != 1 {
		t.Errorf("the module was fetched %d times, want once (it is compiled once and kept)", n)
	}

	// Failures, each saying why; the cores survive them.
	exit := volunteerTask(hash, "exit 3")
	spin := volunteerTask(hash, "spin")
	spin.Timeout = 1500 * time.Millisecond
	fails := app.submit(exit, volunteerTask(forged, "never run"), spin, volunteerTask(hash, "big 10000"), volunteerTask(trap, ""),
		volunteerTask(hash, "alloc 512"))
	wantErr := []string{
		"module exited with code 3: asked to exit with 3",
		"module hash mismatch",
		"stopped at its deadline",
		"stdout exceeded 4096 bytes",
		"module trapped: unreachable",
		"out of memory", // the Go runtime's words when memory.grow fails at 256 MiB
	}
	for i, f := range app.wait("6 failures", fails...) {
		if f.State != protocol.StateFailed || !strings.Contains(f.Err, wantErr[i]) {
			t.Errorf("task %d: %s %q, want failed with %q", f.ID, f.State, f.Err, wantErr[i])
		}
	}
	after := app.submit(volunteerTask(hash, "after the failures"), volunteerTask(hash, "and another"))
	for i, f := range app.wait("work after the failures", after...) {
		if w := volunteerSum([]string{"after the failures", "and another"}[i]); string(f.Result) != w {
			t.Errorf("task %d after the failures: %s %q %q", f.ID, f.State, f.Result, f.Err)
		}
	}
	b.waitJS("6 failed on the page", `document.getElementById('v-failed').dataset.value === '6'`)
	// Within the bound, memory is there to use.
	if f := app.wait("an allocation within the bound", app.submit(volunteerTask(hash, "alloc 128"))...)[0]; string(f.Result) != "holding 128 MiB" {
		t.Errorf("alloc 128: %s %q %q", f.State, f.Result, f.Err)
	}

	// Pause: what runs finishes and reports; nothing new starts, for as
	// long as it lasts.
	busy := app.submit(volunteerTask(hash, "busy 700"))[0]
	b.waitJS("the busy task running", `document.getElementById('cores-list').dataset.busy === '1'`)
	b.run("pause", chromedp.Click("#pause"))
	b.waitJS("paused", `document.getElementById('state').dataset.state === 'paused'`)
	if f := app.wait("the task running at the pause", busy)[0]; f.State != protocol.StateDone || string(f.Result) != "busy for 700 ms" {
		t.Fatalf("the task running at the pause: %s %q %q", f.State, f.Result, f.Err)
	}
	held := app.submit(volunteerTask(hash, "held 1"), volunteerTask(hash, "held 2"), volunteerTask(hash, "held 3"))
	doneBefore := eval[string](b, `document.getElementById('v-done').dataset.value`)
	// The only wait in these tests that is not for a condition: nothing
	// must happen, so it is watched for a while.
	for end := time.Now().Add(1500 * time.Millisecond); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		for _, id := range held {
			if info := fenceTask(t, m, id); info.State != protocol.StatePending || info.Attempts != 0 {
				t.Fatalf("task %d %s after %d attempts while the volunteer is paused", id, info.State, info.Attempts)
			}
		}
	}
	if got := eval[string](b, `document.getElementById('v-done').dataset.value`); got != doneBefore {
		t.Fatalf("done went from %s to %s while paused", doneBefore, got)
	}
	b.screenshot("volunteer-paused-" + dispatch)
	b.run("resume", chromedp.Click("#pause"))
	for i, f := range app.wait("the held tasks after resume", held...) {
		if w := volunteerSum(fmt.Sprintf("held %d", i+1)); f.State != protocol.StateDone || string(f.Result) != w {
			t.Errorf("held task %d: %s %q %q", f.ID, f.State, f.Result, f.Err)
		}
	}
	b.waitJS("connected again", `document.getElementById('state').dataset.state === 'connected'`)

	// A task the operator cancels while it runs is stopped in the
	// browser, and its core takes the next.
	spinning := app.submit(volunteerTask(hash, "spin"))[0]
	waitFor(t, 10*time.Second, "the task to run", func() bool { return fenceTask(t, m, spinning).State == protocol.StateRunning })
	b.waitJS("a core busy", `document.getElementById('cores-list').dataset.busy === '1'`)
	if err := m.Scheduler().Cancel(spinning); err != nil {
		t.Fatal(err)
	}
	b.waitJS("the core free again", `document.getElementById('cores-list').dataset.busy === '0'`)
	next := app.submit(volunteerTask(hash, "after a cancel"), volunteerTask(hash, "and one more"))
	for i, f := range app.wait("work after the cancel", next...) {
		if w := volunteerSum([]string{"after a cancel", "and one more"}[i]); string(f.Result) != w {
			t.Errorf("task %d after the cancel: %s %q %q", f.ID, f.State, f.Result, f.Err)
		}
	}
	if st := m.Scheduler().Stats().Slaves; len(st) != 1 || st[0].RejectedResults != 0 {
		t.Fatalf("slaves after the work: %+v", st)
	}
	session := m.Scheduler().Stats().Slaves[0].Session

	// Stop while a task runs: it goes back to the master unspent, and the
	// page leaves.
	long := volunteerTask(hash, "spin")
	long.Timeout = time.Minute
	running := app.submit(long)[0]
	b.waitJS("the task running", `document.getElementById('cores-list').dataset.busy === '1'`)
	waitFor(t, 10*time.Second, "the master to see it running", func() bool {
		return fenceTask(t, m, running).State == protocol.StateRunning
	})
	b.screenshot("volunteer-running-" + dispatch)
	if now := m.Scheduler().Stats().Slaves[0].Session; now != session {
		t.Errorf("the session changed from %s to %s without a pause", session, now)
	}
	b.run("stop", chromedp.Click("#stop"))
	b.waitJS("stopped", `document.getElementById('state').dataset.state === 'stopped'`)
	waitSlaves(t, m, 0)
	waitFor(t, 10*time.Second, "the running task handed back", func() bool {
		return fenceTask(t, m, running).State == protocol.StatePending
	})
	if info := fenceTask(t, m, running); info.Attempts != 0 {
		// A hand-back costs no attempt: the master counts it undone.
		t.Errorf("the handed-back task counts %d attempts", info.Attempts)
	}
	// It closed as a peer that leaves does (1000), not as a lost
	// connection.
	waitFor(t, 10*time.Second, "the close logged", func() bool { return lines.has("slave disconnected", "session="+session) })
	if !lines.has("peer closed", "session="+session) || lines.has("connection lost", "session="+session) {
		t.Error("the page did not close its WebSocket cleanly")
	}
	if err := m.Scheduler().Cancel(running); err != nil {
		t.Fatal(err)
	}
}

// Under open enrollment the page needs no link: the master enrolls it on
// its first Hello and the page keeps the token it gets, fetches modules
// with it and presents it the next time, as the same volunteer.
func TestVolunteerOpenEnrollment(t *testing.T) {
	log, lines := newVolunteerLog(t)
	m, front := volunteerMaster(t, master.Options{OpenEnrollment: true, Logger: log})
	base := front.URL
	hash := volunteerUpload(t, m, "sha.wasm", volunteerBuildModule(t))
	b := newBrowser(t)
	volunteerOpen(b, base, "/volunteer")
	b.run("start", chromedp.Click("#start"))
	b.waitJS("connected", `document.getElementById('state').dataset.state === 'connected'`)
	token := eval[string](b, `localStorage.getItem('anthill.volunteer.token') || ''`)
	if token == "" {
		t.Fatal("no volunteer token kept after an open enrollment")
	}
	who := eval[string](b, `document.getElementById('volunteer').textContent`)
	if who == "" {
		t.Fatal("the page does not say which volunteer it runs as")
	}
	app := volunteerConnectApp(t, m, "open-app")
	f := app.wait("one result", app.submit(volunteerTask(hash, "open"))...)[0]
	if string(f.Result) != volunteerSum("open") {
		t.Fatalf("result %s %q %q", f.State, f.Result, f.Err)
	}
	if got := front.credentials(); len(got) != 1 || got[0] != "Bearer "+token {
		t.Fatalf("module fetches presented %q, want the enrolled token", got)
	}

	// Closing the page leaves cleanly; opening it again is the same
	// volunteer.
	session := m.Scheduler().Stats().Slaves[0].Session
	b.run("reload", chromedp.Reload())
	waitSlaves(t, m, 0)
	waitFor(t, 10*time.Second, "the close logged", func() bool { return lines.has("slave disconnected", "session="+session) })
	if !lines.has("peer closed", "session="+session) || lines.has("connection lost", "session="+session) {
		t.Error("closing the page did not close its WebSocket cleanly")
	}
	b.waitJS("the page again", `document.getElementById('state').dataset.state === 'stopped'`)
	b.run("start again", chromedp.Click("#start"))
	b.waitJS("connected again", `document.getElementById('state').dataset.state === 'connected'`)
	if again := eval[string](b, `document.getElementById('volunteer').textContent`); again != who {
		t.Errorf("after a reload the page runs as %q, before as %q", again, who)
	}
	if again := eval[string](b, `localStorage.getItem('anthill.volunteer.token')`); again != token {
		t.Error("the master issued a second token to a volunteer that presented its own")
	}
}

// A master's shared invitation (its --slave-token) in the link enrolls
// the page as a volunteer of its own: the page keeps the token the
// master issues and drops the invitation.
func TestVolunteerSharedInvitation(t *testing.T) {
	const invitation = "shared-invitation-for-the-lab-0123"
	m, front := volunteerMaster(t, master.Options{SlaveToken: invitation})
	b := newBrowser(t)
	volunteerOpen(b, front.URL, "/volunteer#token="+invitation)
	b.run("start", chromedp.Click("#start"))
	b.waitJS("connected", `document.getElementById('state').dataset.state === 'connected'`)
	got := eval[string](b, `localStorage.getItem('anthill.volunteer.token') || ''`)
	if got == "" || got == invitation {
		t.Fatalf("the page keeps %q after enrolling with the invitation", got)
	}
	waitSlaves(t, m, 1)
}

// When the master goes away the page keeps trying, and carries on as the
// same volunteer once it is back, with the module it holds.
func TestVolunteerReconnects(t *testing.T) {
	o := master.Options{Listen: freePort(t), Data: t.TempDir(), OpenEnrollment: true}
	m1 := volunteerStart(t, o)
	front := newVolunteerFront(t, m1) // the same address serves both masters
	hash := volunteerUpload(t, m1, "sha.wasm", volunteerBuildModule(t))
	b := newBrowser(t)
	volunteerOpen(b, front.URL, "/volunteer")
	b.run("start", chromedp.Click("#start"))
	b.waitJS("connected", `document.getElementById('state').dataset.state === 'connected'`)
	who := eval[string](b, `document.getElementById('volunteer').textContent`)
	app := volunteerConnectApp(t, m1, "restart-app")
	if f := app.wait("a result", app.submit(volunteerTask(hash, "before"))...)[0]; string(f.Result) != volunteerSum("before") {
		t.Fatalf("before the restart: %s %q %q", f.State, f.Result, f.Err)
	}

	if err := m1.Close(); err != nil {
		t.Fatal(err)
	}
	b.waitJS("trying again", `document.getElementById('state').dataset.state === 'connecting'`)
	m2 := volunteerStart(t, o)
	b.waitJS("connected again", `document.getElementById('state').dataset.state === 'connected'`)
	if again := eval[string](b, `document.getElementById('volunteer').textContent`); again != who {
		t.Errorf("after the restart the page runs as %q, before as %q", again, who)
	}
	app2 := volunteerConnectApp(t, m2, "restart-app")
	if f := app2.wait("a result after the restart", app2.submit(volunteerTask(hash, "after"))...)[0]; string(f.Result) != volunteerSum("after") {
		t.Fatalf("after the restart: %s %q %q", f.State, f.Result, f.Err)
	}
	if n := len(front.credentials()); n != 1 {
		t.Errorf("the module was fetched %d times; the page holds it across the restart", n)
	}
}

// A master that admits enrolled volunteers only refuses a page without a
// token, and one with a wrong token, and the page says what to do.
func TestVolunteerRefused(t *testing.T) {
	m, front := volunteerMaster(t, master.Options{})
	base := front.URL
	b := newBrowser(t)
	volunteerOpen(b, base, "/volunteer")
	// Half the machine's cores by default, at least one.
	if !eval[bool](b, `Number(document.getElementById('cores').value) === Math.max(1, Math.floor(navigator.hardwareConcurrency / 2))`) {
		t.Errorf("cores offered by default: %s", eval[string](b, `document.getElementById('cores').value + ' of ' + navigator.hardwareConcurrency`))
	}
	b.run("start", chromedp.Click("#start"))
	b.waitJS("refused", `document.getElementById('state').dataset.state === 'refused'`)
	msg := eval[string](b, `document.getElementById('message').textContent`)
	if !strings.Contains(msg, "invitation link") || !strings.Contains(msg, "/volunteer#token=") {
		t.Errorf("refusal without a token says %q", msg)
	}
	b.screenshot("volunteer-refused")

	// An invitation link opened in the same tab changes only the fragment.
	b.run("open a link with a wrong token", chromedp.Navigate(base+"/volunteer#token=not-a-real-token"))
	b.waitJS("the token kept", `localStorage.getItem('anthill.volunteer.token') === 'not-a-real-token' && location.hash === ''`)
	b.run("start with a wrong token", chromedp.Click("#start"))
	b.waitJS("refused", `document.getElementById('state').dataset.state === 'refused'`)
	msg = eval[string](b, `document.getElementById('message').textContent`)
	if !strings.Contains(msg, "does not accept this browser's volunteer token") || !strings.Contains(msg, "unknown or revoked") {
		t.Errorf("refusal of a wrong token says %q", msg)
	}
	if n := len(m.Scheduler().Stats().Slaves); n != 0 {
		t.Errorf("%d slaves connected", n)
	}

	// Whatever the master lets its own page do, another site's page may
	// not open a slave session from a visitor's browser.
	ws, resp, err := websocket.DefaultDialer.Dial(m.URL()+"/ws/slave", http.Header{"Origin": {"https://elsewhere.example"}})
	if err == nil {
		ws.Close()
		t.Fatal("a foreign Origin opened /ws/slave")
	}
	if resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("a foreign Origin on /ws/slave: %v %v, want 403", resp, err)
	}
	if resp != nil {
		resp.Body.Close()
	}
	// Nor may even the master's own origin open an application's
	// connection: only /ws/slave serves a page.
	ws, resp, err = websocket.DefaultDialer.Dial(m.URL()+"/ws/app", http.Header{"Origin": {"http://" + m.Addr().String()}})
	if err == nil {
		ws.Close()
		t.Fatal("a browser Origin opened /ws/app")
	}
	if resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("a browser Origin on /ws/app: %v %v, want 403", resp, err)
	}
	if resp != nil {
		resp.Body.Close()
	}
}

// The page's codec reads what protocol.Encode writes and writes what
// protocol.Decode reads, at the edges: a lease of 2^64-1 is echoed exactly,
// and ids that go down as well as up survive the delta encoding.
func TestVolunteerCodec(t *testing.T) {
	_, front := volunteerMaster(t, master.Options{})
	base := front.URL
	b := newBrowser(t)
	volunteerOpen(b, base, "/volunteer")
	d := &protocol.Dispatch{Tasks: []protocol.Task{
		{ID: math.MaxUint64, Attempt: math.MaxUint32, Lease: math.MaxUint64, Kind: "wasm", Module: strings.Repeat("0f", 32), Timeout: 90 * time.Second, Payload: []byte{0, 1, 255}},
		{ID: 1, Attempt: 1, Lease: 1 << 53, Kind: "wasm", Module: "m", Payload: nil},
	}}
	cancel := &protocol.IDs{T: protocol.TypeCancel, IDs: []uint64{7, 3, math.MaxUint64, 0, 1 << 40}}
	js := fmt.Sprintf(`(async () => {
  const c = await import('/static/volunteer/codec.js');
  const bytes = (a) => new Uint8Array(a);
  const d = c.decode(bytes(%s));
  const x = c.decode(bytes(%s));
  const results = c.encodeResults(d.tasks.map((t, i) => ({id: t.id, attempt: t.attempt, lease: t.lease,
    durationMicros: 1234567 * (i + 1), err: i ? 'é failed' : '', output: t.payload})));
  return JSON.stringify({
    tasks: d.tasks.map((t) => ({id: String(t.id), attempt: t.attempt, lease: String(t.lease), kind: t.kind, module: t.module,
      timeout: t.timeoutMillis, payload: [...t.payload]})),
    cancel: x.ids.map(String),
    results: [...results], ret: [...c.encodeReturn(x.ids)], req: [...c.encodeRequest(5)],
    mods: [...c.encodeModules(['a', 'b'])],
  });
})()`, volunteerJSBytes(protocol.Encode(nil, d)), volunteerJSBytes(protocol.Encode(nil, cancel)))
	var got struct {
		Tasks []struct {
			ID, Lease, Kind, Module string
			Attempt                 uint32
			Timeout                 int64
			Payload                 []int
		}
		Cancel                  []string
		Results, Ret, Req, Mods []int
	}
	if err := json.Unmarshal([]byte(eval[string](b, js)), &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Tasks) != 2 {
		t.Fatalf("decoded %d tasks", len(got.Tasks))
	}
	for i, w := range d.Tasks {
		g := got.Tasks[i]
		if g.ID != fmt.Sprint(w.ID) || g.Lease != fmt.Sprint(w.Lease) || g.Attempt != w.Attempt || g.Kind != w.Kind ||
			g.Module != w.Module || g.Timeout != w.Timeout.Milliseconds() || fmt.Sprint(g.Payload) != fmt.Sprint(volunteerInts(w.Payload)) {
			t.Errorf("task %d decoded as %+v, want %+v", i, g, w)
		}
	}
	if fmt.Sprint(got.Cancel) != fmt.Sprint(cancel.IDs) {
		t.Errorf("cancel ids %v, want %v", got.Cancel, cancel.IDs)
	}
	decode := func(what string, b []int) protocol.Message {
		t.Helper()
		raw := make([]byte, len(b))
		for i, v := range b {
			raw[i] = byte(v)
		}
		msg, err := protocol.Decode(raw)
		if err != nil {
			t.Fatalf("%s from the page: %v", what, err)
		}
		return msg
	}
	rs := decode("results", got.Results).(*protocol.Results).Results
	for i, w := range d.Tasks {
		r := rs[i]
		if r.ID != w.ID || r.Attempt != w.Attempt || r.Lease != w.Lease || r.Duration != time.Duration(1234567*(i+1))*time.Microsecond ||
			string(r.Output) != string(w.Payload) || (i == 1) != (r.Err == "é failed") {
			t.Errorf("result %d read back as %+v", i, r)
		}
	}
	if ret := decode("return", got.Ret).(*protocol.IDs); ret.T != protocol.TypeReturn || fmt.Sprint(ret.IDs) != fmt.Sprint(cancel.IDs) {
		t.Errorf("return read back as %+v", ret)
	}
	if req := decode("request", got.Req).(*protocol.Request); req.N != 5 {
		t.Errorf("request read back as %+v", req)
	}
	if mods := decode("modules", got.Mods).(*protocol.Modules); fmt.Sprint(mods.Held) != "[a b]" {
		t.Errorf("modules read back as %+v", mods)
	}
}

// The page checks modules with WebCrypto where it can, and with its own
// SHA-256 on a master reached over plain http at a LAN address, where
// browsers offer no crypto.subtle: the two agree with Go's at the edges of
// the padding.
func TestVolunteerSHA256(t *testing.T) {
	_, front := volunteerMaster(t, master.Options{})
	b := newBrowser(t)
	volunteerOpen(b, front.URL, "/volunteer")
	for _, n := range []int{0, 1, 55, 56, 63, 64, 65, 119, 120, 1000, 100_003} {
		data := make([]byte, n)
		for i := range data {
			data[i] = byte(i*7 + n)
		}
		js := fmt.Sprintf(`(async () => {
  const s = await import('/static/volunteer/sha256.js');
  const b = new Uint8Array(%d).map((_, i) => (i * 7 + %d) & 255);
  const hex = (a) => [...a].map((x) => x.toString(16).padStart(2, '0')).join('');
  return hex(s.sha256(b)) + ' ' + await s.sha256hex(b);
})()`, n, n)
		sum := sha256.Sum256(data)
		want := hex.EncodeToString(sum[:])
		if got := eval[string](b, js); got != want+" "+want {
			t.Errorf("%d bytes: page %s, Go %s", n, got, want)
		}
	}
}

func volunteerJSBytes(b []byte) string {
	parts := make([]string, len(b))
	for i, c := range b {
		parts[i] = fmt.Sprint(c)
	}
	return "[" + strings.Join(parts, ",") + "]"
}

func volunteerInts(b []byte) []int {
	out := make([]int, len(b))
	for i, c := range b {
		out[i] = int(c)
	}
	return out
}

// The same tasks of the same module give the same bytes in a browser tab
// and on a stock native slave process: the contract is one.
func TestVolunteerMatchesNativeSlave(t *testing.T) {
	m, front := volunteerMaster(t, master.Options{})
	hash := volunteerUpload(t, m, "sha.wasm", volunteerBuildModule(t))
	token, err := m.EnrollVolunteer("bob-browser")
	if err != nil {
		t.Fatal(err)
	}
	app := volunteerConnectApp(t, m, "compare-app")
	var tasks []protocol.NewTask
	for i := range 16 {
		tasks = append(tasks, volunteerTask(hash, fmt.Sprintf("payload %d %s", i, strings.Repeat("y", i*101))))
	}
	tasks = append(tasks, volunteerTask(hash, "exit 3"))

	b := newBrowser(t)
	volunteerOpen(b, front.URL, "/volunteer#token="+token)
	b.run("start", chromedp.Click("#start"))
	waitSlaves(t, m, 1)
	inBrowser := app.wait("the browser's results", app.submit(tasks...)...)
	b.run("stop", chromedp.Click("#stop"))
	waitSlaves(t, m, 0)

	startSlave(t, m.URL(), "native")
	waitSlaves(t, m, 1)
	native := app.wait("the native slave's results", app.submit(tasks...)...)
	for i := range tasks {
		g, n := inBrowser[i], native[i]
		if g.State != n.State || string(g.Result) != string(n.Result) {
			t.Errorf("task %q: browser %s %q %q, native %s %q %q", tasks[i].Payload, g.State, g.Result, g.Err, n.State, n.Result, n.Err)
		}
	}
	if last := native[len(tasks)-1]; last.State != protocol.StateFailed || !strings.Contains(last.Err, "code 3") ||
		!strings.Contains(inBrowser[len(tasks)-1].Err, "code 3") {
		t.Errorf("exit 3: browser %q, native %q; want both to fail with code 3", inBrowser[len(tasks)-1].Err, last.Err)
	}
}
