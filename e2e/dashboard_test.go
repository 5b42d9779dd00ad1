package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/anthill-project/anthill/appnode"
	"github.com/anthill-project/anthill/internal/testwasm"
	"github.com/anthill-project/anthill/jsonrpc"
)

// summary is the part of Stats.Summary the overview shows.
type summary struct {
	Tasks struct {
		Pending, Running                  int
		Submitted, Done, Failed, Canceled uint64
	} `json:"tasks"`
	Slaves struct {
		Connected int `json:"connected"`
	} `json:"slaves"`
}

// overview reads the numbers the overview page shows, from the elements a
// person reads (their data-value holds the unformatted number).
const overviewJS = `(() => {
  const v = (id) => { const el = document.getElementById(id); return el && el.dataset.value !== '' ? Number(el.dataset.value) : -1; };
  return {slaves: v('ov-slaves'), pending: v('ov-pending'), running: v('ov-running'), done: v('ov-done'),
          failed: v('ov-failed'), canceled: v('ov-canceled'), submitted: v('ov-submitted')};
})()`

// sparklinesMatchJS opens a second feed and compares the full update it
// gets first with the sparklines the page holds after applying the update
// built with it (the two carry the same "now").
const sparklinesMatchJS = `new Promise((resolve) => {
  const lines = () => JSON.stringify([...sparks.entries()].sort((x, y) => (x[0] < y[0] ? -1 : 1)));
  const byNow = new Map();
  const orig = apply;
  apply = (u) => { orig(u); byNow.set(u.now, lines()); };
  const done = (v) => { apply = orig; resolve(v); };
  setTimeout(() => done('no update matched the second feed\'s in 10 s'), 10000);
  const ws = new WebSocket('ws://' + location.host + '/ui/live');
  ws.onmessage = (ev) => {
    ws.close();
    const f = JSON.parse(ev.data);
    if (!f.full) { done('the first update of a feed is not full'); return; }
    const want = JSON.stringify(f.slaves.map((s) => [s.name, s.recent]).sort((x, y) => (x[0] < y[0] ? -1 : 1)));
    if (!f.slaves.some((s) => s.recent.some((v) => v > 0))) { done('no result in any sparkline: ' + want); return; }
    const check = () => {
      if (!byNow.has(f.now)) { setTimeout(check, 50); return; }
      done(byNow.get(f.now) === want ? 'same' : 'page ' + byNow.get(f.now) + ' full ' + want);
    };
    check();
  };
})`

type shown struct {
	Slaves, Pending, Running          int
	Done, Failed, Canceled, Submitted uint64
}

func (s summary) shown() shown {
	return shown{s.Slaves.Connected, s.Tasks.Pending, s.Tasks.Running, s.Tasks.Done, s.Tasks.Failed, s.Tasks.Canceled, s.Tasks.Submitted}
}

