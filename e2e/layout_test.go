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

// Dependencies point one way (STYLE.md, DESIGN.md): stats needs nothing of
// ours and protocol only internal/binenc, a leaf that imports the standard
// library alone; master and slave never import each other; nothing imports
// cmd or samples.
func TestDependencyDirection(t *testing.T) {
	allowed := map[string][]string{
		"internal/binenc": {},
		"protocol":        {"internal/binenc"},
		"stats":           {},
		"internal/wire":   {},
		"sandbox":         {"protocol", "internal/binenc"},
		"master/store":    {"protocol", "internal/binenc"},
		"master":          {"protocol", "stats", "internal/wire", "master/store", "internal/binenc"},
		"slave":           {"protocol", "stats", "internal/wire", "sandbox", "internal/binenc"},
		"appnode":         {"protocol", "internal/wire", "internal/binenc"},
		// jsonrpc attaches to the master; it sees the master's own
		// dependencies through it, and nothing of slave or appnode.
		"jsonrpc": {"master", "protocol", "stats", "internal/wire", "master/store", "internal/binenc"},
		// So does the dashboard, beside the API rather than on top of it.
		"web": {"master", "protocol", "stats", "internal/wire", "master/store", "internal/binenc"},
	}
	for _, p := range listPackages(t) {
		name := strings.TrimPrefix(p.ImportPath, module)
		rules, ok := allowed[name]
		for _, d := range p.Deps {
			if !strings.HasPrefix(d, module) {
				continue
			}
			dep := strings.TrimPrefix(d, module)
			onTop := strings.HasPrefix(name, "cmd/") || name == "e2e"
			if strings.HasPrefix(dep, "cmd/") || (strings.HasPrefix(dep, "samples/") && !onTop) {
				t.Errorf("%s imports %s: nothing may import cmd or samples", name, dep)
			}
			if ok && !contains(rules, dep) {
				t.Errorf("%s imports %s; it may import only %v", name, dep, rules)
			}
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
