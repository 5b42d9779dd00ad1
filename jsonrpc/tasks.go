package jsonrpc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"time"

	"github.com/gorilla/rpc/v2/json2"

	"github.com/anthill-project/anthill/internal/view"
	"github.com/anthill-project/anthill/master/sched"
	"github.com/anthill-project/anthill/protocol"
)

// tasksService is the Tasks.* methods. Every method decodes its own params
// (see decodeParams) and returns a *json2.Error for every failure it
// expects.
type tasksService struct{ h *handler }

// Submit stores one task; it is durable when the call returns.
func (s *tasksService) Submit(r *http.Request, raw *json.RawMessage, out *SubmitResult) error {
	var p SubmitParams
	if err := decodeParams(raw, &p); err != nil {
		return err
	}
	if err := checkApp(p.App); err != nil {
		return err
	}
	nt, err := newTask(&p.TaskSpec, "")
	if err != nil {
		return err
	}
	first, serr := s.h.m.Submit(r.Context(), p.App, []protocol.NewTask{nt})
	if serr != nil {
		return s.h.submitError(serr, false)
	}
	out.ID = first
	return nil
}

// SubmitBatch stores all the tasks or none.
func (s *tasksService) SubmitBatch(r *http.Request, raw *json.RawMessage, out *SubmitBatchResult) error {
	var p SubmitBatchParams
	if err := decodeParams(raw, &p); err != nil {
		return err
	}
	if err := checkApp(p.App); err != nil {
		return err
	}
	switch {
	case len(p.Tasks) == 0:
		return invalidParam("tasks", "must hold at least one task")
	case len(p.Tasks) > s.h.opts.MaxBatch:
		return invalidParam("tasks", fmt.Sprintf("holds %d tasks; the limit is %d per batch", len(p.Tasks), s.h.opts.MaxBatch))
	}
	tasks := make([]protocol.NewTask, len(p.Tasks))
	for i := range p.Tasks {
		nt, err := newTask(&p.Tasks[i], fmt.Sprintf("tasks[%d]", i))
		if err != nil {
			if fd, ok := err.Data.(fieldData); ok {
				fd.Index = &i
				err.Data = fd
			}
			return err
		}
		tasks[i] = nt
	}
	first, serr := s.h.m.Submit(r.Context(), p.App, tasks)
	if serr != nil {
		return s.h.submitError(serr, true)
	}
	out.IDs = make([]uint64, len(tasks))
	for i := range out.IDs {
		out.IDs[i] = first + uint64(i)
	}
	return nil
}

// Get returns one task, payload included.
func (s *tasksService) Get(r *http.Request, raw *json.RawMessage, out *Task) error {
	var p IDParams
	if err := decodeParams(raw, &p); err != nil {
		return err
	}
	ti, err := s.h.m.Task(p.ID)
	if err != nil {
		return s.h.taskError(err, p.ID)
	}
	*out = view.TaskOf(&ti)
	return nil
}

