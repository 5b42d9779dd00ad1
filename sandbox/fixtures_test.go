package sandbox

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// The WebAssembly fixtures are built once per test binary, into a
// directory TestMain removes: the Go module hostile from
// each testdata/NAME/main.go (hostile, goecho), and each testdata/*.wat by
// wat2wasm.
var fixtures struct {
	once  sync.Once
	dir   string
	err   error
	wasm  map[string][]byte // by base name: "hostile", "goecho", "echo", ...
	cache string            // a compilation cache the tests share
}

func fixture(t testing.TB, name string) []byte {
	t.Helper()
	fixtures.once.Do(buildFixtures)
	if fixtures.err != nil {
		t.Fatal(fixtures.err)
	}
	b, ok := fixtures.wasm[name]
	if !ok {
		t.Fatalf("no fixture %q", name)
	}
	return b
}

func buildFixtures() {
	fixtures.dir, fixtures.err = os.MkdirTemp("", "sandbox-fixtures-*")
	if fixtures.err != nil {
		return
	}
	fixtures.cache = filepath.Join(fixtures.dir, "cache")
	fixtures.wasm = make(map[string][]byte)
	build := func(name string, cmd *exec.Cmd) error {
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("building fixture %s: %v\n%s", name, err, out)
		}
		b, err := os.ReadFile(filepath.Join(fixtures.dir, name+".wasm"))
		fixtures.wasm[name] = b
		return err
	}

	mains, _ := filepath.Glob(filepath.Join("testdata", "*", "main.go"))
	for _, src := range mains {
		name := filepath.Base(filepath.Dir(src))
		cmd := exec.Command("go", "build", "-o", filepath.Join(fixtures.dir, name+".wasm"), ".")
		cmd.Dir = filepath.Dir(src)
		// The environment is inherited so that GOCACHE makes a rebuild
		// quick.
		cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
		if fixtures.err = build(name, cmd); fixtures.err != nil {
			return
		}
	}

	wat2wasm, err := exec.LookPath("wat2wasm")
	if err != nil {
		fixtures.err = fmt.Errorf("the .wat fixtures need wat2wasm: install wabt (apt-get install wabt): %v", err)
		return
	}
	wats, _ := filepath.Glob(filepath.Join("testdata", "*.wat"))
	for _, src := range wats {
		name := strings.TrimSuffix(filepath.Base(src), ".wat")
		cmd := exec.Command(wat2wasm, src, "-o", filepath.Join(fixtures.dir, name+".wasm"))
		if fixtures.err = build(name, cmd); fixtures.err != nil {
			return
		}
	}
}

func removeFixtures() {
	if fixtures.dir != "" {
		os.RemoveAll(fixtures.dir)
	}
}

func hashOf(code []byte) string {
	h := sha256.Sum256(code)
	return hex.EncodeToString(h[:])
}

// newWASM starts a runner closed at the end of the test. Unless o says
// otherwise it shares the fixtures' compilation cache, so that the Go
// module is compiled once per test binary.
func newWASM(t testing.TB, o WASMOptions) *WASM {
	t.Helper()
	fixtures.once.Do(buildFixtures)
	if o.CacheDir == "" {
		o.CacheDir = fixtures.cache
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	w, err := NewWASM(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := w.Close(context.Background()); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return w
}

// loader is *WASM or *WASMProcesses.
type loader interface {
	Load(ctx context.Context, hash, name string, code []byte) error
}

// load loads the fixture name under its hash, which it returns.
func load(t testing.TB, w loader, name string) string {
	t.Helper()
	code := fixture(t, name)
	hash := hashOf(code)
	if err := w.Load(context.Background(), hash, name, code); err != nil {
		t.Fatalf("Load %s: %v", name, err)
	}
	return hash
}
