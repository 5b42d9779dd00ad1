package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/goleak"

	"github.com/anthill-project/anthill/internal/testmaster"
	"github.com/anthill-project/anthill/master"
	"github.com/anthill-project/anthill/protocol"
	"github.com/anthill-project/anthill/web"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const token = "s3cret-admin-token"

// env is a real master on 127.0.0.1:0 with its store in a temp dir and the
// dashboard mounted at "/".
type env struct {
	t    testing.TB
	m    *master.Master
	dash *web.Server
	base string
	data string
}

func newEnv(t testing.TB, o web.Options) *env {
	t.Helper()
	return startEnv(t, t.TempDir(), o)
}

func startEnv(t testing.TB, data string, o web.Options) *env {
	t.Helper()
	if o.Token == "" {
		o.Token = token
	}
	e := &env{t: t, data: data}
	e.m = testmaster.Start(t, master.Options{Data: data, NoSync: true}, func(m *master.Master) (err error) {
		e.dash, err = web.New(m.Scheduler(), o)
		if err == nil {
			m.Handle("/", e.dash)
		}
		return err
	})
	// Cleanups run last first: the dashboard and its feeds go before the
	// master.
	t.Cleanup(func() { e.dash.Close() })
	e.base = "http://" + e.m.Addr().String()
	return e
}

// client is a browser stand-in: a cookie jar, no redirects followed.
func (e *env) client() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// login logs c in with the admin token and returns the page's CSRF token.
func (e *env) login(c *http.Client) string {
	e.t.Helper()
	resp := e.postForm(c, "/login", url.Values{"token": {token}}, "")
	if resp.StatusCode != http.StatusSeeOther {
		e.t.Fatalf("login: status %d", resp.StatusCode)
	}
	return e.csrf(c)
}

func (e *env) csrf(c *http.Client) string {
	e.t.Helper()
	resp, body := e.get(c, "/", nil)
	if resp.StatusCode != 200 {
		e.t.Fatalf("GET / after login: %d", resp.StatusCode)
	}
	_, rest, ok := strings.Cut(body, `name="csrf-token" content="`)
	if !ok {
		e.t.Fatalf("no CSRF token in the page:\n%s", body)
	}
	tok, _, _ := strings.Cut(rest, `"`)
	return tok
}

