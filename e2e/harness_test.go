package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/anthill-project/anthill/appnode"
	"github.com/anthill-project/anthill/internal/testmaster"
	"github.com/anthill-project/anthill/jsonrpc"
	"github.com/anthill-project/anthill/master"
)

// bin is the anthill binary built once for the whole package.
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "anthill-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = filepath.Join(dir, "anthill")
	build := exec.Command("go", "build", "-o", bin, "../cmd/anthill")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building anthill:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goroutines left behind:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// startMaster runs an in-process master on 127.0.0.1:0 with its store in a
// temp dir, stopped at cleanup.
func startMaster(t *testing.T, o master.Options) *master.Master {
	t.Helper()
	return testmaster.Start(t, o)
}

// proc is a child anthill process whose output goes to the test log.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
	mu   sync.Mutex
	out  []string
}

func start(t *testing.T, args ...string) *proc {
	t.Helper()
	identSeedAdminToken(t, args)
	return startBin(t, bin, args...)
}

// startBin runs the program path (anthill, or a test build such as
// testdata/liar) as start does.
func startBin(t *testing.T, path string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(path, args...), done: make(chan struct{})}
	// A slave keeps its identity under the user's config dir and its
	// modules under the user's cache dir by default: never the real ones.
	p.cmd.Env = append(os.Environ(), "XDG_CONFIG_HOME="+t.TempDir(), "XDG_CACHE_HOME="+t.TempDir())
	stdout, _ := p.cmd.StdoutPipe()
	p.cmd.Stderr = p.cmd.Stdout
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	name := args[0]
	if path != bin {
		name = filepath.Base(path)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.mu.Lock()
			p.out = append(p.out, sc.Text())
			p.mu.Unlock()
			t.Logf("[%s %d] %s", name, p.cmd.Process.Pid, sc.Text())
		}
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() { p.stop(t) })
	return p
}

// stop sends SIGTERM and waits; a process still alive after 20s is killed.
func (p *proc) stop(t *testing.T) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		t.Errorf("pid %d ignored SIGTERM for 20s; killing", p.cmd.Process.Pid)
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func (p *proc) kill9() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// line waits for an output line containing s and returns it.
func (p *proc) line(t *testing.T, s string) string {
	t.Helper()
	var found string
	waitFor(t, 30*time.Second, "output "+s, func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, l := range p.out {
			if strings.Contains(l, s) {
				found = l
				return true
			}
		}
		return false
	})
	return found
}

// startSlave runs `anthill slave` against url. It presents the test
// admin token unless extra has a --token (the master then runs it as the
// volunteer identity name), and keeps its state in a temp dir of its own
// unless extra has a --state.
func startSlave(t *testing.T, url, name string, extra ...string) *proc {
	t.Helper()
	args := []string{"slave", "--master", url, "--name", name, "--log-level", "warn"}
	if !identHasFlag(extra, "--token") {
		args = append(args, "--token", testmaster.AdminToken)
	}
	if !identHasFlag(extra, "--state") {
		args = append(args, "--state", t.TempDir())
	}
	return start(t, append(args, extra...)...)
}

// identHasFlag reports whether args set flag, as "--flag v" or "--flag=v".
func identHasFlag(args []string, flag string) bool {
	for _, a := range args {
		if a == flag || strings.HasPrefix(a, flag+"=") {
			return true
		}
	}
	return false
}

// identSeedAdminToken gives an `anthill master` process started with
// --data the test admin token, before its first start creates a random
// one, so the helpers' default credentials work against it too.
func identSeedAdminToken(t *testing.T, args []string) {
	t.Helper()
	if len(args) == 0 || args[0] != "master" {
		return
	}
	for i, a := range args {
		dir, ok := "", false
		switch {
		case a == "--data" && i+1 < len(args):
			dir, ok = args[i+1], true
		case strings.HasPrefix(a, "--data="):
			dir, ok = strings.TrimPrefix(a, "--data="), true
		}
		if !ok {
			continue
		}
		path := filepath.Join(dir, jsonrpc.TokenFile)
		if _, err := os.Stat(path); err == nil {
			return
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(testmaster.AdminToken+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return
	}
}

// waitSlaves waits until the master has n slaves connected.
func waitSlaves(t *testing.T, m *master.Master, n int) {
	t.Helper()
	waitFor(t, 30*time.Second, fmt.Sprintf("%d slaves", n), func() bool { return len(m.Scheduler().Stats().Slaves) == n })
}

// waitFor polls cond until it holds or the deadline passes; tests never
// sleep to synchronise.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// outcome is one TaskFinished call.
type outcome struct {
	task   *appnode.Task
	result []byte
	err    error
}

// collector records TaskFinished calls and counts duplicates.
type collector struct {
	mu   sync.Mutex
	got  map[uint64]outcome
	dups []uint64
}

func newCollector() *collector { return &collector{got: map[uint64]outcome{}} }

func (c *collector) finished(t *appnode.Task, result []byte, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, dup := c.got[t.ID]; dup {
		c.dups = append(c.dups, t.ID)
		return
	}
	c.got[t.ID] = outcome{t, result, err}
}

func (c *collector) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.got)
}

func (c *collector) get(id uint64) (outcome, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	o, ok := c.got[id]
	return o, ok
}

func (c *collector) duplicates() []uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]uint64(nil), c.dups...)
}

// connect opens an application node with the test admin token, shut down
// at cleanup.
func connect(t *testing.T, url, app string, c *collector) *appnode.Node {
	t.Helper()
	return connectAs(t, url, app, testmaster.AdminToken, c)
}

// connectAs opens an application node presenting token.
func connectAs(t *testing.T, url, app, token string, c *collector) *appnode.Node {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n, err := appnode.Connect(ctx, appnode.Options{Master: url, App: app, Token: token, TaskFinished: c.finished, Logger: testmaster.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = n.Shutdown(ctx)
	})
	return n
}

// freePort reserves a loopback port for a master that must come back on
// the same address after a restart.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
