package sched

import (
	"errors"
	"slices"
	"sort"

	"github.com/anthill-project/anthill/master/store"
	"github.com/anthill-project/anthill/protocol"
)

// Queued tasks in the store, not in memory. Past Options.HotTasks
// unfinished tasks, a task still pending once its submit is durable is
// cold: the scheduler forgets its task and keeps only its queue entry (a
// QueuedTask, 32 bytes), and its counts (the kinds', the app's, the
// quotas'). After a restart every pending task is cold. Whatever needs
// the task itself (a dispatch, a cancel, a Wait) warms it: reads its
// record, which for a cold task is exactly its truth, pending and never
// run since it was written, and makes its task again, still queued.
//
// A task is cold if and only if it is not in Scheduler.tasks and its
// stored record is pending and not a copy; Scheduler.cold counts them.

// classLocked is the Class of a kind or module class name, handed out
// the first time; the slaves that may run it see it from then on.
func (s *Scheduler) classLocked(name string) Class {
	if c, ok := s.classes[name]; ok {
		return c
	}
	c := Class(len(s.classNames))
	s.classNames = append(s.classNames, name)
	s.classes[name] = c
	if len(name) > 0 && name[0] != classPrefix[0] {
		// A kind: the slaves that declared it see it. A module's
		// class is offered by moduleLocked, to the slaves that may run
		// its code.
		for sl := range s.slaves {
			if _, ok := slices.BinarySearch(sl.kinds, name); ok {
				sl.view.Classes = with(sl.view.Classes, c)
				sl.held.Classes = with(sl.held.Classes, c)
			}
		}
	}
	return c
}

// kindClassesLocked are the classes, already handed out, of the kinds a
// slave declares.
func (s *Scheduler) kindClassesLocked(kinds []string) []Class {
	var cs []Class
	for _, k := range kinds {
		if c, ok := s.classes[k]; ok {
			cs = append(cs, c)
		}
	}
	slices.Sort(cs)
	return cs
}

// newRefLocked hands a an AppRef, reusing one a forgotten app left.
func (s *Scheduler) newRefLocked(a *App) {
	if n := len(s.freeRefs); n > 0 {
		a.ref = s.freeRefs[n-1]
		s.freeRefs = s.freeRefs[:n-1]
		return
	}
	a.ref = AppRef(s.nextRef)
	s.nextRef++
}

// coolLocked forgets t, which is pending, queued and durable, unless
// something holds it: it has run, it has copies, or a Wait watches it.
func (s *Scheduler) coolLocked(t *task) {
	if t.state != protocol.StatePending || !t.queued || t.attempts > 0 || t.parent != nil || t.group != nil ||
		t.check != nil || t.checks != nil || len(s.watch[t.id]) > 0 {
		return
	}
	delete(s.tasks, t.id)
	s.cold++
}

// coolPushLocked cools the tasks first..first+n-1, once their submit is
// durable, if the scheduler holds more than HotTasks.
func (s *Scheduler) coolPushLocked(first uint64, n uint32) {
	if len(s.tasks) <= s.opts.HotTasks {
		return
	}
	for id := first; id < first+uint64(n); id++ {
		if t := s.tasks[id]; t != nil {
			s.coolLocked(t)
		}
	}
}

// warmLocked makes the task of the cold record r again, still queued;
// its counts never stopped counting it.
func (s *Scheduler) warmLocked(r *store.Record) *task {
	a := s.appLocked(r.App)
	t := taskOf(r, a)
	t.state = protocol.StatePending
	t.q, t.queued, t.counted = s.entryLocked(t), true, true
	t.push = a.pushOf(t.id)
	s.tasks[t.id] = t
	s.cold--
	return t
}

// isCold says whether r, the record of a task not in memory, is a cold
// task's: unfinished, and not a copy (copies are never cold).
func isCold(r *store.Record) bool { return !r.State.Final() && r.Parent == 0 }