func (e *env) get(c *http.Client, path string, hdr http.Header) (*http.Response, string) {
	e.t.Helper()
	req, _ := http.NewRequest("GET", e.base+path, nil)
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func (e *env) postForm(c *http.Client, path string, v url.Values, origin string) *http.Response {
	e.t.Helper()
	req, _ := http.NewRequest("POST", e.base+path, strings.NewReader(v.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	resp, err := c.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// post sends a JSON action as the page does.
func (e *env) post(c *http.Client, path, body, csrf, origin string) (int, map[string]any) {
	e.t.Helper()
	req, _ := http.NewRequest("POST", e.base+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if csrf != "" {
		req.Header.Set("X-CSRF-Token", csrf)
	}
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	resp, err := c.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func (e *env) submit(app string, tasks ...protocol.NewTask) uint64 {
	e.t.Helper()
	first, err := e.m.Scheduler().Submit(context.Background(), app, tasks)
	if err != nil {
		e.t.Fatal(err)
	}
	return first
}

func TestLoginIsRequired(t *testing.T) {
	e := newEnv(t, web.Options{})
	c := e.client()
	resp, _ := e.get(c, "/", nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login" {
		t.Fatalf("GET / without a session: %d to %q, want 303 to /login", resp.StatusCode, resp.Header.Get("Location"))
	}
	for _, p := range []string{"/ui/tasks", "/ui/task?id=1", "/ui/session", "/ui/live"} {
		if resp, _ := e.get(c, p, nil); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("GET %s without a session: %d, want 401", p, resp.StatusCode)
		}
	}
	if code, _ := e.post(c, "/ui/cancel", `{"id":1}`, "", ""); code != http.StatusUnauthorized {
		t.Errorf("POST /ui/cancel without a session: %d, want 401", code)
	}
	// The login page and the assets need none.
	if resp, body := e.get(c, "/login", nil); resp.StatusCode != 200 || !strings.Contains(body, `name="token"`) {
		t.Errorf("login page: %d", resp.StatusCode)
	}
	if resp, _ := e.get(c, "/static/app.js", nil); resp.StatusCode != 200 {
		t.Errorf("app.js: %d", resp.StatusCode)
	}
	// Pages go through their handlers, never through the file server.
	if resp, _ := e.get(c, "/static/index.html", nil); resp.StatusCode != 404 {
		t.Errorf("/static/index.html: %d, want 404", resp.StatusCode)
	}
}

func TestLoginWithTokenSetsAStrictCookie(t *testing.T) {
	e := newEnv(t, web.Options{})
	c := e.client()
	if resp := e.postForm(c, "/login", url.Values{"token": {"guess"}}, ""); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("wrong token: %d, want 401", resp.StatusCode)
	}
	if resp := e.postForm(c, "/login", url.Values{"token": {token}}, "http://evil.example"); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("login posted from a foreign page: %d, want 403", resp.StatusCode)
	}
	resp := e.postForm(c, "/login", url.Values{"token": {token}}, e.base)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("right token: %d", resp.StatusCode)
	}
	var sess *http.Cookie
	for _, ck := range resp.Cookies() {
		if ck.Name == "anthill_session" {
			sess = ck
		}
	}
	if sess == nil || !sess.HttpOnly || sess.SameSite != http.SameSiteStrictMode || sess.Path != "/" {
		t.Fatalf("session cookie %+v: want HttpOnly, SameSite=Strict, Path=/", sess)
	}
	if strings.Contains(sess.Value, token) {
		t.Fatal("the cookie carries the admin token")
	}
	if resp, _ := e.get(c, "/ui/session", nil); resp.StatusCode != 200 {
		t.Fatalf("after login: %d", resp.StatusCode)
	}
	// A forged cookie is refused.
	jar := e.client()
	u, _ := url.Parse(e.base)
	jar.Jar.SetCookies(u, []*http.Cookie{{Name: "anthill_session", Value: sess.Value[:len(sess.Value)-2] + "AA"}})
	if resp, _ := e.get(jar, "/ui/session", nil); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("tampered cookie: %d, want 401", resp.StatusCode)
	}
}

func TestSessionExpires(t *testing.T) {
	now := time.Now()
	clock := func() time.Time { return now }
	e := newEnv(t, web.Options{SessionTTL: time.Hour, Now: clock})
	c := e.client()
	e.login(c)
	now = now.Add(59 * time.Minute)
	if resp, _ := e.get(c, "/ui/session", nil); resp.StatusCode != 200 {
		t.Fatalf("within the TTL: %d", resp.StatusCode)
	}
	now = now.Add(2 * time.Minute)
	if resp, _ := e.get(c, "/ui/session", nil); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("after the TTL: %d, want 401", resp.StatusCode)
	}
}

// The cookie is keyed by the admin token, not kept in memory: an open
// dashboard survives a master restart, and a new token ends every session.
func TestSessionSurvivesRestartButNotANewToken(t *testing.T) {
	data := t.TempDir()
	c := (&env{}).client()
	func() {
		e := startEnv(t, data, web.Options{})
		e.login(c)
		e.m.Close()
	}()
	e := startEnv(t, data, web.Options{})
	if resp, _ := e.get(c, "/ui/session", nil); resp.StatusCode != 200 {
		t.Fatalf("after a restart: %d, want 200", resp.StatusCode)
	}
	// Cookies are per host, not per port: the jar sends them to the new one.
	e2 := startEnv(t, t.TempDir(), web.Options{Token: "rotated"})
	if resp, _ := e2.get(c, "/ui/session", nil); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("with another token: %d, want 401", resp.StatusCode)
	}
}

