package web

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"unicode/utf8"

	"github.com/anthill-project/anthill/internal/view"
	"github.com/anthill-project/anthill/master/sched"
	"github.com/anthill-project/anthill/protocol"
)

const (
	defaultPage = 50
	maxPage     = 200
	// A listed task's error is clipped to a table cell's worth.
	rowError = 300
	// Previews keep the detail of a task with a megabyte payload small.
	textPreview = 4 << 10
	hexPreview  = 512
)

type okOut struct {
	OK bool `json:"ok"`
}

type errorOut struct {
	Error string `json:"error"`
	Field string `json:"field,omitempty"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, errorOut{Error: msg})
}

func badField(w http.ResponseWriter, field, msg string) {
	writeJSON(w, http.StatusBadRequest, errorOut{Error: field + ": " + msg, Field: field})
}

// taskDetail is a task's page: the operator's view of it, with previews
// of its payload and result in place of their bytes.
type taskDetail struct {
	view.Task
	Payload preview `json:"payload"`
	Result  preview `json:"result"`
}

// preview is the start of a payload or result: text when it is UTF-8,
// else hex.
type preview struct {
	Text      string `json:"text,omitempty"`
	Hex       string `json:"hex,omitempty"`
	Size      int    `json:"bytes"`
	Truncated bool   `json:"truncated"`
}

func previewOf(b []byte) preview {
	p := preview{Size: len(b)}
	if len(b) == 0 {
		return p
	}
	head := b[:min(len(b), textPreview)]
	// A cut may split a rune: trim up to 3 bytes of an incomplete one.
	for i := 0; i < 3 && len(head) < len(b) && !utf8.Valid(head); i++ {
		head = head[:len(head)-1]
	}
	if utf8.Valid(head) {
		p.Text, p.Truncated = string(head), len(head) < len(b)
		return p
	}
	head = b[:min(len(b), hexPreview)]
	p.Hex, p.Truncated = hex.EncodeToString(head), len(head) < len(b)
	return p
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

func (s *Server) serveTasks(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := sched.TaskFilter{App: q.Get("app"), Kind: q.Get("kind"), Limit: defaultPage}
	if v := q.Get("state"); v != "" {
		st, ok := protocol.ParseState(v)
		if !ok {
			badField(w, "state", "must be one of pending, running, done, failed, canceled")
			return
		}
		f.State = st
	}
	// Newest first unless asked otherwise: an operator opens the list to
	// see what just happened.
	switch q.Get("order") {
	case "", "desc":
		f.Desc = true
	case "asc":
	default:
		badField(w, "order", `must be "asc" or "desc"`)
		return
	}
	var cursor uint64
	if v := q.Get("cursor"); v != "" {
		c, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			badField(w, "cursor", "must be a previous page's next cursor")
			return
		}
		cursor = c
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxPage {
			badField(w, "limit", fmt.Sprintf("must be from 1 to %d", maxPage))
			return
		}
		f.Limit = n
	}
	f.After, f.Before = cursor, cursor
	tasks, next, err := s.m.Tasks(f)
	if err != nil {
		s.masterError(w, err)
		return
	}
	page := view.PageOf(tasks, next, false)
	for i := range page.Tasks {
		page.Tasks[i].Error = clip(page.Tasks[i].Error, rowError)
	}
	writeJSON(w, http.StatusOK, page)
}

func (s *Server) serveTask(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseUint(r.URL.Query().Get("id"), 10, 64)
	if err != nil {
		badField(w, "id", "must be a task id")
		return
	}
	t, err := s.m.Task(id)
	if err != nil {
		s.masterError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, taskDetail{Task: view.TaskOf(&t), Payload: previewOf(t.Payload), Result: previewOf(t.Result)})
}

type idIn struct {
	ID uint64 `json:"id"`
}

type sessionsIn struct {
	Sessions []string `json:"sessions"`
}

func decodeBody(w http.ResponseWriter, r *http.Request, v any, field string) bool {
	if err := json.NewDecoder(r.Body).Decode(v); err != nil {
		badField(w, field, "missing or malformed: "+err.Error())
		return false
	}
	return true
}

// taskAction serves an action on one task, such as m.Cancel or m.Retry.
func (s *Server) taskAction(what string, act func(id uint64) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var in idIn
		if !decodeBody(w, r, &in, "id") {
			return
		}
		if err := act(in.ID); err != nil {
			s.masterError(w, err)
			return
		}
		s.opts.Logger.Info("task "+what+" from the dashboard", "id", in.ID, "remote", r.RemoteAddr)
		writeJSON(w, http.StatusOK, okOut{true})
	}
}

// serveDrain drains every session of a volunteer identity: the table shows
// identities (never self-chosen names, which two volunteers may share),
// and a volunteer restarting its slave may briefly have two sessions.
func (s *Server) serveDrain(w http.ResponseWriter, r *http.Request) {
	var in sessionsIn
	if !decodeBody(w, r, &in, "sessions") {
		return
	}
	if len(in.Sessions) == 0 {
		badField(w, "sessions", "name at least one slave session")
		return
	}
	for _, id := range in.Sessions {
		if err := s.m.Drain(id); err != nil {
			s.masterError(w, err)
			return
		}
	}
	s.opts.Logger.Info("slave drained from the dashboard", "sessions", in.Sessions, "remote", r.RemoteAddr)
	writeJSON(w, http.StatusOK, okOut{true})
}

func (s *Server) masterError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, sched.ErrNotFound), errors.Is(err, sched.ErrUnknownSlave):
		writeError(w, http.StatusNotFound, err.Error())
	case errors.Is(err, sched.ErrFinal), errors.Is(err, sched.ErrNotFinal):
		writeError(w, http.StatusConflict, err.Error())
	case errors.Is(err, sched.ErrStopping):
		writeError(w, http.StatusServiceUnavailable, err.Error())
	default:
		s.opts.Logger.Error("dashboard call failed", "err", err)
		writeError(w, http.StatusInternalServerError, err.Error())
	}
}