// A person's session with the dashboard of a real master process with two
// slave processes: log in, read the overview and compare it with what a
// script gets from Stats.Summary, watch it move without reloading, find a
// running task and cancel it, look at every page, and keep going through
// a master restart.
func TestDashboard(t *testing.T) {
	b := newBrowser(t)
	addr := freePort(t)
	data := t.TempDir()
	base := "http://" + addr
	mp := start(t, "master", "--listen", addr, "--data", data)
	mp.line(t, "dashboard at")
	token := readToken(t, data)
	rpc := &jsonrpc.Client{URL: base, Token: token}

	url := "ws://" + addr
	startSlave(t, url, "volunteer-a", "--concurrency", "2")
	startSlave(t, url, "volunteer-b", "--concurrency", "2")
	mp.line(t, "slave connected")
	c := newCollector()
	app := connect(t, url, "browser-app", c)
	echoes := echoTasks(200)
	fails := []*appnode.Task{
		{Kind: "fail", Payload: []byte("disk quota exceeded"), MaxAttempts: 1},
		{Kind: "fail", Payload: []byte("bad input"), MaxAttempts: 2},
	}
	push(t, app, append(echoes, fails...)...)
	waitFor(t, 60*time.Second, "202 notifications", func() bool { return c.len() == 202 })

	// Login is required: the page and the data calls turn a stranger away.
	b.run("open dashboard", chromedp.Navigate(base+"/"))
	b.waitJS("the login page", `location.pathname === '/login' && !!document.getElementById('token')`)
	status := eval[int](b, `fetch('/ui/tasks').then(r => r.status)`)
	if status != 401 {
		t.Fatalf("/ui/tasks without a session: status %d, want 401", status)
	}
	b.screenshot("login")
	b.run("wrong token", chromedp.SendKeys("#token", "not-the-token"), chromedp.Click("#login-submit"))
	b.waitJS("the refusal", `document.getElementById('login-error').textContent.includes('not the admin token')`)
	eval[bool](b, `document.getElementById('token').value = '', true`)
	b.run("right token", chromedp.SendKeys("#token", token), chromedp.Click("#login-submit"))
	b.waitJS("the overview", `document.body.dataset.page === 'overview' && document.getElementById('conn').textContent === 'live'`)

	// The overview agrees with Stats.Summary. Both are read from a quiet
	// master; the page polls until its next live update shows the numbers.
	var want summary
	call(t, rpc, "Stats.Summary", nil, &want)
	if want.Tasks.Done != 200 || want.Tasks.Failed != 2 || want.Slaves.Connected != 2 {
		t.Fatalf("Stats.Summary after the work: %+v", want)
	}
	waitShown(t, b, want.shown())
	// The series behind it count a second once it has closed.
	b.waitJS("2 failed in the last minute", `document.getElementById('ov-failed-minute').dataset.value === '2'`)
	b.screenshot("overview")

	// A live update appears without a reload: mark the window, add work,
	// and see the numbers change with the mark still there.
	eval[bool](b, `window.__noReload = 'still here', true`)
	more := echoTasks(50)
	push(t, app, more...)
	waitFor(t, 60*time.Second, "252 notifications", func() bool { return c.len() == 252 })
	b.waitJS("done to reach 250 live", `document.getElementById('ov-done').dataset.value === '250'`)
	mark := eval[string](b, `window.__noReload || 'reloaded'`)
	if mark != "still here" {
		t.Fatalf("the page reloaded to update (%q)", mark)
	}

	// Slaves: both volunteers with their work; the table sorts.
	b.run("slaves page", chromedp.Navigate(base+"/#/slaves"))
	b.waitJS("two slave rows", `document.querySelectorAll('#slaves tr[data-slave]').length === 2`)
	b.waitJS("slave numbers", `[...document.querySelectorAll('#slaves td[data-col=done]')].reduce((s, td) => s + Number(td.textContent.replace(/,/g, '')), 0) >= 250`)
	slaveDone := eval[int](b, `[...document.querySelectorAll('#slaves td[data-col=done]')].reduce((s, td) => s + Number(td.textContent.replace(/,/g, '')), 0)`)
	if slaveDone != 250 {
		t.Errorf("slaves' done add up to %d, want 250", slaveDone)
	}
	// Sparklines arrive whole once, then as the seconds that closed: the
	// lines the page pieced together are those a feed opened now gets
	// whole, from the same update.
	b.waitJS("a sparkline each", `document.querySelectorAll('#slaves canvas.spark').length === 2`)
	if verdict := eval[string](b, sparklinesMatchJS); verdict != "same" {
		t.Fatalf("the page's sparklines: %s", verdict)
	}
	b.run("sort by name, descending", chromedp.Click(`th[data-sort=name]`))
	b.waitJS("descending order", `document.querySelector('#slaves tr[data-slave]').dataset.slave === 'volunteer-b'`)
	b.screenshot("slaves")

	// Applications: the progress of browser-app.
	b.run("apps page", chromedp.Navigate(base+"/#/apps"))
	b.waitJS("browser-app's bar", `(() => { const el = document.querySelector('[data-app="browser-app"] [role=progressbar]'); return el && el.getAttribute('aria-valuenow') === '252' && el.getAttribute('aria-valuemax') === '252'; })()`)
	b.screenshot("apps")

	// Cancel from the page: a long task is running; find it through the
	// tasks filter, open it and press Cancel.
	long := &appnode.Task{Kind: "sleep", Payload: []byte("600000"), Timeout: 20 * time.Minute}
	push(t, app, long)
	waitFor(t, 30*time.Second, "the long task to run", func() bool {
		var ti struct{ State string }
		call(t, rpc, "Tasks.Get", map[string]any{"id": long.ID}, &ti)
		return ti.State == "running"
	})
	b.run("tasks page", chromedp.Navigate(base+"/#/tasks"))
	b.waitJS("the task list", `document.querySelectorAll('#tasks tr[data-task]').length === 50`)
	b.screenshot("tasks")
	// Pages, newest first: Next shows the 50 older ids, Previous the
	// first 50 again.
	firstID := eval[string](b, `document.querySelector('#tasks tr[data-task]').dataset.task`)
	lastID := eval[string](b, `[...document.querySelectorAll('#tasks tr[data-task]')].pop().dataset.task`)
	b.run("next page", chromedp.Click("#tasks-next"))
	b.waitJS("page 2", fmt.Sprintf(`(() => { const r = document.querySelectorAll('#tasks tr[data-task]'); return r.length === 50 && BigInt(r[0].dataset.task) < %sn; })()`, lastID))
	b.run("previous page", chromedp.Click("#tasks-prev"))
	b.waitJS("page 1 again", fmt.Sprintf(`document.querySelector('#tasks tr[data-task]').dataset.task === '%s'`, firstID))
	eval[bool](b, `document.getElementById('filter-state').value = 'running', true`)
	b.run("filter running", chromedp.Click("#filter-apply"))
	sel := fmt.Sprintf(`#tasks tr[data-task="%d"]`, long.ID)
	b.waitJS("the running task alone", fmt.Sprintf(`document.querySelectorAll('#tasks tr[data-task]').length === 1 && !!document.querySelector('%s')`, sel))
	b.run("open it", chromedp.Click(sel))
	b.waitJS("its detail", `!!document.getElementById('task-cancel') && document.querySelector('#task-state').textContent === 'running'`)
	b.screenshot("task-running")
	b.run("cancel it", chromedp.Click("#task-cancel"))
	b.waitJS("canceled on the page", `document.querySelector('#task-state').textContent === 'canceled'`)
	var ti struct {
		State string `json:"state"`
	}
	call(t, rpc, "Tasks.Get", map[string]any{"id": long.ID}, &ti)
	if ti.State != "canceled" {
		t.Fatalf("after Cancel on the page, Tasks.Get says %q", ti.State)
	}
	waitFor(t, 30*time.Second, "the app to hear of the cancel", func() bool { _, ok := c.get(long.ID); return ok })
	b.screenshot("task-canceled")

	// A failed task's detail shows its error.
	b.run("failed tasks", chromedp.Navigate(base+"/#/tasks?state=failed"))
	b.waitJS("two failed tasks", `document.querySelectorAll('#tasks tr[data-task]').length === 2`)
	b.run("open one", chromedp.Click(fmt.Sprintf(`#tasks tr[data-task="%d"]`, fails[0].ID)))
	b.waitJS("its error", `(document.getElementById('task-error') || {}).textContent === 'disk quota exceeded'`)
	b.screenshot("task-failed")
	// The one with two attempts lists both, failed, on the slaves that ran them.
	b.run("failed tasks", chromedp.Navigate(base+"/#/tasks?state=failed"))
	b.run("open the other", chromedp.Click(fmt.Sprintf(`#tasks tr[data-task="%d"]`, fails[1].ID)))
	b.waitJS("its two attempts", `document.querySelectorAll('#task-history tbody tr').length === 2 &&
		[...document.querySelectorAll('#task-history tbody tr')].every(tr => tr.textContent.includes('failed') && tr.textContent.includes('bad input') && /volunteer-[ab]/.test(tr.textContent))`)
	// Retry from the page: it runs its two attempts again, fails again, and
	// the new attempts follow the old ones.
	b.run("retry it", chromedp.Click("#task-retry"))
	b.waitJS("four attempts", `document.querySelectorAll('#task-history tbody tr').length === 4 && document.querySelector('#task-state').textContent === 'failed'`)

	// A WASM task's detail names its module.
	var up struct {
		Hash string `json:"hash"`
	}
	call(t, rpc, "Modules.Upload", map[string]any{"wasm": testwasm.Command("dashboard"), "name": "noop"}, &up)
	var wasmTask struct {
		ID uint64 `json:"id"`
	}
	call(t, rpc, "Tasks.Submit", map[string]any{"app": "shell", "module": up.Hash}, &wasmTask)
	b.run("the wasm task", chromedp.Navigate(fmt.Sprintf("%s/#/task/%d", base, wasmTask.ID)))
	b.waitJS("its module", fmt.Sprintf(`(document.getElementById('task-module') || {}).textContent === %q`, up.Hash))

	// Drain from the slaves page (the confirmation is answered yes).
	b.run("slaves page", chromedp.Navigate(base+"/#/slaves"))
	b.waitJS("drain buttons", `document.querySelectorAll('button[data-drain]').length === 2`)
	eval[bool](b, `window.confirm = () => true, true`)
	b.run("drain volunteer-b", chromedp.Click(`button[data-drain="volunteer-b"]`))
	b.waitJS("volunteer-b draining", `document.querySelector('tr[data-slave="volunteer-b"]').textContent.includes('draining')`)
	var slaves struct {
		Slaves []struct {
			Name     string `json:"name"`
			Draining bool   `json:"draining"`
		} `json:"slaves"`
	}
	call(t, rpc, "Slaves.List", nil, &slaves)
	for _, s := range slaves.Slaves {
		if s.Draining != (s.Name == "volunteer-b") {
			t.Fatalf("after draining volunteer-b from the page: %+v", slaves.Slaves)
		}
	}

	// The master restarts; the open page reconnects on its own, with the
	// same session, and shows the restarted master's numbers.
	b.run("overview", chromedp.Navigate(base+"/#/overview"))
	b.waitJS("live", `document.getElementById('conn').textContent === 'live'`)
	eval[bool](b, `window.__noReload = 'still here', true`)
	mp.stop(t)
	b.waitJS("the page to notice", `document.getElementById('conn').textContent !== 'live'`)
	mp = start(t, "master", "--listen", addr, "--data", data)
	mp.line(t, "dashboard at")
	b.waitJS("live again", `document.getElementById('conn').textContent === 'live'`)
	mark = eval[string](b, `window.__noReload || 'reloaded'`)
	if mark != "still here" {
		t.Fatalf("the page reloaded across the restart (%q)", mark)
	}
	call(t, rpc, "Stats.Summary", nil, &want)
	waitShown(t, b, want.shown())

	// Names come from strangers: markup in them is shown, never run.
	hostile := `<img src=x onerror="window.__xss=1">`
	var sub struct {
		ID uint64 `json:"id"`
	}
	call(t, rpc, "Tasks.Submit", map[string]any{"app": hostile, "kind": "<script>window.__xss=2</script>", "payload": ""}, &sub)
	b.waitJS("the kind listed as text", `document.getElementById('kinds').textContent.includes('<script>window.__xss=2</script>')`)
	b.run("apps page", chromedp.Navigate(base+"/#/apps"))
	b.waitJS("the app listed as text", fmt.Sprintf(`document.getElementById('apps').textContent.includes(%q)`, hostile))
	if xss := eval[string](b, `String(window.__xss)`); xss != "undefined" {
		t.Fatalf("markup from a task ran in the page: __xss = %s", xss)
	}

	if *readmeShot {
		readmeScreenshot(t, b, base, app)
	}
}