func TestOneTimeLoginLink(t *testing.T) {
	e := newEnv(t, web.Options{})
	link := e.dash.LoginURL(e.base)
	path := strings.TrimPrefix(link, e.base)
	c := e.client()
	if resp, _ := e.get(c, path, nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("first use: %d, want 303", resp.StatusCode)
	}
	if resp, _ := e.get(c, "/ui/session", nil); resp.StatusCode != 200 {
		t.Fatalf("after the link: %d", resp.StatusCode)
	}
	if resp, body := e.get(e.client(), path, nil); resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "used already") {
		t.Fatalf("second use: %d, want 401 with an explanation", resp.StatusCode)
	}
}

func TestActionsNeedCSRFAndOrigin(t *testing.T) {
	e := newEnv(t, web.Options{})
	c := e.client()
	csrf := e.login(c)
	id := e.submit("ops", protocol.NewTask{Kind: "echo", Payload: []byte("x")})
	body := fmt.Sprintf(`{"id":%d}`, id)

	if code, _ := e.post(c, "/ui/cancel", body, "", ""); code != http.StatusForbidden {
		t.Fatalf("no CSRF token: %d, want 403", code)
	}
	if code, _ := e.post(c, "/ui/cancel", body, "wrong", ""); code != http.StatusForbidden {
		t.Fatalf("wrong CSRF token: %d, want 403", code)
	}
	if code, _ := e.post(c, "/ui/cancel", body, csrf, "http://evil.example"); code != http.StatusForbidden {
		t.Fatalf("foreign Origin: %d, want 403", code)
	}
	if ti, _ := e.m.Scheduler().Task(id); ti.State != protocol.StatePending {
		t.Fatalf("a refused cancel changed the task: %v", ti.State)
	}
	if code, out := e.post(c, "/ui/cancel", body, csrf, e.base); code != 200 || out["ok"] != true {
		t.Fatalf("cancel: %d %v", code, out)
	}
	if ti, _ := e.m.Scheduler().Task(id); ti.State != protocol.StateCanceled {
		t.Fatalf("after cancel: %v", ti.State)
	}
	if code, _ := e.post(c, "/ui/cancel", body, csrf, ""); code != http.StatusConflict {
		t.Fatalf("cancel of a canceled task: %d, want 409", code)
	}
	if code, _ := e.post(c, "/ui/retry", body, csrf, ""); code != 200 {
		t.Fatalf("retry: %d", code)
	}
	if ti, _ := e.m.Scheduler().Task(id); ti.State != protocol.StatePending {
		t.Fatalf("after retry: %v", ti.State)
	}
	// Bad input names its field.
	if code, out := e.post(c, "/ui/retry", `{"id":"x"}`, csrf, ""); code != 400 || out["field"] != "id" {
		t.Fatalf("bad id: %d %v", code, out)
	}
	if code, out := e.post(c, "/ui/cancel", `{"id":999}`, csrf, ""); code != 404 {
		t.Fatalf("unknown id: %d %v", code, out)
	}
	if code, out := e.post(c, "/ui/drain", `{"sessions":[]}`, csrf, ""); code != 400 || out["field"] != "sessions" {
		t.Fatalf("drain nothing: %d %v", code, out)
	}
	if code, _ := e.post(c, "/ui/drain", `{"sessions":["nope"]}`, csrf, ""); code != 404 {
		t.Fatalf("drain an unknown session: %d, want 404", code)
	}
	// The CSRF token belongs to its session.
	other := e.client()
	e.login(other)
	if code, _ := e.post(other, "/ui/cancel", body, csrf, ""); code != http.StatusForbidden {
		t.Fatalf("another session's CSRF token: %d, want 403", code)
	}
}

func TestPagesCarrySecurityHeaders(t *testing.T) {
	e := newEnv(t, web.Options{})
	resp, _ := e.get(e.client(), "/login", nil)
	csp := resp.Header.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'self'", "frame-ancestors 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	if resp.Header.Get("X-Frame-Options") != "DENY" {
		t.Error("no X-Frame-Options")
	}
}

func dialLive(e *env, c *http.Client, origin string) (*websocket.Conn, *http.Response, error) {
	u, _ := url.Parse(e.base)
	hdr := http.Header{}
	for _, ck := range c.Jar.Cookies(u) {
		hdr.Add("Cookie", ck.Name+"="+ck.Value)
	}
	if origin != "" {
		hdr.Set("Origin", origin)
	}
	return websocket.DefaultDialer.Dial("ws://"+u.Host+"/ui/live", hdr)
}

