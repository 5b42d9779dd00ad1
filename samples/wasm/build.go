package wasm

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// Kernels are the sample programs, by name: the package directories
// beside this file.
var Kernels = []string{"mandelbrot", "primes"}

// Build compiles the named kernel for wasip1 with the Go toolchain found
// on PATH and returns the module's bytes. It needs the
// module's source, so it runs from a checkout of Anthill: the directory
// of the package is found through `go list`.
func Build(ctx context.Context, name string) ([]byte, error) {
	goBin, err := goTool()
	if err != nil {
		return nil, err
	}
	pkg := "github.com/anthill-project/anthill/samples/wasm/" + name
	dir, err := os.MkdirTemp("", "anthill-wasm-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	out := filepath.Join(dir, name+".wasm")
	cmd := exec.CommandContext(ctx, goBin, "build", "-trimpath", "-o", out, pkg)
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("build %s for wasip1 (from its source: run this in a checkout of Anthill): %v: %s", pkg, err, bytes.TrimSpace(stderr.Bytes()))
	}
	return os.ReadFile(out)
}

// goTool finds the go command on PATH.
func goTool() (string, error) {
	p, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("building a WASM kernel needs the Go toolchain (go on PATH): %w", err)
	}
	return p, nil
}

// BuildC compiles the C kernel c/NAME.c with clang for wasm32-wasi
// (Debian: apt-get install clang lld wasi-libc libclang-rt-dev-wasm32)
// and returns the module's bytes.
func BuildC(ctx context.Context, name string) ([]byte, error) {
	clang, err := exec.LookPath("clang")
	if err != nil {
		return nil, fmt.Errorf("building a C kernel needs clang with wasi-libc (apt-get install clang lld wasi-libc libclang-rt-dev-wasm32): %w", err)
	}
	goBin, err := goTool()
	if err != nil {
		return nil, err
	}
	dirOut, err := exec.CommandContext(ctx, goBin, "list", "-f", "{{.Dir}}", "github.com/anthill-project/anthill/samples/wasm").Output()
	if err != nil {
		return nil, fmt.Errorf("find the samples' source: %w", err)
	}
	src := filepath.Join(string(bytes.TrimSpace(dirOut)), "c", name+".c")
	dir, err := os.MkdirTemp("", "anthill-wasm-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	out := filepath.Join(dir, name+".wasm")
	cmd := exec.CommandContext(ctx, clang, "--target=wasm32-wasi", "-O2", "-o", out, src)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("clang %s: %v: %s", src, err, bytes.TrimSpace(stderr.Bytes()))
	}
	return os.ReadFile(out)
}
