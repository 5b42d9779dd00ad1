package sandbox

import (
	"bytes"
	"container/list"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"github.com/tetratelabs/wazero/sys"
)

// DefaultWASMMemory is the memory cap of a WASM instance when
// WASMOptions.MemoryLimit is 0.
const DefaultWASMMemory = 256 << 20

// defaultMaxOutput bounds a result when the caller gives no bound.
const defaultMaxOutput = 16 << 20

const pageSize = 64 << 10

// WASMOptions configures a WASM runner.
type WASMOptions struct {
	// MemoryLimit caps the linear memory of each instance, in bytes,
	// rounded down to 64 KiB pages. 0 means DefaultWASMMemory. A module
	// declaring a minimum or a maximum above the cap is refused at Load.
	MemoryLimit uint64
	// CacheDir holds wazero's compilation cache, so that a module is
	// compiled once per machine, not once per process. "" keeps compiled
	// code in memory only. The directory must be private to this runner's
	// user: its contents are executed.
	CacheDir string
	// MaxLoaded is how many compiled modules stay in memory; the least
	// recently used one is evicted beyond it. 0 means 64.
	MaxLoaded int
	// Logger receives events of note; nil discards them.
	Logger *slog.Logger
	// NoLoopChecks builds the runtime without the checks that let a
	// deadline stop a running module. Loop-heavy code runs several times
	// faster (a C prime sieve 16 times, a Go one 7), but ctx no longer
	// stops a running module, and Close does only at its next call to the
	// host: one in an endless loop holds its goroutine, and its OS thread,
	// until the process exits. Set it only in a process that can be
	// killed, as the workers of WASMProcesses are. false, the default,
	// keeps the checks. wazero keys its CacheDir entries by this setting
	// too, so runners with and without the checks may share a directory.
	NoLoopChecks bool
}

// WASM runs WASI preview 1 command modules on wazero: the payload is the
// module's stdin, its stdout is the result, a zero exit (or _start
// returning) is success. An instance sees no filesystem, no network and no
// environment; its argv is the name given to Load; it may read the clocks,
// sleep and read crypto-random bytes. A WASM is safe for concurrent use.
type WASM struct {
	rt    wazero.Runtime
	cache wazero.CompilationCache // nil when in memory only
	// noLoopChecks is WASMOptions.NoLoopChecks.
	noLoopChecks bool
	log          *slog.Logger
	max          int
	closed       atomic.Bool
	mem          memoryPool
	// stop is canceled by Close: every run's context follows it, so that
	// wazero closes running instances itself, at its own checks. Closing
	// the runtime under a running instance instead races with the
	// instance's code (wazero frees what it is using).
	stop     context.Context
	stopRuns context.CancelFunc
	runs     sync.WaitGroup // acquired, not yet released; Added under mu

	mu      sync.Mutex
	loaded  map[string]*list.Element // of *module; lru's front is the most recently used
	lru     list.List
	loading map[string]*loadCall
}

// module is a compiled module with the part of its configuration that is
// the same for every run.
type module struct {
	hash     string
	compiled wazero.CompiledModule
	config   wazero.ModuleConfig

	// refs counts the runs using compiled, evicted says it left the LRU:
	// the last run of an evicted module closes it, not the eviction, so a
	// run never finds its code closed under it. Both under WASM.mu.
	refs    int
	evicted bool
}

// loadCall lets concurrent Loads of one hash share one compilation.
type loadCall struct {
	done chan struct{}
	err  error
}

var (
	// ErrNotLoaded is the error of a Run of a hash that is not loaded,
	// never was or was evicted since: Load it and run again.
	ErrNotLoaded = errors.New("module not loaded")
	// ErrOutputTooLarge is the error of a run stopped because its stdout
	// exceeded the bound; the error returned wraps it and states the bound.
	ErrOutputTooLarge = errors.New("output too large")

	errClosed = errors.New("WASM runner closed")
)

// ExitError is the error of a module, or of an Exec program, that exited
// with a non-zero code.
type ExitError struct {
	Code uint32
	// Stderr is what the task wrote to stderr, its start and its end when
	// it is longer than 2 KiB.
	Stderr string

	what string // "module" when empty
}