// queuedTaskLocked is the task of the entry q the queue handed out: in
// memory, a queued copy, or a cold task read back with rd. It is nil when
// the entry's task is gone (the entry is dropped); an error means the
// store could not be read.
func (s *Scheduler) queuedTaskLocked(rd *store.Reader, q QueuedTask) (*task, error) {
	if t := s.tasks[q.ID]; t != nil {
		return t, nil
	}
	if q.Urgent {
		// A copy: never cold, always in queuedCopies while queued.
		t := s.queuedCopies[q.ID]
		delete(s.queuedCopies, q.ID)
		if t == nil {
			s.opts.Logger.Error("a queued copy is unknown; dropped from the queue", "task", q.ID)
		}
		return t, nil
	}
	r, err := rd.Get(q.ID)
	switch {
	case err == nil && isCold(r):
		return s.warmLocked(r), nil
	case err != nil && !errors.Is(err, store.ErrNotFound):
		return nil, err
	}
	s.cold--
	s.opts.Logger.Error("a queued task is not in the store; dropped from the queue", "task", q.ID)
	return nil, nil
}

// coldRecordLocked is the record of id if it is a cold task.
func (s *Scheduler) coldRecordLocked(id uint64) *store.Record {
	if s.cold == 0 || s.tasks[id] != nil {
		return nil
	}
	if r, err := s.st.Get(id); err == nil && isCold(r) {
		return r
	}
	return nil
}

// liveLocked returns the task of id if it is live: in memory, or cold,
// and then warmed.
func (s *Scheduler) liveLocked(id uint64) *task {
	if t := s.tasks[id]; t != nil {
		return t
	}
	if r := s.coldRecordLocked(id); r != nil {
		return s.warmLocked(r)
	}
	return nil
}

// addColdLocked counts and queues the pending task the store summarizes,
// without making its task: a restart's way over millions of them.
func (s *Scheduler) addColdLocked(sum *store.Summary) {
	a := s.appBytesLocked(sum.App)
	kind := s.kindBytesLocked(sum.Kind)
	var class Class
	if len(sum.Module) > 0 {
		m := s.modules[string(sum.Module)]
		if m == nil {
			m = s.moduleLocked(string(sum.Module))
		}
		m.unfinished++
		s.moduleTasks++
		class = m.class
	} else {
		class = s.classLocked(kind)
	}
	s.liveKinds[kind]++
	a.live++
	n := int64(sum.PayloadLen)
	s.queuedTasks++
	s.queuedBytes += n
	a.queuedTasks++
	a.queuedBytes += n
	// As entryLocked makes it, from the summary's bytes.
	s.queue.push(QueuedTask{ID: sum.ID, Key: keyHash(sum.Key), Class: class, App: a.ref, Priority: sum.Priority})
	s.cold++
}

// appBytesLocked is appLocked for a name in the store's bytes, converted
// only the first time.
func (s *Scheduler) appBytesLocked(name []byte) *App {
	if a := s.apps[string(name)]; a != nil {
		return a
	}
	return s.appLocked(string(name))
}

// kindBytesLocked is the kind name of the store's bytes, one string for
// every task of the kind.
func (s *Scheduler) kindBytesLocked(kind []byte) string {
	if c, ok := s.classes[string(kind)]; ok {
		return s.classNames[c]
	}
	return s.classNames[s.classLocked(string(kind))]
}

// pushOf is the submit batch the task id came in, if it is still
// remembered. Batches get ascending ids, so pushOrder is sorted.
func (a *App) pushOf(id uint64) *push {
	i := sort.Search(len(a.pushOrder), func(i int) bool { return a.pushOrder[i].firstID+uint64(a.pushOrder[i].count) > id })
	if i < len(a.pushOrder) {
		if p := a.pushOrder[i]; p.firstID <= id && p.left > 0 {
			return p
		}
	}
	return nil
}

// addPush remembers p, which has ids above every other's.
func (a *App) addPush(p *push) {
	a.pushes[p.seq] = p
	a.pushOrder = append(a.pushOrder, p)
}

// forgetPush drops p, once all its tasks are acknowledged. pushOrder
// keeps it until most of it is spent, then is compacted, so this costs
// O(1) over time.
func (a *App) forgetPush(p *push) {
	delete(a.pushes, p.seq)
	if len(a.pushOrder) > 64 && len(a.pushOrder) > 2*len(a.pushes) {
		a.pushOrder = slices.DeleteFunc(a.pushOrder, func(p *push) bool { return p.left == 0 })
	}
}
