package appnode

import (
	"context"
	"errors"
)

// TaskSystem is a whole job driven by Run: it makes the tasks and gathers
// their outcomes. Both methods are called on the goroutine that called Run,
// never concurrently with each other (but possibly concurrently with
// Options.TaskFinished).
type TaskSystem interface {
	// Next returns the job's next task, or nil when the job has no more.
	// It is called lazily, only when the window has room, and not again
	// once it returned nil.
	Next() *Task
	// Finished gathers one task's outcome, exactly once per task Next
	// returned, while Run runs. err is nil on success, a *TaskError when the
	// task failed or was canceled, or a *RejectError when the master
	// refused the batch the task was in (the task was not stored).
	Finished(t *Task, result []byte, err error)
}

// RunOptions tunes Run.
type RunOptions struct {
	// Window is the most tasks taken from Next and not yet Finished. Zero
	// means 1000.
	Window int
	// Batch is the most tasks per Submit frame; batches are also cut to
	// stay well under the master's frame limit. Zero means min(Window, 256).
	Batch int
}

// run is one Run's mailbox; its fields are under Node.mu.
type run struct {
	ended    bool
	items    []*item  // notifications for its tasks
	resolved []*batch // its pushes, answered
	sig      chan struct{}
}

func (r *run) signal() {
	select {
	case r.sig <- struct{}{}:
	default:
	}
}

// Run drives ts to completion: it takes tasks from Next while fewer than
// Window are outstanding, pushes them in batches without waiting for each
// acknowledgement, and hands every outcome to Finished. A job of any size
// holds at most Window tasks in memory. Run returns nil once Next returned
// nil and every task was Finished; ctx's error, ErrClosed or the node's
// fatal error otherwise. Tasks still outstanding when Run returns early are
// reported to Options.TaskFinished instead.
func (n *Node) Run(ctx context.Context, ts TaskSystem, o RunOptions) error {
	window := o.Window
	if window <= 0 {
		window = 1000
	}
	size := o.Batch
	if size <= 0 {
		size = min(window, 256)
	}
	size = min(size, window)
	if err := n.stopErr(); err != nil {
		return err
	}
	r := &run{sig: make(chan struct{}, 1)}
	defer n.endRun(r)

	var (
		open      int // taken from Next, not yet Finished
		exhausted bool
		cur       []*Task
		curBytes  int
	)
	refused := func(tasks []*Task, err error) {
		for _, t := range tasks {
			ts.Finished(t, nil, err)
			open--
		}
	}
	flush := func() error {
		if len(cur) == 0 {
			return nil
		}
		tasks := cur
		cur, curBytes = nil, 0
		_, err := n.submit(ctx, tasks, r)
		var rej *RejectError
		if errors.As(err, &rej) {
			refused(tasks, err)
			return nil
		}
		return err
	}
	for {
		budget, most := n.frameBudget(), n.submitBudget(size)
		for !exhausted && open < window {
			t := ts.Next()
			if t == nil {
				exhausted = true
				break
			}
			open++
			cur = append(cur, t)
			curBytes += len(t.Kind) + len(t.Key) + len(t.Payload) + 32
			if len(cur) >= most || curBytes >= budget {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		if err := flush(); err != nil {
			return err
		}
		if exhausted && open == 0 {
			return nil
		}

		select {
		case <-r.sig:
		case <-ctx.Done():
			return ctx.Err()
		case <-n.stopping:
			return n.stopErr()
		}
		n.mu.Lock()
		items, resolved := r.items, r.resolved
		r.items, r.resolved = nil, nil
		n.mu.Unlock()
		for _, it := range items {
			result, err := it.outcome()
			ts.Finished(it.task, result, err)
			open--
			n.complete(it)
		}
		for _, b := range resolved {
			if b.err == nil {
				continue
			}
			var rej *RejectError
			if !errors.As(b.err, &rej) {
				return b.err
			}
			refused(b.tasks, b.err)
		}
	}
}

// submitBudget is the most tasks in one Run batch: what the master
// announced, if it did.
func (n *Node) submitBudget(size int) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	if m := n.welcome.MaxSubmitTasks; m > 0 {
		return min(size, m)
	}
	return size
}

// frameBudget is the size a Run batch is cut at: half the master's frame
// limit, leaving room for the encoding.
func (n *Node) frameBudget() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.welcome.MaxFrameBytes > 0 {
		return n.welcome.MaxFrameBytes / 2
	}
	return defaultFrame
}

// endRun hands whatever is still outstanding for r to TaskFinished.
func (n *Node) endRun(r *run) {
	n.mu.Lock()
	defer n.mu.Unlock()
	r.ended = true
	for _, it := range r.items {
		it.owner = nil
		n.queue = append(n.queue, it)
	}
	if len(r.items) > 0 {
		select {
		case n.dispSig <- struct{}{}:
		default:
		}
	}
	r.items, r.resolved = nil, nil
	for _, b := range n.batches {
		if b.owner == r {
			n.abandonLocked(b, context.Canceled)
		}
	}
}