// Error reads `module exited with code 3: <stderr tail>`.
func (e *ExitError) Error() string {
	what := e.what
	if what == "" {
		what = "module"
	}
	return withStderr(fmt.Sprintf("%s exited with code %d", what, e.Code), e.Stderr)
}

// TrapError is the error of a module that trapped: it reached
// unreachable, accessed memory out of bounds, overflowed its stack or
// divided by zero, for example.
type TrapError struct {
	// Err is wazero's error: the trap and a WebAssembly stack trace.
	Err error
	// Stderr is what the module wrote to stderr, shortened as in
	// ExitError.
	Stderr string
}

// Error reads `module trapped: <trap and stack>: <stderr tail>`.
func (e *TrapError) Error() string {
	return withStderr("module trapped: "+e.Err.Error(), e.Stderr)
}

func (e *TrapError) Unwrap() error { return e.Err }

func withStderr(msg, stderr string) string {
	if stderr == "" {
		return msg
	}
	return msg + ": " + stderr
}

// NewWASM starts a wazero runtime with the WASI host. It compiles to
// machine code where wazero supports it and interprets elsewhere.
func NewWASM(ctx context.Context, o WASMOptions) (*WASM, error) {
	limit := o.MemoryLimit
	if limit == 0 {
		limit = DefaultWASMMemory
	}
	pages := limit / pageSize
	if pages == 0 || pages > 1<<16 {
		return nil, fmt.Errorf("WASM memory limit %d: must be between 64 KiB and 4 GiB", o.MemoryLimit)
	}
	max := o.MaxLoaded
	if max == 0 {
		max = 64
	} else if max < 0 {
		return nil, fmt.Errorf("WASM MaxLoaded %d: must not be negative", max)
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}

	// Closing on context done costs a check at function entries and loop
	// headers; without it an endless loop would hold its goroutine, and
	// its OS thread, forever: only a runner in a process that can be
	// killed may do without.
	cfg := wazero.NewRuntimeConfig().
		WithMemoryLimitPages(uint32(pages)).
		WithCloseOnContextDone(!o.NoLoopChecks)
	var cache wazero.CompilationCache
	if o.CacheDir != "" {
		var err error
		if cache, err = wazero.NewCompilationCacheWithDir(o.CacheDir); err != nil {
			return nil, fmt.Errorf("WASM compilation cache: %w", err)
		}
		cfg = cfg.WithCompilationCache(cache)
	}
	rt := wazero.NewRuntimeWithConfig(ctx, cfg)
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, rt); err != nil {
		rt.Close(ctx)
		if cache != nil {
			cache.Close(ctx)
		}
		return nil, fmt.Errorf("WASI host: %w", err)
	}
	stop, stopRuns := context.WithCancel(context.Background())
	w := &WASM{
		rt:           rt,
		stop:         stop,
		stopRuns:     stopRuns,
		cache:        cache,
		noLoopChecks: o.NoLoopChecks,
		log:          log,
		max:          max,
		loaded:       make(map[string]*list.Element),
		loading:      make(map[string]*loadCall),
	}
	w.mem.closed = &w.closed
	return w, nil
}

