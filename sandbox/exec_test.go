//go:build linux

package sandbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// script writes an executable shell script into a temporary directory
// and returns its path.
func script(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "task.sh")
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// execOf runs the program at path as kind "p".
func execOf(t *testing.T, path string) *Exec {
	return &Exec{
		Programs: map[string]string{"p": path},
		Logger:   slog.New(slog.NewTextHandler(t.Output(), nil)),
	}
}

func TestExecPayloadAndResult(t *testing.T) {
	e := execOf(t, "/bin/cat")
	// More than a pipe holds, both ways.
	payload := bytes.Repeat([]byte("0123456789abcdef"), 1<<16)
	out, err := e.Run(context.Background(), "p", payload)
	if err != nil || !bytes.Equal(out, payload) {
		t.Fatalf("cat of %d bytes: %d bytes, %v", len(payload), len(out), err)
	}
	if _, err := e.Run(context.Background(), "nope", nil); err == nil || err.Error() != `unknown task kind "nope"` {
		t.Errorf("unknown kind: %v", err)
	}
	// A program that does not read its stdin still finishes.
	e = execOf(t, script(t, "echo ignored the payload"))
	if out, err := e.Run(context.Background(), "p", payload); err != nil || string(out) != "ignored the payload\n" {
		t.Errorf("a program that ignores stdin: %q, %v", out, err)
	}
}

func TestExecExitError(t *testing.T) {
	e := execOf(t, script(t, "echo partial; echo oops >&2; exit 3"))
	out, err := e.Run(context.Background(), "p", nil)
	var ee *ExitError
	if out != nil || !errors.As(err, &ee) || ee.Code != 3 || ee.Stderr != "oops" ||
		err.Error() != "program exited with code 3: oops" {
		t.Fatalf("got %q, %v; want an *ExitError of code 3 with stderr", out, err)
	}
}

func TestExecEnvironmentAndDir(t *testing.T) {
	out, err := execOf(t, "/usr/bin/env").Run(context.Background(), "p", nil)
	if err != nil {
		t.Fatal(err)
	}
	env := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(env) != 1 || !strings.HasPrefix(env[0], "TMPDIR=") {
		t.Fatalf("the environment must hold TMPDIR only: %q", out)
	}

	e := execOf(t, script(t, `pwd; echo "$TMPDIR"; echo x > file && ls`))
	out, err = e.Run(context.Background(), "p", nil)
	lines := strings.Split(string(out), "\n")
	if err != nil || len(lines) != 4 || lines[2] != "file" {
		t.Fatalf("got %q, %v", out, err)
	}
	dir, tmp := lines[0], lines[1] // pwd resolves symbolic links, TMPDIR does not
	if filepath.Base(dir) != filepath.Base(tmp) || !strings.HasPrefix(filepath.Base(dir), "anthill-exec-") {
		t.Errorf("the working directory %s must be a private directory, and TMPDIR %s", dir, tmp)
	}
	if _, err := os.Stat(lines[0]); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the task's directory must be removed after the run: %v", err)
	}
	if out2, _ := e.Run(context.Background(), "p", nil); strings.SplitN(string(out2), "\n", 2)[0] == lines[0] {
		t.Error("two runs shared a directory")
	}
}

func TestExecLimits(t *testing.T) {
	e := execOf(t, script(t, "ulimit -t; ulimit -H -t; ulimit -v; ulimit -n; ulimit -H -n"))
	e.CPUSeconds, e.MemoryBytes, e.OpenFiles = 7, 512<<20, 20
	out, err := e.Run(context.Background(), "p", nil)
	if err != nil || string(out) != "7\n8\n524288\n20\n20\n" {
		t.Errorf("limits CPU 7 s, 512 MiB, 20 files, hard too: got %q, %v", out, err)
	}
	e.CPUSeconds, e.MemoryBytes, e.OpenFiles = 0, 0, 0
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second+time.Millisecond)
	defer cancel()
	out, err = e.Run(ctx, "p", nil)
	if err != nil || string(out) != "91\n92\n1048576\n64\n64\n" {
		t.Errorf("default limits with 90 s left: got %q, %v", out, err)
	}
}

func TestExecMemoryLimit(t *testing.T) {
	// dd allocates its block at once: 200 MiB do not fit in 64.
	e := execOf(t, script(t, "dd if=/dev/zero of=/dev/null bs=200M count=1"))
	e.MemoryBytes = 64 << 20
	_, err := e.Run(context.Background(), "p", nil)
	var ee *ExitError
	if !errors.As(err, &ee) || !strings.Contains(ee.Stderr, "memory exhausted") {
		t.Fatalf("want dd to fail for lack of memory; got %v", err)
	}
	e.MemoryBytes = 0 // 1 GiB
	if _, err := e.Run(context.Background(), "p", nil); err != nil {
		t.Errorf("the same dd under the default limit: %v", err)
	}
}

func TestExecCPULimit(t *testing.T) {
	e := execOf(t, script(t, "while :; do :; done"))
	e.CPUSeconds = 1
	_, err := e.Run(context.Background(), "p", nil)
	if err == nil || !strings.Contains(err.Error(), "SIGXCPU") && !strings.Contains(err.Error(), "CPU time") {
		t.Fatalf("a busy loop must be killed at its CPU limit; got %v", err)
	}
}

