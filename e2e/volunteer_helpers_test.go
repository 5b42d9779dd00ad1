package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/gorilla/websocket"

	"github.com/anthill-project/anthill/internal/testmaster"
	"github.com/anthill-project/anthill/master"
	"github.com/anthill-project/anthill/master/modules"
	"github.com/anthill-project/anthill/protocol"
	"github.com/anthill-project/anthill/web"
)

// The harness of the browser volunteer's tests: a real master with the
// dashboard's handler (which serves /volunteer) mounted as cmd/anthill
// mounts it, the test's WASI module built from testdata and uploaded to
// the master's registry, and an application speaking the protocol by
// hand, so that a test sees every field of a notification.

// volunteerBuildModule builds testdata/volunteer/sha for wasip1 and
// returns its bytes.
func volunteerBuildModule(t *testing.T) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), "sha.wasm")
	cmd := exec.Command("go", "build", "-o", out, "./testdata/volunteer/sha")
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the test module: %v\n%s", err, b)
	}
	code, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return code
}

// volunteerUpload stores code in m's module registry, as an operator's
// upload does, and returns its hash.
func volunteerUpload(t *testing.T, m *master.Master, name string, code []byte) string {
	t.Helper()
	info, err := m.UploadModule(context.Background(), name, code, nil, modules.ByAdmin)
	if err != nil {
		t.Fatalf("uploading %s: %v", name, err)
	}
	return info.Hash
}

// volunteerVariant is code with a custom section appended: another valid
// module, of another hash, that runs the same.
func volunteerVariant(code []byte, tag string) []byte {
	body := append(binary.AppendUvarint(nil, uint64(len("anthill-test"))), "anthill-test"+tag...)
	out := append(append([]byte(nil), code...), 0) // section id 0: custom
	out = binary.AppendUvarint(out, uint64(len(body)))
	return append(out, body...)
}

// volunteerTrapModule is a WASI command whose _start traps at once, on
// an unreachable instruction: testwasm's command with that body.
func volunteerTrapModule() []byte {
	return []byte{
		0x00, 'a', 's', 'm', 0x01, 0x00, 0x00, 0x00,
		0x01, 0x04, 0x01, 0x60, 0x00, 0x00, // type: [func () -> ()]
		0x03, 0x02, 0x01, 0x00, // function: [type 0]
		0x05, 0x03, 0x01, 0x00, 0x01, // memory: [min 1 page]
		0x07, 0x13, 0x02, // export, 19 bytes, 2 entries
		0x06, '_', 's', 't', 'a', 'r', 't', 0x00, 0x00, // func 0
		0x06, 'm', 'e', 'm', 'o', 'r', 'y', 0x02, 0x00, // memory 0
		0x0a, 0x05, 0x01, 0x03, 0x00, 0x00, 0x0b, // code: [no locals, unreachable, end]
	}
}

// volunteerFront is the network between the browser and the master: a
// reverse proxy to the master that records the credential of each module
// fetch and can swap the bytes served for a hash, as a compromised proxy
// or cache on the way could. The master's own endpoint never serves
// wrong bytes; the page must notice when something on the way does.
//
// It passes the Host on, as a reverse proxy in front of a master does, so
// the page's Origin names the host the master is asked for, and the
// master's own Origin check is what the page goes through.
type volunteerFront struct {
	URL string

	mu     sync.Mutex
	swap   map[string][]byte // hash → the bytes served instead
	bearer []string          // Authorization of each module fetch, in order
}

