package sandbox

import (
	"bufio"
	"bytes"
	"container/list"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
)

// WASMProcessOptions configures a WASMProcesses.
type WASMProcessOptions struct {
	// WASMOptions are those of the runner in every worker, NoLoopChecks
	// aside, which workers always set. CacheDir matters more than for a
	// WASM: a worker that replaces a killed one compiles each module it
	// runs again, in seconds for a Go module, unless it finds the code in
	// CacheDir. MaxLoaded also bounds the modules whose code the parent
	// keeps. Logger receives the parent's events and the workers' stderr.
	WASMOptions
	// Workers is how many worker processes run at most, each running one
	// task at a time. 0 means runtime.NumCPU().
	Workers int
	// Command returns the command that starts a worker: a binary that
	// calls ServeWorkerIfAsked with ANTHILL_SANDBOX_WORKER set. Its stdin,
	// stdout and stderr are set by the pool, and its SysProcAttr when nil.
	// nil means this process's own binary (os.Executable) with only
	// ANTHILL_SANDBOX_WORKER=1 in its environment, in directory /.
	Command func() *exec.Cmd
}

// WASMProcesses runs modules like a WASM, with the same methods and
// errors, but in child processes of the calling binary, each a WASM runner
// without loop checks (WASMOptions.NoLoopChecks): modules run at full
// speed, and one that overruns its deadline is stopped by killing its
// process. A fresh worker replaces it when next needed.
//
// Workers start on demand, up to Workers, and are reused; a Run waits for
// a free one. The parent keeps the code of each loaded module and sends it
// to a worker the first time that worker runs it. On Linux a worker is
// killed when the thread that started it exits, so that workers do not
// outlive their parent; Go ends a thread only when a goroutine locked to it
// exits without unlocking, which the pool never does. A WASMProcesses is
// safe for concurrent use.
//
// Caveats: a worker's memory is bounded only by its runner's cap on linear
// memory and the runtime's overhead, with no RLIMIT_AS, which would have
// to allow for the reservations of Go's runtime (and of the race
// detector). A task is not retried on another worker when its own dies:
// it may have run. The default Command re-executes os.Executable, which
// after an upgrade in place is the new binary.
type WASMProcesses struct {
	opts    WASMOptions
	log     *slog.Logger
	command func() *exec.Cmd
	max     int
	slots   chan struct{} // a token per worker in use or starting
	closing chan struct{} // closed by Close

	mu      sync.Mutex
	closed  bool
	idle    []*worker                // the most recently used last
	live    map[*worker]bool         // every worker started and not yet reaped
	modules map[string]*list.Element // of *procModule; lru's front is the most recently used
	lru     list.List
	loading map[string]*loadCall
	// busy counts the calls holding a slot, for Close to wait for. Added
	// to under mu while not closed, so that no Add races Close's Wait.
	busy sync.WaitGroup
}

// procModule is a module the pool accepted: its code waits in the parent
// for the workers that will run it.
type procModule struct {
	hash, name string
	code       []byte
}

// worker is one worker process. Only the call holding it, which took it
// from idle or started it, uses its pipes and held.
type worker struct {
	cmd    *exec.Cmd
	pid    int
	in     *os.File // the worker's stdin
	out    *os.File // its stdout
	r      *bufio.Reader
	stderr *stderrLog
	// held is the hashes the worker has loaded, as far as the parent
	// knows: its runner may have evicted some since, and says so.
	held map[string]bool

	reaped sync.Once
}

// errWorkerDied is the error, wrapped, of a task whose worker died under
// it, for a reason other than its deadline or Close.
var errWorkerDied = errors.New("sandbox worker died")

// replyRoom is what a reply may hold beyond a run's output: messages,
// stack traces, stderr.
const replyRoom = 1 << 20

