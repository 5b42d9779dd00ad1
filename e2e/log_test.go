package e2e

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
)

// testLogger routes slog through t.Log at warn level and above, so a
// failing test shows what the servers complained about. It stops logging
// once the test is over: servers may still log during cleanup.
func testLogger(t *testing.T) *slog.Logger {
	h := &tHandler{t: t, mu: &sync.Mutex{}}
	t.Cleanup(func() { h.mu.Lock(); h.done = true; h.mu.Unlock() })
	return slog.New(h)
}

type tHandler struct {
	t     *testing.T
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
