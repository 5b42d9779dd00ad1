package wasm

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/anthill-project/anthill/internal/modsig"
	"github.com/anthill-project/anthill/sandbox"
)

// readmeBlock returns the first fenced block of lang after the line that
// starts with intro in the README.
func readmeBlock(t *testing.T, intro, lang string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, "\n"+intro)
	if i < 0 {
		t.Fatalf("README has no paragraph starting %q", intro)
	}
	m := regexp.MustCompile("(?s)```" + lang + "\n(.*?)```").FindStringSubmatch(s[i:])
	if m == nil {
		t.Fatalf("README: no %s block after %q", lang, intro)
	}
	return m[1]
}

// The README's two examples of a WASM task build as it says and behave as
// the contract says.
func TestReadmeExamples(t *testing.T) {
	dir := t.TempDir()
	goDir := filepath.Join(dir, "go")
	os.MkdirAll(goDir, 0o755)
	os.WriteFile(filepath.Join(goDir, "main.go"), []byte(readmeBlock(t, "In Go,", "go")), 0o644)
	os.WriteFile(filepath.Join(goDir, "go.mod"), []byte("module upper\n\ngo 1.22\n"), 0o644)
	build := exec.Command("go", "build", "-o", filepath.Join(dir, "upper-go.wasm"), ".")
	build.Dir = goDir
	build.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "GOFLAGS=")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("the README's Go example: %v: %s", err, out)
	}
	cSrc := filepath.Join(dir, "upper.c")
	os.WriteFile(cSrc, []byte(readmeBlock(t, "In C,", "c")), 0o644)
	if out, err := exec.Command("clang", "--target=wasm32-wasi", "-O2", "-o", filepath.Join(dir, "upper-c.wasm"), cSrc).CombinedOutput(); err != nil {
		t.Fatalf("the README's C example (needs clang lld wasi-libc libclang-rt-dev-wasm32): %v: %s", err, out)
	}
	ctx := context.Background()
	w, err := sandbox.NewWASM(ctx, sandbox.WASMOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close(ctx)
	for _, name := range []string{"upper-go", "upper-c"} {
		code, err := os.ReadFile(filepath.Join(dir, name+".wasm"))
		if err != nil {
			t.Fatal(err)
		}
		if err := sandbox.CheckModule(ctx, code); err != nil {
			t.Fatalf("%s: the master would refuse it: %v", name, err)
		}
		h := modsig.Hash(code)
		if err := w.Load(ctx, h, name, code); err != nil {
			t.Fatal(err)
		}
		out, err := w.Run(ctx, h, []byte("hello"), 1024)
		if err != nil || string(out) != "HELLO" {
			t.Errorf("%s: %q, %v; want HELLO", name, out, err)
		}
	}
}