// NewWASMProcesses checks o and starts a first worker, so that a binary
// that does not serve as a worker is an error now rather than at the
// first task.
func NewWASMProcesses(ctx context.Context, o WASMProcessOptions) (*WASMProcesses, error) {
	limit := o.MemoryLimit
	if limit == 0 {
		limit = DefaultWASMMemory
	}
	if pages := limit / pageSize; pages == 0 || pages > 1<<16 {
		return nil, fmt.Errorf("WASM memory limit %d: must be between 64 KiB and 4 GiB", o.MemoryLimit)
	}
	max := o.MaxLoaded
	if max == 0 {
		max = 64
	} else if max < 0 {
		return nil, fmt.Errorf("WASM MaxLoaded %d: must not be negative", max)
	}
	workers := o.Workers
	if workers == 0 {
		workers = runtime.NumCPU()
	} else if workers < 0 {
		return nil, fmt.Errorf("WASM Workers %d: must not be negative", workers)
	}
	if o.CacheDir != "" {
		// A worker may run in another directory.
		dir, err := filepath.Abs(o.CacheDir)
		if err != nil {
			return nil, fmt.Errorf("WASM compilation cache: %w", err)
		}
		o.CacheDir = dir
	}
	command := o.Command
	if command == nil {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("sandbox worker binary: %w", err)
		}
		command = func() *exec.Cmd {
			cmd := exec.Command(exe)
			cmd.Env = []string{workerEnv + "=1"}
			cmd.Dir = "/"
			return cmd
		}
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &WASMProcesses{
		opts:    o.WASMOptions,
		log:     log,
		command: command,
		max:     max,
		slots:   make(chan struct{}, workers),
		closing: make(chan struct{}),
		live:    make(map[*worker]bool),
		modules: make(map[string]*list.Element),
		loading: make(map[string]*loadCall),
	}
	w, err := p.acquire(ctx, "")
	if err != nil {
		p.Close(ctx)
		return nil, err
	}
	p.release(w, false)
	return p, nil
}

// Load keeps code runnable under hash, like WASM.Load: a later Load of a
// loaded hash is free, and a module that a WASM would refuse is refused.
// It has a worker load the module, which compiles it (into CacheDir, for
// the other workers), and keeps the code for the other workers.
func (p *WASMProcesses) Load(ctx context.Context, hash, name string, code []byte) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return errClosed
	}
	if e, ok := p.modules[hash]; ok {
		p.lru.MoveToFront(e)
		p.mu.Unlock()
		return nil
	}
	if c, ok := p.loading[hash]; ok {
		p.mu.Unlock()
		select {
		case <-c.done:
			return c.err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	c := &loadCall{done: make(chan struct{})}
	p.loading[hash] = c
	p.mu.Unlock()

	// The caller may reuse its buffer; the workers need the code later.
	m := &procModule{hash: hash, name: name, code: bytes.Clone(code)}
	err := p.check(ctx, m)

	p.mu.Lock()
	delete(p.loading, hash)
	if err == nil {
		p.modules[hash] = p.lru.PushFront(m)
		for p.lru.Len() > p.max {
			old := p.lru.Remove(p.lru.Back()).(*procModule)
			delete(p.modules, old.hash)
			p.log.Debug("WASM module evicted", "hash", old.hash)
		}
	}
	c.err = err
	close(c.done)
	p.mu.Unlock()
	return err
}

// check has a worker load m.
func (p *WASMProcesses) check(ctx context.Context, m *procModule) error {
	w, err := p.acquire(ctx, "")
	if err != nil {
		return err
	}
	broken, err := p.load(ctx, w, m)
	p.release(w, broken)
	return err
}

// Loaded reports whether hash is loaded, so that Run will find it.
func (p *WASMProcesses) Loaded(hash string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, ok := p.modules[hash]
	return ok
}

// Run runs the loaded module for one task in a worker, as WASM.Run does
// in process, with the same results and errors: ErrNotLoaded, an
// *ExitError, a *TrapError, ErrOutputTooLarge (wrapped), or an error
// wrapping ctx.Err() when the module was stopped at its deadline or
// canceled, or its deadline came before a worker was free. A module
// stopped by ctx is stopped by killing its worker; Run returns once the
// process is gone. A worker that dies otherwise fails its task with an
// error saying "sandbox worker died".
func (p *WASMProcesses) Run(ctx context.Context, hash string, payload []byte, maxOutput int) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, ctxError(err)
	}
	p.mu.Lock()
	e, ok := p.modules[hash]
	closed := p.closed
	var m *procModule
	if ok {
		p.lru.MoveToFront(e)
		m = e.Value.(*procModule)
	}
	p.mu.Unlock()
	switch {
	case closed:
		return nil, errClosed
	case !ok:
		return nil, fmt.Errorf("module %s: %w", hash, ErrNotLoaded)
	}

	w, err := p.acquire(ctx, hash)
	if err != nil {
		return nil, err
	}
	out, broken, err := p.run(ctx, w, m, payload, maxOutput)
	p.release(w, broken)
	return out, err
}