func newVolunteerFront(t *testing.T, m *master.Master) *volunteerFront {
	t.Helper()
	target, err := url.Parse("http://" + m.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	f := &volunteerFront{swap: map[string][]byte{}}
	if !volunteerMasterTakesBrowsers(m) {
		t.Fatal("the master refuses /ws/slave to a page of its own origin")
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = pr.In.Host
			if strings.HasPrefix(pr.In.URL.Path, "/modules/") {
				f.mu.Lock()
				f.bearer = append(f.bearer, pr.In.Header.Get("Authorization"))
				f.mu.Unlock()
			}
		},
		ModifyResponse: func(resp *http.Response) error {
			f.mu.Lock()
			code, ok := f.swap[strings.TrimPrefix(resp.Request.URL.Path, "/modules/")]
			f.mu.Unlock()
			if ok && resp.StatusCode == http.StatusOK {
				resp.Body.Close()
				resp.Body = io.NopCloser(bytes.NewReader(code))
				resp.ContentLength = int64(len(code))
				resp.Header.Set("Content-Length", fmt.Sprint(len(code)))
			}
			return nil
		},
	}
	srv := httptest.NewServer(rp)
	t.Cleanup(srv.Close)
	f.URL = srv.URL
	return f
}

// volunteerMasterTakesBrowsers reports whether m upgrades a /ws/slave
// request whose Origin is m's own host, as a page m served sends.
func volunteerMasterTakesBrowsers(m *master.Master) bool {
	ws, resp, err := websocket.DefaultDialer.Dial(m.URL()+"/ws/slave", http.Header{"Origin": {"http://" + m.Addr().String()}})
	if err != nil {
		if resp != nil {
			resp.Body.Close()
		}
		return false
	}
	ws.Close()
	return true
}

func (f *volunteerFront) credentials() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.bearer...)
}

func (f *volunteerFront) serveInstead(hash string, code []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.swap[hash] = code
}

// volunteerMaster starts a master with the dashboard (and so /volunteer)
// at "/", mounted as cmd/anthill mounts it, and the front a browser
// opens.
func volunteerMaster(t *testing.T, o master.Options) (*master.Master, *volunteerFront) {
	t.Helper()
	m := volunteerStart(t, o)
	return m, newVolunteerFront(t, m)
}

// volunteerStart starts a master with the dashboard at "/".
func volunteerStart(t *testing.T, o master.Options) *master.Master {
	t.Helper()
	return testmaster.Start(t, o, func(m *master.Master) error {
		dash, err := web.New(m.Scheduler(), web.Options{Token: testmaster.AdminToken, Limiter: m.Limiter(), Logger: testmaster.Logger(t)})
		if err != nil {
			return err
		}
		m.Handle("/", dash)
		return nil
	})
}

// volunteerLog keeps every line a master logs, debug included, and passes
// warnings on to the test's log: a test can then ask how a connection
// ended.
type volunteerLog struct {
	next  slog.Handler
	mu    *sync.Mutex
	lines *[]string
	attrs []slog.Attr
}

func newVolunteerLog(t *testing.T) (*slog.Logger, *volunteerLog) {
	h := &volunteerLog{next: testmaster.Logger(t).Handler(), mu: &sync.Mutex{}, lines: new([]string)}
	return slog.New(h), h
}

func (h *volunteerLog) Enabled(context.Context, slog.Level) bool { return true }

func (h *volunteerLog) Handle(ctx context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Message)
	for _, a := range h.attrs {
		b.WriteString(" " + a.String())
	}
	r.Attrs(func(a slog.Attr) bool { b.WriteString(" " + a.String()); return true })
	h.mu.Lock()
	*h.lines = append(*h.lines, b.String())
	h.mu.Unlock()
	if h.next.Enabled(ctx, r.Level) {
		return h.next.WithAttrs(h.attrs).Handle(ctx, r)
	}
	return nil
}

func (h *volunteerLog) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	c.attrs = append(append([]slog.Attr(nil), h.attrs...), as...)
	return &c
}

func (h *volunteerLog) WithGroup(string) slog.Handler { return h }

// has reports whether a line contains every one of parts.
func (h *volunteerLog) has(parts ...string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, l := range *h.lines {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(l, p)
		}
		if all {
			return true
		}
	}
	return false
}

// volunteerApp is an application connection driven by hand: it submits
// tasks with a Module and collects their notifications.
type volunteerApp struct {
	t    *testing.T
	ws   *websocket.Conn
	seq  uint64
	acks chan protocol.Message // SubmitAck or SubmitReject
	done chan struct{}         // the reader has returned

	wmu sync.Mutex // one writer at a time: submits and the reader's acks

	mu  sync.Mutex
	got map[uint64]protocol.Finished
}

