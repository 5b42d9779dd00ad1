package sched

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/anthill-project/anthill/master/trust"
	"github.com/anthill-project/anthill/protocol"
)

// Replication as the scheduler lives it: copies on distinct volunteers,
// verdicts, extra copies, revocation, restarts, trust.

// answer sends sl's result for the dispatched task d, echoing its lease
// as an honest slave does.
func (h *harness) answer(sl *Slave, d protocol.Task, out string) {
	h.t.Helper()
	h.s.Complete(sl, []protocol.Result{{ID: d.ID, Attempt: d.Attempt, Lease: d.Lease, Output: []byte(out)}})
}

// copyRun is a copy as a slave holds it.
type copyRun struct {
	sl *Slave
	d  protocol.Task
}

// agreeOn has every run answer out and checks that the task ends done.
func (h *harness) agreeOn(id uint64, out string, runs ...copyRun) {
	h.t.Helper()
	for _, r := range runs {
		h.answer(r.sl, r.d, out)
	}
	if info := h.wait(id)[0]; info.State != protocol.StateDone || string(info.Result) != out {
		h.t.Fatalf("task %s %q, want done with %q", info.State, info.Result, out)
	}
}

func replicated(n, m uint8) protocol.NewTask {
	return protocol.NewTask{Kind: "k", Payload: []byte("p"), Replicas: n, Quorum: m}
}

// one reads the single task of the next dispatch to o.
func one(t *testing.T, o *outbox) protocol.Task {
	t.Helper()
	d := readAs[*protocol.Dispatch](t, o)
	if len(d.Tasks) != 1 {
		t.Fatalf("%s: dispatch of %d tasks, want 1", o.name, len(d.Tasks))
	}
	return d.Tasks[0]
}

func outcomes(info TaskInfo) map[string]string {
	m := map[string]string{}
	for _, a := range info.History {
		id, _ := Attribution(a.Slave)
		m[id] = a.Outcome.String()
	}
	return m
}

func TestQuorumTwoOfThree(t *testing.T) {
	h := newHarness(t, Options{})
	id := h.submit("app", replicated(3, 2))
	sa, oa := h.slave("a", 1, "k")
	sb, ob := h.slave("b", 1, "k")
	sc, oc := h.slave("c", 1, "k")
	da, db, dc := one(t, oa), one(t, ob), one(t, oc)
	for _, d := range []protocol.Task{da, db, dc} {
		if d.ID == id {
			t.Fatalf("a copy carries its task's id %d", id)
		}
	}
	if info := h.task(id); info.State != protocol.StateRunning || len(info.Copies) != 3 {
		t.Fatalf("forked task: %s with %d copies, want running with 3", info.State, len(info.Copies))
	}
	h.answer(sa, da, "right")
	h.answer(sc, dc, "wrong")
	if info := h.task(id); info.State.Final() {
		t.Fatalf("final after one agreeing copy: %+v", info)
	}
	h.answer(sb, db, "right")
	info := h.wait(id)[0]
	if info.State != protocol.StateDone || string(info.Result) != "right" {
		t.Fatalf("task %s with %q, want done with the quorum's result", info.State, info.Result)
	}
	want := map[string]string{"a": "canonical", "b": "canonical", "c": "invalid"}
	if got := outcomes(info); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("copies %v, want %v", got, want)
	}
	c := h.s.VolunteerTrustOf("c")
	if c.Invalid != 1 || c.Valid != 0 || c.Credit != 0 {
		t.Errorf("the dissenter's record %+v, want one invalid and no credit", c)
	}
	if a := h.s.VolunteerTrustOf("a"); a.Valid != 1 {
		t.Errorf("a's record %+v, want one valid", a)
	}
	// The copies are gone from the store: the task's history holds them.
	h.settle()
	for _, d := range []protocol.Task{da, db, dc} {
		if _, err := h.st.Get(d.ID); err == nil {
			t.Errorf("copy %d still stored after the verdict", d.ID)
		}
	}
	if page, _, _ := h.s.Tasks(TaskFilter{}); len(page) != 1 {
		t.Errorf("Tasks lists %d, want the task alone", len(page))
	}
}