// run runs m on w. broken says that w is gone, or must be.
func (p *WASMProcesses) run(ctx context.Context, w *worker, m *procModule, payload []byte, maxOutput int) (out []byte, broken bool, err error) {
	if maxOutput <= 0 {
		maxOutput = defaultMaxOutput
	}
	// The second try follows a notLoaded reply: the worker evicted m.
	for try := 0; try < 2; try++ {
		if !w.held[m.hash] {
			if broken, err := p.load(ctx, w, m); err != nil {
				return nil, broken, err
			}
		}
		req := newFrame(opRun, len(m.hash)+len(payload)+20).
			string(m.hash).uint(uint64(maxOutput)).bytes(payload)
		f, err := p.call(ctx, w, req, uint64(maxOutput)+replyRoom)
		if err != nil {
			return nil, true, p.lost(ctx, w, err)
		}
		out, err, bad := runResult(f)
		if bad != nil {
			return nil, true, p.lost(ctx, w, bad)
		}
		if !errors.Is(err, ErrNotLoaded) {
			return out, false, err
		}
		delete(w.held, m.hash)
	}
	return nil, false, fmt.Errorf("module %s: %w by its worker", m.hash, ErrNotLoaded)
}

// load has w load m: the error is the module's, unless broken says that
// w is gone.
func (p *WASMProcesses) load(ctx context.Context, w *worker, m *procModule) (broken bool, err error) {
	req := newFrame(opLoad, len(m.hash)+len(m.name)+len(m.code)+30).
		string(m.hash).string(m.name).bytes(m.code)
	f, err := p.call(ctx, w, req, replyRoom)
	if err != nil {
		return true, p.lost(ctx, w, err)
	}
	if err, bad := failure(f); bad != nil {
		return true, p.lost(ctx, w, bad)
	} else if err != nil {
		return false, err
	}
	w.held[m.hash] = true
	return false, nil
}

// call sends req to w and reads the reply, of at most max bytes. When ctx
// is done first, it kills w, whose pipes then fail, and returns ctx's
// error: a reply that made it in time is not worth the wait for another
// one to be sure of.
func (p *WASMProcesses) call(ctx context.Context, w *worker, req *frame, max uint64) (*fields, error) {
	stop := context.AfterFunc(ctx, w.kill)
	err := req.send(w.in)
	var f *fields
	if err == nil {
		f, err = readFrame(w.r, max)
	}
	if !stop() {
		return nil, ctx.Err()
	}
	return f, err
}

// lost reaps w, whose pipes failed, or which was killed, or whose reply
// made no sense, and returns the error of the task it had.
func (p *WASMProcesses) lost(ctx context.Context, w *worker, err error) error {
	w.reap()
	if ctx.Err() != nil {
		return ctxError(ctx.Err())
	}
	p.mu.Lock()
	closed := p.closed
	p.mu.Unlock()
	if closed {
		return fmt.Errorf("module stopped: %w", errClosed)
	}
	state := "no exit status"
	if ps := w.cmd.ProcessState; ps != nil {
		state = ps.String()
	}
	return fmt.Errorf("%w: %s (%v)", errWorkerDied, state, noEOF(err))
}

// acquire takes a free slot and a worker for it: an idle one, holding hash
// if one does, or a new one.
func (p *WASMProcesses) acquire(ctx context.Context, hash string) (*worker, error) {
	select {
	case p.slots <- struct{}{}:
	case <-p.closing:
		return nil, errClosed
	case <-ctx.Done():
		return nil, ctxError(ctx.Err())
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		<-p.slots
		return nil, errClosed
	}
	p.busy.Add(1)
	if n := len(p.idle); n > 0 {
		i := n - 1
		for j := n - 1; j >= 0; j-- {
			if p.idle[j].held[hash] {
				i = j
				break
			}
		}
		w := p.idle[i]
		p.idle = append(p.idle[:i], p.idle[i+1:]...)
		p.mu.Unlock()
		return w, nil
	}
	p.mu.Unlock()
	w, err := p.start(ctx)
	if err != nil {
		p.busy.Done()
		<-p.slots
		return nil, err
	}
	return w, nil
}

// release returns w's slot, and w to idle unless it is broken, which
// lost reaped.
func (p *WASMProcesses) release(w *worker, broken bool) {
	p.mu.Lock()
	closed := p.closed
	if broken || closed {
		delete(p.live, w)
	} else {
		p.idle = append(p.idle, w)
	}
	p.mu.Unlock()
	if closed {
		w.reap() // Close killed it
	}
	p.busy.Done()
	<-p.slots
}