// Wait is a long poll: it returns when every task among the ids is final
// or the timeout ends, with the final ones.
func (s *tasksService) Wait(r *http.Request, raw *json.RawMessage, out *WaitResult) error {
	var p WaitParams
	if err := decodeParams(raw, &p); err != nil {
		return err
	}
	switch {
	case len(p.IDs) == 0:
		return invalidParam("ids", "must hold at least one task id")
	case len(p.IDs) > MaxWaitIDs:
		return invalidParam("ids", fmt.Sprintf("holds %d ids; the limit is %d", len(p.IDs), MaxWaitIDs))
	}
	wait := min(DefaultWait, s.h.opts.MaxWait)
	if p.TimeoutMS != nil {
		limit := s.h.opts.MaxWait.Milliseconds()
		if *p.TimeoutMS < 0 || *p.TimeoutMS > limit {
			return invalidParam("timeout_ms", fmt.Sprintf("must be from 0 to %d", limit))
		}
		wait = time.Duration(*p.TimeoutMS) * time.Millisecond
	}
	// Unique ids, in the caller's order, which the result keeps.
	order := make(map[uint64]int, len(p.IDs))
	ids := make([]uint64, 0, len(p.IDs))
	for _, id := range p.IDs {
		if _, dup := order[id]; !dup {
			order[id] = len(ids)
			ids = append(ids, id)
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), wait)
	defer cancel()
	final, err := s.h.m.Wait(ctx, ids)
	if err != nil && !(ctx.Err() != nil && errors.Is(err, ctx.Err())) {
		if errors.Is(err, sched.ErrNotFound) {
			// Name the first unknown id the way Tasks.Get does.
			for _, id := range ids {
				if _, terr := s.h.m.Task(id); errors.Is(terr, sched.ErrNotFound) {
					return s.h.taskError(terr, id)
				}
			}
			return rpcError(CodeNotFound, nil, "%v", err)
		}
		return s.h.masterError(err)
	}
	out.Tasks = make([]Task, 0, len(final))
	for i := range final {
		if _, asked := order[final[i].ID]; asked && final[i].State.Final() {
			out.Tasks = append(out.Tasks, withoutPayload(view.TaskOf(&final[i])))
		}
	}
	slices.SortFunc(out.Tasks, func(a, b Task) int { return order[a.ID] - order[b.ID] })
	out.Tasks = slices.CompactFunc(out.Tasks, func(a, b Task) bool { return a.ID == b.ID })
	out.Done = len(out.Tasks) == len(ids)
	return nil
}

// List pages through tasks in id order.
func (s *tasksService) List(r *http.Request, raw *json.RawMessage, out *ListResult) error {
	var p ListParams
	if err := decodeParams(raw, &p); err != nil {
		return err
	}
	f := sched.TaskFilter{App: p.App, Kind: p.Kind, Limit: p.Limit, After: p.Cursor}
	switch p.Order {
	case "", "asc":
	case "desc":
		f.Desc, f.Before, f.After = true, p.Cursor, 0
	default:
		return invalidParam("order", `must be "asc" or "desc"`)
	}
	if p.State != "" {
		st, ok := protocol.ParseState(p.State)
		if !ok {
			return invalidParam("state", "must be one of pending, running, done, failed, canceled")
		}
		f.State = st
	}
	switch {
	case p.Limit == 0:
		f.Limit = defaultListLimit
	case p.Limit < 0 || p.Limit > maxListLimit:
		return invalidParam("limit", fmt.Sprintf("must be from 1 to %d", maxListLimit))
	}
	tasks, next, err := s.h.m.Tasks(f)
	if err != nil {
		return s.h.masterError(err)
	}
	*out = view.PageOf(tasks, next, true)
	return nil
}

// withoutPayload is t as listings show it: the payload is for Tasks.Get.
func withoutPayload(t Task) Task {
	t.Payload = nil
	return t
}

const (
	defaultListLimit = sched.DefaultPage
	maxListLimit     = sched.MaxPage
)

// Cancel makes a pending or running task canceled.
func (s *tasksService) Cancel(r *http.Request, raw *json.RawMessage, out *OKResult) error {
	var p IDParams
	if err := decodeParams(raw, &p); err != nil {
		return err
	}
	if err := s.h.m.Cancel(p.ID); err != nil {
		return s.h.taskError(err, p.ID)
	}
	out.OK = true
	return nil
}

// Retry runs a failed or canceled task again.
func (s *tasksService) Retry(r *http.Request, raw *json.RawMessage, out *OKResult) error {
	var p IDParams
	if err := decodeParams(raw, &p); err != nil {
		return err
	}
	if err := s.h.m.Retry(p.ID); err != nil {
		return s.h.taskError(err, p.ID)
	}
	out.OK = true
	return nil
}

func checkApp(app string) *json2.Error {
	if app == "" || len(app) > protocol.MaxNameBytes {
		return invalidParam("app", fmt.Sprintf("must be 1 to %d bytes", protocol.MaxNameBytes))
	}
	return nil
}