// Load compiles code once per hash and keeps it runnable under hash; a
// later Load of a loaded hash is free. The caller has verified that hash
// is the hex SHA-256 of code. name is the module's argv[0]. A module that
// is not a WASI command, or whose memory does not fit the cap, is refused.
func (w *WASM) Load(ctx context.Context, hash, name string, code []byte) error {
	if w.closed.Load() {
		return errClosed
	}
	w.mu.Lock()
	if e, ok := w.loaded[hash]; ok {
		w.lru.MoveToFront(e)
		w.mu.Unlock()
		return nil
	}
	if c, ok := w.loading[hash]; ok {
		w.mu.Unlock()
		select {
		case <-c.done:
			return c.err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	c := &loadCall{done: make(chan struct{})}
	w.loading[hash] = c
	w.mu.Unlock()

	// Compiling a Go module takes seconds: not under the lock.
	m, err := w.compile(ctx, hash, name, code)
	if err == nil && w.closed.Load() {
		m.compiled.Close(ctx)
		m, err = nil, errClosed
	}

	w.mu.Lock()
	delete(w.loading, hash)
	var evicted []*module
	if err == nil {
		w.loaded[hash] = w.lru.PushFront(m)
		for w.lru.Len() > w.max {
			old := w.lru.Remove(w.lru.Back()).(*module)
			delete(w.loaded, old.hash)
			old.evicted = true
			if old.refs == 0 {
				evicted = append(evicted, old)
			}
		}
	}
	c.err = err
	close(c.done)
	w.mu.Unlock()

	for _, old := range evicted {
		w.log.Debug("WASM module evicted", "hash", old.hash)
		old.compiled.Close(ctx)
	}
	return err
}

func (w *WASM) compile(ctx context.Context, hash, name string, code []byte) (*module, error) {
	compiled, err := w.rt.CompileModule(ctx, mergeDataSegments(code))
	if err != nil {
		return nil, fmt.Errorf("compiling module %s: %w", hash, err)
	}
	if err := checkCommand(compiled); err != nil {
		compiled.Close(ctx)
		return nil, fmt.Errorf("module %s: %w", hash, err)
	}
	w.log.Debug("WASM module loaded", "hash", hash, "name", name)
	// Built once here, cloned with the streams of each run. The empty name
	// keeps instances anonymous, so that concurrent ones do not collide in
	// the runtime's namespace. No start functions: Run calls _start
	// itself, so that it holds the instance it may have to close.
	config := wazero.NewModuleConfig().
		WithName("").
		WithArgs(name).
		WithStartFunctions().
		WithSysWalltime().
		WithSysNanotime().
		WithSysNanosleep().
		WithRandSource(rand.Reader)
	return &module{hash: hash, compiled: compiled, config: config}, nil
}

// Loaded reports whether hash is loaded, so that Run will find it.
func (w *WASM) Loaded(hash string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	_, ok := w.loaded[hash]
	return ok
}

// Run instantiates the loaded module fresh for one task, with payload on
// its stdin, and runs its _start. It returns the module's stdout, or an
// error: ErrNotLoaded, an *ExitError, a *TrapError, ErrOutputTooLarge
// (wrapped) when stdout exceeds maxOutput bytes (<= 0 means 16 MiB), or an
// error wrapping ctx.Err() when the module was stopped at its deadline or
// canceled.
func (w *WASM) Run(ctx context.Context, hash string, payload []byte, maxOutput int) ([]byte, error) {
	m, err := w.acquire(hash) // errClosed after Close
	if err != nil {
		return nil, err
	}
	defer w.release(ctx, m)

	if maxOutput <= 0 {
		maxOutput = defaultMaxOutput
	}
	// The output bound cancels runCtx, which closes the instance: a
	// module that ignores write errors is stopped all the same.
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(w.stop, cancel)()
	stdout := &limitWriter{max: maxOutput, full: cancel, unwind: w.noLoopChecks}
	stderr := &stderrWriter{}
	config := m.config.
		WithStdin(bytes.NewReader(payload)).
		WithStdout(stdout).
		WithStderr(stderr)
	if !w.noLoopChecks {
		// A sleep ends at the run's deadline or Close: time.Sleep would
		// hold the goroutine to its end, past the deadline that closed the
		// instance, and Close, which waits for the runs, with it. Without
		// loop checks a shortened sleep would be slept again at once, a
		// spin, so that mode keeps the system's.
		config = config.WithNanosleep(func(ns int64) { sleepCtx(runCtx, ns) })
	}

	inst, err := w.rt.InstantiateModule(experimental.WithMemoryAllocator(runCtx, &w.mem), m.compiled, config)
	if err != nil {
		if err = w.runError(ctx, stdout, stderr, err); errors.As(err, new(*TrapError)) {
			// A start section trapped, or an import is missing.
			err = fmt.Errorf("instantiating module: %w", err)
		}
		return nil, err
	}
	defer inst.Close(ctx)
	start := inst.ExportedFunction("_start")
	if start == nil { // Load checked; this would be a wazero change
		return nil, errors.New("module has no _start")
	}
	_, err = start.Call(runCtx)
	if err = w.runError(ctx, stdout, stderr, err); err != nil {
		return nil, err
	}
	return stdout.buf, nil
}

// sleepCtx sleeps ns nanoseconds or until ctx is done.
func sleepCtx(ctx context.Context, ns int64) {
	t := time.NewTimer(time.Duration(ns))
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// runError turns the outcome of a run into the task's error, nil for
// success. The checks of the runner and of ctx come first: they explain
// why wazero closed the instance.
func (w *WASM) runError(ctx context.Context, stdout *limitWriter, stderr *stderrWriter, err error) error {
	switch {
	case stdout.exceeded:
		return fmt.Errorf("module stopped: stdout exceeded %d bytes: %w", stdout.max, ErrOutputTooLarge)
	case w.closed.Load():
		// Closing the runtime closes instances with exit code 0.
		return fmt.Errorf("module stopped: %w", errClosed)
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return ctxError(ctx.Err())
	}
	var exit *sys.ExitError
	if errors.As(err, &exit) {
		if exit.ExitCode() == 0 {
			return nil
		}
		return &ExitError{Code: exit.ExitCode(), Stderr: stderr.String()}
	}
	return &TrapError{Err: err, Stderr: stderr.String()}
}

func (w *WASM) acquire(hash string) (*module, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed.Load() { // under mu, so that Close's Wait sees every Add
		return nil, errClosed
	}
	e, ok := w.loaded[hash]
	if !ok {
		return nil, fmt.Errorf("module %s: %w", hash, ErrNotLoaded)
	}
	w.lru.MoveToFront(e)
	m := e.Value.(*module)
	m.refs++
	w.runs.Add(1)
	return m, nil
}

func (w *WASM) release(ctx context.Context, m *module) {
	w.mu.Lock()
	m.refs--
	last := m.evicted && m.refs == 0
	w.mu.Unlock()
	if last {
		m.compiled.Close(ctx)
	}
	w.runs.Done()
}

// Close stops running instances, whose Runs return an error, waits for
// them, and releases the runtime. The on-disk cache stays for the next
// runner. Without loop checks a running module cannot be stopped from
// outside, so Close closes the runtime under it (see NoLoopChecks) and
// does not wait. Close is idempotent.
func (w *WASM) Close(ctx context.Context) error {
	w.mu.Lock()
	already := w.closed.Swap(true)
	w.mu.Unlock()
	if already {
		return nil
	}
	w.stopRuns()
	if !w.noLoopChecks {
		w.runs.Wait()
	}
	err := w.rt.Close(ctx)
	if w.cache != nil {
		err = errors.Join(err, w.cache.Close(ctx))
	}
	return err
}

// CheckModule validates bytes an uploader sends, without running them:
// they decode and compile, they are a WASI preview 1 command (they export
// _start and memory) and they import only functions of
// wasi_snapshot_preview1 that exist, with their signatures. It compiles
// with the interpreter, which is quick even for a large module. The memory
// a module declares is checked by each runner, against its own cap, at
// Load.
func CheckModule(ctx context.Context, code []byte) error {
	if !bytes.HasPrefix(code, []byte("\x00asm")) {
		return errors.New("not a WebAssembly module: no \\0asm header")
	}
	// wazero's API shows a compiled module's imports of functions and
	// memories only; tables and globals are read from the bytes.
	if err := checkOtherImports(code); err != nil {
		return err
	}
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
	defer rt.Close(ctx)
	compiled, err := rt.CompileModule(ctx, code)
	if err != nil {
		return fmt.Errorf("not a WebAssembly module: %w", err)
	}
	if err := checkCommand(compiled); err != nil {
		return err
	}
	host, err := wasi_snapshot_preview1.NewBuilder(rt).Compile(ctx)
	if err != nil {
		return fmt.Errorf("WASI host: %w", err)
	}
	provided := host.ExportedFunctions()
	for _, f := range compiled.ImportedFunctions() {
		_, name, _ := f.Import()
		p, ok := provided[name]
		if !ok {
			return fmt.Errorf("imports %s.%s: no such WASI function", wasi_snapshot_preview1.ModuleName, name)
		}
		if !slices.Equal(p.ParamTypes(), f.ParamTypes()) || !slices.Equal(p.ResultTypes(), f.ResultTypes()) {
			return fmt.Errorf("imports %s.%s with the wrong signature", wasi_snapshot_preview1.ModuleName, name)
		}
	}
	return nil
}

// checkCommand checks what wazero lets one see of a compiled module: its
// exports, and its imports of functions and memories.
func checkCommand(c wazero.CompiledModule) error {
	start, ok := c.ExportedFunctions()["_start"]
	if !ok {
		return errors.New("not a WASI command: no _start export")
	}
	if len(start.ParamTypes()) != 0 || len(start.ResultTypes()) != 0 {
		return errors.New("not a WASI command: _start must take and return nothing")
	}
	if _, ok := c.ExportedMemories()["memory"]; !ok {
		return errors.New("not a WASI command: no memory export")
	}
	for _, f := range c.ImportedFunctions() {
		if mod, name, _ := f.Import(); mod != wasi_snapshot_preview1.ModuleName {
			return fmt.Errorf("imports %s.%s: only %s is provided", mod, name, wasi_snapshot_preview1.ModuleName)
		}
	}
	for _, m := range c.ImportedMemories() {
		mod, name, _ := m.Import()
		return fmt.Errorf("imports memory %s.%s: a WASI command exports its memory, it imports none", mod, name)
	}
	return nil
}

// checkOtherImports refuses imports of tables, globals and tags, which
// WASI does not provide. It reads only the import section; a malformed
// module is left to the compiler to describe.
func checkOtherImports(code []byte) error {
	if len(code) < 8 {
		return nil
	}
	r := wasmReader{b: code[8:]} // after the magic number and the version
	for len(r.b) > 0 {
		id := r.byte()
		size := r.u32()
		if r.bad || int(size) > len(r.b) {
			return nil
		}
		sec := wasmReader{b: r.b[:size]}
		r.b = r.b[size:]
		if id != 2 { // the import section
			continue
		}
		for n := sec.u32(); n > 0 && !sec.bad; n-- {
			mod, name, kind := sec.name(), sec.name(), sec.byte()
			switch kind {
			case 0: // function: a type index
				sec.u32()
			case 1: // table: a reference type and limits
				sec.byte()
				sec.limits()
			case 2: // memory: limits
				sec.limits()
			case 3: // global: a value type and mutability
				sec.byte()
				sec.byte()
			case 4: // tag: an attribute and a type index
				sec.byte()
				sec.u32()
			}
			if sec.bad {
				return nil
			}
			if kind == 1 || kind == 3 || kind == 4 {
				what := [...]string{1: "table", 3: "global", 4: "tag"}[kind]
				return fmt.Errorf("imports %s %s.%s: only functions of %s are provided", what, mod, name, wasi_snapshot_preview1.ModuleName)
			}
		}
		return nil
	}
	return nil
}

// wasmReader reads the WebAssembly binary format; past an error it reads
// zeros and sets bad.
type wasmReader struct {
	b   []byte
	bad bool
}

func (r *wasmReader) byte() byte {
	if len(r.b) == 0 {
		r.bad = true
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

// u32 reads an unsigned LEB128 of at most 5 bytes.
func (r *wasmReader) u32() uint32 {
	var v uint32
	for shift := 0; shift < 35; shift += 7 {
		c := r.byte()
		v |= uint32(c&0x7f) << shift
		if c&0x80 == 0 {
			return v
		}
	}
	r.bad = true
	return 0
}

func (r *wasmReader) name() string {
	n := r.u32()
	if int(n) > len(r.b) {
		r.bad = true
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

func (r *wasmReader) limits() {
	flags := r.byte()
	r.u32() // the minimum
	if flags&1 != 0 {
		r.u32() // the maximum
	}
}

// limitWriter keeps stdout up to max bytes; the write that would exceed
// it fails and calls full, which stops the module.
type limitWriter struct {
	max  int
	full func()
	// unwind stops the module from the write itself, for a runtime
	// without loop checks, which full cannot stop: a module that ignores
	// the write's error would loop on writing forever.
	unwind   bool
	buf      []byte
	exceeded bool
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if l.exceeded || len(l.buf)+len(p) > l.max {
		l.exceeded = true
		l.full()
		if l.unwind {
			// What proc_exit does: wazero unwinds the module's stack
			// and Call returns the exit error, which Run ignores for
			// exceeded.
			panic(sys.NewExitError(1))
		}
		return 0, ErrOutputTooLarge
	}
	l.buf = append(l.buf, p...)
	return len(p), nil
}

// memoryPool recycles the linear memories of instances. A Go module's
// runtime grows its memory several times as it starts: allocating,
// copying and collecting those buffers cost more than the module's own
// code. A memory is zeroed when its instance is closed, before another
// instance can have it, so that no task sees another's data.
type memoryPool struct {
	pool   sync.Pool // of *linearMemory
	closed *atomic.Bool
}

func (p *memoryPool) Allocate(capacity, max uint64) experimental.LinearMemory {
	m, _ := p.pool.Get().(*linearMemory)
	if m == nil {
		m = &linearMemory{pool: p}
	}
	m.max = max
	if uint64(cap(m.buf)) < capacity {
		m.buf = make([]byte, 0, capacity)
	}
	return m
}

type linearMemory struct {
	buf  []byte
	max  uint64
	pool *memoryPool
}

// Reallocate grows the memory; the capacity it adds, doubling, serves the
// next grows and the next instances.
func (m *linearMemory) Reallocate(size uint64) []byte {
	if size > m.max {
		return nil
	}
	if size > uint64(cap(m.buf)) {
		grown := make([]byte, size, min(max(size, 2*uint64(cap(m.buf))), m.max))
		copy(grown, m.buf)
		m.buf = grown
	}
	m.buf = m.buf[:size]
	return m.buf
}

// Free is called when the instance is closed: when its code has returned,
// except when the runtime is closed under a running instance, whose memory
// is then left to the garbage collector.
func (m *linearMemory) Free() {
	if m.pool.closed.Load() {
		return
	}
	clear(m.buf)
	m.buf = m.buf[:0]
	m.pool.pool.Put(m)
}

// stderrWriter keeps the start and the end of what is written to it, in
// bounded memory: the reason of a failure is usually at the end, but a Go
// module's fatal error is at the start, before its goroutines' stacks.
type stderrWriter struct {
	head  []byte // the first stderrHead bytes
	tail  []byte // the last bytes after head, up to 2*stderrTail
	total int
}

// stderrHead and stderrTail bound what a failed task's error keeps of its
// stderr.
const (
	stderrHead = 512
	stderrTail = 1536
)

func (w *stderrWriter) Write(p []byte) (int, error) {
	n := len(p)
	w.total += n
	if room := stderrHead - len(w.head); room > 0 {
		k := min(room, len(p))
		w.head = append(w.head, p[:k]...)
		p = p[k:]
	}
	if len(p) > stderrTail {
		p = p[len(p)-stderrTail:]
	}
	if len(w.tail)+len(p) > 2*stderrTail {
		keep := stderrTail - len(p)
		w.tail = append(w.tail[:0], w.tail[len(w.tail)-keep:]...)
	}
	w.tail = append(w.tail, p...)
	return n, nil
}

// String is all of stderr when it is short; otherwise its start up to a
// line's end and its end from a line's start, around a line "…". It is
// valid UTF-8, without a final newline.
func (w *stderrWriter) String() string {
	var b []byte
	if w.total <= stderrHead+stderrTail {
		b = slices.Concat(w.head, w.tail)
	} else {
		head, tail := w.head, w.tail
		if len(tail) > stderrTail {
			tail = tail[len(tail)-stderrTail:]
		}
		if i := bytes.LastIndexByte(head, '\n'); i > 0 {
			head = head[:i]
		}
		if i := bytes.IndexByte(tail, '\n'); i >= 0 && i < len(tail)-1 {
			tail = tail[i+1:]
		}
		b = slices.Concat(head, []byte("\n…\n"), tail)
	}
	return strings.TrimRight(strings.ToValidUTF8(string(b), "\uFFFD"), "\n")
}
