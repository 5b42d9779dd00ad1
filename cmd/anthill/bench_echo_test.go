package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// The embedded module is what its source assembles to: no binary without
// its source.
func TestBenchEchoModuleIsItsSource(t *testing.T) {
	bin, err := exec.LookPath("wat2wasm")
	if err != nil {
		t.Fatalf("install wabt (apt-get install wabt): %v", err)
	}
	out := filepath.Join(t.TempDir(), "echo.wasm")
	if b, err := exec.Command(bin, "bench_echo.wat", "-o", out).CombinedOutput(); err != nil {
		t.Fatalf("wat2wasm: %v: %s", err, b)
	}
	want, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(benchEchoModule, want) {
		t.Fatal("bench_echo.wasm is not bench_echo.wat assembled: run wat2wasm bench_echo.wat -o bench_echo.wasm")
	}
}
