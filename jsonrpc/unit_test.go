package jsonrpc

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
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

func TestSampler(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	var s sampler
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	c := func(n uint64) counts { return counts{finished: n, submitted: 2 * n, dispatched: n} }

	// Within the first minute: exact since start.
	base := s.observe(at(10*time.Second), t0, c(100))
	if th := rates(base, at(10*time.Second), c(100)); th.WindowMS != 10000 || th.Finished != 100 || th.FinishedPerSec != 10 || th.SubmittedPerSec != 20 {
		t.Fatalf("first call: %+v", th)
	}
	// Later, the youngest sample at least a minute old is the base.
	s.observe(at(30*time.Second), t0, c(300))
	base = s.observe(at(75*time.Second), t0, c(750))
	if th := rates(base, at(75*time.Second), c(750)); th.WindowMS != 65000 || th.Finished != 650 || th.FinishedPerSec != 10 {
		t.Fatalf("after 75 s: %+v", th)
	}
	base = s.observe(at(91*time.Second), t0, c(910))
	if th := rates(base, at(91*time.Second), c(910)); th.WindowMS != 61000 || th.Finished != 610 {
		t.Fatalf("after 91 s: %+v", th)
	}
	// Called often, the window stays a minute and memory stays bounded.
	var th Throughput
	for d := 100 * time.Second; d < 20*time.Minute; d += 100 * time.Millisecond {
		n := uint64(d / time.Second * 10)
		th = rates(s.observe(at(d), t0, c(n)), at(d), c(n))
	}
	if th.WindowMS < 60000 || th.WindowMS > 61000 || len(s.samples) > 62 {
		t.Fatalf("steady state: %+v with %d samples", th, len(s.samples))
	}
	// No rate from a clock that went back or counters that did.
	if th := rates(sample{at: at(time.Hour), c: c(5)}, at(0), c(1)); th.WindowMS != 0 || th.FinishedPerSec != 0 || th.Finished != 0 {
		t.Fatalf("backwards: %+v", th)
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
