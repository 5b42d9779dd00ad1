//go:build unix

package sandbox

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The workers of these pools are this test binary: TestMain calls
// ServeWorkerIfAsked first thing.

// newProcs starts a pool closed at the end of the test, sharing the
// fixtures' compilation cache unless o says otherwise.
func newProcs(t testing.TB, o WASMProcessOptions) *WASMProcesses {
	t.Helper()
	fixtures.once.Do(buildFixtures)
	if o.CacheDir == "" {
		o.CacheDir = fixtures.cache
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	p, err := NewWASMProcesses(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(context.Background()); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return p
}

func runProc(p *WASMProcesses, hash, payload string) (string, error) {
	out, err := p.Run(context.Background(), hash, []byte(payload), 1<<20)
	return string(out), err
}

func mustEchoProc(t *testing.T, p *WASMProcesses, hash string) {
	t.Helper()
	if out, err := runProc(p, hash, "echo still here"); err != nil || out != "still here" {
		t.Fatalf("the pool no longer works: %q, %v", out, err)
	}
}

// onlyPid is the pid of the pool's one worker.
func onlyPid(t *testing.T, p *WASMProcesses) int {
	t.Helper()
	pids := p.pids()
	if len(pids) != 1 {
		t.Fatalf("want one worker, have %v", pids)
	}
	return pids[0]
}

// gone reports whether no process has the id pid: its worker was reaped.
func gone(pid int) bool {
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

func TestWASMProcessesRunCommands(t *testing.T) {
	p := newProcs(t, WASMProcessOptions{Workers: 1})
	noop, echo, hostile := load(t, p, "noop"), load(t, p, "echo"), load(t, p, "hostile")
	if !p.Loaded(echo) || p.Loaded("abc") {
		t.Errorf("Loaded: echo %v, abc %v", p.Loaded(echo), p.Loaded("abc"))
	}
	if out, err := runProc(p, noop, "ignored"); err != nil || out != "" {
		t.Errorf("noop: %q, %v", out, err)
	}
	big := strings.Repeat("0123456789abcdef", 10000)
	if out, err := runProc(p, echo, big); err != nil || out != big {
		t.Errorf("wat echo of %d bytes: %d bytes, %v", len(big), len(out), err)
	}
	if out, err := runProc(p, hostile, "echo hello, world"); err != nil || out != "hello, world" {
		t.Errorf("Go echo: %q, %v", out, err)
	}
	if _, err := runProc(p, "abc", ""); !errors.Is(err, ErrNotLoaded) {
		t.Errorf("Run of an unknown hash: %v", err)
	}
}

// TestWASMProcessesLikeWASM runs the same tasks in process and in the
// pool: results and errors must not tell them apart.
func TestWASMProcessesLikeWASM(t *testing.T) {
	w := newWASM(t, WASMOptions{})
	p := newProcs(t, WASMProcessOptions{Workers: 1})
	for _, tc := range []struct {
		module, payload string
		maxOutput       int
	}{
		{"hostile", "echo x", 0},
		{"hostile", "args", 0},
		{"hostile", "env", 0},
		{"hostile", "open", 0},
		{"hostile", "time", 0},
		{"hostile", "spin 1", 0},
		{"hostile", "exit 3", 0},
		{"hostile", "exit 0", 0},
		{"hostile", "panic", 0},
		{"hostile", "stderr", 0},
		{"hostile", "nonsense", 0},
		{"hostile", "flood", 100000},
		{"echo", strings.Repeat("x", 1000), 1000},
		{"echo", strings.Repeat("x", 1000), 999},
		{"trap", "", 0},
		{"sock", "", 0},
		{"counter", "", 0},
	} {
		t.Run(tc.module+" "+strings.Fields(tc.payload + " -")[0], func(t *testing.T) {
			hw, hp := load(t, w, tc.module), load(t, p, tc.module)
			want, wantErr := w.Run(context.Background(), hw, []byte(tc.payload), tc.maxOutput)
			got, err := p.Run(context.Background(), hp, []byte(tc.payload), tc.maxOutput)
			if string(got) != string(want) || fmt.Sprint(err) != fmt.Sprint(wantErr) {
				t.Fatalf("in the pool: %q, %v\nin process: %q, %v", got, err, want, wantErr)
			}
			var exitW, exitP *ExitError
			if errors.As(wantErr, &exitW) != errors.As(err, &exitP) || exitW != nil && *exitW != *exitP {
				t.Errorf("*ExitError: in the pool %#v, in process %#v", exitP, exitW)
			}
			var trapW, trapP *TrapError
			if errors.As(wantErr, &trapW) != errors.As(err, &trapP) || trapW != nil && trapW.Stderr != trapP.Stderr {
				t.Errorf("*TrapError: in the pool %#v, in process %#v", trapP, trapW)
			}
			if errors.Is(wantErr, ErrOutputTooLarge) != errors.Is(err, ErrOutputTooLarge) {
				t.Errorf("ErrOutputTooLarge: in the pool %v, in process %v", err, wantErr)
			}
		})
	}
	if t.Failed() {
		return
	}
	// They are there to be compared, but they must also be what they are.
	if _, err := runProc(p, load(t, p, "trap"), ""); !errors.As(err, new(*TrapError)) {
		t.Errorf("trap: %v", err)
	}
	if _, err := runProc(p, load(t, p, "hostile"), "exit 3"); !errors.As(err, new(*ExitError)) {
		t.Errorf("exit 3: %v", err)
	}
}

func TestWASMProcessesLoad(t *testing.T) {
	ctx := context.Background()
	w := newWASM(t, WASMOptions{})
	p := newProcs(t, WASMProcessOptions{Workers: 1, WASMOptions: WASMOptions{MaxLoaded: 2}})
	for _, name := range []string{"nostart", "badimport"} {
		code := fixture(t, name)
		want := w.Load(ctx, hashOf(code), name, code)
		err := p.Load(ctx, hashOf(code), name, code)
		if err == nil || fmt.Sprint(err) != fmt.Sprint(want) {
			t.Errorf("Load of %s: %v, want %v", name, err, want)
		}
		if p.Loaded(hashOf(code)) {
			t.Errorf("%s failed to load but is Loaded", name)
		}
	}
	if err := p.Load(ctx, "bad", "bad", []byte("not wasm")); err == nil {
		t.Error("Load of garbage succeeded")
	}

	// Concurrent Loads of one hash share one.
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() { load(t, p, "echo") })
	}
	wg.Wait()
	// The parent evicts as a WASM does.
	echo := hashOf(fixture(t, "echo"))
	noop, counter := load(t, p, "noop"), load(t, p, "counter")
	if p.Loaded(echo) || !p.Loaded(noop) || !p.Loaded(counter) {
		t.Fatalf("after loading echo, noop, counter with MaxLoaded 2: echo %v, noop %v, counter %v",
			p.Loaded(echo), p.Loaded(noop), p.Loaded(counter))
	}
	if _, err := runProc(p, echo, "x"); !errors.Is(err, ErrNotLoaded) {
		t.Errorf("Run of an evicted module: %v", err)
	}
}

// TestWASMProcessesWorkerEvicted runs a module its worker evicted while
// the parent kept it: the parent sends it again.
func TestWASMProcessesWorkerEvicted(t *testing.T) {
	p := newProcs(t, WASMProcessOptions{Workers: 1})
	load(t, p, "noop")
	code := fixture(t, "echo")
	p.mu.Lock()
	p.modules["x"] = p.lru.PushFront(&procModule{hash: "x", name: "echo", code: code})
	p.idle[0].held["x"] = true // which it never loaded
	p.mu.Unlock()
	if out, err := runProc(p, "x", "hi"); err != nil || out != "hi" {
		t.Fatalf("%q, %v", out, err)
	}
}

func TestWASMProcessesMemoryCap(t *testing.T) {
	p := newProcs(t, WASMProcessOptions{Workers: 1, WASMOptions: WASMOptions{MemoryLimit: 64<<20 + 1000}})
	bigmem := fixture(t, "bigmem")
	err := p.Load(context.Background(), hashOf(bigmem), "bigmem", bigmem)
	if err == nil || !strings.Contains(err.Error(), "min 8192 pages (512 Mi) over limit of 1024 pages (64 Mi)") {
		t.Errorf("a module whose minimum memory exceeds the cap must not load; got %v", err)
	}
	hostile := load(t, p, "hostile")
	_, err = runProc(p, hostile, "alloc")
	var e *ExitError
	if !errors.As(err, &e) || e.Code != 2 || !strings.Contains(e.Stderr, "out of memory") ||
		strings.Contains(e.Stderr, "allocated 64 MiB") {
		t.Fatalf("growing memory beyond the cap must fail; got %v", err)
	}
	mustEchoProc(t, p, hostile)
}

func TestWASMProcessesDeadline(t *testing.T) {
	p := newProcs(t, WASMProcessOptions{Workers: 1})
	hostile := load(t, p, "hostile")
	mustEchoProc(t, p, hostile)
	pid := onlyPid(t, p)

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := p.Run(ctx, hostile, []byte("loop"), 0)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.HasPrefix(err.Error(), "module stopped at its deadline: ") {
		t.Fatalf("an endless loop must be stopped at its deadline; got %v", err)
	}
	if !gone(pid) {
		t.Errorf("the worker %d that ran the loop is still there", pid)
	}
	if pids := p.pids(); len(pids) != 0 {
		t.Errorf("workers left after the kill: %v", pids)
	}
	mustEchoProc(t, p, hostile)
	if next := onlyPid(t, p); next == pid {
		t.Errorf("the replacement has the killed worker's pid %d", pid)
	}

	pid = onlyPid(t, p)
	ctx, cancel = context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		_, err := p.Run(ctx, hostile, []byte("loop"), 0)
		done <- err
	}()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) || !strings.HasPrefix(err.Error(), "module stopped: ") {
		t.Fatalf("a canceled run must say so; got %v", err)
	}
	mustEchoProc(t, p, hostile)

	// A task whose deadline comes while it waits for a worker never runs.
	ctx, cancel = context.WithCancel(context.Background())
	go func() {
		_, err := p.Run(ctx, hostile, []byte("loop"), 0)
		done <- err
	}()
	pollUntil(t, "the loop to hold the worker", func() bool { return len(p.slots) == 1 })
	short, cancelShort := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancelShort()
	if _, err := p.Run(short, hostile, []byte("echo x"), 0); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a task waiting for a worker past its deadline: %v", err)
	}
	cancel()
	<-done
}

