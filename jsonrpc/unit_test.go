package jsonrpc

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

func TestLoadOrCreateToken(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	tok, path, created, err := LoadOrCreateToken(dir)
	if err != nil || !created || path != filepath.Join(dir, TokenFile) || len(tok) != 64 {
		t.Fatalf("first: %q %q %v %v", tok, path, created, err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("token file mode %v, %v", st.Mode(), err)
	}
	if dst, _ := os.Stat(dir); dst.Mode().Perm() != 0o700 {
		t.Fatalf("data dir mode %v", dst.Mode())
	}
	again, _, created, err := LoadOrCreateToken(dir)
	if err != nil || created || again != tok {
		t.Fatalf("second: %q %v %v", again, created, err)
	}
	// An operator's own token, with a newline, is kept as written.
	own := t.TempDir()
	if err := os.WriteFile(filepath.Join(own, TokenFile), []byte("my-own-long-secret-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, _, created, err := LoadOrCreateToken(own); err != nil || created || got != "my-own-long-secret-token" {
		t.Fatalf("own token: %q %v %v", got, created, err)
	}
	for name, tc := range map[string]struct {
		content string
		mode    os.FileMode
	}{
		"readable by others": {"my-own-long-secret-token", 0o644},
		"too short":          {"short", 0o600},
		"empty":              {"", 0o600},
		"inner space":        {"my own long secret token", 0o600},
	} {
		d := t.TempDir()
		p := filepath.Join(d, TokenFile)
		if err := os.WriteFile(p, []byte(tc.content), tc.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, tc.mode); err != nil {
			t.Fatal(err)
		}
		if _, _, _, err := LoadOrCreateToken(d); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// Processes starting on a fresh data dir at once agree on one token.
func TestLoadOrCreateTokenRace(t *testing.T) {
	dir := t.TempDir()
	toks := make([]string, 8)
	var wg sync.WaitGroup
	for i := range toks {
		wg.Go(func() {
			tok, _, _, err := LoadOrCreateToken(dir)
			if err != nil {
				t.Error(err)
			}
			toks[i] = tok
		})
	}
	wg.Wait()
	for _, tok := range toks {
		if tok != toks[0] {
			t.Fatalf("tokens differ: %q", toks)
		}
	}
	left, _ := filepath.Glob(filepath.Join(dir, "*.tmp"))
	if len(left) != 0 {
		t.Fatalf("temp files left: %v", left)
	}
}

func TestClient(t *testing.T) {
	e := start(t, envOpts{slave: true})
	c := &Client{URL: "ws://" + e.m.Addr().String(), Token: testToken, HTTP: e.hc}
	ctx := context.Background()
	var sub SubmitResult
	if err := c.Call(ctx, "Tasks.Submit", SubmitParams{App: "go", TaskSpec: TaskSpec{Kind: "echo", Payload: []byte{0, 1, 255}}}, &sub); err != nil {
		t.Fatal(err)
	}
	var w WaitResult
	if err := c.Call(ctx, "Tasks.Wait", WaitParams{IDs: []uint64{sub.ID}}, &w); err != nil || !w.Done || string(w.Tasks[0].Result) != "\x00\x01\xff" {
		t.Fatalf("wait: %+v %v", w, err)
	}
	if err := c.Call(ctx, "Master.Info", nil, nil); err != nil {
		t.Fatal(err)
	}
	err := c.Call(ctx, "Tasks.Get", IDParams{ID: 1}, nil)
	if rerr, ok := errors.AsType[*Error](err); !ok || rerr.Code != CodeNotFound {
		t.Fatalf("Get of an unknown task: %v", err)
	}
	bad := &Client{URL: e.base, Token: "wrong-token-wrong-token", HTTP: e.hc}
	err = bad.Call(ctx, "Master.Info", nil, nil)
	if rerr, ok := errors.AsType[*Error](err); !ok || rerr.Code != CodeUnauthorized {
		t.Fatalf("wrong token: %v", err)
	}
	for in, want := range map[string]string{
		"http://h:1":  "http://h:1/rpc",
		"http://h:1/": "http://h:1/rpc",
		"ws://h:1":    "http://h:1/rpc",
		"wss://h":     "https://h/rpc",
		"h:1":         "http://h:1/rpc",
	} {
		if got, err := Endpoint(in); err != nil || got != want {
			t.Errorf("Endpoint(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}
