// Package sandbox runs task code for a slave: a task gets its payload and
// a context and returns a result or an error, and whatever the task does,
// a panic, a crash, an endless loop, it becomes an error, not a crash of
// the slave. It knows nothing of connections or scheduling.
//
// Three runners, from the most to the least trusted code:
//
//   - InProcess calls Go handlers registered in a Registry, on the
//     caller's goroutine. Fastest, and no isolation at all: for code built
//     into the slave.
//   - WASM runs WebAssembly modules (WASI preview 1 commands) on wazero,
//     for code uploaded by anyone: the module gets its payload on stdin and
//     writes its result to stdout, and sees no filesystem, no network and
//     no environment, only clocks, sleep and random bytes; its memory is
//     capped, its deadline closes it, its output is bounded, and each task
//     has a fresh instance. CheckModule validates a module before it is
//     accepted. The same contract holds in the browser. WASMProcesses runs
//     the same in worker processes of the calling binary (it must call
//     ServeWorkerIfAsked first thing in main): there wazero needs no check
//     for the deadline at every loop header, which makes compute several
//     times slower, because a module past its deadline is stopped by
//     killing its worker. It costs a pipe round trip per task.
//   - Exec runs programs an operator allow-listed, for clusters that trust
//     their code: a process per task with rlimits, an empty environment,
//     a private working directory and its process group killed at the end.
//
// # Caveats
//
// In-process handlers share the slave's address space: a handler can still
// crash the process by panicking on a goroutine of its own, by exhausting
// memory or by calling os.Exit, and Run cannot stop a handler that ignores
// its context.
//
// A WASM module runs as machine code compiled by wazero, in the slave's
// process or a worker of it with the same user: the isolation is
// WebAssembly's and wazero's, and a bug in either could be a hole. A worker
// has no address-space limit of its own (Go's runtime reserves too much for
// RLIMIT_AS to be safe), only the linear-memory cap. The memory cap bounds linear memory, not what the host
// allocates on the module's behalf (its stdout up to the bound, 2 KiB of
// stderr). CPU time is bounded only by the deadline, and a module may sleep
// until then. A module declaring a maximum memory above the cap is refused
// at Load, even if it would never use it.
//
// Exec is not isolation: the program runs as the slave's user, with its
// files and its network. RLIMIT_AS counts address space, not memory used,
// so runtimes that reserve much (Java, Go with the race detector) need a
// higher MemoryBytes. A process that leaves the group (setsid) escapes the
// final kill; only a container or a cgroup would stop that. If the slave
// dies, running programs are not killed.
package sandbox

import (
	"context"
	"fmt"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
)

// Handler runs one task: it receives the task's payload and returns its
// result. It must honour ctx, which is canceled when the task times out or
// is abandoned. The payload must not be modified or retained after the
// handler returns; the returned slice may alias it.
type Handler func(ctx context.Context, payload []byte) ([]byte, error)

// Registry maps task kinds to handlers. Register them during setup; a
// Registry is then safe for concurrent use.
type Registry struct {
	mu       sync.RWMutex
	handlers map[string]Handler
}

// NewRegistry returns an empty Registry.
func NewRegistry() *Registry {
	return &Registry{handlers: make(map[string]Handler)}
}

// Register makes h run tasks of the given kind. An empty kind, a nil
// handler or a kind registered twice is a programming error: Register
// panics.
func (r *Registry) Register(kind string, h Handler) {
	if kind == "" {
		panic("sandbox: Register with an empty kind")
	}
	if h == nil {
		panic(fmt.Sprintf("sandbox: Register of kind %q with a nil handler", kind))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.handlers[kind]; dup {
		panic(fmt.Sprintf("sandbox: kind %q registered twice", kind))
	}
	r.handlers[kind] = h
}

// Kinds returns the registered kinds, sorted.
func (r *Registry) Kinds() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	kinds := make([]string, 0, len(r.handlers))
	for k := range r.handlers {
		kinds = append(kinds, k)
	}
	slices.Sort(kinds)
	return kinds
}

