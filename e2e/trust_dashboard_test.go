package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/anthill-project/anthill/jsonrpc"
)

// The dashboard shows who is trusted and who lies: a master process, two
// honest volunteers and a liar, 2-of-3 tasks. The Volunteers page marks
// the liar suspect with its invalid results, a task's detail lists its
// copies with their verdicts, and the public leaderboard, without a
// login, lists only the volunteer that agreed to be listed.
func TestDashboardShowsTrust(t *testing.T) {
	b := newBrowser(t)
	addr := freePort(t)
	data := t.TempDir()
	base, url := "http://"+addr, "ws://"+addr
	mp := start(t, "master", "--listen", addr, "--data", data)
	mp.line(t, "dashboard at")
	token := readToken(t, data)
	rpc := &jsonrpc.Client{URL: base, Token: token}
	startSlave(t, url, "honest-a", "--concurrency", "2", "--leaderboard")
	startSlave(t, url, "honest-b", "--concurrency", "2")
	startLiar(t, url, "liar", 1)
	waitFor(t, 30*time.Second, "three slaves", func() bool {
		var l jsonrpc.SlaveList
		call(t, rpc, "Slaves.List", nil, &l)
		return len(l.Slaves) == 3
	})
	c := newCollector()
	app := connect(t, url, "checked", c)
	tasks := shaTasks(100, 3, 2)
	push(t, app, tasks...)
	waitFor(t, 60*time.Second, "100 notifications", func() bool { return c.len() == 100 })
	var liarTask uint64
	for _, task := range tasks {
		var ti jsonrpc.Task
		call(t, rpc, "Tasks.Get", map[string]any{"id": task.ID}, &ti)
		for _, cp := range ti.Copies {
			if cp.Slave == "liar" && cp.Outcome == "invalid" {
				liarTask = task.ID
			}
		}
	}
	if liarTask == 0 {
		t.Fatal("no task had a copy on the liar judged invalid")
	}

	// The leaderboard is public: no login, one listed volunteer.
	b.run("leaderboard", chromedp.Navigate(base+"/leaderboard"))
	b.waitJS("the listed volunteer", `document.querySelectorAll('#leaders tr[data-leader]').length === 1 && !!document.querySelector('#leaders tr[data-leader="honest-a"]')`)
	credit := eval[float64](b, `Number(document.querySelector('#leaders td[data-credit]').dataset.credit)`)
	if credit <= 0 {
		t.Errorf("honest-a's credit on the leaderboard is %v", credit)
	}
	b.screenshot("leaderboard")

	b.run("log in", chromedp.Navigate(base+"/"))
	b.waitJS("the login page", `!!document.getElementById('token')`)
	b.run("token", chromedp.SendKeys("#token", token), chromedp.Click("#login-submit"))
	b.waitJS("the overview", `document.body.dataset.page === 'overview'`)

	b.run("volunteers page", chromedp.Navigate(base+"/#/volunteers"))
	b.waitJS("three volunteers", `document.querySelectorAll('#volunteers tr[data-volunteer]').length === 3`)
	b.waitJS("the liar suspect", `document.querySelector('tr[data-volunteer="liar"]').dataset.trust === 'suspect' &&
		Number(document.querySelector('tr[data-volunteer="liar"] td[data-col=invalid]').textContent.replace(/,/g, '')) > 0`)
	b.waitJS("the honest trusted", `document.querySelector('tr[data-volunteer="honest-a"]').dataset.trust === 'trusted'`)
	var v jsonrpc.Volunteer
	call(t, rpc, "Volunteers.Get", map[string]any{"name": "liar"}, &v)
	shown := eval[string](b, `document.querySelector('tr[data-volunteer="liar"] td[data-col=invalid]').textContent`)
	if strings.ReplaceAll(shown, ",", "") != fmt.Sprint(v.InvalidResults) {
		t.Errorf("the page shows %s invalid results for the liar, Volunteers.Get %d", shown, v.InvalidResults)
	}
	b.screenshot("volunteers")

	b.run("a task the liar lied on", chromedp.Navigate(fmt.Sprintf("%s/#/task/%d", base, liarTask)))
	b.waitJS("its copies", `(() => { const rows = document.querySelectorAll('#task-copies tbody tr');
		const liar = document.querySelector('#task-copies tr[data-copy="liar"]');
		return rows.length >= 3 && liar && liar.textContent.includes('invalid') &&
			[...rows].filter(r => r.textContent.includes('canonical')).length >= 2; })()`)
	b.screenshot("task-copies")
	mp.stop(t)
}
