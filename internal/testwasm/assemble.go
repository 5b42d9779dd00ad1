package testwasm

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Assemble turns the WebAssembly text file wat into a binary module with
// wabt's wat2wasm, failing the test (never skipping it) when the tool is
// missing: CI installs it.
func Assemble(tb testing.TB, wat string) []byte {
	tb.Helper()
	bin, err := exec.LookPath("wat2wasm")
	if err != nil {
		tb.Fatalf("assembling %s needs wat2wasm: install wabt (apt-get install wabt): %v", wat, err)
	}
	out := filepath.Join(tb.TempDir(), filepath.Base(wat)+".wasm")
	if b, err := exec.Command(bin, wat, "-o", out).CombinedOutput(); err != nil {
		tb.Fatalf("wat2wasm %s: %v: %s", wat, err, b)
	}
	code, err := os.ReadFile(out)
	if err != nil {
		tb.Fatal(err)
	}
	return code
}
