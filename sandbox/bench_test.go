package sandbox

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
)

// The Run benchmarks measure the per-task overhead of each runner: the
// task itself does next to nothing.

func BenchmarkRunNative(b *testing.B) {
	r := NewRegistry()
	r.Register("echo", echo)
	p := &InProcess{Registry: r}
	payload := bytes.Repeat([]byte("x"), 1024)
	ctx := context.Background()
	for b.Loop() {
		if _, err := p.Run(ctx, "echo", payload); err != nil {
			b.Fatal(err)
		}
	}
}

func benchmarkRunWASM(b *testing.B, name string, payload []byte, want int) {
	w := newWASM(b, WASMOptions{})
	hash := load(b, w, name)
	ctx := context.Background()
	for b.Loop() {
		out, err := w.Run(ctx, hash, payload, 1<<20)
		if err != nil || len(out) != want {
			b.Fatalf("%d bytes, %v", len(out), err)
		}
	}
}

func BenchmarkRunWASMNoop(b *testing.B) { benchmarkRunWASM(b, "noop", nil, 0) }

func BenchmarkRunWASMSmall(b *testing.B) {
	benchmarkRunWASM(b, "echo", bytes.Repeat([]byte("x"), 1024), 1024)
}

// BenchmarkRunWASMGo runs a Go module that copies stdin to stdout, and
// the test module hostile's echo, which pays for the initialisation of
// more packages (net, crypto, fmt).
func BenchmarkRunWASMGo(b *testing.B) {
	payload := bytes.Repeat([]byte("x"), 1024)
	b.Run("goecho", func(b *testing.B) { benchmarkRunWASM(b, "goecho", payload, 1024) })
	b.Run("hostile", func(b *testing.B) {
		benchmarkRunWASM(b, "hostile", append([]byte("echo "), payload...), 1024)
	})
}

// BenchmarkLoadCold is the compilation of a Go module, as on a volunteer
// machine's first task of it.
func BenchmarkLoadCold(b *testing.B) {
	code := fixture(b, "hostile")
	hash := hashOf(code)
	ctx := context.Background()
	for b.Loop() {
		dir, err := os.MkdirTemp(b.TempDir(), "cache")
		if err != nil {
			b.Fatal(err)
		}
		w, err := NewWASM(ctx, WASMOptions{CacheDir: dir})
		if err != nil {
			b.Fatal(err)
		}
		if err := w.Load(ctx, hash, "hostile", code); err != nil {
			b.Fatal(err)
		}
		w.Close(ctx)
		os.RemoveAll(dir)
	}
}

// BenchmarkLoadCached is a Go module's Load by a new runtime, as after a
// restart of the slave: it reads the compiled code from the cache dir.
func BenchmarkLoadCached(b *testing.B) {
	code := fixture(b, "hostile")
	hash := hashOf(code)
	ctx := context.Background()
	dir := filepath.Join(b.TempDir(), "cache")
	loadOnce := func() {
		w, err := NewWASM(ctx, WASMOptions{CacheDir: dir})
		if err != nil {
			b.Fatal(err)
		}
		if err := w.Load(ctx, hash, "hostile", code); err != nil {
			b.Fatal(err)
		}
		w.Close(ctx)
	}
	loadOnce() // fills the cache, before the timer starts
	for b.Loop() {
		loadOnce()
	}
}

// BenchmarkCheckModule is a master's validation of an uploaded Go module.
func BenchmarkCheckModule(b *testing.B) {
	code := fixture(b, "hostile")
	ctx := context.Background()
	for b.Loop() {
		if err := CheckModule(ctx, code); err != nil {
			b.Fatal(err)
		}
	}
}

func benchmarkRunProcWASM(b *testing.B, name string, payload []byte, want int) {
	p := newProcs(b, WASMProcessOptions{Workers: 1})
	hash := load(b, p, name)
	ctx := context.Background()
	for b.Loop() {
		out, err := p.Run(ctx, hash, payload, 1<<20)
		if err != nil || len(out) != want {
			b.Fatalf("%d bytes, %v", len(out), err)
		}
	}
}

// The RunProc benchmarks are the Run benchmarks through a worker process:
// the difference is the cost of the pipes.
func BenchmarkRunProcWASMNoop(b *testing.B) { benchmarkRunProcWASM(b, "noop", nil, 0) }

func BenchmarkRunProcWASMSmall(b *testing.B) {
	benchmarkRunProcWASM(b, "echo", bytes.Repeat([]byte("x"), 1024), 1024)
}

func BenchmarkRunProcWASMGo(b *testing.B) {
	benchmarkRunProcWASM(b, "goecho", bytes.Repeat([]byte("x"), 1024), 1024)
}

// BenchmarkSpin is a loop-heavy Go module, the primes below 5 million by
// a sieve, in process with the loop checks a deadline needs and in a
// worker process without them.
func BenchmarkSpin(b *testing.B) {
	payload, want := []byte("spin 5"), 6 // "348513"
	b.Run("in-process-checks", func(b *testing.B) { benchmarkRunWASM(b, "hostile", payload, want) })
	b.Run("process-no-checks", func(b *testing.B) { benchmarkRunProcWASM(b, "hostile", payload, want) })
}
