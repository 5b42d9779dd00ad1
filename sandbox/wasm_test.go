package sandbox

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// run runs the loaded hash with payload and a generous output bound.
func run(w *WASM, hash, payload string) (string, error) {
	out, err := w.Run(context.Background(), hash, []byte(payload), 1<<20)
	return string(out), err
}

// mustEcho checks that the runner still works, after a hostile run.
func mustEcho(t *testing.T, w *WASM, hash string) {
	t.Helper()
	if out, err := run(w, hash, "echo still here"); err != nil || out != "still here" {
		t.Fatalf("the runner no longer works: %q, %v", out, err)
	}
}

func TestWASMRunsCommands(t *testing.T) {
	w := newWASM(t, WASMOptions{})
	noop, echo, hostile := load(t, w, "noop"), load(t, w, "echo"), load(t, w, "hostile")

	if out, err := run(w, noop, "ignored"); err != nil || out != "" {
		t.Errorf("noop: %q, %v", out, err)
	}
	big := strings.Repeat("0123456789abcdef", 10000) // more than echo's buffer
	if out, err := run(w, echo, big); err != nil || out != big {
		t.Errorf("wat echo of %d bytes: %d bytes, %v", len(big), len(out), err)
	}
	if out, err := run(w, echo, ""); err != nil || out != "" {
		t.Errorf("wat echo of nothing: %q, %v", out, err)
	}
	if out, err := run(w, hostile, "echo hello, world"); err != nil || out != "hello, world" {
		t.Errorf("Go echo: %q, %v", out, err)
	}
	if out, err := run(w, hostile, "args"); err != nil || out != `["hostile"]` {
		t.Errorf("argv must be [name]: %q, %v", out, err)
	}
	if out, err := run(w, hostile, "time"); err != nil || out != "true true\n" {
		t.Errorf("the clocks and sleep must work: %q, %v", out, err)
	}
	a, errA := run(w, hostile, "rand")
	b, errB := run(w, hostile, "rand")
	if errA != nil || errB != nil || len(a) != 32 || a == b || a == strings.Repeat("0", 32) {
		t.Errorf("crypto random must work: %q, %v; %q, %v", a, errA, b, errB)
	}
}

func TestWASMFreshInstancePerRun(t *testing.T) {
	w := newWASM(t, WASMOptions{})
	counter := load(t, w, "counter")
	for i := range 3 {
		if out, err := run(w, counter, ""); err != nil || out != "1" {
			t.Fatalf("run %d: %q, %v; want 1, as memory must not survive a run", i, out, err)
		}
	}
}

