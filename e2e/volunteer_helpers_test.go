package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/gorilla/websocket"

	"github.com/anthill-project/anthill/internal/testmaster"
	"github.com/anthill-project/anthill/master"
	"github.com/anthill-project/anthill/protocol"
	"github.com/anthill-project/anthill/web"
)

// The harness of the browser volunteer's tests: a real master with the
// dashboard's handler (which serves /volunteer) mounted as cmd/anthill
// mounts it, the test's WASI module built from testdata, and an
// application speaking the protocol by hand, since appnode's Task has no
// Module yet.

// volunteerBuildModule builds testdata/volunteer/sha for wasip1 and
// returns its bytes and their hash.
func volunteerBuildModule(t *testing.T) (hash string, code []byte) {
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
	sum := sha256.Sum256(code)
	return hex.EncodeToString(sum[:]), code
}

// volunteerModules serves GET /modules/{hash} from a map, recording the
// credential each fetch presented.
//
// TEST-ONLY STAND-IN, to be replaced by the master's own module endpoint
// (and the upload that fills it) once it is on this branch: the page's
// contract with it is GET /modules/{hash}, Authorization: Bearer <the
// volunteer token>, the module's bytes as application/wasm. A map lets a
// test serve wrong bytes under a hash, which the real endpoint never
// would; only TestVolunteerBrowser's hash-mismatch step needs that.
type volunteerModules struct {
	mu     sync.Mutex
	code   map[string][]byte
	bearer []string // Authorization of each fetch, in order
}

func (v *volunteerModules) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	v.mu.Lock()
	v.bearer = append(v.bearer, r.Header.Get("Authorization"))
	code, ok := v.code[r.PathValue("hash")]
	v.mu.Unlock()
	if !ok {
		http.Error(w, "no such module", http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "application/wasm")
	_, _ = w.Write(code)
}

func (v *volunteerModules) credentials() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]string(nil), v.bearer...)
}

// volunteerMaster starts a master with the dashboard (and so /volunteer)
// at "/" and mods at /modules/{hash}. It returns the master and the
// base URL a browser opens.
func volunteerMaster(t *testing.T, o master.Options, mods *volunteerModules) (*master.Master, string) {
	t.Helper()
	m := testmaster.Start(t, o, func(m *master.Master) error {
		dash, err := web.New(m.Scheduler(), web.Options{Token: testmaster.AdminToken, Limiter: m.Limiter(), Logger: testmaster.Logger(t)})
		if err != nil {
			return err
		}
		m.Handle("/", dash)
		m.Handle("GET /modules/{hash}", mods)
		return nil
	})
	return m, volunteerFront(t, m)
}

// volunteerFront is the origin the browser opens: a reverse proxy to m
// that drops the Origin header of the /ws/slave upgrade.
//
// TEST-ONLY, until the master accepts browsers: master.New's upgrader
// refuses every request with an Origin header (programs send none), so a
// page's WebSocket to /ws/slave is refused with 403 even from the
// master's own origin. Once /ws/slave accepts an Origin equal to the
// request's Host, this returns "http://" + m.Addr() instead.
func volunteerFront(t *testing.T, m *master.Master) string {
	t.Helper()
	target, err := url.Parse("http://" + m.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	rp := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {
		pr.SetURL(target)
		if pr.In.URL.Path == "/ws/slave" {
			pr.Out.Header.Del("Origin")
		}
	}}
	srv := httptest.NewServer(rp)
	t.Cleanup(srv.Close)
	return srv.URL
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