// liveUpdate is the part of an update these tests read.
type liveUpdate struct {
	Info    *struct{ Version string } `json:"info"`
	Summary struct {
		Tasks struct {
			Pending   int    `json:"pending"`
			Submitted uint64 `json:"submitted"`
			Canceled  uint64 `json:"canceled"`
		} `json:"tasks"`
		Store struct {
			Commits uint64 `json:"commits"`
			Ops     uint64 `json:"ops"`
		} `json:"store"`
	} `json:"summary"`
	Series map[string][]struct{ T int64 } `json:"series"`
	Apps   []struct {
		Name   string `json:"name"`
		Pushed uint64 `json:"pushed"`
	} `json:"apps"`
}

func TestLiveFeed(t *testing.T) {
	e := newEnv(t, web.Options{Interval: 50 * time.Millisecond})
	c := e.client()
	e.login(c)

	if _, resp, err := dialLive(e, c, "http://evil.example"); err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("foreign Origin: err %v, resp %v; want a 403 refusal", err, resp)
	}
	if _, resp, err := dialLive(e, e.client(), e.base); err == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("no session: err %v; want a 401 refusal", err)
	}
	ws, _, err := dialLive(e, c, e.base)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	read := func() liveUpdate {
		t.Helper()
		_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
		var u liveUpdate
		if err := ws.ReadJSON(&u); err != nil {
			t.Fatal(err)
		}
		return u
	}
	first := read()
	if first.Info == nil {
		t.Fatal("the first update carries no info")
	}
	if first.Summary.Tasks.Submitted != 0 {
		t.Fatalf("submitted %d on a new master", first.Summary.Tasks.Submitted)
	}
	e.submit("feed-app", protocol.NewTask{Kind: "echo"}, protocol.NewTask{Kind: "echo"}, protocol.NewTask{Kind: "echo"})
	deadline := time.Now().Add(10 * time.Second)
	seen := map[int64]bool{}
	for {
		u := read()
		if u.Info != nil {
			t.Fatal("info repeated after the first update")
		}
		for _, p := range u.Series["submitted"] {
			if seen[p.T] {
				t.Fatalf("second %d sent twice", p.T)
			}
			seen[p.T] = true
		}
		if u.Summary.Tasks.Submitted == 3 && u.Summary.Tasks.Pending == 3 && u.Summary.Store.Ops >= 3 && u.Summary.Store.Commits >= 1 &&
			len(u.Apps) == 1 && u.Apps[0].Name == "feed-app" && u.Apps[0].Pushed == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the feed never showed the submit: %+v", u)
		}
	}
}

// The live feed ends when the master stops, so shutdown leaves no
// goroutine behind (TestMain checks).
func TestLiveFeedEndsWithTheMaster(t *testing.T) {
	e := newEnv(t, web.Options{Interval: 20 * time.Millisecond})
	c := e.client()
	e.login(c)
	ws, _, err := dialLive(e, c, "")
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	if _, _, err := ws.ReadMessage(); err != nil {
		t.Fatal(err)
	}
	e.m.Close()
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		if _, _, err := ws.ReadMessage(); err != nil {
			if !websocket.IsCloseError(err, websocket.CloseGoingAway) {
				t.Fatalf("feed ended with %v, want a going-away close", err)
			}
			return
		}
	}
}

type page struct {
	Tasks []struct {
		ID    uint64 `json:"id"`
		State string `json:"state"`
		App   string `json:"app"`
	} `json:"tasks"`
	NextCursor *uint64 `json:"next_cursor"`
	Field      string  `json:"field"`
}

// next is the page's cursor as a query parameter: "" on the last page.
func (p *page) next() string {
	if p.NextCursor == nil {
		return ""
	}
	return fmt.Sprint(*p.NextCursor)
}