func (a *volunteerApp) write(m protocol.Message) error {
	a.wmu.Lock()
	defer a.wmu.Unlock()
	return a.ws.WriteMessage(websocket.BinaryMessage, protocol.Encode(nil, m))
}

func volunteerConnectApp(t *testing.T, m *master.Master, name string) *volunteerApp {
	t.Helper()
	ws := rawPeer(t, m.URL(), "/ws/app", &protocol.Hello{Version: protocol.Version, Role: protocol.RoleApp, Name: name})
	a := &volunteerApp{t: t, ws: ws, acks: make(chan protocol.Message, 1), done: make(chan struct{}), got: map[uint64]protocol.Finished{}}
	_ = ws.SetReadDeadline(time.Time{})
	go a.read()
	t.Cleanup(func() {
		ws.Close()
		<-a.done
	})
	return a
}

func (a *volunteerApp) read() {
	defer close(a.done)
	for {
		_, frame, err := a.ws.ReadMessage()
		if err != nil {
			return
		}
		msg, err := protocol.Decode(frame)
		if err != nil {
			return
		}
		switch msg := msg.(type) {
		case *protocol.SubmitAck, *protocol.SubmitReject:
			a.acks <- msg
		case *protocol.Notify:
			ids := make([]uint64, 0, len(msg.Tasks))
			a.mu.Lock()
			for _, f := range msg.Tasks {
				f.Result = append([]byte(nil), f.Result...)
				a.got[f.ID] = f
				ids = append(ids, f.ID)
			}
			a.mu.Unlock()
			if a.write(&protocol.IDs{T: protocol.TypeNotifyAck, IDs: ids}) != nil {
				return
			}
		}
	}
}

// submit sends tasks in one batch and returns their ids.
func (a *volunteerApp) submit(tasks ...protocol.NewTask) []uint64 {
	a.t.Helper()
	a.seq++
	if err := a.write(&protocol.Submit{Seq: a.seq, Tasks: tasks}); err != nil {
		a.t.Fatal(err)
	}
	select {
	case m := <-a.acks:
		ack, ok := m.(*protocol.SubmitAck)
		if !ok {
			a.t.Fatalf("submit refused: %+v", m)
		}
		ids := make([]uint64, ack.Count)
		for i := range ids {
			ids[i] = ack.FirstID + uint64(i)
		}
		return ids
	case <-time.After(10 * time.Second):
		a.t.Fatal("no answer to a submit in 10s")
	}
	return nil
}

// wait returns the notifications of ids once all have come.
func (a *volunteerApp) wait(what string, ids ...uint64) []protocol.Finished {
	a.t.Helper()
	var out []protocol.Finished
	waitFor(a.t, 60*time.Second, what, func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		out = out[:0]
		for _, id := range ids {
			f, ok := a.got[id]
			if !ok {
				return false
			}
			out = append(out, f)
		}
		return true
	})
	return out
}

// volunteerTask is a task of the test module.
func volunteerTask(hash, payload string) protocol.NewTask {
	return protocol.NewTask{Kind: protocol.KindWASM, Module: hash, Payload: []byte(payload), MaxAttempts: 1}
}

// volunteerSum is what the test module answers for payload.
func volunteerSum(payload string) string {
	sum := sha256.Sum256([]byte(payload))
	return hex.EncodeToString(sum[:])
}

// volunteerOpen opens the volunteer page at base+path and waits until its
// script has run.
func volunteerOpen(b *browser, base, path string) {
	b.t.Helper()
	b.run("open the volunteer page", chromedp.Navigate(base+path))
	b.waitJS("the volunteer page", `document.getElementById('state') && document.getElementById('state').dataset.state === 'stopped' && document.getElementById('cores').value !== ''`)
}

// volunteerState is the state the page's pill shows.
func volunteerState(b *browser) string {
	return eval[string](b, `document.getElementById('state').dataset.state`)
}