func TestCopiesGoToDistinctVolunteers(t *testing.T) {
	h := newHarness(t, Options{})
	id := h.submit("app", replicated(2, 2))
	sa, oa := h.slave("a", 4, "k") // room for both copies; it must get one
	d := readAs[*protocol.Dispatch](t, oa)
	if len(d.Tasks) != 1 {
		t.Fatalf("one volunteer got %d copies of a task", len(d.Tasks))
	}
	// A second session of the same volunteer is the same volunteer.
	oa2 := newOutbox(t, "a, second session")
	h.s.AttachSlave("session-a2", &protocol.Hello{Version: protocol.Version, Role: protocol.RoleSlave, Name: "a", Kinds: []string{"k"}, Concurrency: 4}, oa2)
	oa2.quiet(t)
	sb, ob := h.slave("b", 4, "k")
	h.agreeOn(id, "x", copyRun{sa, d.Tasks[0]}, copyRun{sb, one(t, ob)})
}

func TestDisagreementIssuesCopiesUntilNoQuorum(t *testing.T) {
	h := newHarness(t, Options{})
	id := h.submit("app", replicated(2, 2))
	var sls []*Slave
	var outs []*outbox
	for i := range 8 {
		sl, o := h.slave(fmt.Sprint("v", i), 1, "k")
		sls, outs = append(sls, sl), append(outs, o)
	}
	answered := 0
	for progress := true; progress; {
		progress = false
		for i, o := range outs {
			select {
			case m := <-o.msgs:
				h.answer(sls[i], m.(*protocol.Dispatch).Tasks[0], fmt.Sprint("answer ", i)) // nobody agrees
				answered++
				progress = true
			default:
			}
		}
	}
	info := h.wait(id)[0]
	if info.State != protocol.StateFailed || !strings.HasPrefix(info.Err, "no quorum") {
		t.Fatalf("task %s %q, want failed with no quorum", info.State, info.Err)
	}
	if answered != copyBound(2) || len(info.History) != copyBound(2) {
		t.Errorf("%d copies answered, %d in the history; want the bound %d", answered, len(info.History), copyBound(2))
	}
}

func TestRevokedVolunteerLosesItsCopy(t *testing.T) {
	h := newHarness(t, Options{})
	id := h.submit("app", replicated(2, 2))
	sa, oa := h.slave("a", 1, "k")
	sb, ob := h.slave("b", 1, "k")
	one(t, oa)
	db := one(t, ob)
	if n := h.s.RevokeSlave(sa, "was revoked"); n != 1 {
		t.Fatalf("revoke took back %d tasks, want 1", n)
	}
	sc, oc := h.slave("c", 1, "k")
	dc := one(t, oc)
	h.answer(sb, db, "x")
	h.answer(sc, dc, "x")
	info := h.wait(id)[0]
	if info.State != protocol.StateDone {
		t.Fatalf("task %s %q", info.State, info.Err)
	}
	if got := outcomes(info); got["a"] != "" || got["b"] != "canonical" || got["c"] != "canonical" {
		t.Errorf("copies %v, want b and c canonical, none of a", got)
	}
}

func TestRestartMidQuorumNotifiesOnce(t *testing.T) {
	h := newHarness(t, Options{})
	a, ao := h.app("app")
	ack := h.push(a, ao, 1, replicated(3, 2))
	id := ack.FirstID
	sa, oa := h.slave("a", 1, "k")
	da := one(t, oa)
	h.answer(sa, da, "x")
	h.settle()
	h.restart()
	a, ao = h.app("app")
	sb, ob := h.slave("b", 1, "k")
	sc, oc := h.slave("c", 1, "k")
	sa2, oa2 := h.slave("a", 1, "k")
	db, dc := one(t, ob), one(t, oc)
	oa2.quiet(t) // a answered a copy before the restart: it gets no other
	_ = sa2
	h.answer(sb, db, "x")
	h.answer(sc, dc, "x") // not needed: the quorum was reached
	n := readAs[*protocol.Notify](t, ao)
	if len(n.Tasks) != 1 || n.Tasks[0].ID != id || string(n.Tasks[0].Result) != "x" {
		t.Fatalf("notify %+v, want task %d with x", n, id)
	}
	h.settle()
	ao.quiet(t)
	info := h.task(id)
	if got := outcomes(info); got["a"] != "canonical" || got["b"] != "canonical" {
		t.Errorf("copies %v, want a (before the restart) and b canonical", got)
	}
}

