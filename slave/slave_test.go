package slave

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/goleak"

	"github.com/anthill-project/anthill/protocol"
	"github.com/anthill-project/anthill/sandbox"
)

// The test binary is its own WASM worker, as the anthill command is, so
// the slave's tests run modules in worker processes by default.
func TestMain(m *testing.M) {
	sandbox.ServeWorkerIfAsked()
	goleak.VerifyTestMain(m)
}

// gate is a handler kind that runs until the test opens it or its context
// ends.
type gate struct {
	open    chan struct{}
	started chan struct{}
}

func newGate() *gate { return &gate{open: make(chan struct{}), started: make(chan struct{}, 100)} }

func (g *gate) handler(ctx context.Context, p []byte) ([]byte, error) {
	g.started <- struct{}{}
	select {
	case <-g.open:
		return []byte("opened"), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func registry(extra map[string]sandbox.Handler) *sandbox.Registry {
	r := builtins()
	for k, h := range extra {
		r.Register(k, h)
	}
	return r
}

func TestHello(t *testing.T) {
	p := newPeer(t, nil)
	start(t, p, Options{Name: "lab-7", Token: "secret", Software: "v9.9", Concurrency: 3,
		Registry: registry(map[string]sandbox.Handler{"aaa": echoHandler})})
	p.conn(0)
	h := p.hello(0)
	want := []string{"aaa", "echo", "fail", "sha256", "sleep"}
	if h.Version != protocol.Version || h.Role != protocol.RoleSlave || h.Name != "lab-7" || h.Token != "secret" ||
		h.Software != "v9.9" || h.OS != runtime.GOOS || h.Arch != runtime.GOARCH || h.Cores != runtime.NumCPU() ||
		h.Concurrency != 3 || h.Prefetch != 3 || !slices.Equal(h.Kinds, want) || h.Host == "" {
		t.Fatalf("hello: %+v", h)
	}
	if runtime.GOOS == "linux" && h.MemoryBytes == 0 {
		t.Error("hello announces no memory on linux")
	}
}

// Options.Leaderboard is the volunteer's consent, sent in every hello;
// without it the hello gives none.
func TestHelloLeaderboard(t *testing.T) {
	for _, consent := range []bool{false, true} {
		p := newPeer(t, nil)
		start(t, p, Options{Name: "lab-7", Concurrency: 1, Leaderboard: consent})
		p.conn(0)
		if h := p.hello(0); h.Leaderboard != consent {
			t.Errorf("Options.Leaderboard %v: hello's leaderboard %v", consent, h.Leaderboard)
		}
	}
}

func echoHandler(_ context.Context, p []byte) ([]byte, error) { return p, nil }

func TestBuiltins(t *testing.T) {
	p := newPeer(t, nil)
	s := start(t, p, Options{Concurrency: 4})
	c := p.conn(0)
	c.dispatch(t,
		protocol.Task{ID: 1, Kind: "echo", Payload: []byte("hi")},
		protocol.Task{ID: 2, Kind: "sha256", Payload: []byte("abc")},
		protocol.Task{ID: 3, Kind: "fail", Payload: []byte("boom")},
		protocol.Task{ID: 4, Kind: "sleep", Payload: []byte("5")},
		protocol.Task{ID: 5, Kind: "sleep", Payload: []byte("five")},
		protocol.Task{ID: 6, Kind: "fail", Payload: nil},
		protocol.Task{ID: 7, Kind: "nope", Payload: []byte("x")},
		protocol.Task{ID: 8, Kind: "echo", Attempt: 3, Payload: []byte{}},
	)
	for _, tc := range []struct {
		id      uint64
		out, er string
	}{
		{1, "hi", ""},
		{2, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", ""},
		{3, "", "boom"},
		{4, "5", ""},
		{5, "", `sleep: payload "five" is not a decimal number of milliseconds`},
		{6, "", "task failed with an empty error message"},
		{7, "", `unknown task kind "nope"`},
		{8, "", ""},
	} {
		r := c.waitResult(t, tc.id)
		if string(r.Output) != tc.out || r.Err != tc.er {
			t.Errorf("task %d: got %q, err %q; want %q, err %q", tc.id, r.Output, r.Err, tc.out, tc.er)
		}
	}
	if r := c.waitResult(t, 8); r.Attempt != 3 {
		t.Errorf("result answers attempt %d, want 3", r.Attempt)
	}
	if r := c.waitResult(t, 4); r.Duration < 5*time.Millisecond {
		t.Errorf("sleep 5 ran %v", r.Duration)
	}
	if n := c.count(protocol.TypeRequest); n != 0 {
		t.Errorf("%d Request frames in the send pattern", n)
	}
	if st := s.Stats(); st.Done != 4 || st.Failed != 4 {
		t.Errorf("stats: %+v", st)
	}
}

func TestBuiltinSleepHonoursContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := sleep(ctx, []byte("3600000")); !errors.Is(err, context.Canceled) {
		t.Fatalf("sleep with a canceled context: %v", err)
	}
	for _, bad := range []string{"-1", "1.5", "", "99999999999999999999"} {
		if _, err := sleep(context.Background(), []byte(bad)); err == nil {
			t.Errorf("sleep %q: no error", bad)
		}
	}
}

// A handler that panics (or calls runtime.Goexit) yields an error result
// and the slave keeps working, on the same worker slot.
func TestPanickingHandler(t *testing.T) {
	p := newPeer(t, nil)
	s := start(t, p, Options{Concurrency: 1, Registry: registry(map[string]sandbox.Handler{
		"explode": func(context.Context, []byte) ([]byte, error) {
			var m map[string]int
			m["boom"]++ // a real runtime panic
			return nil, nil
		},
		"goexit": func(context.Context, []byte) ([]byte, error) {
			runtime.Goexit()
			return nil, nil
		},
	})})
	c := p.conn(0)
	c.dispatch(t,
		protocol.Task{ID: 1, Kind: "explode"},
		protocol.Task{ID: 2, Kind: "echo", Payload: []byte("still alive")},
		protocol.Task{ID: 3, Kind: "goexit"},
		protocol.Task{ID: 4, Kind: "echo", Payload: []byte("and again")},
	)
	r := c.waitResult(t, 1)
	if !strings.HasPrefix(r.Err, "task panicked: assignment to entry in nil map\n\tat slave.TestPanickingHandler.func") {
		t.Errorf("panic result: %q", r.Err)
	}
	if r := c.waitResult(t, 2); string(r.Output) != "still alive" || r.Err != "" {
		t.Errorf("after the panic: %q %q", r.Output, r.Err)
	}
	if r := c.waitResult(t, 3); r.Err != "task called runtime.Goexit" {
		t.Errorf("goexit result: %q", r.Err)
	}
	if r := c.waitResult(t, 4); string(r.Output) != "and again" {
		t.Errorf("after goexit: %q %q", r.Output, r.Err)
	}
	if st := s.Stats(); st.Done != 2 || st.Failed != 2 || !st.Connected || st.Reconnects != 0 {
		t.Errorf("stats: %+v", st)
	}
}

// The timeout result goes out while a handler that ignores its context
// still runs, and the slot stays busy until it returns; its late return is
// dropped.
func TestTimeoutReportedWhileHandlerRuns(t *testing.T) {
	release := make(chan struct{})
	returned := make(chan struct{})
	p := newPeer(t, nil)
	s := start(t, p, Options{Concurrency: 1, Prefetch: 1, Registry: registry(map[string]sandbox.Handler{
		"stubborn": func(context.Context, []byte) ([]byte, error) {
			<-release // ignores its context
			defer close(returned)
			return []byte("too late"), nil
		},
	})})
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	c := p.conn(0)
	c.dispatch(t, protocol.Task{ID: 1, Kind: "stubborn", Timeout: 20 * time.Millisecond})
	if r := c.waitResult(t, 1); r.Err != "task exceeded its timeout of 20ms" || len(r.Output) != 0 {
		t.Fatalf("timeout result: %q %q", r.Output, r.Err)
	}
	if st := s.Stats(); st.Running != 1 || st.Failed != 1 {
		t.Fatalf("the slot was freed before the handler returned: %+v", st)
	}
	// The next task waits for the slot.
	c.dispatch(t, protocol.Task{ID: 2, Kind: "echo", Payload: []byte("next")})
	waitFor(t, "task 2 queued", func() bool { return s.Stats().Queued == 1 })
	if st := s.Stats(); st.Running != 1 || len(c.resultsFor(2)) != 0 {
		t.Fatalf("task 2 ran while the stubborn handler held the only slot: %+v", st)
	}
	close(release)
	<-returned
	if r := c.waitResult(t, 2); string(r.Output) != "next" {
		t.Fatalf("task 2: %q %q", r.Output, r.Err)
	}
	// Results go out in order, so the late return would have come first.
	if rs := c.resultsFor(1); len(rs) != 1 {
		t.Fatalf("%d results for the timed-out task, want 1: %+v", len(rs), rs)
	}
}

// A handler that honours its context reports the same timeout error.
func TestTimeoutOfCooperativeHandler(t *testing.T) {
	p := newPeer(t, nil)
	start(t, p, Options{Concurrency: 2})
	c := p.conn(0)
	c.dispatch(t, protocol.Task{ID: 1, Kind: "sleep", Payload: []byte("3600000"), Timeout: 1500 * time.Millisecond / 100})
	if r := c.waitResult(t, 1); r.Err != "task exceeded its timeout of 15ms" {
		t.Fatalf("timeout result: %q", r.Err)
	}
}

func TestPollPatternRequests(t *testing.T) {
	p := newPeer(t, func(int, *protocol.Hello) protocol.Message { return welcome(protocol.DispatchPoll) })
	start(t, p, Options{Concurrency: 2, Prefetch: 3})
	c := p.conn(0)
	waitFor(t, "initial request", func() bool { n, _ := c.requested(); return n > 0 })
	if n, first := c.requested(); n != 5 || first != 5 {
		t.Fatalf("initial request for %d slots (first frame %d), want the window of 5", n, first)
	}
	var tasks []protocol.Task
	for i := range 5 {
		tasks = append(tasks, protocol.Task{ID: uint64(10 + i), Kind: "echo", Payload: []byte("x")})
	}
	c.dispatch(t, tasks...)
	waitFor(t, "5 results", func() bool { return len(c.results()) == 5 })
	waitFor(t, "requests for the freed slots", func() bool { n, _ := c.requested(); return n == 10 })
	if req, res := c.count(protocol.TypeRequest), c.count(protocol.TypeResults); req > res+1 {
		t.Errorf("%d Request frames for %d Results frames: requests are not coalesced", req, res)
	}
}

func TestResultsAreBatched(t *testing.T) {
	p := newPeer(t, nil)
	start(t, p, Options{Concurrency: 4, Prefetch: 500})
	c := p.conn(0)
	var tasks []protocol.Task
	for i := range 500 {
		tasks = append(tasks, protocol.Task{ID: uint64(1000 + i), Kind: "echo", Payload: []byte(fmt.Sprint(i))})
	}
	c.dispatch(t, tasks...)
	waitFor(t, "500 results", func() bool { return len(c.results()) >= 500 })
	seen := map[uint64]bool{}
	for _, r := range c.results() {
		if seen[r.ID] || string(r.Output) != fmt.Sprint(r.ID-1000) {
			t.Fatalf("result %d: %q (duplicate: %v)", r.ID, r.Output, seen[r.ID])
		}
		seen[r.ID] = true
	}
	frames := c.count(protocol.TypeResults)
	t.Logf("500 results in %d frames", frames)
	if frames >= 500 {
		t.Fatalf("%d Results frames for 500 results: not batched", frames)
	}
}

// A result too large for the master's frames becomes an error rather than
// a frame the master would refuse.
func TestOversizedResult(t *testing.T) {
	p := newPeer(t, func(int, *protocol.Hello) protocol.Message {
		w := welcome(protocol.DispatchSend)
		w.MaxFrameBytes = 8 << 10
		return w
	})
	start(t, p, Options{Registry: registry(map[string]sandbox.Handler{
		"big": func(context.Context, []byte) ([]byte, error) { return make([]byte, 64<<10), nil },
	})})
	c := p.conn(0)
	c.dispatch(t, protocol.Task{ID: 1, Kind: "big"}, protocol.Task{ID: 2, Kind: "echo", Payload: []byte("small")})
	if r := c.waitResult(t, 1); r.Err != "result of 65536 bytes exceeds the master's frame limit" {
		t.Fatalf("oversized result: %d bytes, err %q", len(r.Output), r.Err)
	}
	if r := c.waitResult(t, 2); string(r.Output) != "small" {
		t.Fatalf("next result: %q", r.Err)
	}
	// Many small results are split across frames within the limit (the
	// peer fails the test on a larger frame).
	payload := make([]byte, 500)
	for f := range 10 {
		var tasks []protocol.Task
		for i := range 10 {
			tasks = append(tasks, protocol.Task{ID: uint64(100 + 10*f + i), Kind: "echo", Payload: payload})
		}
		c.dispatch(t, tasks...)
	}
	waitFor(t, "100 results", func() bool { return len(c.results()) == 102 })
}

func TestFatalRefusal(t *testing.T) {
	future := welcome(protocol.DispatchSend)
	future.Version = protocol.Version + 1
	for name, tc := range map[string]struct {
		reply protocol.Message
		code  string
	}{
		"unauthorized":                {&protocol.Error{Code: protocol.CodeUnauthorized, Message: "bad token"}, protocol.CodeUnauthorized},
		"unsupported_version":         {&protocol.Error{Code: protocol.CodeUnsupportedVersion, Message: "v0"}, protocol.CodeUnsupportedVersion},
		"bad_handshake":               {&protocol.Error{Code: protocol.CodeBadHandshake, Message: "no"}, protocol.CodeBadHandshake},
		"welcome of a future version": {future, protocol.CodeUnsupportedVersion},
	} {
		code := tc.code
		t.Run(name, func(t *testing.T) {
			p := newPeer(t, func(int, *protocol.Hello) protocol.Message { return tc.reply })
			s := start(t, p, Options{Token: "wrong"})
			err := s.wait(t)
			var perr *protocol.Error
			if !errors.As(err, &perr) || perr.Code != code {
				t.Fatalf("Run returned %v; want one wrapping a *protocol.Error with code %s", err, code)
			}
			t.Logf("Run: %v", err)
			if n := p.helloCount(); n != 1 {
				t.Fatalf("the slave tried %d times after a fatal refusal", n)
			}
		})
	}
}

// Other refusals are retried with backoff, and so is a dead address.
func TestTransientRefusalIsRetried(t *testing.T) {
	p := newPeer(t, func(n int, _ *protocol.Hello) protocol.Message {
		if n < 2 {
			return &protocol.Error{Code: protocol.CodeShuttingDown, Message: "restarting"}
		}
		return welcome(protocol.DispatchSend)
	})
	s := start(t, p, Options{})
	c := p.conn(0)
	c.dispatch(t, protocol.Task{ID: 1, Kind: "echo", Payload: []byte("back")})
	if r := c.waitResult(t, 1); string(r.Output) != "back" {
		t.Fatalf("result: %q %q", r.Output, r.Err)
	}
	if n := p.helloCount(); n != 3 {
		t.Fatalf("%d hellos, want 3", n)
	}
	if st := s.Stats(); st.Reconnects != 0 {
		t.Errorf("refused attempts counted as reconnects: %+v", st)
	}
}

func TestUnreachableMasterRetriesUntilCanceled(t *testing.T) {
	p := newPeer(t, nil)
	url := p.url()
	p.srv.Close() // nothing listens there any more
	s, err := New(Options{Master: url, Registry: builtins(), ReconnectMin: time.Millisecond, ReconnectMax: 5 * time.Millisecond, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// When the master goes away, queued tasks are dropped, running ones go on,
// and a result finished during the outage is dropped: the master re-queued
// the task and would reject a result of a lease of the old session.
func TestReconnectDropsResultsOfTheOldSession(t *testing.T) {
	g := newGate()
	resume := make(chan struct{})
	var p *peer
	p = newPeer(t, func(n int, _ *protocol.Hello) protocol.Message {
		if n == 1 {
			select { // hold the second handshake until the test says so
			case <-resume:
			case <-p.closing:
			}
		}
		return welcome(protocol.DispatchSend)
	})
	s := start(t, p, Options{Concurrency: 1, Prefetch: 1, Registry: registry(map[string]sandbox.Handler{"gate": g.handler})})
	first := p.conn(0)
	first.dispatch(t, protocol.Task{ID: 1, Kind: "gate"}, protocol.Task{ID: 2, Kind: "echo"})
	waitFor(t, "task 1 running, task 2 queued", func() bool { st := s.Stats(); return st.Running == 1 && st.Queued == 1 })

	first.ws.Close() // the master vanishes
	waitFor(t, "the slave to notice", func() bool { return !s.Stats().Connected && p.helloCount() == 2 })
	if st := s.Stats(); st.Queued != 0 || st.Running != 1 {
		t.Fatalf("after the drop: %+v; want the queued task dropped and the running one going on", st)
	}
	close(g.open) // task 1 finishes while no master is there
	waitFor(t, "task 1 done", func() bool { return s.Stats().Done == 1 })

	close(resume)
	second := p.conn(1)
	second.dispatch(t, protocol.Task{ID: 3, Kind: "echo", Payload: []byte("more")})
	second.waitResult(t, 3)
	if len(second.resultsFor(1)) != 0 || s.Stats().Stale != 1 {
		t.Fatalf("a result of the old session went to the new one, or was not counted as stale: %+v", s.Stats())
	}
	if len(second.resultsFor(2)) != 0 || len(first.results()) != 0 {
		t.Fatal("the dropped task ran, or a result went to the dead connection")
	}
	if st := s.Stats(); st.Reconnects != 1 || st.Done != 2 || st.Queued != 0 {
		t.Fatalf("stats: %+v", st)
	}
}

// Cancel drops queued tasks and cancels running ones; neither gets a result.
func TestCancel(t *testing.T) {
	g := newGate()
	p := newPeer(t, nil)
	s := start(t, p, Options{Concurrency: 1, Prefetch: 3, Registry: registry(map[string]sandbox.Handler{"gate": g.handler})})
	c := p.conn(0)
	c.dispatch(t,
		protocol.Task{ID: 1, Kind: "gate"},
		protocol.Task{ID: 2, Kind: "echo", Payload: []byte("2")},
		protocol.Task{ID: 3, Kind: "echo", Payload: []byte("3")},
	)
	waitFor(t, "task 1 running", func() bool { st := s.Stats(); return st.Running == 1 && st.Queued == 2 })
	c.send(t, &protocol.IDs{T: protocol.TypeCancel, IDs: []uint64{1, 2, 99}})
	c.waitResult(t, 3)
	// Task 1 returned before task 3 started (one slot), and results keep
	// their order, so its result would be here by now.
	if rs := c.results(); len(rs) != 1 {
		t.Fatalf("results for canceled tasks: %+v", rs)
	}
}

// On shutdown the slave hands back queued tasks (and any dispatched
// meanwhile), finishes the running one, delivers its result, closes
// normally and Run returns nil.
func TestGracefulShutdown(t *testing.T) {
	g := newGate()
	p := newPeer(t, nil)
	s := start(t, p, Options{Concurrency: 1, Prefetch: 3, Grace: time.Hour,
		Registry: registry(map[string]sandbox.Handler{"gate": g.handler})})
	c := p.conn(0)
	c.dispatch(t,
		protocol.Task{ID: 1, Kind: "gate"},
		protocol.Task{ID: 2, Kind: "echo"}, protocol.Task{ID: 3, Kind: "echo"}, protocol.Task{ID: 4, Kind: "echo"},
	)
	waitFor(t, "task 1 running", func() bool { st := s.Stats(); return st.Running == 1 && st.Queued == 3 })
	s.cancel()
	waitFor(t, "queued tasks handed back", func() bool { r := c.returned(); return r[2] && r[3] && r[4] })
	c.dispatch(t, protocol.Task{ID: 5, Kind: "echo"})
	waitFor(t, "a task dispatched while stopping handed back", func() bool { return c.returned()[5] })
	if s.returned() {
		t.Fatal("Run returned while a task was still running within its grace")
	}
	close(g.open)
	if err := s.wait(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if r := c.waitResult(t, 1); string(r.Output) != "opened" {
		t.Fatalf("result of the running task: %q %q", r.Output, r.Err)
	}
	if rs := c.results(); len(rs) != 1 || c.returned()[1] {
		t.Fatalf("results %+v, returned %v", rs, c.returned())
	}
	waitFor(t, "the connection to close", func() bool { _, gone := c.closedWith(); return gone })
	if code, _ := c.closedWith(); code != websocket.CloseNormalClosure {
		t.Fatalf("closed with code %d, want a normal close", code)
	}
}

// Tasks still running when the grace period ends are canceled and handed
// back, without a result.
func TestShutdownAfterGrace(t *testing.T) {
	g := newGate()
	p := newPeer(t, nil)
	s := start(t, p, Options{Concurrency: 2, Grace: 10 * time.Millisecond,
		Registry: registry(map[string]sandbox.Handler{"gate": g.handler})})
	c := p.conn(0)
	c.dispatch(t, protocol.Task{ID: 1, Kind: "gate"}, protocol.Task{ID: 2, Kind: "echo", Payload: []byte("quick")})
	c.waitResult(t, 2)
	waitFor(t, "task 1 running", func() bool { return s.Stats().Running == 1 })
	if err := s.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	waitFor(t, "the connection to close", func() bool { _, gone := c.closedWith(); return gone })
	if !c.returned()[1] || len(c.resultsFor(1)) != 0 {
		t.Fatalf("task 1: returned %v, results %+v", c.returned(), c.resultsFor(1))
	}
}

// A frame the slave cannot decode closes the connection with a bad_frame
// Error, and the slave reconnects.
func TestMalformedFrameReconnects(t *testing.T) {
	p := newPeer(t, nil)
	s := start(t, p, Options{})
	first := p.conn(0)
	first.sendRaw(t, []byte{200, 1, 2, 3})
	second := p.conn(1)
	var perr *protocol.Error
	for _, m := range first.messages() {
		if e, ok := m.(*protocol.Error); ok {
			perr = e
		}
	}
	if perr == nil || perr.Code != protocol.CodeBadFrame {
		t.Fatalf("the slave told the peer %v; want a bad_frame error", perr)
	}
	second.dispatch(t, protocol.Task{ID: 1, Kind: "echo", Payload: []byte("ok")})
	second.waitResult(t, 1)
	if st := s.Stats(); st.Reconnects != 1 {
		t.Fatalf("stats: %+v", st)
	}
}

func TestNewValidates(t *testing.T) {
	reg := builtins()
	for name, o := range map[string]Options{
		"no registry":        {Master: "ws://h:1"},
		"empty registry":     {Master: "ws://h:1", Registry: sandbox.NewRegistry()},
		"no master":          {Registry: reg},
		"bad scheme":         {Master: "ftp://h:1", Registry: reg},
		"no host":            {Master: "ws:///x", Registry: reg},
		"negative workers":   {Master: "ws://h:1", Registry: reg, Concurrency: -1},
		"too many workers":   {Master: "ws://h:1", Registry: reg, Concurrency: 5000},
		"long name":          {Master: "ws://h:1", Registry: reg, Name: strings.Repeat("x", 129)},
		"inverted backoff":   {Master: "ws://h:1", Registry: reg, ReconnectMin: time.Second, ReconnectMax: time.Millisecond},
		"negative reconnect": {Master: "ws://h:1", Registry: reg, ReconnectMin: -1},
	} {
		if _, err := New(o); err == nil {
			t.Errorf("%s: New accepted %+v", name, o)
		}
	}
	s, err := New(Options{Master: "http://h:1", Registry: reg, Prefetch: -5})
	if err != nil {
		t.Fatal(err)
	}
	o := s.opts
	if o.Concurrency != runtime.NumCPU() || o.Prefetch != 0 || o.Grace != 30*time.Second ||
		o.ReconnectMin != 100*time.Millisecond || o.ReconnectMax != 10*time.Second || o.Name == "" || o.Logger == nil {
		t.Fatalf("defaults: %+v", o)
	}
}

func TestSlaveURL(t *testing.T) {
	for in, want := range map[string]string{
		"ws://127.0.0.1:7070":          "ws://127.0.0.1:7070/ws/slave",
		"http://127.0.0.1:7070/":       "ws://127.0.0.1:7070/ws/slave",
		"https://example.org/anthill/": "wss://example.org/anthill/ws/slave",
		"wss://example.org":            "wss://example.org/ws/slave",
	} {
		if got, err := slaveURL(in); err != nil || got != want {
			t.Errorf("slaveURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestRunTwice(t *testing.T) {
	p := newPeer(t, nil)
	s := start(t, p, Options{})
	p.conn(0)
	if err := s.Run(context.Background()); err == nil {
		t.Fatal("a second Run was accepted")
	}
}
