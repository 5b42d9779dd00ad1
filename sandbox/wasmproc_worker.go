package sandbox

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync/atomic"
)

// workerEnv is the environment variable that makes a binary calling
// ServeWorkerIfAsked a worker of WASMProcesses.
const workerEnv = "ANTHILL_SANDBOX_WORKER"

// maxRequest bounds a request frame a worker reads. The parent is
// trusted: the bound only turns a corrupt length into an error rather than
// an allocation that fails.
const maxRequest = 1 << 32

// ServeWorkerIfAsked makes the binary a worker of WASMProcesses when the
// environment variable ANTHILL_SANDBOX_WORKER is set: it serves the worker
// protocol on stdin and stdout until stdin is closed, then exits the
// process. Otherwise it returns at once. A binary whose WASMProcesses use
// the default Command must call it first thing in main (in TestMain for a
// test binary), before it parses flags or does any work of its own.
func ServeWorkerIfAsked() {
	if os.Getenv(workerEnv) == "" {
		servesWorkers.Store(true)
		return
	}
	// Replies go to the stdout the parent reads; anything else that would
	// write to os.Stdout goes to stderr instead, where it cannot corrupt
	// a frame.
	out := os.Stdout
	os.Stdout = os.Stderr
	os.Exit(serveWorker(os.Stdin, out, os.Stderr))
}

// servesWorkers is set by ServeWorkerIfAsked: this binary can be its own
// worker.
var servesWorkers atomic.Bool

// ServesWorkers reports whether this process called ServeWorkerIfAsked,
// so that NewWASMProcesses may re-execute its binary as a worker. Without
// it, re-executing would run the program's own main again: a caller must
// then use an in-process WASM.
func ServesWorkers() bool { return servesWorkers.Load() }

// serveWorker answers the requests read from in on out, one at a time,
// and returns the exit code of the worker: 0 when in ends between
// requests, 1 on any other failure, which it logs to logTo.
func serveWorker(in io.Reader, out io.Writer, logTo io.Writer) int {
	log := slog.New(slog.NewTextHandler(logTo, nil)).With("pid", os.Getpid())
	ctx := context.Background()
	r := bufio.NewReaderSize(in, 64<<10)
	var w *WASM
	defer func() {
		if w != nil {
			w.Close(ctx)
		}
	}()
	for {
		f, err := readFrame(r, maxRequest)
		if errors.Is(err, io.EOF) {
			return 0
		}
		if err != nil {
			log.Error("sandbox worker: reading a request", "err", err)
			return 1
		}
		reply, err := serveRequest(ctx, &w, f, log)
		if err != nil {
			log.Error("sandbox worker: bad request", "err", err)
			return 1
		}
		if err := reply.send(out); err != nil {
			log.Error("sandbox worker: writing a reply", "err", err)
			return 1
		}
	}
}

// serveRequest does what f asks of the worker's runner *w, which init
// creates. Its error is a malformed request, not a failure of the request.
func serveRequest(ctx context.Context, w **WASM, f *fields, log *slog.Logger) (*frame, error) {
	if (f.op == opInit) != (*w == nil) {
		return nil, fmt.Errorf("op %d out of turn: init comes first, once", f.op)
	}
	switch f.op {
	case opInit:
		limit, maxLoaded, dir := f.uint(), f.uint(), f.string()
		if err := f.end(); err != nil {
			return nil, err
		}
		// The runner has no loop checks: the parent stops a module that
		// overruns by killing this process.
		rt, err := NewWASM(ctx, WASMOptions{
			MemoryLimit:  limit,
			MaxLoaded:    int(maxLoaded),
			CacheDir:     dir,
			Logger:       log,
			NoLoopChecks: true,
		})
		if err != nil {
			return failedReply(err), nil
		}
		*w = rt
		return newFrame(repOK, 0), nil
	case opLoad:
		hash, name, code := f.string(), f.string(), f.bytes()
		if err := f.end(); err != nil {
			return nil, err
		}
		if err := (*w).Load(ctx, hash, name, code); err != nil {
			return failedReply(err), nil
		}
		return newFrame(repOK, 0), nil
	case opRun:
		hash, maxOutput, payload := f.string(), f.uint(), f.bytes()
		if err := f.end(); err != nil {
			return nil, err
		}
		return replyOf((*w).Run(ctx, hash, payload, int(maxOutput))), nil
	}
	return nil, fmt.Errorf("unknown op %d", f.op)
}
