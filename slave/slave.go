// Package slave is the volunteer process's engine: it dials out to a
// master, announces the task kinds it runs, runs dispatched tasks
// concurrently through the sandbox and streams their results back in
// batches, reconnecting with backoff whenever the master goes away. It never
// crashes on a user task, parses no flags and handles no signals (cmd does).
//
// # Lifecycle
//
// Run blocks until its context ends or the master refuses the slave for
// good (unauthorized, unsupported version, bad handshake, replaced). When
// the context ends the slave takes no new work, hands queued tasks back
// with Return, lets running tasks finish for Options.Grace and sends their
// results, hands back the rest, closes the connection normally and returns
// nil once every goroutine it started has exited.
//
// # Caveats
//
// Tasks run in-process (sandbox.InProcess). A task past its timeout is
// reported failed at once, but its slot stays busy until the handler
// returns, so Run can only return once every handler has: a handler that
// ignores its context keeps Run waiting.
package slave

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/anthill-project/anthill/internal/dial"
	"github.com/anthill-project/anthill/internal/wire"
	"github.com/anthill-project/anthill/protocol"
	"github.com/anthill-project/anthill/sandbox"
)

// sendQueue bounds frames waiting for the connection's writer; the sender
// waits for room (backpressure), results pile up meanwhile and go out in
// bigger batches.
const sendQueue = 64

// Slave runs tasks for a master. Create it with New and start it with Run.
type Slave struct {
	opts   Options
	url    string
	log    *slog.Logger
	runner sandbox.Runner
	// modules runs KindWASM tasks; nil when the slave runs no WASM.
	modules *modules
	kinds   []string // every kind it runs, for its Hello
	window  int      // Concurrency + Prefetch: tasks held at once
	host    string
	memory  uint64
	used    atomic.Bool
	token   string // presented in the Hello; Run's goroutine only

	kick chan struct{} // cap 1: something to send (results, returns, credit)
	idle chan struct{} // cap 1: while draining, the last running task ended

	// wg counts workers and timeout watchers.
	wg sync.WaitGroup

	// mu guards everything below. It is never held while writing to the
	// connection or running a handler.
	mu         sync.Mutex
	work       *sync.Cond // on mu: a task was queued or stopping was set
	queue      []*job     // received, not started; queue[head:] is live
	head       int
	active     map[*job]struct{} // handlers running, timed-out ones included
	pending    []protocol.Result // finished, not yet handed to the connection
	pendingB   int               // approximate encoded size of pending
	oldest     time.Time         // when pending became non-empty
	urgent     bool              // flush pending without lingering
	returns    []uint64          // ids to hand back
	sendReturn bool              // send a Return even if returns is empty
	credit     int               // poll: slots freed since the last Request
	poll       bool
	connected  bool
	draining   bool
	stopping   bool
	maxResult  int    // largest result (output + error) that fits the master's frame
	maxOutput  int    // the master's max_result_bytes; 0: it announced none
	session    uint64 // sessions started; a job's results belong to its own
	stale      uint64 // results dropped because their session had ended
	heldDirty  bool   // the held modules changed since the master was told
	stats      Stats
}

// Stats is a snapshot of a slave's counters.
type Stats struct {
	Done       uint64 // tasks that succeeded
	Failed     uint64 // tasks that failed: an error, a panic or a timeout
	Running    int    // handlers running now, timed-out ones not yet returned included
	Queued     int    // tasks held locally, waiting for a free slot
	Reconnects uint64 // sessions established after the first
	// Stale counts results dropped because the session their task came in
	// had ended: the master re-queued those tasks and fences results by
	// session.
	Stale     uint64
	Connected bool // a session with the master is up
}

// New validates opts and returns a Slave. It does not connect: Run does.
func New(opts Options) (*Slave, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	u, err := slaveURL(o.Master)
	if err != nil {
		return nil, err
	}
	token, err := loadToken(&o, u)
	if err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	s := &Slave{
		token:     token,
		opts:      o,
		url:       u,
		log:       o.Logger.With("master", u, "name", o.Name),
		runner:    &sandbox.InProcess{Registry: o.Registry},
		window:    o.Concurrency + o.Prefetch,
		host:      host,
		memory:    totalMemory(),
		kick:      make(chan struct{}, 1),
		idle:      make(chan struct{}, 1),
		active:    make(map[*job]struct{}),
		maxResult: resultLimit(0),
	}
	s.work = sync.NewCond(&s.mu)
	s.kinds = o.Registry.Kinds()
	if o.Exec != nil {
		s.kinds = append(s.kinds, o.Exec.Kinds()...)
	}
	if o.WASM != nil {
		s.modules, err = newModules(*o.WASM, o.Concurrency, o.Master, o.TLS, s.log, s.heldChanged)
		if err != nil {
			return nil, err
		}
		s.modules.setToken(token)
		s.kinds = append(s.kinds, protocol.KindWASM)
	}
	slices.Sort(s.kinds)
	return s, nil
}

// heldChanged is called by modules when the modules it holds changed.
func (s *Slave) heldChanged() {
	s.mu.Lock()
	s.heldDirty = true
	s.mu.Unlock()
	s.signal()
}

