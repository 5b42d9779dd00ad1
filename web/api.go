package web

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/anthill-project/anthill/master/sched"
	"github.com/anthill-project/anthill/protocol"
)

const (
	defaultPage = 50
	maxPage     = 200
	// pageCalls bounds the sched.Tasks calls behind one page. Each call
	// scans a bounded stretch of the store, so a filter that rarely matches
	// returns a short page and a cursor rather than holding the master.
	pageCalls = 8
	// maxScanLimit is sched.Tasks's own cap.
	maxScanLimit = 1000
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

// taskRow is a task in the list: no payload or result, only their sizes.
type taskRow struct {
	ID          uint64 `json:"id,string"` // ids exceed 2^53: JavaScript numbers would round them
	App         string `json:"app"`
	Kind        string `json:"kind"`
	Key         string `json:"key,omitempty"`
	State       string `json:"state"`
	Attempts    uint32 `json:"attempts"`
	MaxAttempts uint32 `json:"max_attempts"`
	Priority    int32  `json:"priority"`
	Slave       string `json:"slave,omitempty"`
	CreatedAt   int64  `json:"created_at"` // Unix ms; 0 = not yet
	StartedAt   int64  `json:"started_at"`
	FinishedAt  int64  `json:"finished_at"`
	PayloadSize int    `json:"payload_bytes"`
	ResultSize  int    `json:"result_bytes"`
	Error       string `json:"error,omitempty"`
}

type taskDetail struct {
	taskRow
	TimeoutMS int64     `json:"timeout_ms"`
	Payload   preview   `json:"payload"`
	Result    preview   `json:"result"`
	History   []attempt `json:"history"`
}

type attempt struct {
	Slave     string `json:"slave"`
	StartedAt int64  `json:"started_at"`
	EndedAt   int64  `json:"ended_at"`
	Outcome   string `json:"outcome"`
	Error     string `json:"error,omitempty"`
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

func ms(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func rowOf(t *sched.TaskInfo) taskRow {
	return taskRow{
		ID: t.ID, App: t.App, Kind: t.Kind, Key: t.Key, State: t.State.String(),
		Attempts: t.Attempts, MaxAttempts: t.MaxAttempts, Priority: t.Priority, Slave: t.Slave,
		CreatedAt: ms(t.CreatedAt), StartedAt: ms(t.StartedAt), FinishedAt: ms(t.FinishedAt),
		PayloadSize: len(t.Payload), ResultSize: len(t.Result), Error: clip(t.Err, 300),
	}
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

type taskPage struct {
	Tasks []taskRow `json:"tasks"`
	// Next is the cursor of the following page, as a string for the same
	// reason as ids; "" at the end.
	Next string `json:"next"`
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
	out := taskPage{Tasks: []taskRow{}}
	want := f.Limit
	f.After, f.Before = cursor, cursor
	// sched.Tasks scans about twice its limit per call and filters what
	// it scanned; a filtered page asks for big stretches so that sparse
	// matches still fill it, and keeps only what it shows.
	filtered := f.State != 0 || f.App != "" || f.Kind != ""
	for range pageCalls {
		f.Limit = want - len(out.Tasks)
		if filtered {
			f.Limit = maxScanLimit
		}
		tasks, next, err := s.m.Tasks(f)
		if err != nil {
			s.masterError(w, err)
			return
		}
		if keep := want - len(out.Tasks); len(tasks) > keep {
			tasks, next = tasks[:keep], tasks[keep-1].ID
		}
		for i := range tasks {
			out.Tasks = append(out.Tasks, rowOf(&tasks[i]))
		}
		if next == 0 {
			out.Next = ""
			break
		}
		out.Next, f.After, f.Before = strconv.FormatUint(next, 10), next, next
		if len(out.Tasks) >= want {
			break
		}
	}
	writeJSON(w, http.StatusOK, out)
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
	d := taskDetail{
		taskRow: rowOf(&t), TimeoutMS: t.Timeout.Milliseconds(),
		Payload: previewOf(t.Payload), Result: previewOf(t.Result), History: []attempt{},
	}
	d.Error = t.Err
	for _, a := range t.History {
		d.History = append(d.History, attempt{
			Slave: a.Slave, StartedAt: ms(a.Started), EndedAt: ms(a.Ended), Outcome: a.Outcome.String(), Error: a.Err,
		})
	}
	writeJSON(w, http.StatusOK, d)
}

type idIn struct {
	ID uint64 `json:"id,string"`
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

// serveDrain drains every session of a slave name: the table shows names,
// and a volunteer restarting its slave may briefly have two.
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
