package sched

import (
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/anthill-project/anthill/internal/modsig"
	"github.com/anthill-project/anthill/protocol"
)

// registry is the master's module registry as the scheduler sees it.
type registry struct {
	mu      sync.Mutex
	signers map[string][]string
}

func (r *registry) add(hash string, signers ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.signers[hash] = signers
}

func (r *registry) lookup(hash string) ([]string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	k, ok := r.signers[hash]
	return k, ok
}

func newModuleHarness(t *testing.T) (*harness, *registry) {
	reg := &registry{signers: map[string][]string{}}
	return newHarness(t, Options{Module: reg.lookup}), reg
}

func modHash(s string) string { return modsig.Hash([]byte(s)) }

func wasmTasks(module string, n int) []protocol.NewTask {
	ts := make([]protocol.NewTask, n)
	for i := range ts {
		ts[i] = protocol.NewTask{Module: module, Payload: []byte{byte(i)}}
	}
	return ts
}

// wasmSlave attaches a slave that runs WASM and holds the given modules.
func (h *harness) wasmSlave(name string, window int, trust []string, holds ...string) (*Slave, *outbox) {
	out := newOutbox(h.t, "slave "+name)
	hello := &protocol.Hello{Version: protocol.Version, Role: protocol.RoleSlave, Name: name,
		Kinds: []string{"echo", protocol.KindWASM}, Concurrency: window, Modules: holds, TrustKeys: trust}
	return h.s.AttachSlave("session-"+name, hello, out), out
}

func TestSubmitRefusesUnknownModule(t *testing.T) {
	h, reg := newModuleHarness(t)
	known := modHash("known")
	reg.add(known)
	_, err := h.s.Submit(t.Context(), "app", append(wasmTasks(known, 2), wasmTasks(modHash("never uploaded"), 1)...))
	var se *SubmitError
	if !errors.As(err, &se) || se.Index != 2 || se.Field != protocol.FieldModule || !strings.Contains(se.Problem, "not a module uploaded") {
		t.Fatalf("Submit with an unknown module = %v, want a refusal of task 2's module", err)
	}
	a, out := h.app("app")
	h.s.SubmitBatch(a, out, &protocol.Submit{Seq: 1, Tasks: wasmTasks(modHash("other"), 1)})
	if rej := readAs[*protocol.SubmitReject](t, out); rej.Index != 0 || rej.Code != protocol.CodeInvalidTask {
		t.Fatalf("a pushed batch with an unknown module: %+v, want task 0 refused", rej)
	}
	id := h.submit("app", wasmTasks(known, 1)...)
	if info := h.task(id); info.Kind != protocol.KindWASM || info.Module != known {
		t.Fatalf("accepted task: kind %q module %q, want %q %q", info.Kind, info.Module, protocol.KindWASM, known)
	}
}

func TestModuleTasksGoOnlyToWASMSlaves(t *testing.T) {
	h, reg := newModuleHarness(t)
	m := modHash("m")
	reg.add(m)
	_, native := h.slave("native", 4, "echo")
	first := h.submit("app", wasmTasks(m, 2)...)
	h.submit("app", tasksOf("echo", 1)...)
	if d := readAs[*protocol.Dispatch](t, native); len(d.Tasks) != 1 || d.Tasks[0].Kind != "echo" {
		t.Fatalf("a slave without wasm got %+v, want only the echo task", d.Tasks)
	}
	native.quiet(t)
	_, w := h.wasmSlave("w", 4, nil)
	d := readAs[*protocol.Dispatch](t, w)
	if len(d.Tasks) != 2 {
		t.Fatalf("the wasm slave got %d tasks, want 2", len(d.Tasks))
	}
	for i, task := range d.Tasks {
		if task.ID != first+uint64(i) || task.Kind != protocol.KindWASM || task.Module != m {
			t.Fatalf("dispatched %+v, want task %d of kind wasm, module %s", task, first+uint64(i), m)
		}
	}
	if n := h.s.ModuleTasks(m); n != 2 {
		t.Fatalf("ModuleTasks = %d while 2 run, want 2", n)
	}
	if h.s.ForgetModule(m) {
		t.Fatal("ForgetModule forgot a module that tasks still run")
	}
}