// Lookup returns the handler of kind.
func (r *Registry) Lookup(kind string) (Handler, bool) {
	r.mu.RLock()
	h, ok := r.handlers[kind]
	r.mu.RUnlock()
	return h, ok
}

// Runner runs one task of a kind to completion and returns its result.
// Implementations turn every failure of the task, a panic included, into
// an error, and are safe for concurrent use.
type Runner interface {
	Run(ctx context.Context, kind string, payload []byte) ([]byte, error)
}

// InProcess runs the Registry's handlers on the calling goroutine.
type InProcess struct {
	Registry *Registry
}

// Run looks up kind and calls its handler. An unknown kind is the error
// `unknown task kind "x"`; a handler's error is returned as is; a handler
// that panics yields a *PanicError. Run returns only when the handler has
// returned, whatever ctx does: reporting a timeout early is the caller's
// job.
func (p *InProcess) Run(ctx context.Context, kind string, payload []byte) ([]byte, error) {
	h, ok := p.Registry.Lookup(kind)
	if !ok {
		return nil, fmt.Errorf("unknown task kind %q", kind)
	}
	return call(ctx, h, payload)
}

// call runs h, turning a panic into a *PanicError.
func call(ctx context.Context, h Handler, payload []byte) (out []byte, err error) {
	defer func() {
		// Since Go 1.21 panic(nil) recovers a *runtime.PanicNilError, so a
		// nil here means there was no panic.
		if v := recover(); v != nil {
			out, err = nil, newPanicError(v)
		}
	}()
	return h(ctx, payload)
}

// PanicError is the error of a handler that panicked.
type PanicError struct {
	// Value is what the handler passed to panic.
	Value any
	// Frames locates the panic: up to maxFrames "pkg.Func (file.go:line)"
	// entries of the handler's stack, innermost first, runtime frames
	// left out.
	Frames []string

	msg string
}

// Error reads `task panicked: <value>`, then the frames, one per line.
func (e *PanicError) Error() string { return e.msg }

// Unwrap returns the panic value when it is an error.
func (e *PanicError) Unwrap() error {
	err, _ := e.Value.(error)
	return err
}

// maxFrames bounds the stack a PanicError carries: enough to see where,
// short enough to travel in a result.
const maxFrames = 5

// callName is call's symbol: the stack walk stops there, where the
// handler's frames end and the sandbox's begin.
var callName string

func init() { callName = funcName(call) }

func funcName(f any) string {
	if fn := runtime.FuncForPC(reflect.ValueOf(f).Pointer()); fn != nil {
		return fn.Name()
	}
	return ""
}

// newPanicError is called from call's deferred function, so the stack
// still holds the handler's frames below runtime.gopanic.
func newPanicError(v any) *PanicError {
	pcs := make([]uintptr, 64)
	n := runtime.Callers(2, pcs)
	frames := runtime.CallersFrames(pcs[:n])
	e := &PanicError{Value: v}
	panicking := false
	for {
		f, more := frames.Next()
		switch {
		case f.Function == "runtime.gopanic":
			panicking = true
		case !panicking || strings.HasPrefix(f.Function, "runtime."):
		case f.Function == callName:
			more = false
		default:
			if len(e.Frames) < maxFrames {
				e.Frames = append(e.Frames, fmt.Sprintf("%s (%s:%d)", trimFunc(f.Function), trimFile(f.File), f.Line))
			}
		}
		if !more {
			break
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "task panicked: %v", v)
	for _, f := range e.Frames {
		b.WriteString("\n\tat ")
		b.WriteString(f)
	}
	e.msg = b.String()
	return e
}

// trimFunc drops the import path: "github.com/x/y/pkg.F" -> "pkg.F".
func trimFunc(name string) string {
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		return name[i+1:]
	}
	return name
}

// trimFile keeps the file's directory and name, not the builder's path.
func trimFile(path string) string {
	if i := strings.LastIndexByte(path, '/'); i >= 0 {
		if j := strings.LastIndexByte(path[:i], '/'); j >= 0 {
			return path[j+1:]
		}
	}
	return path
}