func TestAdaptiveTrustRunsSingleCopies(t *testing.T) {
	h := newHarness(t, Options{Trust: trust.Policy{Threshold: 3, SpotMin: 0.01}})
	if err := h.s.ConfigureApp("app", AppConfig{Replicas: 2, Adaptive: true}); err != nil {
		t.Fatal(err)
	}
	sa, oa := h.slave("a", 1, "k")
	sb, ob := h.slave("b", 1, "k")
	singles := 0
	for i := range 200 {
		id := h.submit("app", protocol.NewTask{Kind: "k", Payload: fmt.Appendf(nil, "%d", i)})
		got := map[*Slave]protocol.Task{}
		for _, p := range []struct {
			sl *Slave
			o  *outbox
		}{{sa, oa}, {sb, ob}} {
			select {
			case m := <-p.o.msgs:
				got[p.sl] = m.(*protocol.Dispatch).Tasks[0]
			default:
			}
		}
		if len(got) == 1 {
			for _, d := range got {
				if d.ID != id {
					t.Fatalf("a single copy carries id %d, not its task's %d", d.ID, id)
				}
			}
			singles++
		}
		for sl, d := range got {
			h.answer(sl, d, fmt.Sprint("r", i))
		}
		if info := h.wait(id)[0]; string(info.Result) != fmt.Sprint("r", i) {
			t.Fatalf("task %d: %s %q", i, info.State, info.Result)
		}
	}
	if singles < 100 {
		t.Errorf("%d of 200 tasks ran as a single copy once both volunteers were trusted; want most", singles)
	}
	for _, name := range []string{"a", "b"} {
		v := h.s.VolunteerTrustOf(name)
		if !v.Trusted || v.Invalid != 0 || v.Credit <= 0 && v.Valid == 0 {
			t.Errorf("%s: %+v, want trusted", name, v)
		}
	}
}

// spotChecked makes an adaptive app whose every task of the trusted is
// checked, has a and b earn its trust on two agreed tasks (two known
// answers), and leaves a second session of a, with room for two, the
// only one taking work. It submits a new task and returns its id.
func spotChecked(t *testing.T) (h *harness, sl *Slave, o *outbox, id uint64) {
	h = newHarness(t, Options{Trust: trust.Policy{Threshold: 2, SpotMin: 1}})
	if err := h.s.ConfigureApp("app", AppConfig{Replicas: 2, Adaptive: true}); err != nil {
		t.Fatal(err)
	}
	sa, oa := h.slave("a", 1, "k")
	sb, ob := h.slave("b", 1, "k")
	for i := range 2 {
		id := h.submit("app", protocol.NewTask{Kind: "k", Payload: fmt.Appendf(nil, "%d", i)})
		h.answer(sa, one(t, oa), "ok")
		h.answer(sb, one(t, ob), "ok")
		h.wait(id)
	}
	if !h.s.VolunteerTrustOf("a").Trusted {
		t.Fatalf("a not trusted: %+v", h.s.VolunteerTrustOf("a"))
	}
	for _, session := range []string{"session-a", "session-b"} {
		if err := h.s.Drain(session); err != nil {
			t.Fatal(err)
		}
	}
	o = newOutbox(t, "a, second session")
	sl = h.s.AttachSlave("session-a2", &protocol.Hello{Version: protocol.Version, Role: protocol.RoleSlave, Name: "a", Kinds: []string{"k"}, Concurrency: 2}, o)
	return h, sl, o, h.submit("app", protocol.NewTask{Kind: "k", Payload: []byte("new")})
}