// newTask converts t. The master checks the task's limits (see
// submitError); only what cannot survive the conversion is checked here.
func newTask(t *TaskSpec, path string) (protocol.NewTask, *json2.Error) {
	if maxMS := math.MaxInt64 / int64(time.Millisecond); t.TimeoutMS > maxMS || t.TimeoutMS < -maxMS {
		return protocol.NewTask{}, invalidParam(join(path, "timeout_ms"), "is too large")
	}
	if err := checkCopies(path, "replicas", t.Replicas); err != nil {
		return protocol.NewTask{}, err
	}
	if err := checkCopies(path, "quorum", t.Quorum); err != nil {
		return protocol.NewTask{}, err
	}
	return protocol.NewTask{
		Kind: t.Kind, Module: t.Module, Payload: t.Payload, Priority: t.Priority, Key: t.Key,
		Timeout: time.Duration(t.TimeoutMS) * time.Millisecond, MaxAttempts: t.MaxAttempts,
		Replicas: uint8(t.Replicas), Quorum: uint8(t.Quorum),
	}, nil
}

// checkCopies refuses a count of copies the wire cannot carry; the
// master checks how they relate.
func checkCopies(path, field string, n int) *json2.Error {
	if n < 0 || n > protocol.MaxReplicas {
		return invalidParam(join(path, field), fmt.Sprintf("must be 0 to %d", protocol.MaxReplicas))
	}
	return nil
}

// paramOf names a task's field as the API's parameters do.
var paramOf = map[protocol.TaskField]string{
	protocol.FieldKind: "kind", protocol.FieldPayload: "payload", protocol.FieldTimeout: "timeout_ms",
	protocol.FieldMaxAttempts: "max_attempts", protocol.FieldKey: "key", protocol.FieldModule: "module",
	protocol.FieldReplicas: "replicas", protocol.FieldQuorum: "quorum",
}

// submitError maps a refused submission. In a batch the field is the
// task's path ("tasks[3].kind") and the data carries its index.
func (h *handler) submitError(err error, batch bool) error {
	if qe, ok := errors.AsType[*sched.QuotaError](err); ok {
		return rpcError(CodeQuotaExceeded, quotaData{Quota: qe.Quota, Limit: qe.Limit}, "%s", qe.Error())
	}
	te, ok := errors.AsType[*sched.SubmitError](err)
	if !ok {
		return h.masterError(err)
	}
	if te.Index < 0 {
		return rpcError(CodeInvalidParams, nil, "invalid params: %s", te.Problem)
	}
	data := fieldData{Field: paramOf[te.Field]}
	if batch {
		data.Field, data.Index = join(fmt.Sprintf("tasks[%d]", te.Index), data.Field), &te.Index
	}
	if te.Code == protocol.CodePayloadTooLarge {
		return rpcError(CodeTooLarge, data, "payload too large: %s %s", data.Field, te.Problem)
	}
	return rpcError(CodeInvalidParams, data, "invalid params: %s: %s", data.Field, te.Problem)
}

// taskError maps the master's errors about task id.
func (h *handler) taskError(err error, id uint64) error {
	switch {
	case errors.Is(err, sched.ErrNotFound):
		return rpcError(CodeNotFound, idData{id}, "task %d not found", id)
	case errors.Is(err, sched.ErrFinal):
		return rpcError(CodeConflict, idData{id}, "task %d is already %s; only pending or running tasks can be canceled", id, h.stateOf(id))
	case errors.Is(err, sched.ErrCopy):
		return rpcError(CodeConflict, idData{id}, "%s: cancel or retry that task, not one of its copies", err)
	case errors.Is(err, sched.ErrNotFinal):
		return rpcError(CodeConflict, idData{id}, "task %d is %s; only failed or canceled tasks can be retried", id, h.stateOf(id))
	}
	return h.masterError(err)
}

// quotaData is the data of a quota error: the quota, named as the
// master's flag, and its value.
type quotaData struct {
	Quota string `json:"quota"`
	Limit int64  `json:"limit"`
}

type idData struct {
	ID uint64 `json:"id"`
}

func (h *handler) stateOf(id uint64) string {
	if ti, err := h.m.Task(id); err == nil {
		return ti.State.String()
	}
	return "in another state"
}

// masterError maps an error the caller cannot fix.
func (h *handler) masterError(err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, sched.ErrStopping) {
		return rpcError(CodeUnavailable, nil, "unavailable: %v", err)
	}
	h.log.Error("jsonrpc: master call failed", "err", err)
	return rpcError(CodeInternal, nil, "internal error: %v", err)
}
