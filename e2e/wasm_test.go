package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anthill-project/anthill/appnode"
	"github.com/anthill-project/anthill/internal/modsig"
	"github.com/anthill-project/anthill/master"
	"github.com/anthill-project/anthill/protocol"
	"github.com/anthill-project/anthill/samples/primes"
	"github.com/anthill-project/anthill/samples/wasm"
)

// wasmModules builds each module once per test binary.
var wasmModules = struct {
	sync.Mutex
	code map[string][]byte
}{code: map[string][]byte{}}

// wasmModule builds a sample kernel, or "hostile", the sandbox's test
// module of attacks.
func wasmModule(t *testing.T, name string) []byte {
	t.Helper()
	wasmModules.Lock()
	defer wasmModules.Unlock()
	if c := wasmModules.code[name]; c != nil {
		return c
	}
	var code []byte
	var err error
	if name == "hostile" {
		out := filepath.Join(t.TempDir(), "hostile.wasm")
		cmd := exec.Command("go", "build", "-o", out, ".")
		cmd.Dir = filepath.Join("..", "sandbox", "testdata", "hostile")
		cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build the hostile module: %v: %s", err, b)
		}
		code, err = os.ReadFile(out)
	} else {
		code, err = wasm.Build(context.Background(), name)
	}
	if err != nil {
		t.Fatal(err)
	}
	wasmModules.code[name] = code
	return code
}

// runAll pushes tasks and waits until each has finished.
func runAll(t *testing.T, node *appnode.Node, c *collector, tasks []*appnode.Task) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	if err := node.PushTasks(ctx, tasks); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 120*time.Second, fmt.Sprintf("%d tasks finished", len(tasks)), func() bool {
		for _, task := range tasks {
			if _, ok := c.get(task.ID); !ok {
				return false
			}
		}
		return true
	})
}