func TestRingerCatchesTrustedLiar(t *testing.T) {
	h, sl, o, id := spotChecked(t)
	var d *protocol.Dispatch
	for d == nil || len(d.Tasks) < 2 {
		d = readAs[*protocol.Dispatch](t, o)
	}
	ids := []uint64{d.Tasks[0].ID, d.Tasks[1].ID}
	if !slices.Contains(ids, id) {
		t.Fatalf("dispatch %v lacks the task %d", ids, id)
	}
	for _, x := range d.Tasks {
		h.answer(sl, x, "lie")
	}
	v := h.s.VolunteerTrustOf("a")
	if v.Trusted || v.Invalid != 1 || v.Apps[0].Pending != 0 {
		t.Errorf("after a wrong ringer: %+v, want one invalid, not trusted, nothing pending", v)
	}
	// The task it lied on was not believed: it forked, its lie a copy
	// without weight, and two others decide.
	info := h.task(id)
	if info.State != protocol.StateRunning || len(info.Copies) != 3 {
		t.Fatalf("the checked task: %s with %d copies, want running with 3", info.State, len(info.Copies))
	}
	for _, name := range []string{"c", "d"} {
		sl, o := h.slave(name, 1, "k")
		h.answer(sl, one(t, o), "truth")
	}
	info = h.wait(id)[0]
	if info.State != protocol.StateDone || string(info.Result) != "truth" {
		t.Fatalf("task %s %q, want the truth", info.State, info.Result)
	}
	if got := outcomes(info); got["a"] != "invalid" || got["c"] != "canonical" || got["d"] != "canonical" {
		t.Errorf("copies %v", got)
	}
}

func TestRingerPassedReleasesTheHeldResult(t *testing.T) {
	h, sl, o, id := spotChecked(t)
	d := readAs[*protocol.Dispatch](t, o)
	if len(d.Tasks) != 2 {
		t.Fatalf("dispatch of %d tasks, want the task and a ringer", len(d.Tasks))
	}
	var task, ringer protocol.Task
	for _, x := range d.Tasks {
		if x.ID == id {
			task = x
		} else {
			ringer = x
		}
	}
	h.answer(sl, task, "fresh")
	if info := h.task(id); info.State.Final() {
		t.Fatalf("the checked task is %s before its ringer answered", info.State)
	}
	h.answer(sl, ringer, "ok") // the known answer
	if info := h.wait(id)[0]; info.State != protocol.StateDone || string(info.Result) != "fresh" {
		t.Fatalf("task %s %q, want the held result", info.State, info.Result)
	}
	if v := h.s.VolunteerTrustOf("a"); !v.Trusted || v.Invalid != 0 {
		t.Errorf("after a passed ringer: %+v", v)
	}
}

func TestACopyIsNotCanceledOrRetriedAlone(t *testing.T) {
	h := newHarness(t, Options{})
	id := h.submit("app", replicated(2, 2))
	_, oa := h.slave("a", 1, "k")
	d := one(t, oa)
	h.settle()
	for what, op := range map[string]func(uint64) error{"cancel": h.s.Cancel, "retry": h.s.Retry} {
		if err := op(d.ID); !errors.Is(err, ErrCopy) || !strings.Contains(err.Error(), fmt.Sprint(id)) {
			t.Errorf("%s of a copy: %v, want ErrCopy naming task %d", what, err, id)
		}
	}
	// Its task cancels, and the copy with it.
	if err := h.s.Cancel(id); err != nil {
		t.Fatal(err)
	}
	if c := readAs[*protocol.IDs](t, oa); c.T != protocol.TypeCancel || c.IDs[0] != d.ID {
		t.Errorf("the slave got %+v, want a cancel of its copy %d", c, d.ID)
	}
	if info := h.wait(id)[0]; info.State != protocol.StateCanceled || len(info.History) != 2 || info.History[0].Outcome != OutcomeCanceled {
		t.Errorf("canceled task: %s, history %+v", info.State, info.History)
	}
}