func TestWASMHostile(t *testing.T) {
	w := newWASM(t, WASMOptions{})
	hostile := load(t, w, "hostile")

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := fmt.Sprint(ln.Addr().(*net.TCPAddr).Port)

	for _, tc := range []struct {
		payload string
		check   func(out string, err error) string // what is wrong, "" if nothing
	}{
		{"open", func(out string, err error) string {
			if err != nil || strings.Contains(out, "root:") || strings.Contains(out, "succeeded") ||
				!strings.Contains(out, "open failed") || !strings.Contains(out, "readdir failed") {
				return "the filesystem must be out of reach"
			}
			return ""
		}},
		{"dial " + port, func(out string, err error) string {
			if err != nil || !strings.HasPrefix(out, "dial failed") {
				return "the network must be out of reach"
			}
			return ""
		}},
		{"env", func(out string, err error) string {
			if err != nil || out != "0 variables: []\n" {
				return "the environment must be empty"
			}
			return ""
		}},
		{"exit 3", func(out string, err error) string {
			var e *ExitError
			if !errors.As(err, &e) || e.Code != 3 || e.Stderr != "exiting with 3" ||
				err.Error() != "module exited with code 3: exiting with 3" {
				return "want an *ExitError of code 3 with stderr"
			}
			return ""
		}},
		{"exit 0", func(out string, err error) string {
			if err != nil {
				return "exit 0 is success"
			}
			return ""
		}},
		{"panic", func(out string, err error) string {
			var e *ExitError
			if !errors.As(err, &e) || e.Code != 2 || !strings.Contains(e.Stderr, "panic: hostile module panics") {
				return "a Go panic exits with code 2 and says so on stderr"
			}
			return ""
		}},
		{"stderr", func(out string, err error) string {
			var e *ExitError
			if !errors.As(err, &e) || e.Code != 2 || !strings.HasPrefix(e.Stderr, "line 0 of stderr\nline 1 of") ||
				!strings.Contains(e.Stderr, "\n…\nline ") || !strings.HasSuffix(e.Stderr, "\nthe last line") ||
				len(e.Stderr) > stderrHead+stderrTail+5 || len(e.Stderr) < stderrTail {
				return "want the start and the end of stderr, in whole lines, about 2 KiB"
			}
			return ""
		}},
		{"nonsense", func(out string, err error) string {
			var e *ExitError
			if !errors.As(err, &e) || e.Code != 64 {
				return "want exit 64"
			}
			return ""
		}},
	} {
		t.Run(strings.Fields(tc.payload)[0], func(t *testing.T) {
			out, err := run(w, hostile, tc.payload)
			if what := tc.check(out, err); what != "" {
				t.Errorf("%s; got %q, %v", what, out, err)
			}
			mustEcho(t, w, hostile)
		})
	}
	// Go's wasip1 net package fakes a network inside the module; the
	// host's listener must have seen nothing.
	ln.(*net.TCPListener).SetDeadline(time.Now())
	if c, err := ln.Accept(); err == nil {
		c.Close()
		t.Error("the module connected to the host")
	}

	// WASI's socket calls find no socket.
	var e *ExitError
	if _, err := run(w, load(t, w, "sock"), ""); !errors.As(err, &e) || e.Code == 0 {
		t.Errorf("sock_accept on fd 3 must fail; got %v", err)
	}
}

func TestWASMTrap(t *testing.T) {
	w := newWASM(t, WASMOptions{})
	trap := load(t, w, "trap")
	_, err := run(w, trap, "")
	var e *TrapError
	if !errors.As(err, &e) || e.Stderr != "about to trap" ||
		!strings.HasPrefix(err.Error(), "module trapped: wasm error: unreachable") ||
		!strings.HasSuffix(err.Error(), ": about to trap") {
		t.Fatalf("want a *TrapError saying unreachable, with stderr; got %v", err)
	}
}

func TestWASMMemoryCap(t *testing.T) {
	w := newWASM(t, WASMOptions{MemoryLimit: 64<<20 + 1000}) // rounded down to 1024 pages
	bigmem := fixture(t, "bigmem")
	err := w.Load(context.Background(), hashOf(bigmem), "bigmem", bigmem)
	if err == nil || !strings.Contains(err.Error(), "min 8192 pages (512 Mi) over limit of 1024 pages (64 Mi)") {
		t.Errorf("a module whose minimum memory exceeds the cap must not load; got %v", err)
	}
	if w.Loaded(hashOf(bigmem)) {
		t.Error("a module that failed to load is Loaded")
	}

	hostile := load(t, w, "hostile")
	_, err = run(w, hostile, "alloc")
	var e *ExitError
	if !errors.As(err, &e) || e.Code != 2 || !strings.Contains(e.Stderr, "out of memory") {
		t.Fatalf("growing memory beyond the cap must fail; got %v", err)
	}
	// The module had 16 MiB chunks, and must have stopped short of 64 MiB.
	if strings.Contains(e.Stderr, "allocated 64 MiB") {
		t.Errorf("the module allocated beyond the cap: %s", e.Stderr)
	}
	mustEcho(t, w, hostile)
}

func TestWASMDeadline(t *testing.T) {
	w := newWASM(t, WASMOptions{})
	hostile, loop := load(t, w, "hostile"), "loop"

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := w.Run(ctx, hostile, []byte(loop), 1<<20)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "stopped at its deadline") {
		t.Fatalf("an endless loop must be stopped at its deadline; got %v", err)
	}

	ctx, cancel = context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		_, err := w.Run(ctx, hostile, []byte(loop), 1<<20)
		done <- err
	}()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("a canceled run must say so; got %v", err)
	}
	// Goroutines left behind by the stopped instances are goleak's to
	// find, at the end of the test binary.
	mustEcho(t, w, hostile)
}