// start starts a worker and has it create its runner.
func (p *WASMProcesses) start(ctx context.Context) (*worker, error) {
	cmd := p.command()
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("starting a sandbox worker: %w", err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, fmt.Errorf("starting a sandbox worker: %w", err)
	}
	// The pipes are ours, not os/exec's, so that Wait does not close
	// stdout under a reader; os/exec copies stderr, and Wait waits for
	// that copy, which ends when the process is gone.
	stderr := &stderrLog{log: p.log}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, stderr
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = workerSysProcAttr()
	}
	err = cmd.Start()
	inR.Close()
	outW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		return nil, fmt.Errorf("starting a sandbox worker: %w", err)
	}
	w := &worker{
		cmd:    cmd,
		pid:    cmd.Process.Pid,
		in:     inW,
		out:    outR,
		r:      bufio.NewReaderSize(outR, 64<<10),
		stderr: stderr,
		held:   make(map[string]bool),
	}
	stderr.setPid(w.pid)

	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		w.reap()
		return nil, errClosed
	}
	p.live[w] = true
	p.mu.Unlock()

	req := newFrame(opInit, len(p.opts.CacheDir)+30).
		uint(p.opts.MemoryLimit).uint(uint64(p.opts.MaxLoaded)).string(p.opts.CacheDir)
	f, err := p.call(ctx, w, req, replyRoom)
	var failed error
	if err == nil {
		failed, err = failure(f)
	}
	if err != nil || failed != nil {
		if failed != nil {
			w.reap()
			err = fmt.Errorf("sandbox worker: %w", failed)
		} else if err = p.lost(ctx, w, err); errors.Is(err, errWorkerDied) {
			// The binary may not serve as a worker: what it said helps.
			if tail := stderr.String(); tail != "" {
				err = fmt.Errorf("%w; its stderr: %s", err, tail)
			}
		}
		p.mu.Lock()
		delete(p.live, w)
		p.mu.Unlock()
		return nil, err
	}
	p.log.Debug("sandbox worker started", "pid", w.pid)
	return w, nil
}

// kill kills the worker's process, if it is still there.
func (w *worker) kill() {
	w.cmd.Process.Kill()
}

// reap kills the worker's process and waits for it, once; a second call
// waits for the first.
func (w *worker) reap() {
	w.reaped.Do(func() {
		w.kill()
		w.cmd.Wait()
		w.in.Close()
		w.out.Close()
		w.stderr.flush()
	})
}

// Close kills every worker, those running a task too, whose Runs return
// an error, and waits for them to be gone and for the calls using them to
// return, or for ctx to be done. The on-disk cache stays. Close is
// idempotent.
func (p *WASMProcesses) Close(ctx context.Context) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	close(p.closing)
	var live []*worker
	for w := range p.live {
		live = append(live, w)
	}
	clear(p.live)
	p.idle = nil
	p.mu.Unlock()

	for _, w := range live {
		w.kill()
	}
	for _, w := range live {
		w.reap()
	}
	done := make(chan struct{})
	go func() {
		p.busy.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("closing the WASM workers: %w", ctx.Err())
	}
}

// pids returns the process ids of the live workers, for tests.
func (p *WASMProcesses) pids() []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	var pids []int
	for w := range p.live {
		pids = append(pids, w.pid)
	}
	return pids
}

// ctxError is the error of a task stopped by its context.
func ctxError(err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("module stopped at its deadline: %w", err)
	}
	return fmt.Errorf("module stopped: %w", err)
}

// stderrLog logs what a worker writes to its stderr, line by line, up to
// a bound: a worker writes there only when something went wrong, and a
// worker gone mad must not flood the log.
type stderrLog struct {
	log *slog.Logger

	mu    sync.Mutex
	pid   int
	line  []byte
	lines int
	tail  stderrWriter // what start adds to its error
}

// stderrLines bounds the lines logged for one worker; stderrLine bounds a
// line.
const (
	stderrLines = 100
	stderrLine  = 1024
)

func (s *stderrLog) setPid(pid int) {
	s.mu.Lock()
	s.pid = pid
	s.mu.Unlock()
}

func (s *stderrLog) Write(p []byte) (int, error) {
	n := len(p)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tail.Write(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		chunk := p
		if i >= 0 {
			chunk = p[:i]
		}
		if room := stderrLine - len(s.line); room > 0 {
			s.line = append(s.line, chunk[:min(room, len(chunk))]...)
		}
		if i < 0 {
			break
		}
		s.emit()
		p = p[i+1:]
	}
	return n, nil
}

// emit logs the line so far; under mu.
func (s *stderrLog) emit() {
	switch {
	case s.lines < stderrLines:
		s.log.Warn("sandbox worker stderr", "pid", s.pid, "line", string(bytes.ToValidUTF8(s.line, []byte("\uFFFD"))))
	case s.lines == stderrLines:
		s.log.Warn("sandbox worker stderr: more lines dropped", "pid", s.pid)
	}
	s.lines++
	s.line = s.line[:0]
}

func (s *stderrLog) flush() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.line) > 0 {
		s.emit()
	}
}

// String is the start and the end of what the worker wrote, as in a task's
// error.
func (s *stderrLog) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tail.String()
}