func TestReplicaDistinctIP(t *testing.T) {
	h := newHarness(t, Options{ReplicaDistinct: DistinctIP})
	id := h.submit("app", replicated(2, 2))
	attach := func(name, remote string) (*Slave, *outbox) {
		o := newOutbox(t, name)
		hello := &protocol.Hello{Version: protocol.Version, Role: protocol.RoleSlave, Name: name, Kinds: []string{"k"}, Concurrency: 1}
		return h.s.AttachVolunteer(Who{Identity: name, Session: "s-" + name, Remote: remote}, hello, o), o
	}
	sa, oa := attach("a", "10.0.0.1:4000")
	da := one(t, oa)
	_, ob := attach("b", "10.0.0.1:4001") // another identity on the same address
	ob.quiet(t)
	sc, oc := attach("c", "10.0.0.2:4000")
	h.agreeOn(id, "x", copyRun{sa, da}, copyRun{sc, one(t, oc)})
}

func TestNotNeededCopyAnsweredIsLateNotForged(t *testing.T) {
	h := newHarness(t, Options{})
	id := h.submit("app", replicated(3, 2))
	sa, oa := h.slave("a", 1, "k")
	sb, ob := h.slave("b", 1, "k")
	sc, oc := h.slave("c", 1, "k")
	da, db, dc := one(t, oa), one(t, ob), one(t, oc)
	h.answer(sa, da, "x")
	h.answer(sb, db, "x")
	h.wait(id)
	if c := readAs[*protocol.IDs](t, oc); c.T != protocol.TypeCancel || len(c.IDs) != 1 || c.IDs[0] != dc.ID {
		t.Fatalf("c got %+v, want the cancel of its copy", c)
	}
	h.answer(sc, dc, "x") // it had finished before the cancel arrived
	h.s.mu.Lock()
	strikes := sc.strikes
	h.s.mu.Unlock()
	if strikes != 0 {
		t.Errorf("a result that crossed its cancel counted as a strike (%d)", strikes)
	}
	// A second time it is a result for a task it does not hold.
	h.answer(sc, dc, "x")
	h.s.mu.Lock()
	strikes = sc.strikes
	h.s.mu.Unlock()
	if strikes != 1 {
		t.Errorf("a repeated result for a withdrawn copy: %d strikes, want 1", strikes)
	}
}

func TestValidatorDecidesAgreement(t *testing.T) {
	const module = "0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f"
	calls := make(chan [2]string, 16)
	h := newHarness(t, Options{
		Module: func(hash string) ([]string, bool) { return nil, hash == module },
		// Numbers agree when they are equal to a tenth: "1.00" and "1.04".
		Agree: func(_ context.Context, m string, a, b []byte) (bool, error) {
			calls <- [2]string{string(a), string(b)}
			var x, y float64
			fmt.Sscan(string(a), &x)
			fmt.Sscan(string(b), &y)
			return m == module && x-y < 0.1 && y-x < 0.1, nil
		},
	})
	if err := h.s.ConfigureApp("app", AppConfig{Validator: "1f" + module[2:]}); err == nil {
		t.Fatal("a validator never uploaded was accepted")
	}
	if err := h.s.ConfigureApp("app", AppConfig{Replicas: 2, Validator: module}); err != nil {
		t.Fatal(err)
	}
	if n := h.s.Validators(module); n != 1 {
		t.Errorf("Validators(%s) = %d, want 1: the module is in use", module, n)
	}
	id := h.submit("app", protocol.NewTask{Kind: "k", Payload: []byte("p")})
	sa, oa := h.slave("a", 1, "k")
	sb, ob := h.slave("b", 1, "k")
	h.answer(sa, one(t, oa), "1.00")
	h.answer(sb, one(t, ob), "1.04")
	info := h.wait(id)[0]
	if info.State != protocol.StateDone || string(info.Result) != "1.00" {
		t.Fatalf("task %s %q, want done with the first agreeing result", info.State, info.Result)
	}
	if c := <-calls; c != [2]string{"1.00", "1.04"} {
		t.Errorf("the validator got %q", c)
	}
	// Equal bytes agree without asking it.
	id = h.submit("app", protocol.NewTask{Kind: "k", Payload: []byte("q")})
	h.answer(sa, one(t, oa), "2")
	h.answer(sb, one(t, ob), "2")
	h.wait(id)
	select {
	case c := <-calls:
		t.Errorf("the validator was asked about equal results %q", c)
	default:
	}
}
