// Package testmaster starts a real master for tests: listening on
// 127.0.0.1:0, its store in a temp dir, its logs in the test's log, and
// stopped, its Run error checked, at cleanup. Only tests import it; it is
// the one copy of that harness, not a fake of the master.
package testmaster

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/anthill-project/anthill/master"
)

// AdminToken is the admin token Start gives a master that has none, so
// tests' apps and slaves can present a credential without plumbing one:
// an app presenting it may be any app id, a slave runs as the volunteer
// identity its name names. It is public; no real master may use it.
const AdminToken = "testmaster-admin-token-not-a-secret"

// Start runs a master with o and returns it serving. Listen and Data
// default to 127.0.0.1:0 and a new temp dir (pass the same Data again to
// restart on a store), AdminToken to the package's AdminToken, Logger to
// the test's log. attach runs before Run,
// where HTTP handlers must be mounted (m.Handle); an error from it fails
// the test. The master stops at cleanup, after everything the test
// registers for cleanup later (clients, slaves) has gone.
func Start(t testing.TB, o master.Options, attach ...func(m *master.Master) error) *master.Master {
	t.Helper()
	if o.Listen == "" {
		o.Listen = "127.0.0.1:0"
	}
	if o.Data == "" {
		o.Data = t.TempDir()
	}
	if o.Logger == nil {
		o.Logger = Logger(t)
	}
	if o.AdminToken == "" {
		o.AdminToken = AdminToken
	}
	m, err := master.New(o)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range attach {
		if err := a(m); err != nil {
			m.Close()
			t.Fatal(err)
		}
	}
	done := make(chan error, 1)
	go func() { done <- m.Run(context.Background()) }()
	t.Cleanup(func() {
		m.Close()
		if err := <-done; err != nil {
			t.Errorf("master run: %v", err)
		}
	})
	return m
}

// Logger routes slog through t.Log at warn level and above, so a failing
// test shows what the servers complained about. It stops logging once the
// test is over: servers may still log during cleanup, and t.Log then
// would panic.
func Logger(t testing.TB) *slog.Logger {
	h := &tHandler{t: t, mu: &sync.Mutex{}}
	t.Cleanup(func() { h.mu.Lock(); h.done = true; h.mu.Unlock() })
	return slog.New(h)
}

type tHandler struct {
	t     testing.TB
	mu    *sync.Mutex
	done  bool
	attrs []slog.Attr
}

func (h *tHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }

func (h *tHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Level.String() + " " + r.Message)
	for _, a := range h.attrs {
		b.WriteString(" " + a.String())
	}
	r.Attrs(func(a slog.Attr) bool { b.WriteString(" " + a.String()); return true })
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.done {
		h.t.Log(b.String())
	}
	return nil
}

func (h *tHandler) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	c.attrs = append(append([]slog.Attr(nil), h.attrs...), as...)
	return &c
}

func (h *tHandler) WithGroup(string) slog.Handler { return h }
