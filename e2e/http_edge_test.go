package e2e

import (
	"bufio"
	"bytes"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/anthill-project/anthill/internal/netguard"
	"github.com/anthill-project/anthill/internal/testmaster"
	"github.com/anthill-project/anthill/jsonrpc"
	"github.com/anthill-project/anthill/master"
	"github.com/anthill-project/anthill/protocol"
	"github.com/anthill-project/anthill/stats/promexport"
	"github.com/anthill-project/anthill/web"
)

// httpFailsafe bounds every read of these tests. It is no measure of
// speed: an answer that comes at all comes within it, and on the old code
// the answer never came.
const httpFailsafe = 30 * time.Second

// httpDial opens a raw TCP connection to addr from the loopback address
// from (127.0.0.1, 127.0.0.2, ...: every 127/8 address is this host, and
// each is another IP to the master's caps).
func httpDial(t *testing.T, from, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: httpFailsafe}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(httpFailsafe))
	return c
}

// httpRoundTrip writes a raw request on c and reads the answer.
func httpRoundTrip(t *testing.T, c net.Conn, br *bufio.Reader, raw string) *http.Response {
	t.Helper()
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("no answer to %.40q: %v", raw, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// httpClosed reports whether the peer closed c (a read gets EOF or a
// reset rather than data or the failsafe's timeout).
func httpClosed(t *testing.T, br *bufio.Reader) bool {
	t.Helper()
	_, err := br.ReadByte()
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return false
	}
	return err != nil
}

// The review's slow-body attack: a POST without a credential that
// announces a 1000-byte body and sends one byte of it. The 401 comes at
// once, without the master waiting for the body, and the connection is
// closed after it; the same for a dashboard action without a session.
func TestHTTPUnauthenticatedSlowBodyIsAnsweredAtOnce(t *testing.T) {
	addr := freePort(t)
	mp := start(t, "master", "--listen", addr, "--data", t.TempDir())
	mp.line(t, "listening on")
	for _, path := range []string{"/rpc", "/ui/cancel", "/logout"} {
		c := httpDial(t, "127.0.0.1", addr)
		br := bufio.NewReader(c)
		resp := httpRoundTrip(t, c, br, "POST "+path+" HTTP/1.1\r\nHost: "+addr+"\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{")
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s without a credential: %s, want 401", path, resp.Status)
		}
		if !resp.Close || !httpClosed(t, br) {
			t.Errorf("%s: the connection stays open after the refusal (Connection: close said: %v)", path, resp.Close)
		}
	}
}

// Idle keep-alive connections are closed after the idle timeout, a host
// cannot hold more than its share of connections, and the others are
// served meanwhile; the total cap holds too.
func TestHTTPIdleTimeoutAndConnectionCaps(t *testing.T) {
	t.Run("idle", func(t *testing.T) {
		m := startMaster(t, master.Options{IdleTimeout: 200 * time.Millisecond})
		c := httpDial(t, "127.0.0.1", m.Addr().String())
		br := bufio.NewReader(c)
		resp := httpRoundTrip(t, c, br, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("healthz: %s", resp.Status)
		}
		if !httpClosed(t, br) {
			t.Fatal("an idle keep-alive connection was kept open")
		}
	})
	t.Run("caps", func(t *testing.T) {
		m := startMaster(t, master.Options{MaxConnsPerIP: 3, MaxConns: 5})
		addr := m.Addr().String()
		health := func(c net.Conn) bool {
			br := bufio.NewReader(c)
			if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
				return false
			}
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK
		}
		for range 3 {
			if c := httpDial(t, "127.0.0.1", addr); !health(c) {
				t.Fatal("a connection within the per-IP cap was not served")
			}
		}
		if health(httpDial(t, "127.0.0.1", addr)) {
			t.Fatal("the 4th connection from one IP was served; the cap is 3")
		}
		for range 2 {
			if c := httpDial(t, "127.0.0.2", addr); !health(c) {
				t.Fatal("another IP was not served while the first sat at its cap")
			}
		}
		if health(httpDial(t, "127.0.0.3", addr)) {
			t.Fatal("a 6th connection was served; the total cap is 5")
		}
	})
}

