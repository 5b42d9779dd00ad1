package sched

import (
	"sort"
	"time"

	"github.com/anthill-project/anthill/master/store"
	"github.com/anthill-project/anthill/protocol"
)

// Stats is a snapshot of the master's state and counters since start.
type Stats struct {
	Strategy string
	Dispatch string
	Uptime   time.Duration

	Pending int // queued, including those waiting for a retry
	Running int
	Unacked int // final, waiting for their application's acknowledgement

	Submitted, Dispatched, Done, Failed, Canceled uint64
	Retried, Requeued, LateResults                uint64

	Kinds  []KindStats
	Slaves []SlaveStats
	Apps   []AppStats
	Store  store.Stats
}

// KindStats shows per kind what waits and who can run it. Pending > 0 with
// Slaves == 0 means those tasks wait for a volunteer that runs the kind.
type KindStats struct {
	Kind    string
	Pending int
	Slaves  int
}

// SlaveStats describes one connected slave session.
type SlaveStats struct {
	// Identity is who the session runs as; Name is the label it chose for
	// itself, Remote the address it connects from.
	Identity, Remote              string
	Name, Session, Host, OS, Arch string
	Cores, Concurrency, Window    int
	Kinds                         []string
	Running                       int
	Draining                      bool // takes no more work (Drain, or the slave is stopping)
	Dispatched, Done, Failed      uint64
	// RejectedResults counts results the session sent without holding
	// their lease, or over the size limits (see Complete).
	RejectedResults uint64
	MaxWindow       int           // the most Window can grow to
	Busy            time.Duration // summed handler time
	Connected       time.Time
}

// AppStats describes one application id.
type AppStats struct {
	Name                        string
	Connected                   bool
	Pushed, Done, Failed, Acked uint64 // Failed counts canceled tasks too
	PendingNotifications        int
}

// Stats returns a snapshot. It walks slaves and apps, not tasks.
func (s *Scheduler) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	// The counters are stats' own: recorded under s.mu, so read under it
	// they agree with the states walked below.
	tot := s.metrics.Totals()
	out := Stats{
		Strategy: s.queue.strategy.Name(), Dispatch: s.opts.Dispatch, Uptime: s.opts.Now().Sub(s.started),
		Submitted: tot.Submitted, Dispatched: tot.Dispatched, Done: tot.Done,
		Failed: tot.Failed, Canceled: tot.Canceled, Retried: tot.Retried,
		Requeued: tot.Requeued, LateResults: tot.Late,
		Store: s.st.Stats(),
	}
	kinds := map[string]*KindStats{}
	kind := func(k string) *KindStats {
		if kinds[k] == nil {
			kinds[k] = &KindStats{Kind: k}
		}
		return kinds[k]
	}
	for k, n := range s.kinds {
		kind(k).Slaves = n
	}
	for _, t := range s.retries.items {
		kind(t.kind).Pending++
	}
	for sl := range s.slaves {
		out.Running += len(sl.running)
		sc := sl.metrics.Session()
		h := &sl.hello
		out.Slaves = append(out.Slaves, SlaveStats{
			Identity: sl.who.Identity, Remote: sl.who.Remote, Name: h.Name, Session: sl.session, Host: h.Host, OS: h.OS, Arch: h.Arch,
			Cores: h.Cores, Concurrency: h.Concurrency, Window: sl.window, Kinds: sl.kinds,
			Running: len(sl.running), Draining: sl.draining, Dispatched: sc.Dispatched, Done: sc.Done,
			Failed: sc.Failed, RejectedResults: sc.Rejected, MaxWindow: sl.maxWindow, Busy: sc.Busy, Connected: sl.connected,
		})
	}
	for _, a := range s.apps {
		n := len(a.pending) + len(a.sent)
		out.Unacked += n
		pushed, done, failed, canceled := a.metrics.Counts()
		out.Apps = append(out.Apps, AppStats{
			Name: a.name, Connected: a.out != nil, Pushed: pushed, Done: done,
			Failed: failed + canceled, Acked: a.acked, PendingNotifications: n,
		})
	}
	for k := range s.liveKinds {
		kind(k)
	}
	for _, m := range s.modules {
		if n := s.queue.len(m.class); n > 0 {
			kind(protocol.KindWASM).Pending += n
		}
	}
	for k, ks := range kinds {
		if c, ok := s.classes[k]; ok {
			ks.Pending += s.queue.len(c)
		}
		out.Pending += ks.Pending
		if ks.Pending > 0 || ks.Slaves > 0 {
			out.Kinds = append(out.Kinds, *ks)
		}
	}
	sort.Slice(out.Kinds, func(i, j int) bool { return out.Kinds[i].Kind < out.Kinds[j].Kind })
	sort.Slice(out.Slaves, func(i, j int) bool {
		a, b := &out.Slaves[i], &out.Slaves[j]
		if a.Identity != b.Identity {
			return a.Identity < b.Identity
		}
		return a.Session < b.Session
	})
	sort.Slice(out.Apps, func(i, j int) bool { return out.Apps[i].Name < out.Apps[j].Name })
	return out
}