// run runs one task with the runner of its kind.
func (s *Slave) run(ctx context.Context, t *protocol.Task) ([]byte, error) {
	switch {
	case t.Kind == protocol.KindWASM && s.modules != nil:
		s.mu.Lock()
		limit := s.maxResult
		if s.maxOutput > 0 {
			limit = min(limit, s.maxOutput)
		}
		s.mu.Unlock()
		return s.modules.run(ctx, t.Module, t.Payload, limit)
	case s.opts.Exec != nil && slices.Contains(s.opts.Exec.Kinds(), t.Kind):
		return s.opts.Exec.Run(ctx, t.Kind, t.Payload)
	}
	return s.runner.Run(ctx, t.Kind, t.Payload)
}

// Stats returns the slave's counters.
func (s *Slave) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Running = len(s.active)
	st.Queued = len(s.queue) - s.head
	st.Connected = s.connected
	st.Stale = s.stale
	return st
}

// Run connects to the master and runs tasks until ctx ends, then stops
// gracefully (see the package doc) and returns nil. It returns an error
// wrapping the master's *protocol.Error when the master refuses the slave
// for good: unauthorized, unsupported_version, bad_handshake or replaced.
// Every other failure is logged and retried with backoff. Run may be
// called once.
func (s *Slave) Run(ctx context.Context) error {
	if !s.used.CompareAndSwap(false, true) {
		return errors.New("slave: Run called twice")
	}
	if s.modules != nil {
		// Not ctx: the workers must outlive it by the grace period.
		if err := s.modules.start(context.Background()); err != nil {
			return err
		}
	}
	base, cancelTasks := context.WithCancel(context.Background())
	defer cancelTasks()
	for range s.opts.Concurrency {
		s.wg.Add(1)
		go s.worker(base)
	}
	err := s.loop(ctx)
	s.stop(cancelTasks)
	return err
}

// loop connects, serves and reconnects until ctx ends or the master
// refuses the slave for good.
func (s *Slave) loop(ctx context.Context) error {
	backoff := dial.Backoff{Min: s.opts.ReconnectMin, Max: s.opts.ReconnectMax}
	sessions := 0
	for {
		c, w, err := s.connect(ctx)
		if err != nil && ctx.Err() != nil {
			return nil
		}
		if dial.Fatal(err) {
			return fmt.Errorf("slave: %w", err)
		}
		lost := err == nil
		if lost {
			sessions++
			if sessions > 1 {
				s.mu.Lock()
				s.stats.Reconnects++
				s.mu.Unlock()
			}
			s.log.Info("connected", "session", w.Session, "volunteer", w.Volunteer, "dispatch", dispatchName(w), "heartbeat", w.Heartbeat())
			s.adopt(w)
			began := time.Now()
			err = s.serve(ctx, c, w)
			if ctx.Err() != nil {
				return nil
			}
			if dial.Fatal(err) {
				return fmt.Errorf("slave: %w", err)
			}
			if time.Since(began) >= s.opts.ReconnectMax {
				backoff.Reset() // the session was healthy: start the backoff over
			}
		}
		delay := backoff.Next()
		if lost {
			s.log.Warn("connection to the master lost", "err", err, "retry_in", delay)
		} else {
			s.log.Warn("cannot connect to the master", "err", err, "retry_in", delay)
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

func dispatchName(w *protocol.Welcome) string {
	if w.Dispatch == "" {
		return protocol.DispatchSend
	}
	return w.Dispatch
}

// connect opens a session. ctx ending aborts it at once.
func (s *Slave) connect(ctx context.Context) (*wire.Conn, *protocol.Welcome, error) {
	c, w, err := dial.Open(ctx, s.url, s.hello(), dial.Options{Queue: sendQueue, BufferBytes: 64 << 10, MaxFrame: s.opts.MaxFrame, TLS: s.opts.TLS})
	if err != nil {
		return nil, nil, err
	}
	// Only a slave cares how tasks are dispatched, so dial does not check
	// it; like any failure that is not a refusal, it is retried.
	if d := dispatchName(w); d != protocol.DispatchSend && d != protocol.DispatchPoll {
		c.CloseWith(nil, websocket.CloseAbnormalClosure, "")
		c.Wait()
		return nil, nil, fmt.Errorf("welcome announces unknown dispatch pattern %q", d)
	}
	return c, w, nil
}

func (s *Slave) hello() *protocol.Hello {
	h := &protocol.Hello{
		Version:     protocol.Version,
		Role:        protocol.RoleSlave,
		Name:        s.opts.Name,
		Token:       s.token,
		Software:    s.opts.Software,
		Leaderboard: s.opts.Leaderboard,
		Host:        s.host,
		OS:          runtime.GOOS,
		Arch:        runtime.GOARCH,
		Cores:       runtime.NumCPU(),
		MemoryBytes: s.memory,
		Kinds:       s.kinds,
		Concurrency: s.opts.Concurrency,
		Prefetch:    s.opts.Prefetch,
	}
	if s.modules != nil {
		h.Modules = s.modules.list()
		h.TrustKeys = s.modules.trust
	}
	return h
}

// stop ends the workers: queued tasks are dropped, running ones canceled
// and their results discarded; it returns once every handler has.
func (s *Slave) stop(cancelTasks context.CancelFunc) {
	s.mu.Lock()
	s.stopping = true
	s.dropQueueLocked()
	n := len(s.active)
	for j := range s.active {
		j.settled = true
	}
	s.work.Broadcast()
	s.mu.Unlock()
	cancelTasks()
	if n > 0 {
		s.log.Info("waiting for canceled tasks to return", "running", n)
	}
	s.wg.Wait()
	if s.modules != nil {
		if err := s.modules.close(context.Background()); err != nil {
			s.log.Warn("closing the WASM runtime", "err", err)
		}
	}
}
