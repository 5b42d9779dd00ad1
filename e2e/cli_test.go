package e2e

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// run executes the binary to completion and returns its output and exit code.
func run(t *testing.T, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "XDG_CONFIG_HOME="+t.TempDir()) // as in start
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &ee):
		return string(out), ee.ExitCode()
	}
	t.Fatal(err)
	return "", -1
}

func TestCommandLine(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		says string
	}{
		{[]string{"version"}, 0, "anthill "},
		{[]string{"help"}, 0, "commands:"},
		{[]string{"master", "--help"}, 0, "-data"},
		{[]string{"slave", "--help"}, 0, "-concurrency"},
		{[]string{"slave", "--help"}, 0, "-leaderboard"},
		{[]string{"demo", "--help"}, 0, "-exit"},
		{[]string{}, 2, "usage"},
		{[]string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{[]string{"master", "--no-such-flag"}, 2, "flag provided but not defined"},
		{[]string{"master", "--strategy", "random", "--data", t.TempDir()}, 1, `unknown strategy "random"`},
		{[]string{"slave", "--master", "ftp://x", "--name", "n"}, 1, "scheme must be ws, wss, http or https"},
	} {
		out, code := run(t, tc.args...)
		if code != tc.code || !strings.Contains(out, tc.says) {
			t.Errorf("anthill %s: exit %d, want %d; output should contain %q:\n%s",
				strings.Join(tc.args, " "), code, tc.code, tc.says, out)
		}
	}
}

// A data dir holding a corrupt store is refused with a message that says
// so, and the file is left exactly as it was: never a silent reset.
func TestMasterRefusesCorruptStore(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "anthill.db")
	junk := []byte(strings.Repeat("not a bbolt file ", 1000))
	if err := os.WriteFile(file, junk, 0o600); err != nil {
		t.Fatal(err)
	}
	out, code := run(t, "master", "--listen", "127.0.0.1:0", "--data", dir)
	if code != 1 || !strings.Contains(out, "corrupt") || !strings.Contains(out, file) {
		t.Fatalf("exit %d, output:\n%s", code, out)
	}
	if after, _ := os.ReadFile(file); string(after) != string(junk) {
		t.Fatal("the corrupt store was modified")
	}
}

// SIGTERM stops a master cleanly (exit 0) with slaves and work attached,
// and the slaves, told it is going, keep trying to reconnect rather than
// die; SIGTERM stops them cleanly too.
func TestMasterAndSlaveStopOnSIGTERM(t *testing.T) {
	addr := freePort(t)
	mp := start(t, "master", "--listen", addr, "--data", t.TempDir())
	mp.line(t, "listening on")
	sp := startSlave(t, "ws://"+addr, "s1")
	mp.line(t, "slave connected")
	mp.stop(t)
	if mp.err != nil {
		t.Fatalf("master exit: %v", mp.err)
	}
	mp.line(t, "master stopped")
	select {
	case <-sp.done:
		t.Fatalf("the slave exited when the master stopped: %v", sp.err)
	default:
	}
	sp.stop(t)
	if sp.err != nil {
		t.Fatalf("slave exit: %v", sp.err)
	}
}

// A master that requires an enrollment token turns away a slave without
// it: the slave exits 1 and says why, instead of retrying forever.
func TestSlaveWithoutEnrollmentTokenIsTurnedAway(t *testing.T) {
	addr := freePort(t)
	mp := start(t, "master", "--listen", addr, "--data", t.TempDir(), "--slave-token", "let-me-in-invitation-16")
	mp.line(t, "listening on")
	out, code := run(t, "slave", "--master", "ws://"+addr, "--token", "wrong")
	if code != 1 || !strings.Contains(out, "unauthorized") {
		t.Fatalf("exit %d, output:\n%s", code, out)
	}
	ok := startSlave(t, "ws://"+addr, "member", "--token", "let-me-in-invitation-16")
	mp.line(t, "slave connected")
	ok.stop(t)
}

// The scripting commands against a real master and slave: the README's
// shell session, a failed task's exit code, and a wrong token's.
func TestScriptingCommands(t *testing.T) {
	addr := freePort(t)
	data := t.TempDir()
	mp := start(t, "master", "--listen", addr, "--data", data)
	mp.line(t, "admin token in")
	startSlave(t, "ws://"+addr, "s1")
	mp.line(t, "slave connected")
	// The master from the environment, the token from the data dir: the
	// way the README's session finds them.
	t.Setenv("ANTHILL_MASTER", "http://"+addr)
	cli := func(cmd string, args ...string) (string, int) {
		return run(t, append([]string{cmd, "--data", data}, args...)...)
	}

	id, code := cli("submit", "--app", "shell", "--kind", "sha256", "--payload", "hello")
	id = strings.TrimSpace(id)
	if code != 0 || id == "" {
		t.Fatalf("submit: exit %d: %s", code, id)
	}
	out, code := cli("wait", "--timeout", "30s", id)
	if code != 0 || !strings.Contains(out, "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824") {
		t.Fatalf("wait: exit %d:\n%s", code, out)
	}
	bad, _ := cli("submit", "--app", "shell", "--kind", "fail", "--payload", "nope", "--attempts", "1")
	if out, code := cli("wait", strings.TrimSpace(bad)); code != 1 || !strings.Contains(out, "nope") {
		t.Fatalf("wait on a failing task: exit %d:\n%s", code, out)
	}
	if out, code := cli("tasks", "--app", "shell", "--json"); code != 0 || !strings.Contains(out, id) {
		t.Fatalf("tasks: exit %d:\n%s", code, out)
	}
	// Newest first: the failing task, submitted second, comes first.
	out, code = cli("tasks", "--app", "shell", "--newest", "--limit", "1")
	if code != 0 || !strings.Contains(out, strings.TrimSpace(bad)) || strings.Contains(out, id) {
		t.Fatalf("tasks --newest --limit 1: exit %d:\n%s", code, out)
	}
	if out, code := run(t, "stats", "--token", "not-the-token"); code != 4 {
		t.Fatalf("wrong token: exit %d, want 4:\n%s", code, out)
	}
}