func TestExecOutputBound(t *testing.T) {
	e := execOf(t, "/usr/bin/yes")
	e.MaxOutput = 100000
	if _, err := e.Run(context.Background(), "p", nil); !errors.Is(err, ErrOutputTooLarge) || !strings.Contains(err.Error(), "100000 bytes") {
		t.Fatalf("a flood of stdout: %v", err)
	}
	e = execOf(t, "/bin/cat")
	e.MaxOutput = 1000
	if out, err := e.Run(context.Background(), "p", make([]byte, 1000)); err != nil || len(out) != 1000 {
		t.Errorf("output of exactly the bound: %d bytes, %v", len(out), err)
	}
	if _, err := e.Run(context.Background(), "p", make([]byte, 1001)); !errors.Is(err, ErrOutputTooLarge) {
		t.Errorf("output of one byte more than the bound: %v", err)
	}
}

func TestExecDeadline(t *testing.T) {
	e := execOf(t, script(t, "sleep 1000"))
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := e.Run(ctx, "p", nil); !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "deadline") {
		t.Fatalf("a sleeping program must be stopped at its deadline; got %v", err)
	}
}

// TestExecKillsTheGroup checks that a program's background child dies
// with it: when the run is canceled, and when the program succeeds.
func TestExecKillsTheGroup(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		cancel     bool
	}{
		{"canceled", "sleep 1000", true},
		{"success", "echo done", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pidFile := filepath.Join(t.TempDir(), "pid")
			// The child holds stdout and stderr: Run must not wait for it.
			e := execOf(t, script(t, fmt.Sprintf("sleep 1000 &\necho $! > %s.tmp && mv %[1]s.tmp %[1]s\n%s", pidFile, tc.body)))
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tc.cancel {
				go func() {
					waitFor(t, func() bool { _, err := os.Stat(pidFile); return err == nil })
					cancel()
				}()
			}
			out, err := e.Run(ctx, "p", nil)
			if tc.cancel && !errors.Is(err, context.Canceled) || !tc.cancel && (err != nil || string(out) != "done\n") {
				t.Fatalf("got %q, %v", out, err)
			}
			b, err := os.ReadFile(pidFile)
			if err != nil {
				t.Fatal(err)
			}
			pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
			if err != nil {
				t.Fatal(err)
			}
			waitFor(t, func() bool { return !alive(pid) })
		})
	}
}

// alive reports whether pid runs: a zombie, dead but not yet reaped by
// its new parent, does not.
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the command, which is in parentheses.
	i := bytes.LastIndexByte(stat, ')')
	return i < 0 || i+2 >= len(stat) || stat[i+2] != 'Z'
}

// waitFor polls cond until it holds, failing the test after a long
// while: a bound for a broken test, not a timing assertion.
func waitFor(t *testing.T, cond func() bool) {
	for deadline := time.Now().Add(20 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Error("condition not met after 20 s")
			return
		}
	}
}

func TestParseAllowExec(t *testing.T) {
	name, path, err := ParseAllowExec("cat=/bin/cat")
	if err != nil || name != "cat" || path != "/bin/cat" {
		t.Errorf("cat=/bin/cat: %q, %q, %v", name, path, err)
	}
	notExec := filepath.Join(t.TempDir(), "data")
	os.WriteFile(notExec, nil, 0o644)
	for spec, want := range map[string]string{
		"":                   "want NAME=PATH",
		"cat":                "want NAME=PATH",
		"=/bin/cat":          "NAME must be",
		"two words=/bin/cat": "NAME must be",
		"-x=/bin/cat":        "NAME must be",
		"a/b=/bin/cat":       "NAME must be",
		"cat=bin/cat":        "PATH must be absolute",
		"cat=":               "PATH must be absolute",
		"cat=/no/such/file":  "no such file",
		"cat=/bin":           "not a regular file",
		"cat=" + notExec:     "not executable",
	} {
		if _, _, err := ParseAllowExec(spec); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: got %v, want %q", spec, err, want)
		}
	}
}

func TestExecKinds(t *testing.T) {
	e := &Exec{Programs: map[string]string{"zeta": "/bin/cat", "alpha": "/bin/cat"}}
	if got := strings.Join(e.Kinds(), ","); got != "alpha,zeta" {
		t.Errorf("Kinds() = %s", got)
	}
}

func TestExecConcurrentRuns(t *testing.T) {
	e := execOf(t, "/bin/cat")
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 10 {
				in := fmt.Sprintf("%d/%d", g, i)
				if out, err := e.Run(context.Background(), "p", []byte(in)); err != nil || string(out) != in {
					t.Errorf("%s: %q, %v", in, out, err)
				}
			}
		})
	}
	wg.Wait()
}

// TestExecEscapedProcess checks the caveat's limit: a process that leaves
// the group survives the run, but cannot make Run wait for it.
func TestExecEscapedProcess(t *testing.T) {
	setsid, err := exec.LookPath("setsid")
	if err != nil {
		t.Fatalf("this test needs setsid (util-linux): %v", err)
	}
	pidFile := filepath.Join(t.TempDir(), "pid")
	e := execOf(t, script(t, fmt.Sprintf(`%s sh -c 'echo $$ > %s.tmp && mv %[2]s.tmp %[2]s; exec sleep 1000' &
while [ ! -e %[2]s ]; do sleep 0.01; done
echo done`, setsid, pidFile)))
	out, err := e.Run(context.Background(), "p", nil)
	if b, err := os.ReadFile(pidFile); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	if err != nil || string(out) != "done\n" {
		t.Fatalf("got %q, %v", out, err)
	}
}