// pollUntil polls cond until it holds.
func pollUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited 10s for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestWASMProcessesConcurrentRuns(t *testing.T) {
	p := newProcs(t, WASMProcessOptions{Workers: 2})
	hashes := map[string]string{"echo": load(t, p, "echo"), "hostile": load(t, p, "hostile")}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 10 {
				name := [2]string{"echo", "hostile"}[i%2]
				in := fmt.Sprintf("%d/%d", g, i)
				payload := in
				if name == "hostile" {
					payload = "echo " + in
				}
				if out, err := runProc(p, hashes[name], payload); err != nil || out != in {
					t.Errorf("%s %s: %q, %v", name, in, out, err)
				}
			}
		})
	}
	wg.Wait()
	if pids := p.pids(); len(pids) == 0 || len(pids) > 2 {
		t.Errorf("workers %v, want 1 or 2", pids)
	}
}

func TestWASMProcessesClose(t *testing.T) {
	ctx := context.Background()
	p := newProcs(t, WASMProcessOptions{Workers: 2})
	hostile := load(t, p, "hostile")
	mustEchoProc(t, p, hostile)
	done := make(chan error)
	go func() {
		_, err := p.Run(ctx, hostile, []byte("loop"), 0)
		done <- err
	}()
	pollUntil(t, "the loop to hold a worker", func() bool { return len(p.slots) == 1 })
	pids := p.pids()
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, errClosed) {
		t.Fatalf("a run stopped by Close: %v", err)
	}
	for _, pid := range pids {
		if !gone(pid) {
			t.Errorf("worker %d outlived Close", pid)
		}
	}
	if _, err := runProc(p, hostile, "echo x"); !errors.Is(err, errClosed) {
		t.Errorf("Run after Close: %v", err)
	}
	if err := p.Load(ctx, "x", "x", fixture(t, "noop")); !errors.Is(err, errClosed) {
		t.Errorf("Load after Close: %v", err)
	}
	if err := p.Close(ctx); err != nil {
		t.Errorf("a second Close: %v", err)
	}
}