// A header over the bound gets 431, not a megabyte of buffering.
func TestHTTPOversizedHeaderIsRefused(t *testing.T) {
	m := startMaster(t, master.Options{})
	c := httpDial(t, "127.0.0.1", m.Addr().String())
	resp := httpRoundTrip(t, c, bufio.NewReader(c), "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Junk: "+strings.Repeat("a", 100<<10)+"\r\n\r\n")
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("a 100 KiB header: %s, want 431", resp.Status)
	}
}

// Brute force on the dashboard login and on bearer tokens: after a few
// failures the address gets 429 and even the right token is not checked;
// the log has a line for the first failure, not one per failure; another
// address is unaffected.
func TestHTTPCredentialGuessingIsLimited(t *testing.T) {
	// The master's doors mounted as cmd/anthill mounts them, around one
	// limiter whose lockout outlasts the test, so nothing here hangs on
	// how fast the machine is; its log is counted.
	logs := &httpLog{}
	lim := netguard.NewLimiter(netguard.LimiterOptions{Base: time.Hour, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	token := strings.Repeat("a", 40)
	m := testmaster.Start(t, master.Options{Limiter: lim}, func(m *master.Master) error {
		m.Handle("/metrics", netguard.RequireBearer(strings.Repeat("m", 32), m.Limiter(), false, "metrics", promexport.Handler(prometheus.NewRegistry())))
		api, err := jsonrpc.New(m.Scheduler(), jsonrpc.Options{Token: token, Limiter: m.Limiter()})
		if err != nil {
			return err
		}
		m.Handle(jsonrpc.Path, api)
		dash, err := web.New(m.Scheduler(), web.Options{Token: token, Limiter: m.Limiter()})
		if err != nil {
			return err
		}
		t.Cleanup(dash.Close)
		m.Handle("/", dash)
		return nil
	})
	addr := m.Addr().String()
	client := func(from string) *http.Client {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
		return &http.Client{Timeout: httpFailsafe, Transport: &http.Transport{DialContext: d.DialContext},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	login := func(hc *http.Client, tok string) int {
		resp, err := hc.PostForm("http://"+addr+"/login", url.Values{"token": {tok}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	bearer := func(hc *http.Client, path, tok string) int {
		req, _ := http.NewRequest(http.MethodPost, "http://"+addr+path, strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"Stats.Summary","params":{}}`))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/json")
		if path == "/metrics" {
			req.Method = http.MethodGet
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}

	guesser := client("127.0.0.1")
	var codes []int
	for i := range 20 {
		codes = append(codes, login(guesser, "guess-"+strings.Repeat("x", i)))
	}
	if codes[0] != http.StatusUnauthorized || codes[len(codes)-1] != http.StatusTooManyRequests {
		t.Fatalf("20 wrong logins from one address: %v; want 401 first and 429 by the end", codes)
	}
	if got := login(guesser, token); got != http.StatusTooManyRequests {
		t.Fatalf("the right token from a locked-out address: %d, want 429 (not checked)", got)
	}
	// One limiter for every door: the API and /metrics refuse it too.
	if got := bearer(guesser, "/rpc", token); got != http.StatusTooManyRequests {
		t.Fatalf("/rpc from the locked-out address: %d, want 429", got)
	}
	if got := bearer(guesser, "/metrics", strings.Repeat("m", 32)); got != http.StatusTooManyRequests {
		t.Fatalf("/metrics from the locked-out address: %d, want 429", got)
	}

	// Another address guesses bearer tokens on /rpc: limited the same way.
	other := client("127.0.0.2")
	codes = codes[:0]
	for range 20 {
		codes = append(codes, bearer(other, "/rpc", "not-the-admin-token-but-long-enough"))
	}
	if codes[0] != http.StatusUnauthorized || codes[len(codes)-1] != http.StatusTooManyRequests {
		t.Fatalf("20 wrong bearer tokens: %v; want 401 first and 429 by the end", codes)
	}
	// A third address with the right credentials is served.
	third := client("127.0.0.3")
	if got := login(third, token); got != http.StatusSeeOther {
		t.Fatalf("login with the token from a fresh address: %d, want 303", got)
	}
	if got := bearer(third, "/rpc", token); got != http.StatusOK {
		t.Fatalf("/rpc with the token from a fresh address: %d, want 200", got)
	}
	// 40 refusals and lockouts, two addresses: a line for each address's
	// first failure, not one per failure.
	if n := logs.count("credential"); n != 2 {
		t.Fatalf("%d log lines about credentials for 40 failures from 2 addresses, want 2:\n%s", n, logs.String())
	}
}

// httpLog is a log that tests can count lines of.
type httpLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *httpLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *httpLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *httpLog) count(s string) int {
	n := 0
	for line := range strings.Lines(l.String()) {
		if strings.Contains(line, s) {
			n++
		}
	}
	return n
}

// httpHandshake dials path and sends hello, returning the master's first
// frame decoded (a Welcome or an Error).
func httpHandshake(t *testing.T, base, path string, hello *protocol.Hello) protocol.Message {
	t.Helper()
	ws, _, err := websocket.DefaultDialer.Dial(base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	if err := ws.WriteMessage(websocket.BinaryMessage, protocol.Encode(nil, hello)); err != nil {
		t.Fatal(err)
	}
	_ = ws.SetReadDeadline(time.Now().Add(httpFailsafe))
	_, frame, err := ws.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	msg, err := protocol.Decode(frame)
	if err != nil {
		t.Fatal(err)
	}
	return msg
}

func httpCode(m protocol.Message) string {
	if e, ok := m.(*protocol.Error); ok {
		return e.Code
	}
	return string(m.Type().String())
}

// Guessing the slave token over the WebSocket handshake: after a few
// unauthorized refusals the address is refused as rate_limited before
// its Hello is checked, on the app endpoint too; the master logs the
// first failure only.
func TestHTTPHandshakeTokenGuessingIsLimited(t *testing.T) {
	secret := "a-long-enough-slave-token-0777"
	logs := &httpLog{}
	lim := netguard.NewLimiter(netguard.LimiterOptions{Base: time.Hour, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	m := startMaster(t, master.Options{SlaveToken: secret, Limiter: lim})
	var codes []string
	for i := range 12 {
		codes = append(codes, httpCode(httpHandshake(t, m.URL(), "/ws/slave", slaveHelloWith(strings.Repeat("0", i+1)))))
	}
	if codes[0] != protocol.CodeUnauthorized || codes[len(codes)-1] != protocol.CodeRateLimited {
		t.Fatalf("12 guessed slave tokens: %v; want unauthorized first, rate_limited by the end", codes)
	}
	if got := httpCode(httpHandshake(t, m.URL(), "/ws/slave", slaveHelloWith(secret))); got != protocol.CodeRateLimited {
		t.Fatalf("the right token from the locked-out address: %s, want rate_limited (not checked)", got)
	}
	app := &protocol.Hello{Version: protocol.Version, Role: protocol.RoleApp, Name: "victim"}
	if got := httpCode(httpHandshake(t, m.URL(), "/ws/app", app)); got != protocol.CodeRateLimited {
		t.Fatalf("the app endpoint from the locked-out address: %s, want rate_limited", got)
	}
	if n := logs.count("credential"); n != 1 {
		t.Fatalf("%d log lines about credentials for 14 refusals from one address, want 1:\n%s", n, logs.String())
	}
	// The lockout is per address: the right token from another one is
	// welcome.
	d := websocket.Dialer{NetDial: func(network, addr string) (net.Conn, error) {
		return (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}).Dial(network, addr)
	}}
	ws, _, err := d.Dial(m.URL()+"/ws/slave", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	_ = ws.WriteMessage(websocket.BinaryMessage, protocol.Encode(nil, slaveHelloWith(secret)))
	_ = ws.SetReadDeadline(time.Now().Add(httpFailsafe))
	_, frame, err := ws.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	if msg, _ := protocol.Decode(frame); msg == nil || msg.Type() != protocol.TypeWelcome {
		t.Fatalf("the right token from another address: %v, want a welcome", msg)
	}
}

var httpCSRF = regexp.MustCompile(`name="csrf-token" content="([^"]+)"`)

// Logout ends the session on the server: a copy of the cookie kept from
// before is refused afterwards, also after the master restarted.
func TestHTTPLogoutRevokesTheSession(t *testing.T) {
	addr := freePort(t)
	data := t.TempDir()
	mp := start(t, "master", "--listen", addr, "--data", data)
	mp.line(t, "listening on")
	token := readToken(t, data)
	hc := &http.Client{Timeout: httpFailsafe, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := hc.PostForm("http://"+addr+"/login", url.Values{"token": {token}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var cookie *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == "anthill_session" {
			cookie = c
		}
	}
	if cookie == nil {
		t.Fatalf("login: %s and no session cookie", resp.Status)
	}
	get := func(path string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
		req.AddCookie(cookie)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, page := get("/")
	csrf := httpCSRF.FindStringSubmatch(page)
	if code != http.StatusOK || csrf == nil {
		t.Fatalf("the page with the session: %d, csrf %v", code, csrf)
	}
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/logout", nil)
	req.AddCookie(cookie)
	req.Header.Set("X-CSRF-Token", csrf[1])
	resp, err = hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("logout: %s", resp.Status)
	}
	if code, _ := get("/ui/session"); code != http.StatusUnauthorized {
		t.Fatalf("the old cookie after logout: %d, want 401", code)
	}
	mp.stop(t)
	mp = start(t, "master", "--listen", addr, "--data", data)
	mp.line(t, "listening on")
	if code, _ := get("/ui/session"); code != http.StatusUnauthorized {
		t.Fatalf("the old cookie after logout and a restart: %d, want 401", code)
	}
}

// With --metrics-token, /metrics needs it; without, it stays open (the
// documented default).
func TestHTTPMetricsToken(t *testing.T) {
	addr := freePort(t)
	mtok := "metrics-scraper-token-0123456789"
	mp := start(t, "master", "--listen", addr, "--data", t.TempDir(), "--metrics-token", mtok)
	mp.line(t, "listening on")
	scrapeWith := func(auth string) int {
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/metrics", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := (&http.Client{Timeout: httpFailsafe}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for auth, want := range map[string]int{"": 401, "Bearer wrong": 401, "Basic " + mtok: 401, "Bearer " + mtok: 200} {
		if got := scrapeWith(auth); got != want {
			t.Errorf("/metrics with Authorization %q: %d, want %d", auth, got, want)
		}
	}
}

// --pprof-addr serves Go's profiles on a listener of its own, without a
// token; the master's port, where the world comes, never serves them, and
// the master still stops cleanly with the listener open.
func TestHTTPPprofOnItsOwnListener(t *testing.T) {
	addr, debug := freePort(t), freePort(t)
	mp := start(t, "master", "--listen", addr, "--data", t.TempDir(), "--pprof-addr", debug)
	mp.line(t, "listening on")
	get := func(url string) (int, string) {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("http://" + debug + "/debug/pprof/goroutine?debug=1"); code != http.StatusOK || !strings.Contains(body, "goroutine profile:") {
		t.Errorf("the pprof listener: %d %.200q", code, body)
	}
	if code, body := get("http://" + addr + "/debug/pprof/goroutine?debug=1"); strings.Contains(body, "goroutine profile:") {
		t.Errorf("the master's own port serves profiles: %d", code)
	}
	mp.stop(t)
	if mp.err != nil {
		t.Errorf("master with --pprof-addr stopped with %v", mp.err)
	}
}
