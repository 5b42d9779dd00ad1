package main

import (
	"bytes"
	"testing"

	"github.com/anthill-project/anthill/internal/testwasm"
)

// The embedded module is what its source assembles to: no binary without
// its source.
func TestBenchEchoModuleIsItsSource(t *testing.T) {
	if !bytes.Equal(benchEchoModule, testwasm.Assemble(t, "bench_echo.wat")) {
		t.Fatal("bench_echo.wasm is not bench_echo.wat assembled: run wat2wasm bench_echo.wat -o bench_echo.wasm")
	}
}