// TestWASMProcessesWorkerKilled kills a worker from outside, as the OOM
// killer would, while it runs a task.
func TestWASMProcessesWorkerKilled(t *testing.T) {
	p := newProcs(t, WASMProcessOptions{Workers: 1})
	hostile := load(t, p, "hostile")
	mustEchoProc(t, p, hostile)
	pid := onlyPid(t, p)
	done := make(chan error)
	go func() {
		_, err := runProc(p, hostile, "loop")
		done <- err
	}()
	pollUntil(t, "the loop to hold the worker", func() bool { return len(p.slots) == 1 })
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err := <-done
	if !errors.Is(err, errWorkerDied) || !strings.HasPrefix(err.Error(), "sandbox worker died: signal: killed") {
		t.Fatalf("the task of a killed worker: %v", err)
	}
	if !gone(pid) {
		t.Errorf("the killed worker %d was not reaped", pid)
	}
	mustEchoProc(t, p, hostile)
}

func TestWASMProcessesNotAWorker(t *testing.T) {
	for _, tc := range []struct {
		cmd  []string
		want string
	}{
		// Whether the handshake's write or its read fails first is the
		// kernel's race, so the I/O error in parentheses is not checked.
		{[]string{"/bin/true"}, "sandbox worker died: exit status 0 ("},
		{[]string{"/bin/sh", "-c", "echo usage: oops >&2; exit 2"}, "its stderr: usage: oops"},
	} {
		_, err := NewWASMProcesses(context.Background(), WASMProcessOptions{
			Command: func() *exec.Cmd { return exec.Command(tc.cmd[0], tc.cmd[1:]...) },
		})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v as a worker: %v, want %q", tc.cmd, err, tc.want)
		}
	}
}

