package view

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/anthill-project/anthill/master/sched"
	"github.com/anthill-project/anthill/master/store"
	"github.com/anthill-project/anthill/protocol"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// discard stands in for a connection: the view reads the scheduler, not
// what it sends.
type discard struct{}

func (discard) Send(protocol.Message) bool { return true }
func (discard) Close(string, string)       {}

// dispatches keeps the tasks sent to a slave, whose results must echo
// their leases.
type dispatches struct {
	discard
	tasks *[]protocol.Task
}

func (d dispatches) Send(m protocol.Message) bool {
	if dm, ok := m.(*protocol.Dispatch); ok {
		*d.tasks = append(*d.tasks, dm.Tasks...)
	}
	return true
}

func newScheduler(t *testing.T) *sched.Scheduler {
	t.Helper()
	st, err := store.Open(filepath.Join(t.TempDir(), "anthill.db"), store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	s, err := sched.New(st, sched.Options{Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done; st.Close() })
	return s
}

func hello(name string, slots int) *protocol.Hello {
	return &protocol.Hello{Version: protocol.Version, Role: protocol.RoleSlave, Name: name, Kinds: []string{"k"},
		Concurrency: slots, OS: "linux", Arch: "arm64", Host: "box"}
}

// One read joins the sessions with their names' numbers, the scheduler's
// applications with stats' numbers of them, and the counters with the
// rates of the window.
func TestBuildJoinsOnce(t *testing.T) {
	s := newScheduler(t)
	first, err := s.Submit(context.Background(), "app", []protocol.NewTask{{Kind: "k"}, {Kind: "k"}, {Kind: "k"}})
	if err != nil {
		t.Fatal(err)
	}
	var sent []protocol.Task
	a := s.AttachSlave("a1", hello("twice", 1), dispatches{tasks: &sent})
	s.AttachSlave("a2", hello("twice", 2), discard{})
	gone := s.AttachSlave("b1", hello("gone", 4), discard{})
	s.DetachSlave(gone)
	if len(sent) != 1 || sent[0].ID != first {
		t.Fatalf("dispatched %+v, want task %d", sent, first)
	}
	s.Complete(a, []protocol.Result{{ID: first, Attempt: 1, Lease: sent[0].Lease, Output: []byte("ok"), Duration: time.Millisecond}})
	if err := s.Cancel(first + 1); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Wait(context.Background(), []uint64{first, first + 1}); err != nil {
		t.Fatal(err)
	}

	o := Build(s)
	sm := o.Summary
	if sm.Tasks.Submitted != 3 || sm.Tasks.Done != 1 || sm.Tasks.Canceled != 1 || sm.Slaves.Connected != 2 || sm.Slaves.Concurrency != 3 {
		t.Fatalf("summary %+v", sm)
	}
	if th := sm.Throughput; th.Finished != 2 || th.FinishedPerSec <= 0 || th.SubmittedPerSec <= 0 {
		t.Fatalf("throughput %+v", th)
	}
	if len(o.Slaves) != 2 || o.Slaves[0].Name != "twice" || o.Slaves[0].Kinds == nil {
		t.Fatalf("sessions %+v", o.Slaves)
	}
	if len(o.Names) != 2 {
		t.Fatalf("names %+v", o.Names)
	}
	g, tw := o.Names[0], o.Names[1]
	if g.Name != "gone" || len(g.Sessions) != 0 || g.Draining || g.LastSeen == nil {
		t.Errorf("lingering name %+v", g)
	}
	if tw.Name != "twice" || len(tw.Sessions) != 2 || tw.Slots != 3 || tw.Done != 1 || tw.Platform != "linux/arm64" || tw.Reconnects != 1 {
		t.Errorf("name with two sessions %+v", tw)
	}
	if len(o.Apps) != 1 {
		t.Fatalf("apps %+v", o.Apps)
	}
	if ap := o.Apps[0]; ap.Pushed != 3 || ap.Done != 1 || ap.Failed != 1 || ap.Canceled != 1 || ap.Unfinished != 1 || len(ap.Recent) == 0 {
		t.Errorf("app %+v", ap)
	}
}

// Two identities with one self-chosen name are two rows, each with its
// own numbers; a task names the identity and the session that ran it.
func TestNamesAreIdentities(t *testing.T) {
	s := newScheduler(t)
	id, err := s.Submit(context.Background(), "app", []protocol.NewTask{{Kind: "k"}})
	if err != nil {
		t.Fatal(err)
	}
	var sent []protocol.Task
	alice := s.AttachVolunteer(sched.Who{Identity: "alice", Session: "s-a", Remote: "192.0.2.1:1"}, hello("lab-pc-7", 1), dispatches{tasks: &sent})
	s.AttachVolunteer(sched.Who{Identity: "mallory", Session: "s-m", Remote: "192.0.2.2:1"}, hello("lab-pc-7", 1), discard{})
	if len(sent) != 1 || sent[0].ID != id {
		t.Fatalf("alice was sent %+v", sent)
	}
	s.Complete(alice, []protocol.Result{{ID: id, Attempt: 1, Lease: sent[0].Lease, Output: []byte("ok")}})
	tis, err := s.Wait(context.Background(), []uint64{id})
	if err != nil {
		t.Fatal(err)
	}
	if task := TaskOf(&tis[0]); task.Slave != "alice" || task.Session != "s-a" || task.History[0].Slave != "alice" || task.History[0].Session != "s-a" {
		t.Fatalf("task attributed to %q/%q, history %+v", task.Slave, task.Session, task.History)
	}
	o := Build(s)
	if len(o.Names) != 2 || o.Names[0].Name != "alice" || o.Names[0].Done != 1 || o.Names[1].Name != "mallory" || o.Names[1].Done != 0 ||
		o.Names[1].Labels[0] != "lab-pc-7" {
		t.Fatalf("names %+v", o.Names)
	}
	if o.Slaves[0].Identity != "alice" || o.Slaves[0].Name != "lab-pc-7" || o.Slaves[0].Remote != "192.0.2.1:1" {
		t.Fatalf("sessions %+v", o.Slaves)
	}
}

// Every shape follows the conventions: ids as numbers, times as RFC 3339
// or null.
func TestTaskJSON(t *testing.T) {
	s := newScheduler(t)
	id, err := s.Submit(context.Background(), "app", []protocol.NewTask{{Kind: "k", Payload: []byte("in")}})
	if err != nil {
		t.Fatal(err)
	}
	ti, err := s.Task(id)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(TaskOf(&ti))
	if err != nil {
		t.Fatal(err)
	}
	js := string(b)
	for _, want := range []string{`"id":` + jsonNumber(id), `"started_at":null`, `"payload":"aW4="`, `"payload_bytes":2`, `"history":[]`, `"created_at":"` + ti.CreatedAt.UTC().Format(time.RFC3339Nano) + `"`} {
		if !strings.Contains(js, want) {
			t.Errorf("%s lacks %s", js, want)
		}
	}
	if id >= 1<<53 {
		t.Errorf("id %d does not fit a JavaScript number", id)
	}
	p := PageOf([]sched.TaskInfo{ti}, 0, false)
	if p.NextCursor != nil || p.Tasks[0].Payload != nil || p.Tasks[0].PayloadBytes != 2 {
		t.Errorf("page %+v", p)
	}
}

func jsonNumber(n uint64) string { b, _ := json.Marshal(n); return string(b) }
