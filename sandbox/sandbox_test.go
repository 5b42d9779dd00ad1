package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// First thing: the WASMProcesses of the tests run this binary as
	// their worker.
	ServeWorkerIfAsked()
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		removeFixtures()
		os.Exit(code)
	}))
}

func echo(_ context.Context, p []byte) ([]byte, error) { return p, nil }

func explode(context.Context, []byte) ([]byte, error) {
	var m map[string]int
	m["boom"]++ // a real runtime panic: assignment to entry in nil map
	return nil, nil
}

func TestRegistry(t *testing.T) {
	r := NewRegistry()
	r.Register("zeta", echo)
	r.Register("alpha", echo)
	r.Register("mid", echo)
	if got := strings.Join(r.Kinds(), ","); got != "alpha,mid,zeta" {
		t.Fatalf("Kinds() = %s, want sorted", got)
	}
	if _, ok := r.Lookup("mid"); !ok {
		t.Fatal("Lookup of a registered kind failed")
	}
	if _, ok := r.Lookup("nope"); ok {
		t.Fatal("Lookup of an unknown kind succeeded")
	}
}

func TestRegisterPanicsOnMisuse(t *testing.T) {
	for name, f := range map[string]func(r *Registry){
		"empty kind":  func(r *Registry) { r.Register("", echo) },
		"nil handler": func(r *Registry) { r.Register("x", nil) },
		"duplicate":   func(r *Registry) { r.Register("x", echo); r.Register("x", echo) },
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Fatal("Register did not panic")
				}
			}()
			f(NewRegistry())
		})
	}
}

func TestInProcess(t *testing.T) {
	r := NewRegistry()
	r.Register("echo", echo)
	wantErr := errors.New("it failed")
	r.Register("fail", func(context.Context, []byte) ([]byte, error) { return []byte("ignored"), wantErr })
	r.Register("ctx", func(ctx context.Context, _ []byte) ([]byte, error) {
		return []byte(fmt.Sprint(ctx.Value(ctxKey{}))), nil
	})
	p := &InProcess{Registry: r}
	ctx := context.WithValue(context.Background(), ctxKey{}, "passed")

	out, err := p.Run(ctx, "echo", []byte("hi"))
	if err != nil || string(out) != "hi" {
		t.Errorf("echo: %q, %v", out, err)
	}
	if out, err = p.Run(ctx, "ctx", nil); err != nil || string(out) != "passed" {
		t.Errorf("the handler did not get the caller's ctx: %q, %v", out, err)
	}
	if _, err = p.Run(ctx, "fail", nil); err != wantErr {
		t.Errorf("a handler's error must be returned as is; got %v", err)
	}
	if _, err = p.Run(ctx, "x", nil); err == nil || err.Error() != `unknown task kind "x"` {
		t.Errorf("unknown kind: %v", err)
	}
}

type ctxKey struct{}

func TestPanicBecomesError(t *testing.T) {
	r := NewRegistry()
	r.Register("explode", explode)
	r.Register("value", func(context.Context, []byte) ([]byte, error) { panic(fmt.Sprintf("bad %d", 42)) })
	r.Register("error", func(context.Context, []byte) ([]byte, error) { panic(context.Canceled) })
	p := &InProcess{Registry: r}

	out, err := p.Run(context.Background(), "explode", nil)
	var pe *PanicError
	if out != nil || !errors.As(err, &pe) {
		t.Fatalf("got %q, %v; want a *PanicError", out, err)
	}
	msg := err.Error()
	t.Logf("panic error:\n%s", msg)
	if !strings.HasPrefix(msg, "task panicked: assignment to entry in nil map") {
		t.Errorf("message does not start with the panic value: %q", msg)
	}
	// The first frame is the handler, where the panic happened; runtime
	// frames and the sandbox's own frames are left out.
	if len(pe.Frames) == 0 || !strings.HasPrefix(pe.Frames[0], "sandbox.explode (sandbox/sandbox_test.go:") {
		t.Errorf("frames do not start at the handler: %q", pe.Frames)
	}
	if len(pe.Frames) > maxFrames || strings.Contains(msg, "runtime.") || strings.Contains(msg, "sandbox.call") ||
		strings.Contains(msg, "InProcess") {
		t.Errorf("frames not trimmed: %q", pe.Frames)
	}

	if _, err = p.Run(context.Background(), "value", nil); err == nil || !strings.HasPrefix(err.Error(), "task panicked: bad 42\n\tat sandbox.TestPanicBecomesError.func") {
		t.Errorf("panic with a string: %v", err)
	}
	if _, err = p.Run(context.Background(), "error", nil); !errors.Is(err, context.Canceled) {
		t.Errorf("a panic with an error value must unwrap to it: %v", err)
	}
}

func TestPanicFramesAreBounded(t *testing.T) {
	r := NewRegistry()
	var deep func(n int)
	deep = func(n int) {
		if n == 0 {
			panic("deep")
		}
		deep(n - 1)
	}
	r.Register("deep", func(context.Context, []byte) ([]byte, error) { deep(50); return nil, nil })
	_, err := (&InProcess{Registry: r}).Run(context.Background(), "deep", nil)
	var pe *PanicError
	if !errors.As(err, &pe) || len(pe.Frames) != maxFrames {
		t.Fatalf("got %v; want %d frames", err, maxFrames)
	}
}

func TestConcurrentRun(t *testing.T) {
	r := NewRegistry()
	r.Register("echo", echo)
	r.Register("explode", explode)
	r.Register("fail", func(_ context.Context, p []byte) ([]byte, error) { return nil, errors.New(string(p)) })
	p := &InProcess{Registry: r}
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for i := range 200 {
				in := fmt.Sprintf("%d/%d", g, i)
				switch i % 3 {
				case 0:
					if out, err := p.Run(context.Background(), "echo", []byte(in)); err != nil || string(out) != in {
						t.Errorf("echo %s: %q, %v", in, out, err)
					}
				case 1:
					if _, err := p.Run(context.Background(), "explode", nil); err == nil {
						t.Errorf("explode %s: no error", in)
					}
				case 2:
					if _, err := p.Run(context.Background(), "fail", []byte(in)); err == nil || err.Error() != in {
						t.Errorf("fail %s: %v", in, err)
					}
				}
			}
		})
	}
	wg.Wait()
}