func TestWASMProcessesOptions(t *testing.T) {
	for _, o := range []WASMProcessOptions{
		{Workers: -1},
		{WASMOptions: WASMOptions{MaxLoaded: -1}},
		{WASMOptions: WASMOptions{MemoryLimit: 1000}},
	} {
		if p, err := NewWASMProcesses(context.Background(), o); err == nil {
			p.Close(context.Background())
			t.Errorf("%+v accepted", o)
		}
	}
}

// TestWorkerFrames round-trips the results of runs through the reply
// encoding, without processes.
func TestWorkerFrames(t *testing.T) {
	trap := &TrapError{Err: errors.New("wasm error: unreachable"), Stderr: "about to trap"}
	for _, err := range []error{
		nil,
		&ExitError{Code: 3, Stderr: "exiting with 3"},
		trap,
		fmt.Errorf("instantiating module: %w", trap),
		fmt.Errorf("module stopped: stdout exceeded 9 bytes: %w", ErrOutputTooLarge),
		errors.New("something else"),
	} {
		f := replyOf([]byte("out"), err)
		got, gotErr, bad := runResult(parse(t, f))
		if bad != nil {
			t.Fatalf("%v: %v", err, bad)
		}
		if fmt.Sprint(gotErr) != fmt.Sprint(err) || (err == nil) != (string(got) == "out") {
			t.Errorf("%v came back as %q, %v", err, got, gotErr)
		}
		for _, target := range []any{new(*ExitError), new(*TrapError)} {
			if errors.As(err, target) != errors.As(gotErr, target) {
				t.Errorf("%v came back as %v, not the same type", err, gotErr)
			}
		}
		if errors.Is(err, ErrOutputTooLarge) != errors.Is(gotErr, ErrOutputTooLarge) {
			t.Errorf("%v came back as %v, not wrapping the same", err, gotErr)
		}
	}
	if _, _, bad := runResult(parse(t, newFrame(repExit, 0).uint(3))); bad == nil {
		t.Error("a truncated reply passed")
	}
}

// parse reads back a frame as it was sent.
func parse(t *testing.T, f *frame) *fields {
	t.Helper()
	var b strings.Builder
	if err := f.send(&b); err != nil {
		t.Fatal(err)
	}
	got, err := readFrame(bufio.NewReader(strings.NewReader(b.String())), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// TestWASMNoLoopChecks runs, in process, what needs no loop checks to
// stop: a flood of stdout must still end at the bound.
func TestWASMNoLoopChecks(t *testing.T) {
	w := newWASM(t, WASMOptions{NoLoopChecks: true})
	hostile := load(t, w, "hostile")
	if _, err := w.Run(context.Background(), hostile, []byte("flood"), 100000); !errors.Is(err, ErrOutputTooLarge) {
		t.Errorf("flood: %v", err)
	}
	if out, err := run(w, hostile, "spin 1"); err != nil || out != "78498" {
		t.Errorf("the primes below a million: %q, %v", out, err)
	}
	mustEcho(t, w, hostile)
}

// TestWASMProcessesWorkerEnvironment checks that nothing of the parent's
// environment, its secrets included, reaches a worker.
func TestWASMProcessesWorkerEnvironment(t *testing.T) {
	p := newProcs(t, WASMProcessOptions{Workers: 1})
	env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", onlyPid(t, p)))
	if err != nil {
		t.Skipf("no /proc to read a worker's environment: %v", err)
	}
	if string(env) != workerEnv+"=1\x00" {
		t.Errorf("a worker's environment: %q", env)
	}
}
