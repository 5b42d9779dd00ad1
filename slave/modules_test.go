package slave

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/anthill-project/anthill/internal/modsig"
	"github.com/anthill-project/anthill/internal/testwasm"
	"github.com/anthill-project/anthill/protocol"
)

// wat2wasm assembles a module of the sandbox's test data.
func wat2wasm(t *testing.T, name string) []byte {
	return testwasm.Assemble(t, filepath.Join("..", "sandbox", "testdata", name+".wat"))
}

// served is a module as the fake master serves it: any bytes under any
// hash, with any signatures.
type served struct {
	code []byte
	sigs []modsig.Signature
}

// moduleServer serves /modules/{hash} on p and counts the requests.
type moduleServer struct {
	mu      sync.Mutex
	modules map[string]served
	gets    atomic.Int32
	auth    atomic.Value // the last Authorization header
}

func serveModules(p *peer) *moduleServer {
	ms := &moduleServer{modules: map[string]served{}}
	p.mux.HandleFunc("GET /modules/{hash}", func(w http.ResponseWriter, r *http.Request) {
		ms.gets.Add(1)
		ms.auth.Store(r.Header.Get("Authorization"))
		ms.mu.Lock()
		m, ok := ms.modules[r.PathValue("hash")]
		ms.mu.Unlock()
		if !ok {
			http.Error(w, "no such module", http.StatusNotFound)
			return
		}
		b, _ := json.Marshal(m.sigs)
		w.Header().Set(protocol.HeaderSignatures, string(b))
		w.Header().Set(protocol.HeaderModuleName, "test-module")
		w.Write(m.code)
	})
	return ms
}

func (ms *moduleServer) put(hash string, code []byte, sigs ...modsig.Signature) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	ms.modules[hash] = served{code, sigs}
}

func wasmTask(id uint64, module, payload string) protocol.Task {
	return protocol.Task{ID: id, Kind: protocol.KindWASM, Module: module, Payload: []byte(payload)}
}

func TestWASMTaskFetchesVerifiesAndRuns(t *testing.T) {
	p := newPeer(t, nil)
	ms := serveModules(p)
	echo := wat2wasm(t, "echo")
	h := modsig.Hash(echo)
	ms.put(h, echo)
	start(t, p, Options{Token: "vol-token", WASM: &WASMOptions{}, Concurrency: 4})
	c := p.conn(0)
	if hello := p.hello(0); !slices.Contains(hello.Kinds, protocol.KindWASM) || len(hello.Modules) != 0 {
		t.Fatalf("hello kinds %v modules %v; want wasm among the kinds and no module held", hello.Kinds, hello.Modules)
	}
	var tasks []protocol.Task
	for i := range 8 {
		tasks = append(tasks, wasmTask(uint64(i+1), h, strings.Repeat("x", i)))
	}
	c.dispatch(t, tasks...)
	for i := range 8 {
		res := c.waitResult(t, uint64(i+1))
		if res.Err != "" || string(res.Output) != strings.Repeat("x", i) {
			t.Fatalf("task %d: output %q, error %q; want the payload echoed", i+1, res.Output, res.Err)
		}
	}
	if n := ms.gets.Load(); n != 1 {
		t.Errorf("the module was fetched %d times for 8 tasks, want once", n)
	}
	if a := ms.auth.Load(); a != "Bearer vol-token" {
		t.Errorf("the fetch presented %q, want the slave's token", a)
	}
	waitFor(t, "a modules frame", func() bool { return c.count(protocol.TypeModules) > 0 })
	for _, m := range c.messages() {
		if mm, ok := m.(*protocol.Modules); ok && (len(mm.Held) != 1 || mm.Held[0] != h) {
			t.Fatalf("modules frame %v, want [%s]", mm.Held, h)
		}
	}

}

// A master that serves other bytes than the hash names gets an error
// result, and the slave goes on serving.
func TestWASMRefusesBytesThatDoNotMatchTheHash(t *testing.T) {
	p := newPeer(t, nil)
	ms := serveModules(p)
	echo := wat2wasm(t, "echo")
	claimed := modsig.Hash([]byte("the module the application uploaded"))
	ms.put(claimed, echo)
	start(t, p, Options{WASM: &WASMOptions{}})
	c := p.conn(0)
	c.dispatch(t, wasmTask(1, claimed, "hi"))
	if res := c.waitResult(t, 1); !strings.Contains(res.Err, "module hash mismatch") {
		t.Fatalf("result %+v, want a hash mismatch error", res)
	}
	c.dispatch(t, wasmTask(2, "zz", "hi"), protocol.Task{ID: 3, Kind: "echo", Payload: []byte("still here")})
	if res := c.waitResult(t, 2); !strings.Contains(res.Err, "not a module hash") {
		t.Fatalf("result %+v, want a refusal of a malformed hash", res)
	}
	if res := c.waitResult(t, 3); string(res.Output) != "still here" {
		t.Fatalf("after the refusals, echo gave %+v", res)
	}
	ms.put(modsig.Hash(echo), echo)
	c.dispatch(t, wasmTask(4, modsig.Hash(echo), "ok"))
	if res := c.waitResult(t, 4); res.Err != "" || string(res.Output) != "ok" {
		t.Fatalf("a genuine module after a forged one: %+v", res)
	}
	c.dispatch(t, wasmTask(5, modsig.Hash([]byte("unknown")), "x"))
	if res := c.waitResult(t, 5); !strings.Contains(res.Err, "404") {
		t.Fatalf("a module the master does not have: %+v, want the master's 404 in the error", res)
	}
}

