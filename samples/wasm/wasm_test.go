package wasm

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/anthill-project/anthill/internal/modsig"
	"github.com/anthill-project/anthill/samples/mandelbrot"
	"github.com/anthill-project/anthill/samples/primes"
	"github.com/anthill-project/anthill/sandbox"
)

// The modules are built once per test binary: a Go build for wasip1
// takes seconds.
var built = struct {
	sync.Mutex
	code map[string][]byte
}{code: map[string][]byte{}}

func module(tb testing.TB, name string) []byte {
	tb.Helper()
	built.Lock()
	defer built.Unlock()
	if c := built.code[name]; c != nil {
		return c
	}
	var (
		code []byte
		err  error
	)
	if name == "primes-c" {
		code, err = BuildC(context.Background(), "primes")
	} else {
		code, err = Build(context.Background(), name)
	}
	if err != nil {
		tb.Fatal(err)
	}
	built.code[name] = code
	return code
}

// The test binary serves as its own WASM worker for runtimeIn("proc").
func TestMain(m *testing.M) {
	sandbox.ServeWorkerIfAsked()
	os.Exit(m.Run())
}

// runner is what the tests use of *sandbox.WASM and *sandbox.WASMProcesses.
type runner interface {
	Load(ctx context.Context, hash, name string, code []byte) error
	Run(ctx context.Context, hash string, payload []byte, maxOutput int) ([]byte, error)
	Close(ctx context.Context) error
}

// runtime loads the named modules into a fresh in-process WASM runner.
func runtime(tb testing.TB, names ...string) (runner, map[string]string) {
	return runtimeIn(tb, "in-process", names...)
}

// runtimeIn is runtime in a mode: "in-process" (with wazero's loop
// checks) or "proc" (worker processes without them).
func runtimeIn(tb testing.TB, mode string, names ...string) (runner, map[string]string) {
	tb.Helper()
	ctx := context.Background()
	var w runner
	var err error
	if mode == "proc" {
		w, err = sandbox.NewWASMProcesses(ctx, sandbox.WASMProcessOptions{
			WASMOptions: sandbox.WASMOptions{CacheDir: tb.TempDir(), NoLoopChecks: true}, Workers: 1})
	} else {
		w, err = sandbox.NewWASM(ctx, sandbox.WASMOptions{CacheDir: tb.TempDir()})
	}
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { w.Close(ctx) })
	hashes := map[string]string{}
	for _, n := range names {
		code := module(tb, n)
		h := modsig.Hash(code)
		if err := w.Load(ctx, h, n, code); err != nil {
			tb.Fatalf("load %s: %v", n, err)
		}
		hashes[n] = h
	}
	return w, hashes
}

// The WASM kernel renders every tile of the demo's image to the same
// bytes as the native one.
func TestMandelbrotModuleMatchesNative(t *testing.T) {
	w, h := runtime(t, "mandelbrot")
	ctx := context.Background()
	c := mandelbrot.Config{Width: 640, Height: 400, TileSize: 80, MaxIter: 2000}.WithDefaults()
	for _, tile := range c.Tiles() {
		p := tile.Payload()
		want, err := mandelbrot.Render(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		got, err := w.Run(ctx, h["mandelbrot"], p, 16<<20)
		if err != nil {
			t.Fatalf("tile %d,%d: %v", tile.X, tile.Y, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("tile %d,%d: the module's %d bytes differ from the native %d", tile.X, tile.Y, len(got), len(want))
		}
	}
	// A bad payload is the module's error, exit code and message.
	_, err := w.Run(ctx, h["mandelbrot"], []byte("junk"), 1<<20)
	var exit *sandbox.ExitError
	if !errors.As(err, &exit) || exit.Code != 1 || !strings.Contains(exit.Stderr, "mandelbrot payload of 4 bytes") {
		t.Fatalf("a junk payload: %v, want exit code 1 with the kernel's message", err)
	}
}

// The prime counter gives the same answers in Go and in C.
func TestPrimesGoAndC(t *testing.T) {
	w, h := runtime(t, "primes", "primes-c")
	ctx := context.Background()
	for _, c := range []struct {
		in   string
		want string
	}{{"0 100", "25"}, {"0 10000000", "664579"}, {"1000000000 1000100000", "4832"}, {"7 7", "0"}} {
		for _, m := range []string{"primes", "primes-c"} {
			out, err := w.Run(ctx, h[m], []byte(c.in), 1024)
			if err != nil || string(bytes.TrimSpace(out)) != c.want {
				t.Errorf("%s %q = %q, %v; want %s", m, c.in, out, err, c.want)
			}
		}
	}
	for _, m := range []string{"primes", "primes-c"} {
		if _, err := w.Run(ctx, h[m], []byte("9 3"), 1024); err == nil {
			t.Errorf("%s accepted LO > HI", m)
		}
	}
}

// The kernel's speed, native against WASM: one 100×100 tile of the
// demo's image at 2000 iterations.
func BenchmarkMandelbrotTile(b *testing.B) {
	c := mandelbrot.Config{}.WithDefaults()
	tiles := c.Tiles()
	// A tile on the set's edge, where the iterations are.
	p := tiles[len(tiles)/2+c.Width/c.TileSize/2].Payload()
	ctx := context.Background()
	b.Run("native", func(b *testing.B) {
		for b.Loop() {
			if _, err := mandelbrot.Render(ctx, p); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, mode := range []string{"in-process", "proc"} {
		b.Run("wasm-"+mode, func(b *testing.B) {
			w, h := runtimeIn(b, mode, "mandelbrot")
			for b.Loop() {
				if _, err := w.Run(ctx, h["mandelbrot"], p, 16<<20); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkMandelbrotImage renders the demo's whole image, tile after
// tile, native against WASM in a worker process.
func BenchmarkMandelbrotImage(b *testing.B) {
	c := mandelbrot.Config{}.WithDefaults()
	tiles := c.Tiles()
	ctx := context.Background()
	b.Run("native", func(b *testing.B) {
		for b.Loop() {
			for _, t := range tiles {
				if _, err := mandelbrot.Render(ctx, t.Payload()); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("wasm-proc", func(b *testing.B) {
		w, h := runtimeIn(b, "proc", "mandelbrot")
		for b.Loop() {
			for _, t := range tiles {
				if _, err := w.Run(ctx, h["mandelbrot"], t.Payload(), 16<<20); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}

// BenchmarkPrimes counts the primes below 10^7: Go native, Go as WASM,
// C as WASM.
func BenchmarkPrimes(b *testing.B) {
	ctx := context.Background()
	in := []byte("0 10000000")
	b.Run("native", func(b *testing.B) {
		for b.Loop() {
			if _, err := primes.Handler(ctx, in); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, m := range []string{"primes", "primes-c"} {
		for _, mode := range []string{"in-process", "proc"} {
			b.Run("wasm-"+m+"-"+mode, func(b *testing.B) {
				w, h := runtimeIn(b, mode, m)
				for b.Loop() {
					if _, err := w.Run(ctx, h[m], in, 1024); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
