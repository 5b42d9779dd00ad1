package sched

import (
	"fmt"
	"strconv"
	"time"

	"github.com/anthill-project/anthill/protocol"
)

// Quotas: what one submit, one application or all of them may hold on
// the master. They are checked under the lock against counters kept as
// tasks are accepted and become final, so a check costs no walk.

// Names of the quotas, as QuotaError.Quota and the master's flags spell
// them. Scripts match on them.
const (
	QuotaQueuedTasks       = "max-queued-tasks"
	QuotaQueuedBytes       = "max-queued-bytes"
	QuotaQueuedTasksPerApp = "max-queued-tasks-per-app"
	QuotaQueuedBytesPerApp = "max-queued-bytes-per-app"
	QuotaSubmitTasks       = "max-submit-tasks"
	QuotaKinds             = "max-kinds"
	QuotaApps              = "max-apps"
)

// QuotaError refuses a whole submit, or a new application, because it
// would pass one of the master's quotas. Nothing of the submit was stored
// and nothing already accepted was touched; the same submit may succeed
// once tasks have finished.
type QuotaError struct {
	Quota string // one of the Quota* names
	Limit int64  // the quota's value
	// Problem says what the submit would have made of it, e.g. "the
	// queue would hold 1000001 tasks".
	Problem string
}

func (e *QuotaError) Error() string {
	return fmt.Sprintf("quota exceeded: %s is %d: %s", e.Quota, e.Limit, e.Problem)
}

// reject is how a submit connection hears of e.
func (e *QuotaError) reject(seq uint64) *protocol.SubmitReject {
	return &protocol.SubmitReject{Seq: seq, Index: -1, Code: protocol.CodeQuotaExceeded, Message: e.Error()}
}

// checkSubmitSize refuses a submit of more tasks than one may carry. It
// needs no lock.
func (s *Scheduler) checkSubmitSize(n int) *QuotaError {
	if n > s.opts.MaxSubmitTasks {
		return &QuotaError{Quota: QuotaSubmitTasks, Limit: int64(s.opts.MaxSubmitTasks),
			Problem: "a submit of " + strconv.Itoa(n) + " tasks"}
	}
	return nil
}

// checkQuotasLocked reports whether app (nil: an application not known
// yet, named name) may add tasks, or which quota it would pass.
func (s *Scheduler) checkQuotasLocked(a *App, name string, tasks []protocol.NewTask) *QuotaError {
	if a == nil {
		if err := s.checkNewAppLocked(name); err != nil {
			return err
		}
	}
	n, bytes := int64(len(tasks)), int64(0)
	for i := range tasks {
		bytes += int64(len(tasks[i].Payload))
	}
	var appTasks, appBytes int64
	if a != nil {
		appTasks, appBytes = a.queuedTasks, a.queuedBytes
	}
	over := func(quota string, limit, have, add int64, what string) *QuotaError {
		if have+add <= limit {
			return nil
		}
		return &QuotaError{Quota: quota, Limit: limit,
			Problem: fmt.Sprintf("%s would hold %d %s (%d now)", whose(quota, name), have+add, what, have)}
	}
	o := &s.opts
	if err := over(QuotaQueuedTasks, o.MaxQueuedTasks, s.queuedTasks, n, "unfinished tasks"); err != nil {
		return err
	}
	if err := over(QuotaQueuedBytes, o.MaxQueuedBytes, s.queuedBytes, bytes, "bytes of unfinished payloads"); err != nil {
		return err
	}
	if err := over(QuotaQueuedTasksPerApp, o.MaxQueuedTasksPerApp, appTasks, n, "unfinished tasks"); err != nil {
		return err
	}
	if err := over(QuotaQueuedBytesPerApp, o.MaxQueuedBytesPerApp, appBytes, bytes, "bytes of unfinished payloads"); err != nil {
		return err
	}
	fresh := 0
	var seen map[string]struct{}
	for i := range tasks {
		k := tasks[i].Kind
		if _, ok := s.liveKinds[k]; ok {
			continue
		}
		if _, ok := seen[k]; ok {
			continue
		}
		if seen == nil {
			seen = map[string]struct{}{}
		}
		seen[k] = struct{}{}
		fresh++
	}
	if fresh > 0 && len(s.liveKinds)+fresh > o.MaxKinds {
		return &QuotaError{Quota: QuotaKinds, Limit: int64(o.MaxKinds),
			Problem: fmt.Sprintf("the master holds tasks of %d kinds and the submit brings %d new ones", len(s.liveKinds), fresh)}
	}
	return nil
}

func whose(quota, app string) string {
	if quota == QuotaQueuedTasksPerApp || quota == QuotaQueuedBytesPerApp {
		return "application " + strconv.Quote(app)
	}
	return "the master"
}

// checkNewAppLocked reports whether an application unknown so far may be
// added.
func (s *Scheduler) checkNewAppLocked(name string) *QuotaError {
	if len(s.apps) < s.opts.MaxApps {
		return nil
	}
	return &QuotaError{Quota: QuotaApps, Limit: int64(s.opts.MaxApps),
		Problem: fmt.Sprintf("the master knows %d applications; %q would be one more", len(s.apps), name)}
}

// queuedLocked counts t as unfinished; doneLocked stops counting it. Every
// task that is not final is counted exactly once: accepted, reloaded or
// retried, until it becomes final.
func (s *Scheduler) queuedLocked(t *task) {
	if t.counted {
		return
	}
	t.counted = true
	if t.module != "" {
		s.moduleLocked(t.module).unfinished++
		s.moduleTasks++
	}
	n := int64(len(t.payload))
	s.queuedTasks++
	s.queuedBytes += n
	t.app.queuedTasks++
	t.app.queuedBytes += n
}

func (s *Scheduler) doneLocked(t *task) {
	if !t.counted {
		return
	}
	t.counted = false
	if t.module != "" {
		s.moduleLocked(t.module).unfinished--
		s.moduleTasks--
	}
	n := int64(len(t.payload))
	s.queuedTasks--
	s.queuedBytes -= n
	t.app.queuedTasks--
	t.app.queuedBytes -= n
}

// removeLocked forgets the live task of id, if any.
func (s *Scheduler) removeLocked(id uint64) {
	t := s.tasks[id]
	if t == nil {
		return
	}
	delete(s.tasks, id)
	s.doneLocked(t)
	if s.liveKinds[t.kind]--; s.liveKinds[t.kind] <= 0 {
		delete(s.liveKinds, t.kind)
	}
	t.app.live--
}

// idleLocked reports whether a has nothing left on the master: no
// connection, no task, no notification, no submit record.
func (a *App) idleLocked() bool {
	return a.out == nil && a.live == 0 && len(a.pending) == 0 && len(a.sent) == 0 && len(a.pushes) == 0
}

// forgetApps drops the applications idle for AppIdle, and their series,
// so a flood of application names leaves nothing behind. An idle
// application is refused nothing: it is made again when it comes back.
func (s *Scheduler) forgetApps(now time.Time, _ *change) {
	for name, a := range s.apps {
		if !a.idleLocked() {
			a.idleSince = time.Time{}
			continue
		}
		if a.idleSince.IsZero() {
			a.idleSince = now
			continue
		}
		if now.Sub(a.idleSince) < s.opts.AppIdle {
			continue
		}
		delete(s.apps, name)
		s.freeRefs = append(s.freeRefs, a.ref)
		a.metrics.Remove()
	}
}