// A slave with trust keys runs only modules one of them signed, and says
// so in its Hello.
func TestWASMTrustKeys(t *testing.T) {
	pub, priv, err := modsig.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	key, _ := modsig.ParsePrivate(priv)
	_, otherPriv, _ := modsig.GenerateKey()
	otherKey, _ := modsig.ParsePrivate(otherPriv)

	p := newPeer(t, nil)
	ms := serveModules(p)
	echo := wat2wasm(t, "echo")
	noop := wat2wasm(t, "noop")
	he, hn := modsig.Hash(echo), modsig.Hash(noop)
	ms.put(he, echo, modsig.Sign(otherKey, he), modsig.Sign(key, he))
	ms.put(hn, noop, modsig.Sign(otherKey, hn), modsig.Signature{Key: pub, Sig: modsig.Sign(key, he).Sig})
	start(t, p, Options{WASM: &WASMOptions{TrustKeys: []string{pub}}})
	c := p.conn(0)
	if tk := p.hello(0).TrustKeys; len(tk) != 1 || tk[0] != pub {
		t.Fatalf("hello trust keys %v, want [%s]", tk, pub)
	}
	c.dispatch(t, wasmTask(1, hn, ""), wasmTask(2, he, "signed"))
	if res := c.waitResult(t, 1); !strings.Contains(res.Err, "not signed by a key this slave trusts") {
		t.Fatalf("a module signed by another key, with our key's signature of another module: %+v, want refused", res)
	}
	if res := c.waitResult(t, 2); res.Err != "" || string(res.Output) != "signed" {
		t.Fatalf("a module our key signed: %+v", res)
	}
	if _, err := New(Options{Master: p.url(), WASM: &WASMOptions{TrustKeys: []string{"not a key"}}}); err == nil {
		t.Fatal("New accepted a malformed trust key")
	}
}

// With a cache directory, a restarted slave holds what it fetched: it
// says so in its Hello and fetches nothing again. Past the cache's bound
// the least recently used module goes.
func TestWASMCacheSurvivesRestartWithinItsBound(t *testing.T) {
	dir := t.TempDir()
	p := newPeer(t, nil)
	ms := serveModules(p)
	echo, noop := wat2wasm(t, "echo"), wat2wasm(t, "noop")
	he, hn := modsig.Hash(echo), modsig.Hash(noop)
	ms.put(he, echo)
	ms.put(hn, noop)
	opts := WASMOptions{Cache: dir, CacheBytes: int64(len(echo) + len(noop) - 1)}
	r := start(t, p, Options{WASM: &opts})
	c := p.conn(0)
	c.dispatch(t, wasmTask(1, he, "a"))
	c.waitResult(t, 1)
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	start(t, p, Options{WASM: &opts})
	c = p.conn(1)
	if m := p.hello(1).Modules; len(m) != 1 || m[0] != he {
		t.Fatalf("after a restart the hello holds %v, want [%s]", m, he)
	}
	c.dispatch(t, wasmTask(2, he, "b"))
	if res := c.waitResult(t, 2); string(res.Output) != "b" {
		t.Fatalf("from the cache: %+v", res)
	}
	if n := ms.gets.Load(); n != 1 {
		t.Fatalf("%d fetches, want 1: the restarted slave should use its cache", n)
	}
	c.dispatch(t, wasmTask(3, hn, ""))
	c.waitResult(t, 3)
	waitFor(t, "a modules frame with only the newest module", func() bool {
		ms := c.messages()
		for i := len(ms) - 1; i >= 0; i-- {
			if mm, ok := ms[i].(*protocol.Modules); ok {
				return len(mm.Held) == 1 && mm.Held[0] == hn
			}
		}
		return false
	})
	if _, err := os.Stat(filepath.Join(dir, he+".wasm")); !os.IsNotExist(err) {
		t.Fatalf("the evicted module is still on disk: %v", err)
	}
}

// In process, with wazero's loop checks, a module behaves the same.
func TestWASMInProcess(t *testing.T) {
	p := newPeer(t, nil)
	ms := serveModules(p)
	echo := wat2wasm(t, "echo")
	ms.put(modsig.Hash(echo), echo)
	start(t, p, Options{WASM: &WASMOptions{InProcess: true}})
	c := p.conn(0)
	c.dispatch(t, wasmTask(1, modsig.Hash(echo), "in process"))
	if res := c.waitResult(t, 1); res.Err != "" || string(res.Output) != "in process" {
		t.Fatalf("in process: %+v", res)
	}
}
