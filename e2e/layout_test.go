package e2e

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/anthill-project/anthill/"

type pkg struct {
	ImportPath string
	Doc        string
	Name       string
	Deps       []string
}

func listPackages(t *testing.T) []pkg {
	t.Helper()
	out, err := exec.Command("go", "list", "-json", "-deps=false", "../...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var ps []pkg
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
	}
	return ps
}

// Every package says in its doc comment what its one job is.
func TestEveryPackageHasADoc(t *testing.T) {
	for _, p := range listPackages(t) {
		if strings.TrimSpace(p.Doc) == "" {
			t.Errorf("%s has no package doc comment", p.ImportPath)
		}
	}
}

// Dependencies point one way, as the package table of docs/ARCHITECTURE.md
// says: protocol and stats need nothing of ours, master and slave never
// import each other, the scheduler knows no transport, nothing imports cmd
// or samples (but a sample: a WASM kernel wraps the native one).
func TestDependencyDirection(t *testing.T) {
	allowed := map[string][]string{
		// A stdlib-only reader of the varint formats of the wire and the store.
		"internal/binenc": {},
		"protocol":        {"internal/binenc"},
		"stats":           {},
		// The numbers of stats as Prometheus metrics, and nothing else.
		"stats/promexport": {"stats"},
		"internal/wire":    {},
		// The guards of the network edge (connection caps, credential
		// failure limiter, bearer check), shared by master, web and jsonrpc;
		// standard library only.
		"internal/netguard": {},
		// The client side of a session, shared by slave and appnode.
		"internal/dial": {"protocol", "internal/wire", "internal/binenc"},
		"sandbox":       {"protocol", "internal/binenc"},
		// Ed25519 signatures of modules; standard library only.
		"internal/modsig": {},
		"master/store":    {"protocol", "internal/binenc", "internal/modsig"},
		// Trust in results: pure policy, standard library and its record
		// encoding only.
		"master/trust": {"internal/binenc"},
		// The scheduler knows no sockets: no wire, no HTTP.
		"master/sched": {"protocol", "stats", "master/store", "master/trust", "internal/binenc", "internal/modsig"},
		// Credentials: hashes in a store it reaches through an interface.
		"master/identity": {},
		// WASM modules: checked uploads in the store, metadata in memory.
		"master/modules": {"master/store", "internal/modsig", "protocol", "internal/binenc"},
		"master":         {"protocol", "stats", "stats/promexport", "internal/wire", "internal/netguard", "master/store", "master/sched", "master/trust", "master/identity", "master/modules", "internal/modsig", "internal/binenc", "sandbox"},
		"slave":          {"protocol", "internal/wire", "internal/dial", "sandbox", "internal/binenc", "internal/modsig"},
		"appnode":        {"protocol", "internal/wire", "internal/dial", "internal/binenc", "internal/modsig"},
		// A real master for tests: the master and what it imports.
		"internal/testmaster": {"master", "master/sched", "master/trust", "master/store", "master/identity", "master/modules", "internal/modsig", "protocol", "stats", "stats/promexport", "internal/wire", "internal/netguard", "internal/binenc", "sandbox"},
		// The operator's view, built from the scheduler, stats and the
		// volunteers' identities.
		"internal/view": {"master/sched", "master/trust", "master/identity", "protocol", "stats", "master/store", "internal/binenc", "internal/modsig"},
		// jsonrpc serves the scheduler's operator API and the view, and the
		// credential and module methods with master/identity's and
		// master/modules' shapes; it sees nothing
		// of the transport, slave or appnode.
		"jsonrpc": {"internal/view", "master/sched", "master/trust", "master/identity", "master/modules", "internal/modsig", "protocol", "stats", "master/store", "internal/netguard", "internal/binenc"},
		// So does the dashboard, beside the API rather than on top of it.
		"web": {"internal/view", "master/sched", "master/trust", "master/identity", "protocol", "stats", "master/store", "internal/netguard", "internal/binenc", "internal/modsig"},
	}
	for _, p := range listPackages(t) {
		name := strings.TrimPrefix(p.ImportPath, module)
		rules, ok := allowed[name]
		for _, d := range p.Deps {
			if !strings.HasPrefix(d, module) {
				continue
			}
			dep := strings.TrimPrefix(d, module)
			onTop := strings.HasPrefix(name, "cmd/") || name == "e2e" || strings.HasPrefix(name, "samples/")
			if strings.HasPrefix(dep, "cmd/") || (strings.HasPrefix(dep, "samples/") && !onTop) {
				t.Errorf("%s imports %s: nothing may import cmd or samples", name, dep)
			}
			if ok && !contains(rules, dep) {
				t.Errorf("%s imports %s; it may import only %v", name, dep, rules)
			}
		}
	}
}

// The scheduler knows no transport, not even through what it imports: no
// HTTP server or client, no WebSocket, no frame writer. It records into
// stats, which leaves Prometheus (and the net/http it brings) to
// stats/promexport.
func TestSchedulerHasNoTransport(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "../master/sched").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	deps := strings.Fields(string(out))
	for _, banned := range []string{"net/http", "github.com/gorilla/websocket", module + "internal/wire"} {
		if contains(deps, banned) {
			t.Errorf("master/sched depends on %s", banned)
		}
	}
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if x == y {
			return true
		}
	}
	return false
}
