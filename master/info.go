package master

import (
	"sort"
	"time"

	"github.com/anthill-project/anthill/master/store"
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
	Name, Session, Host, OS, Arch string
	Cores, Concurrency, Window    int
	Kinds                         []string
	Running                       int
	Draining                      bool // takes no more work (Drain, or the slave is stopping)
	Dispatched, Done, Failed      uint64
	Busy                          time.Duration // summed handler time
	Connected                     time.Time
}

// AppStats describes one application id.
type AppStats struct {
	Name                        string
	Connected                   bool
	Pushed, Done, Failed, Acked uint64 // Failed counts canceled tasks too
	PendingNotifications        int
}

// Stats returns a snapshot. It walks slaves and apps, not tasks.
func (m *Master) Stats() Stats {
	m.mu.Lock()
	defer m.mu.Unlock()
	// The counters are stats' own: recorded under m.mu, so read under it
	// they agree with the states walked below.
	tot := m.metrics.Totals()
	s := Stats{
		Strategy: m.queue.Name(), Dispatch: m.opts.Dispatch, Uptime: m.opts.Now().Sub(m.started),
		Submitted: tot.Submitted, Dispatched: tot.Dispatched, Done: tot.Done,
		Failed: tot.Failed, Canceled: tot.Canceled, Retried: tot.Retried,
		Requeued: tot.Requeued, LateResults: tot.Late,
		Store: m.st.Stats(),
	}
	kinds := map[string]*KindStats{}
	kind := func(k string) *KindStats {
		if kinds[k] == nil {
			kinds[k] = &KindStats{Kind: k}
		}
		return kinds[k]
	}
	for k, n := range m.kinds {
		kind(k).Slaves = n
	}
	for _, t := range m.retries {
		kind(t.rec.Kind).Pending++
	}
	for sl := range m.slaves {
		s.Running += len(sl.running)
		s.Slaves = append(s.Slaves, SlaveStats{
			Name: sl.view.Name, Session: sl.session, Host: sl.hello.Host, OS: sl.hello.OS, Arch: sl.hello.Arch,
			Cores: sl.hello.Cores, Concurrency: sl.hello.Concurrency, Window: sl.window, Kinds: sl.view.Kinds,
			Running: len(sl.running), Draining: sl.draining, Dispatched: sl.dispatched, Done: sl.done, Failed: sl.failed,
			Busy: sl.busy, Connected: sl.connected,
		})
	}
	for _, a := range m.apps {
		n := len(a.pending) + len(a.sent)
		s.Unacked += n
		pushed, done, failed, canceled := a.metrics.Counts()
		s.Apps = append(s.Apps, AppStats{
			Name: a.name, Connected: a.conn != nil, Pushed: pushed, Done: done,
			Failed: failed + canceled, Acked: a.acked, PendingNotifications: n,
		})
	}
	for k := range m.seenKinds {
		kind(k)
	}
	for k, ks := range kinds {
		ks.Pending += m.queue.Len(k)
		s.Pending += ks.Pending
		if ks.Pending > 0 || ks.Slaves > 0 {
			s.Kinds = append(s.Kinds, *ks)
		}
	}
	sort.Slice(s.Kinds, func(i, j int) bool { return s.Kinds[i].Kind < s.Kinds[j].Kind })
	sort.Slice(s.Slaves, func(i, j int) bool { return s.Slaves[i].Name < s.Slaves[j].Name })
	sort.Slice(s.Apps, func(i, j int) bool { return s.Apps[i].Name < s.Apps[j].Name })
	return s
}