// A module's tasks go to the slave that holds it while it has room; a
// slave that does not hold it gets what is left.
func TestHoldersArePreferred(t *testing.T) {
	h, reg := newModuleHarness(t)
	m := modHash("m")
	reg.add(m)
	holder, hout := h.wasmSlave("holder", 1, nil, m)
	_, oout := h.wasmSlave("other", 1, nil)
	for i := range 20 {
		id := h.submit("app", wasmTasks(m, 1)...)
		d := readAs[*protocol.Dispatch](t, hout)
		if len(d.Tasks) != 1 || d.Tasks[0].ID != id {
			t.Fatalf("round %d: the holder got %+v, want task %d", i, d.Tasks, id)
		}
		oout.quiet(t)
		h.complete(holder, []protocol.Result{result(id, 1, "ok")})
		h.wait(id)
	}
	// The holder has one slot: the second task goes to the other slave.
	first := h.submit("app", wasmTasks(m, 2)...)
	if d := readAs[*protocol.Dispatch](t, hout); d.Tasks[0].ID != first {
		t.Fatalf("the holder got %d, want %d", d.Tasks[0].ID, first)
	}
	if d := readAs[*protocol.Dispatch](t, oout); d.Tasks[0].ID != first+1 {
		t.Fatalf("the other slave got %d, want the leftover %d", d.Tasks[0].ID, first+1)
	}
}

// A Modules frame makes a slave a holder from then on.
func TestHeldFrameMakesAHolder(t *testing.T) {
	h, reg := newModuleHarness(t)
	m, n := modHash("m"), modHash("n")
	reg.add(m)
	reg.add(n)
	_, aout := h.wasmSlave("a", 1, nil, n)
	b, bout := h.wasmSlave("b", 1, nil, n)
	h.s.Held(b, []string{n, m})
	for i := range 10 {
		id := h.submit("app", wasmTasks(m, 1)...)
		if d := readAs[*protocol.Dispatch](t, bout); d.Tasks[0].ID != id {
			t.Fatalf("round %d: b got %d, want %d", i, d.Tasks[0].ID, id)
		}
		aout.quiet(t)
		h.complete(b, []protocol.Result{result(id, 1, "ok")})
		h.wait(id)
	}
}

// A slave that trusts keys gets only tasks of modules one of them signed;
// a signature added later opens the module to it.
func TestTrustKeysRestrictModules(t *testing.T) {
	h, reg := newModuleHarness(t)
	pub, _, err := modsig.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	other, _, _ := modsig.GenerateKey()
	signed, unsigned, foreign := modHash("signed"), modHash("unsigned"), modHash("foreign")
	reg.add(signed, pub)
	reg.add(unsigned)
	reg.add(foreign, other)
	_, out := h.wasmSlave("strict", 8, []string{" " + pub + "\n"})
	idU := h.submit("app", wasmTasks(unsigned, 1)...)
	h.submit("app", wasmTasks(foreign, 1)...)
	idS := h.submit("app", wasmTasks(signed, 1)...)
	d := readAs[*protocol.Dispatch](t, out)
	if len(d.Tasks) != 1 || d.Tasks[0].ID != idS {
		t.Fatalf("the strict slave got %+v, want only task %d of the signed module", d.Tasks, idS)
	}
	out.quiet(t)
	reg.add(unsigned, other, pub)
	h.s.ModuleChanged(unsigned)
	if d := readAs[*protocol.Dispatch](t, out); len(d.Tasks) != 1 || d.Tasks[0].ID != idU {
		t.Fatalf("after signing: %+v, want task %d", d.Tasks, idU)
	}
	out.quiet(t)
	if st := h.s.Stats(); !hasPending(st, protocol.KindWASM, 1) {
		t.Fatalf("stats kinds %+v, want 1 pending wasm task (the foreign one)", st.Kinds)
	}
}

func hasPending(st Stats, kind string, n int) bool {
	for _, k := range st.Kinds {
		if k.Kind == kind {
			return k.Pending == n
		}
	}
	return false
}

// A module task keeps its module across a restart of the master.
func TestModuleTasksSurviveRestart(t *testing.T) {
	h, reg := newModuleHarness(t)
	m := modHash("m")
	reg.add(m)
	id := h.submit("app", wasmTasks(m, 1)...)
	h.restart()
	if n := h.s.ModuleTasks(m); n != 1 {
		t.Fatalf("after a restart ModuleTasks = %d, want 1", n)
	}
	sl, out := h.wasmSlave("w", 1, nil)
	d := readAs[*protocol.Dispatch](t, out)
	if d.Tasks[0].ID != id || d.Tasks[0].Module != m {
		t.Fatalf("after a restart: %+v, want task %d of module %s", d.Tasks[0], id, m)
	}
	h.complete(sl, []protocol.Result{result(id, 1, "ok")})
	h.wait(id)
	if n := h.s.ModuleTasks(m); n != 0 {
		t.Fatalf("ModuleTasks = %d once done, want 0", n)
	}
	if !h.s.ForgetModule(m) {
		t.Fatal("ForgetModule refused a module no task needs")
	}
}