// Stock slave processes run an uploaded module they never had: every
// answer is the native kernel's, the module is fetched once per slave.
func TestWASMOnStockSlaves(t *testing.T) {
	m := startMaster(t, master.Options{})
	c := newCollector()
	node := connect(t, m.URL(), "primes-app", c)
	hash, err := node.UploadModule(context.Background(), "primes", wasmModule(t, "primes"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		startSlave(t, m.URL(), fmt.Sprintf("wasm-%d", i), "--concurrency", "2")
	}
	waitSlaves(t, m, 2)
	var tasks []*appnode.Task
	for i := range 300 {
		lo := uint64(i) * 10_000
		tasks = append(tasks, &appnode.Task{Module: hash, Payload: fmt.Appendf(nil, "%d %d", lo, lo+10_000)})
	}
	runAll(t, node, c, tasks)
	for _, task := range tasks {
		o, _ := c.get(task.ID)
		want, _ := primes.Handler(context.Background(), task.Payload)
		if o.err != nil || string(o.result) != string(want) {
			t.Fatalf("task %q: %q, %v; want %q", task.Payload, o.result, o.err, want)
		}
	}
	info, err := m.Scheduler().Task(tasks[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	if info.Kind != protocol.KindWASM || info.Module != hash {
		t.Fatalf("the task is of kind %q, module %q; want %q, %q", info.Kind, info.Module, protocol.KindWASM, hash)
	}
	if err := m.DeleteModule(hash); err != nil {
		t.Fatalf("deleting the module once its tasks are done: %v", err)
	}
	err = node.PushTask(context.Background(), &appnode.Task{Module: hash, Payload: []byte("0 10")})
	if err == nil || !strings.Contains(err.Error(), "not a module uploaded") {
		t.Fatalf("a task naming a deleted module: %v, want refused", err)
	}
}

// A module can read no file, reach no network and see no environment;
// one that loops, grows past its memory, floods stdout or exits non-zero
// is an error result; through all of it the slave process serves on.
func TestWASMHostileModuleOnAStockSlave(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan struct{}, 1)
	go func() {
		if c, err := ln.Accept(); err == nil {
			accepted <- struct{}{}
			c.Close()
		}
	}()
	m := startMaster(t, master.Options{MaxResult: 64 << 10})
	c := newCollector()
	node := connect(t, m.URL(), "hostile-app", c)
	hash, err := node.UploadModule(context.Background(), "hostile", wasmModule(t, "hostile"))
	if err != nil {
		t.Fatal(err)
	}
	slave := startSlave(t, m.URL(), "victim", "--concurrency", "2", "--wasm-memory", "64MiB")
	waitSlaves(t, m, 1)
	session := m.Scheduler().Stats().Slaves[0].Session
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	cases := []struct {
		payload string
		ok      bool
		want    string // in the result, or in the error
		not     string // never in the result
	}{
		{"echo hi", true, "hi", ""},
		{"open", true, "open failed", "root:"},
		{"dial " + port, true, "dial failed", ""},
		{"env", true, "0 variables", "PATH="},
		{"args", true, `["hostile"]`, ""},
		{"loop", false, "timeout", ""},
		{"alloc", false, "memory", ""},
		{"flood", false, "output too large", ""},
		{"exit 3", false, "code 3", ""},
		{"panic", false, "code 2", ""},
	}
	var tasks []*appnode.Task
	for _, cs := range cases {
		// Only the loop may meet its timeout: the others end long before
		// a minute on any machine.
		timeout := time.Minute
		if cs.payload == "loop" {
			timeout = 2 * time.Second
		}
		tasks = append(tasks, &appnode.Task{Module: hash, Payload: []byte(cs.payload), Timeout: timeout, MaxAttempts: 1})
	}
	runAll(t, node, c, tasks)
	for i, cs := range cases {
		o, _ := c.get(tasks[i].ID)
		got := string(o.result)
		if o.err != nil {
			got = o.err.Error()
		}
		if (o.err == nil) != cs.ok || !strings.Contains(got, cs.want) || cs.not != "" && strings.Contains(got, cs.not) {
			t.Errorf("%q: result %q, error %v; want ok=%v containing %q without %q", cs.payload, o.result, o.err, cs.ok, cs.want, cs.not)
		}
	}
	select {
	case <-accepted:
		t.Error("the module's dial reached a socket on the host")
	default:
	}
	// Still serving: the same slave process runs the next task.
	after := &appnode.Task{Module: hash, Payload: []byte("echo still here")}
	runAll(t, node, c, []*appnode.Task{after})
	if o, _ := c.get(after.ID); string(o.result) != "still here" {
		t.Fatalf("after the attacks: %q, %v", o.result, o.err)
	}
	select {
	case <-slave.done:
		t.Fatalf("the slave process exited: %v", slave.err)
	default:
	}
	if st := m.Scheduler().Stats(); len(st.Slaves) != 1 || st.Slaves[0].Session != session {
		t.Fatalf("slaves %+v: want the one session %s throughout", st.Slaves, session)
	}
}

// A slave started with --trust-key gets only modules that key signed; a
// signature uploaded later opens the module to it.
func TestWASMTrustKeyOnAStockSlave(t *testing.T) {
	dir := t.TempDir()
	keygen := start(t, "keygen", "--out", filepath.Join(dir, "project"))
	<-keygen.done
	pubB, err := os.ReadFile(filepath.Join(dir, "project.pub"))
	if err != nil {
		t.Fatal(err)
	}
	priv, err := modsig.LoadPrivate(filepath.Join(dir, "project.key"))
	if err != nil {
		t.Fatal(err)
	}
	pub := strings.TrimSpace(string(pubB))
	m := startMaster(t, master.Options{})
	c := newCollector()
	node := connect(t, m.URL(), "signed-app", c)
	code := wasmModule(t, "primes")
	unsigned, err := node.UploadModule(context.Background(), "primes", code)
	if err != nil {
		t.Fatal(err)
	}
	startSlave(t, m.URL(), "strict", "--trust-key", pub)
	waitSlaves(t, m, 1)
	waiting := &appnode.Task{Module: unsigned, Payload: []byte("0 100")}
	if err := node.PushTask(context.Background(), waiting); err != nil {
		t.Fatal(err)
	}
	// A native task submitted after it runs first: the strict slave is
	// not offered the unsigned module.
	native := &appnode.Task{Kind: "echo", Payload: []byte("native")}
	runAll(t, node, c, []*appnode.Task{native})
	if info, _ := m.Scheduler().Task(waiting.ID); info.State != protocol.StatePending {
		t.Fatalf("the unsigned module's task is %v, want pending: no trusted slave may run it", info.State)
	}
	if _, err := node.UploadModule(context.Background(), "primes", code, modsig.Sign(priv, unsigned)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "the task once signed", func() bool { _, ok := c.get(waiting.ID); return ok })
	if o, _ := c.get(waiting.ID); o.err != nil || string(o.result) != "25\n" {
		t.Fatalf("signed: %q, %v; want 25", o.result, o.err)
	}
}

// A trusted cluster's slave runs an allow-listed program for its kind,
// payload on stdin; a bad --allow-exec is a usage error.
func TestAllowExecOnAStockSlave(t *testing.T) {
	m := startMaster(t, master.Options{})
	c := newCollector()
	node := connect(t, m.URL(), "exec-app", c)
	startSlave(t, m.URL(), "cluster-node", "--allow-exec", "reverse=/usr/bin/rev", "--no-wasm")
	waitSlaves(t, m, 1)
	task := &appnode.Task{Kind: "reverse", Payload: []byte("anthill\n")}
	runAll(t, node, c, []*appnode.Task{task})
	if o, _ := c.get(task.ID); o.err != nil || string(o.result) != "llihtna\n" {
		t.Fatalf("reverse: %q, %v", o.result, o.err)
	}
	if kinds := m.Scheduler().Stats().Slaves[0].Kinds; slices.Contains(kinds, protocol.KindWASM) || !slices.Contains(kinds, "reverse") {
		t.Fatalf("a --no-wasm slave with an allowed program announces %v", kinds)
	}
	bad := start(t, "slave", "--master", m.URL(), "--allow-exec", "reverse=rev")
	<-bad.done
	var exit *exec.ExitError
	if !errors.As(bad.err, &exit) || exit.ExitCode() != 2 {
		t.Fatalf("--allow-exec with a relative path: %v, want exit code 2", bad.err)
	}
	bad.line(t, "absolute")
}