func TestWASMOutputBound(t *testing.T) {
	w := newWASM(t, WASMOptions{})
	hostile, echo := load(t, w, "hostile"), load(t, w, "echo")

	out, err := w.Run(context.Background(), hostile, []byte("flood"), 100000)
	if !errors.Is(err, ErrOutputTooLarge) || !strings.Contains(err.Error(), "100000 bytes") || out != nil {
		t.Fatalf("a flood of stdout must stop the module; got %d bytes, %v", len(out), err)
	}
	payload := []byte(strings.Repeat("x", 1000))
	if out, err := w.Run(context.Background(), echo, payload, 1000); err != nil || len(out) != 1000 {
		t.Errorf("output of exactly the bound: %d bytes, %v", len(out), err)
	}
	if _, err := w.Run(context.Background(), echo, payload, 999); !errors.Is(err, ErrOutputTooLarge) {
		t.Errorf("output of one byte more than the bound: %v", err)
	}
	mustEcho(t, w, hostile)
}

func TestWASMConcurrentRuns(t *testing.T) {
	w := newWASM(t, WASMOptions{})
	hashes := map[string]string{"echo": load(t, w, "echo"), "hostile": load(t, w, "hostile")}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 20 {
				name := [2]string{"echo", "hostile"}[i%2]
				in := fmt.Sprintf("%d/%d", g, i)
				payload := in
				if name == "hostile" {
					payload = "echo " + in
				}
				if out, err := run(w, hashes[name], payload); err != nil || out != in {
					t.Errorf("%s %s: %q, %v", name, in, out, err)
				}
			}
		})
	}
	wg.Wait()
}

func TestWASMLoad(t *testing.T) {
	ctx := context.Background()
	w := newWASM(t, WASMOptions{MaxLoaded: 2})
	if _, err := w.Run(ctx, "abc", nil, 0); !errors.Is(err, ErrNotLoaded) {
		t.Errorf("Run of an unknown hash: %v", err)
	}
	nostart := fixture(t, "nostart")
	if err := w.Load(ctx, hashOf(nostart), "nostart", nostart); err == nil || !strings.Contains(err.Error(), "no _start export") {
		t.Errorf("Load of a module without _start: %v", err)
	}
	if err := w.Load(ctx, "bad", "bad", []byte("not wasm")); err == nil {
		t.Error("Load of garbage succeeded")
	}

	// Concurrent Loads of one hash share its compilation.
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() { load(t, w, "echo") })
	}
	wg.Wait()
	echo := hashOf(fixture(t, "echo"))
	noop, counter := load(t, w, "noop"), load(t, w, "counter")
	// echo was the least recently used of three, with room for two.
	if w.Loaded(echo) || !w.Loaded(noop) || !w.Loaded(counter) {
		t.Fatalf("after loading echo, noop, counter with MaxLoaded 2: echo %v, noop %v, counter %v",
			w.Loaded(echo), w.Loaded(noop), w.Loaded(counter))
	}
	if _, err := run(w, echo, "x"); !errors.Is(err, ErrNotLoaded) {
		t.Errorf("Run of an evicted module: %v", err)
	}
	// A run makes noop the most recently used, so echo evicts counter.
	if _, err := run(w, noop, ""); err != nil {
		t.Fatal(err)
	}
	load(t, w, "echo")
	if !w.Loaded(noop) || w.Loaded(counter) {
		t.Errorf("a run must count as a use: noop %v, counter %v", w.Loaded(noop), w.Loaded(counter))
	}
	if out, err := run(w, echo, "again"); err != nil || out != "again" {
		t.Errorf("a reloaded module: %q, %v", out, err)
	}
}