func (e *env) page(c *http.Client, q string) page {
	e.t.Helper()
	resp, body := e.get(c, "/ui/tasks?"+q, nil)
	var p page
	if err := json.Unmarshal([]byte(body), &p); err != nil {
		e.t.Fatalf("%s: %d %s", q, resp.StatusCode, body)
	}
	return p
}

func TestTaskPagesAndFilters(t *testing.T) {
	e := newEnv(t, web.Options{})
	c := e.client()
	e.login(c)
	const n = 1234
	tasks := make([]protocol.NewTask, n)
	for i := range tasks {
		tasks[i] = protocol.NewTask{Kind: "echo", Payload: []byte(fmt.Sprint(i))}
	}
	first := e.submit("pager", tasks...)
	e.submit("other", protocol.NewTask{Kind: "sha256"})
	if err := e.m.Scheduler().Cancel(first + 1000); err != nil {
		t.Fatal(err)
	}

	// Every task once, in id order, across pages.
	var ids []uint64
	after := ""
	for pages := 0; ; pages++ {
		if pages > 20 {
			t.Fatal("paging does not end")
		}
		p := e.page(c, "limit=100&app=pager&order=asc&cursor="+after)
		for _, tk := range p.Tasks {
			ids = append(ids, tk.ID)
		}
		if p.next() == "" {
			break
		}
		after = p.next()
	}
	if len(ids) != n || ids[0] != first || ids[n-1] != first+n-1 {
		t.Fatalf("paged %d ids from %v to %v, want %d from %d", len(ids), ids[0], ids[len(ids)-1], n, first)
	}
	for i := 1; i < len(ids); i++ {
		if ids[i] <= ids[i-1] {
			t.Fatalf("ids out of order at %d: %d after %d", i, ids[i], ids[i-1])
		}
	}
	// Newest first by default.
	p := e.page(c, "app=pager&limit=3")
	if len(p.Tasks) != 3 || p.Tasks[0].ID != first+n-1 || p.Tasks[2].ID != first+n-3 {
		t.Fatalf("newest first: %+v", p.Tasks)
	}
	p = e.page(c, "app=pager&limit=3&cursor="+p.next())
	if len(p.Tasks) != 3 || p.Tasks[0].ID != first+n-4 {
		t.Fatalf("newest first, page 2: %+v", p.Tasks)
	}
	p = e.page(c, "state=canceled")
	if len(p.Tasks) != 1 || p.Tasks[0].ID != first+1000 || p.NextCursor != nil {
		t.Fatalf("canceled filter: %+v", p)
	}
	p = e.page(c, "kind=sha256")
	if len(p.Tasks) != 1 || p.Tasks[0].App != "other" {
		t.Fatalf("kind filter: %+v", p)
	}
	if p := e.page(c, "state=sleeping"); p.Field != "state" {
		t.Fatalf("bad state: %+v", p)
	}
	if p := e.page(c, "order=sideways"); p.Field != "order" {
		t.Fatalf("bad order: %+v", p)
	}
	if p := e.page(c, "limit=100000"); p.Field != "limit" {
		t.Fatalf("bad limit: %+v", p)
	}

	// A task's detail: previews, and binary shown as hex.
	bin := e.submit("pager", protocol.NewTask{Kind: "echo", Payload: []byte{0xff, 0x00, 0x10}})
	var d struct {
		ID      uint64 `json:"id"`
		Payload struct {
			Text, Hex string
			Bytes     int `json:"bytes"`
		} `json:"payload"`
	}
	_, body := e.get(c, fmt.Sprintf("/ui/task?id=%d", bin), nil)
	if err := json.Unmarshal([]byte(body), &d); err != nil || d.Payload.Hex != "ff0010" || d.Payload.Bytes != 3 {
		t.Fatalf("binary payload detail: %s", body)
	}
	_, body = e.get(c, fmt.Sprintf("/ui/task?id=%d", first+7), nil)
	if err := json.Unmarshal([]byte(body), &d); err != nil || d.Payload.Text != "7" {
		t.Fatalf("text payload detail: %s", body)
	}
	if resp, _ := e.get(c, "/ui/task?id=12", nil); resp.StatusCode != 404 {
		t.Fatalf("unknown task: %d", resp.StatusCode)
	}
}