// waitShown waits until the overview shows want.
func waitShown(t *testing.T, b *browser, want shown) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		got := eval[shown](b, overviewJS)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the overview shows %+v; Stats.Summary says %+v", got, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func call(t *testing.T, c *jsonrpc.Client, method string, params, out any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Call(ctx, method, params, out); err != nil {
		t.Fatalf("%s: %v", method, err)
	}
}

func readToken(t *testing.T, data string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(data, jsonrpc.TokenFile))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// readmeScreenshot runs a minute of uneven work so the charts have a shape,
// then writes the overview to docs/dashboard.png for the README.
func readmeScreenshot(t *testing.T, b *browser, base string, app *appnode.Node) {
	for i := range 60 {
		n := 20 + 15*(i%7)
		batch := make([]*appnode.Task, 0, n+1)
		for range n {
			batch = append(batch, &appnode.Task{Kind: "sleep", Payload: []byte(fmt.Sprint(5 + i%4*5))})
		}
		if i%9 == 4 {
			batch = append(batch, &appnode.Task{Kind: "fail", Payload: []byte("tile out of range"), MaxAttempts: 1})
		}
		push(t, app, batch...)
		time.Sleep(time.Second)
	}
	b.run("overview", chromedp.Navigate("about:blank"), chromedp.Navigate(base+"/#/overview"))
	b.waitJS("live", `document.getElementById('conn').textContent === 'live'`)
	time.Sleep(2 * time.Second) // let the charts draw their last points
	path := b.screenshot("readme-overview")
	png, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join("..", "docs", "dashboard.png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// The README's first command, as a new user meets it: the demo prints a
// login link, and the page it opens shows the demo's work moving.
func TestDemoDashboardShowsLiveWork(t *testing.T) {
	b := newBrowser(t)
	demo := start(t, "demo", "--listen", "127.0.0.1:0", "--width", "400", "--height", "300", "--tile", "50",
		"--out", filepath.Join(t.TempDir(), "m.png"))
	line := demo.line(t, "/login?code=")
	link := strings.Fields(line)[1]
	demo.line(t, "keeps zooming")
	b.run("open the printed link", chromedp.Navigate(link))
	b.waitJS("the overview, live", `document.body.dataset.page === 'overview' && document.getElementById('conn').textContent === 'live'`)
	first := eval[int](b, `Number(document.getElementById('ov-done').dataset.value)`)
	b.waitJS("more tiles done", fmt.Sprintf(`Number(document.getElementById('ov-done').dataset.value) >= %d`, first+48))
	b.screenshot("demo-overview")
	demo.stop(t)
	if demo.err != nil {
		t.Fatalf("demo exited with %v after SIGTERM", demo.err)
	}
}