func TestWASMClose(t *testing.T) {
	ctx := context.Background()
	w := newWASM(t, WASMOptions{})
	hostile := load(t, w, "hostile")
	done := make(chan error)
	go func() {
		_, err := w.Run(ctx, hostile, []byte("loop"), 0)
		done <- err
	}()
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	// Whether the run had started or not, it fails: closing the runtime
	// ends an instance with exit code 0, which must not pass for success.
	if err := <-done; err == nil {
		t.Fatal("a run stopped by Close succeeded")
	}
	if _, err := run(w, hostile, "echo x"); err == nil {
		t.Error("Run after Close succeeded")
	}
	if err := w.Load(ctx, "x", "x", fixture(t, "noop")); err == nil {
		t.Error("Load after Close succeeded")
	}
}

// A module asleep in the host is stopped at its deadline and by Close,
// not when its sleep ends: the hour it asks for would hang this test.
func TestWASMSleepIsStopped(t *testing.T) {
	ctx := context.Background()
	w := newWASM(t, WASMOptions{})
	hostile := load(t, w, "hostile")
	dl, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if _, err := w.Run(dl, hostile, []byte("sleep"), 0); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a sleep past its deadline: %v, want the deadline", err)
	}
	started := make(chan struct{})
	done := make(chan error)
	go func() {
		close(started)
		_, err := w.Run(ctx, hostile, []byte("sleep"), 0)
		done <- err
	}()
	<-started
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err == nil {
		t.Error("a sleep stopped by Close succeeded")
	}
}

func TestWASMCompilationCacheOnDisk(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "cache")
	first := newWASM(t, WASMOptions{CacheDir: dir})
	load(t, first, "hostile")
	before := cacheFiles(t, dir)
	if len(before) == 0 {
		t.Fatal("Load wrote nothing to the cache dir")
	}
	first.Close(ctx)

	second := newWASM(t, WASMOptions{CacheDir: dir})
	hostile := load(t, second, "hostile")
	if after := cacheFiles(t, dir); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("the second runtime compiled again: cache files %v, then %v", before, after)
	}
	mustEcho(t, second, hostile)
}

// cacheFiles lists the files under dir with their sizes and times.
func cacheFiles(t *testing.T, dir string) []string {
	t.Helper()
	var files []string
	err := filepath.Walk(dir, func(path string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			files = append(files, fmt.Sprintf("%s %d %v", path, fi.Size(), fi.ModTime().UnixNano()))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func TestCheckModule(t *testing.T) {
	ctx := context.Background()
	for _, name := range []string{"hostile", "noop", "echo", "trap", "bigmem"} {
		if err := CheckModule(ctx, fixture(t, name)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	noop := fixture(t, "noop")
	for _, tc := range []struct {
		name string
		code []byte
		want string
	}{
		{"empty", nil, "not a WebAssembly module: "},
		{"text", []byte("#!/bin/sh\necho hi\n"), "not a WebAssembly module: "},
		{"truncated", noop[:len(noop)-3], "not a WebAssembly module: "},
		{"no _start", fixture(t, "nostart"), "not a WASI command: no _start export"},
		{"env import", fixture(t, "badimport"), "imports env.foo: only wasi_snapshot_preview1 is provided"},
		{"global import", fixture(t, "badglobal"), "imports global env.g: only functions of wasi_snapshot_preview1 are provided"},
	} {
		err := CheckModule(ctx, tc.code)
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %q", tc.name, err, tc.want)
		}
	}
}

// TestWASMEvictionSparesRunningModules evicts a module between a run's
// acquire and its instantiation: the run must still find its code.
func TestWASMEvictionSparesRunningModules(t *testing.T) {
	ctx := context.Background()
	w := newWASM(t, WASMOptions{MaxLoaded: 1})
	echo := load(t, w, "echo")
	m, err := w.acquire(echo)
	if err != nil {
		t.Fatal(err)
	}
	load(t, w, "noop")
	if w.Loaded(echo) {
		t.Fatal("echo was not evicted")
	}
	inst, err := w.rt.InstantiateModule(ctx, m.compiled, m.config)
	if err != nil {
		t.Fatalf("the code of an evicted module in use was closed: %v", err)
	}
	inst.Close(ctx)
	w.release(ctx, m)
	// The last release closed the code: a new instance cannot be made.
	if inst, err := w.rt.InstantiateModule(ctx, m.compiled, m.config); err == nil {
		inst.Close(ctx)
		t.Error("the evicted module's code is still open after its last run")
	}
}
