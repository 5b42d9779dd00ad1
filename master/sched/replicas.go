package sched

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/anthill-project/anthill/master/store"
	"github.com/anthill-project/anthill/master/trust"
	"github.com/anthill-project/anthill/protocol"
)

// Replication: a task that asks for n copies (or whose app does) forks
// when it is first dispatched. The task itself is never run then: it
// waits, running in its application's eyes, while its copies, each a
// task of its own with a fresh id and one attempt, run on n distinct
// volunteers. When m of them agree (trust.Decide) the task becomes final
// with their result, once, and the copies' records are folded into its
// history. A volunteer sees a copy as any other task.
//
// With adaptive replication the fork is decided per dispatch: a volunteer
// trusted for the app runs the task as a single copy, unless a spot check
// says otherwise; a spot check is a ringer (a task whose answer is known)
// beside the task, when the app has one, else a fork.

// group is a forked task's copies, from the fork to the verdict.
type group struct {
	n, m   int // copies wanted, agreeing copies needed
	bound  int // the most copies ever issued for the task
	copies []*task
	// compared caches the app validator's answers, by pair of copies;
	// comparing says a run of comparisons is under way (see validate.go).
	compared  map[pair]bool
	comparing bool
}

func newGroup(n, m int) *group {
	return &group{n: n, m: m, bound: copyBound(n), compared: map[pair]bool{}}
}

// Bounds of replication. A task's copies are folded into its history, so
// there are never more than it holds.
const maxCopies = store.MaxHistory

// copyBound is the most copies a task of n may issue: n, then as many
// again and one more for disagreements and lost copies.
func copyBound(n int) int { return min(2*n+1, maxCopies) }

// AppConfig is an application's defaults for its tasks, set with
// ConfigureApp.
type AppConfig struct {
	// Replicas is how many copies of each task run on distinct
	// volunteers; 0 or 1: one, no validation. A task's own Replicas wins.
	Replicas uint8
	// Quorum is how many copies must agree; 0: a majority of Replicas.
	Quorum uint8
	// Adaptive runs a task as a single copy when its volunteer is trusted
	// for the app (see trust.Policy), spot-checked; Replicas copies
	// otherwise. It needs Replicas of 2 or more.
	Adaptive bool
	// Validator is the hash of an uploaded WASM module that says whether
	// two results agree (see Options.Agree); "": byte equality.
	Validator string
	// Weight is the app's share of the slots under the fair strategy,
	// against the other apps' weights; 0 means 1.
	Weight uint16
}

// ConfigError refuses an AppConfig; Field names the wrong field.
type ConfigError struct{ Field, Problem string }

func (e *ConfigError) Error() string { return e.Field + ": " + e.Problem }

// Check says what is wrong with c, as a *ConfigError.
func (c AppConfig) Check() error {
	switch {
	case c.Replicas > protocol.MaxReplicas:
		return &ConfigError{"replicas", fmt.Sprintf("%d is more than %d", c.Replicas, protocol.MaxReplicas)}
	case c.Quorum > max(c.Replicas, 1):
		return &ConfigError{"quorum", fmt.Sprintf("%d is more than replicas (%d)", c.Quorum, c.Replicas)}
	case c.Adaptive && c.Replicas < 2:
		return &ConfigError{"adaptive", fmt.Sprintf("needs replicas of 2 or more, not %d", c.Replicas)}
	}
	return nil
}

// appConfigFormat is the first byte of a stored AppConfig.
// Format 1 is four bytes: the format, replicas, quorum and flags (1:
// adaptive); format 2 adds the validator's hash, the rest of the value;
// format 3 puts the weight, two bytes big-endian, before the validator.
const (
	appConfigFormat   = 3
	appConfigFormatV2 = 2
	appConfigFormatV1 = 1
)

func appendAppConfig(dst []byte, c AppConfig) []byte {
	var flags byte
	if c.Adaptive {
		flags |= 1
	}
	dst = append(dst, appConfigFormat, c.Replicas, c.Quorum, flags, byte(c.Weight>>8), byte(c.Weight))
	return append(dst, c.Validator...)
}

func decodeAppConfig(b []byte) (AppConfig, error) {
	if len(b) < 4 || b[0] < appConfigFormatV1 || b[0] > appConfigFormat || b[3]&^1 != 0 ||
		b[0] == appConfigFormatV1 && len(b) != 4 || b[0] == appConfigFormat && len(b) < 6 {
		return AppConfig{}, fmt.Errorf("corrupt app configuration %x", b)
	}
	c := AppConfig{Replicas: b[1], Quorum: b[2], Adaptive: b[3]&1 != 0, Validator: string(b[4:])}
	if b[0] == appConfigFormat {
		c.Weight, c.Validator = uint16(b[4])<<8|uint16(b[5]), string(b[6:])
	}
	if c.Validator != "" && !protocol.ValidModuleHash(c.Validator) {
		return AppConfig{}, fmt.Errorf("corrupt app configuration: validator %q", c.Validator)
	}
	return c, c.Check()
}

// ConfigureApp sets app's defaults for the tasks it submits from now on;
// tasks already forked keep the copies they have.
func (s *Scheduler) ConfigureApp(name string, c AppConfig) error {
	if err := c.Check(); err != nil {
		return err
	}
	done := make(chan error, 1)
	s.mu.Lock()
	if s.apps[name] == nil {
		if err := s.checkNewAppLocked(name); err != nil {
			s.mu.Unlock()
			return err
		}
	}
	if err := s.checkValidatorLocked(c.Validator); err != nil {
		s.mu.Unlock()
		return err
	}
	a := s.appLocked(name)
	a.conf = c
	s.confs[name] = c
	s.weighLocked(a)
	b := new(store.Batch)
	b.PutValue(store.BucketApps, name, appendAppConfig(nil, c))
	s.commitLocked(b, func(err error) { done <- err })
	s.mu.Unlock()
	return <-done
}

// weighLocked tells a strategy that shares by weight a's.
func (s *Scheduler) weighLocked(a *App) {
	if w, ok := s.queue.strategy.(Weigher); ok {
		w.Weigh(a.ref, int(max(a.conf.Weight, 1)))
	}
}

// AppConfigOf returns app's defaults (zero if it set none).
func (s *Scheduler) AppConfigOf(name string) AppConfig {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.confs[name]
}

// replication is how t runs: n copies, m of which must agree, adaptively
// or not. n below 2 means a single copy, believed.
func (t *task) replication() (n, m int, adaptive bool) {
	c := t.app.conf
	n = int(c.Replicas)
	if t.replicas > 0 {
		n = int(t.replicas)
	}
	m = int(c.Quorum)
	if t.quorum > 0 {
		m = int(t.quorum)
	}
	if m == 0 || m > n {
		m = n/2 + 1
	}
	// A task that asks for its own copies asks for them all.
	return n, m, c.Adaptive && t.replicas == 0
}

// trustKey names one volunteer's record for one application.
type trustKey struct{ volunteer, app string }

func (k trustKey) String() string { return k.volunteer + "\x00" + k.app }

// trustLocked is the record of volunteer for app, made if need be.
func (s *Scheduler) trustLocked(volunteer, app string) *trust.Record {
	k := trustKey{volunteer, app}
	r := s.trust[k]
	if r == nil {
		r = new(trust.Record)
		s.trust[k] = r
	}
	return r
}

// saveTrustLocked notes that the record of volunteer for app changed,
// and whether the app now suspects it. The record is written once per
// change, whatever it judged (see writeTrustLocked): a frame of a
// thousand results believed on trust writes it once, not a thousand
// times.
func (s *Scheduler) saveTrustLocked(volunteer, app string) {
	k := trustKey{volunteer, app}
	s.noteSuspectLocked(k)
	s.dirtyTrust[k] = struct{}{}
}

// writeTrustLocked puts the records changed since the last change into b.
func (s *Scheduler) writeTrustLocked(b *store.Batch) {
	for k := range s.dirtyTrust {
		b.PutValue(store.BucketTrust, k.String(), trust.AppendRecord(nil, s.trust[k]))
	}
	clear(s.dirtyTrust)
}

// noteSuspectLocked keeps suspects in step with k's record.
func (s *Scheduler) noteSuspectLocked(k trustKey) {
	by := s.suspects[k.volunteer]
	if r := s.trust[k]; s.policy.Suspect(r) {
		if by == nil {
			by = map[string]uint64{}
			s.suspects[k.volunteer] = by
		}
		by[k.app] = r.Invalid
		return
	}
	if delete(by, k.app); len(by) == 0 {
		delete(s.suspects, k.volunteer)
	}
}

// throttledLocked says whether sl is refused a task this time: a
// volunteer an app suspects gets one with probability 1/(1+invalid), its
// most invalid results for one app, so a caught saboteur is given little
// to spoil while an honest volunteer that erred once still earns trust
// back. It asks again at the next pump (every tick at the latest).
func (s *Scheduler) throttledLocked(sl *Slave) bool {
	by := s.suspects[sl.who.Identity]
	if by == nil {
		return false
	}
	var worst uint64
	for _, n := range by {
		worst = max(worst, n)
	}
	return rand.Float64() >= 1/(1+float64(worst))
}

// placeLocked decides how the task t, just taken from the queue for sl,
// runs. It returns the task to send sl: t itself, or its first copy when
// t forks; and a ringer to send beside it, or nil. New records go into b.
func (s *Scheduler) placeLocked(sl *Slave, t *task, room int, now time.Time, b **store.Batch) (send, ringer *task) {
	s.uncheckLocked(t)
	if t.parent != nil || t.ringer != nil {
		return t, nil
	}
	n, m, adaptive := t.replication()
	if n < 2 {
		return t, nil
	}
	if adaptive {
		rec := s.trustLocked(sl.who.Identity, t.app.name)
		if s.policy.Trusted(rec) {
			if !s.policy.Replicate(rec, rand.Float64()) {
				t.onTrust = true
				return t, nil
			}
			if room >= 2 {
				if r := s.ringerLocked(t); r != nil {
					t.onTrust = true
					t.check, r.checks = r, t
					return t, r
				}
			}
		}
	}
	if *b == nil {
		*b = new(store.Batch)
	}
	return s.forkLocked(t, n, m, now, *b), nil
}

// forkLocked makes t's n copies and returns the first, to be dispatched
// at once; the others wait in the queue.
func (s *Scheduler) forkLocked(t *task, n, m int, now time.Time, b *store.Batch) *task {
	g := newGroup(n, m)
	t.group = g
	t.state = protocol.StateRunning
	t.startedAt = now
	for range n {
		s.newCopyLocked(t, now, b)
	}
	for _, c := range g.copies[1:] {
		s.pushLocked(c)
	}
	s.metrics.Forked(t.kind)
	return g.copies[0]
}

// newCopyLocked adds a copy to t's group and writes it into b; the caller
// queues or dispatches it.
func (s *Scheduler) newCopyLocked(t *task, now time.Time, b *store.Batch) *task {
	g := t.group
	c := &task{
		id: s.nextID, app: t.app, kind: t.kind, module: t.module, key: t.key, priority: t.priority,
		timeout: t.timeout, maxAttempts: 1, createdAt: now, payload: t.payload, quiet: true,
		state: protocol.StatePending, parent: t, replicas: uint8(g.n), quorum: uint8(g.m),
	}
	s.nextID++
	b.SetNextID(s.nextID)
	g.copies = append(g.copies, c)
	s.put(b, c)
	return c
}

// distinctLocked says whether sl may run a copy of the task of g: no
// other copy ran or runs on its volunteer (nor, with ReplicaDistinct
// "ip", on its address). A copy handed back waits for another volunteer
// and blocks nobody.
func (s *Scheduler) distinctLocked(g *group, sl *Slave) bool {
	ip := ""
	if s.opts.ReplicaDistinct == DistinctIP {
		ip = sl.host
	}
	for _, c := range g.copies {
		if c.state == protocol.StatePending || c.ranOn == "" {
			continue
		}
		if id, _ := Attribution(c.ranOn); id == sl.who.Identity {
			return false
		}
		if ip != "" && c.remote == ip {
			return false
		}
	}
	return true
}

// DistinctIP is the ReplicaDistinct value that keeps copies of a task
// on distinct addresses too.
const DistinctIP = "ip"

func hostOf(remote string) string {
	if h, _, err := net.SplitHostPort(remote); err == nil {
		return h
	}
	return remote
}

// copyEndedLocked takes a copy that became final (its result, its error
// or its loss) and lets the quorum judge its task.
func (s *Scheduler) copyEndedLocked(c *task, now time.Time, ch *change) {
	c.finishedAt = now
	c.slave = nil
	p := c.parent
	if p.group == nil || p.state.Final() {
		return // the verdict came first; it canceled this copy
	}
	s.put(&ch.b, c) // durable, so a restart counts it
	s.judgeLocked(p, now, ch)
}

// vote is a copy's part in its quorum, or false if it has none: lost,
// timed out, not ended.
func (s *Scheduler) vote(c *task) (trust.Vote, bool) {
	if !c.state.Final() || c.state == protocol.StateCanceled {
		return trust.Vote{}, false
	}
	if o := c.lastOutcome(); o != OutcomeDone && o != OutcomeFailed {
		return trust.Vote{}, false
	}
	v := trust.Vote{OK: c.state == protocol.StateDone, Output: c.result, Err: c.err, Weight: 1, Claim: c.claim.Seconds()}
	id, _ := Attribution(c.ranOn)
	if s.policy.Suspect(s.trust[trustKey{id, c.app.name}]) {
		v.Weight = 0
	}
	return v, true
}

// lastOutcome is how t's last attempt ended.
func (t *task) lastOutcome() Outcome {
	if len(t.history) == 0 {
		return OutcomeRunning
	}
	return t.history[len(t.history)-1].Outcome
}

// judgeLocked looks at p's copies: a quorum makes p final; otherwise more
// copies are issued if the running ones cannot make one, up to the bound,
// past which p fails with "no quorum".
func (s *Scheduler) judgeLocked(p *task, now time.Time, ch *change) {
	g := p.group
	var votes []trust.Vote
	var voters []*task
	running := 0
	for _, c := range g.copies {
		if v, ok := s.vote(c); ok {
			votes, voters = append(votes, v), append(voters, c)
		} else if !c.state.Final() {
			running++
		}
	}
	var missing []pair
	v := trust.Decide(votes, g.m, s.agreeLocked(p, voters, votes, &missing))
	if len(missing) > 0 {
		s.compareLocked(p, missing) // judged again once compared
		return
	}
	if v.Canonical >= 0 {
		s.verdictLocked(p, votes, voters, v, now, ch)
		return
	}
	more := trust.More(v, running, g.m)
	if more == 0 {
		return
	}
	left := g.bound - len(g.copies)
	if more > left {
		// Even if every copy running and every one it may still issue
		// agreed with the best group, it would not reach the quorum.
		s.noQuorumLocked(p, v, now, ch)
		return
	}
	for range more {
		c := s.newCopyLocked(p, now, &ch.b)
		s.pushLocked(c)
	}
	s.repump = true // the slave that answered may not take them
	s.metrics.ExtraCopies(p.kind, more)
}

// verdictLocked makes p final with the canonical result, judges every
// copy and its volunteer, and cancels the copies no longer needed.
func (s *Scheduler) verdictLocked(p *task, votes []trust.Vote, voters []*task, v trust.Verdict, now time.Time, ch *change) {
	canon := voters[v.Canonical]
	judged := map[*task]Outcome{}
	for i, c := range voters {
		id, _ := Attribution(c.ranOn)
		rec := s.trustLocked(id, p.app.name)
		if v.Agrees[i] {
			judged[c] = OutcomeCanonical
			s.policy.Valid(rec, trust.Credit(votes, v, i))
		} else {
			judged[c] = OutcomeInvalid
			s.policy.Invalid(rec)
			s.metrics.Invalid(p.kind)
		}
		s.saveTrustLocked(id, p.app.name)
	}
	if canon.state == protocol.StateDone {
		p.state, p.result, p.err = protocol.StateDone, canon.result, ""
		if agreeing := v.Best; agreeing >= 2 {
			s.addRingerLocked(p, canon.result)
		}
	} else {
		p.state, p.result, p.err = protocol.StateFailed, nil, canon.err
	}
	p.ranOn = canon.ranOn
	s.foldCopiesLocked(p, judged, OutcomeNotNeeded, now, ch)
	s.finishLocked(p, now, ch)
}

// noQuorumLocked fails p: its copies disagree and it may issue no more.
func (s *Scheduler) noQuorumLocked(p *task, v trust.Verdict, now time.Time, ch *change) {
	p.state, p.result = protocol.StateFailed, nil
	p.err = fmt.Sprintf("no quorum: %d copies, at most %d agreeing, %d needed", len(p.group.copies), v.Best, p.group.m)
	s.foldCopiesLocked(p, nil, OutcomeNotNeeded, now, ch)
	s.finishLocked(p, now, ch)
}

// foldCopiesLocked ends p's group: every copy becomes an entry of p's
// history with its verdict (judged, else lost, or live if it had not
// ended: not needed, or canceled with its task), copies still queued or
// running are canceled, and their records are deleted in favour of p's.
func (s *Scheduler) foldCopiesLocked(p *task, judged map[*task]Outcome, live Outcome, now time.Time, ch *change) {
	g := p.group
	p.group = nil
	// From here the task's replicas say how it ran, and its history
	// holds its copies.
	p.replicas, p.quorum = uint8(g.n), uint8(g.m)
	p.attempts = uint32(len(g.copies))
	p.history = p.history[:0]
	for _, c := range g.copies {
		a := Attempt{Slave: c.ranOn, Started: c.startedAt, Ended: c.finishedAt, Err: c.err}
		switch o, ok := judged[c]; {
		case ok:
			a.Outcome = o
		case !c.state.Final():
			s.dropCopyLocked(c)
			a.Outcome, a.Ended, a.Err = live, now, ""
		case c.lastOutcome() == OutcomeDone || c.lastOutcome() == OutcomeFailed:
			a.Outcome = c.lastOutcome() // no quorum: nobody is known right
		default:
			a.Outcome = OutcomeLost
		}
		p.history = append(p.history, a)
		ch.b.DeleteTask(c.id)
	}
}

// dropCopyLocked takes a copy that is not final out of the queue or off
// its slave, which is told to cancel it.
func (s *Scheduler) dropCopyLocked(c *task) {
	if sl := c.slave; sl != nil && c.state == protocol.StateRunning {
		s.cancelLocked(sl, c.id)
		s.repump = true
	}
	s.unqueueLocked(c)
	c.state = protocol.StateCanceled
}

// cancelCopiesLocked ends p's group without a verdict, for Cancel.
func (s *Scheduler) cancelCopiesLocked(p *task, now time.Time, ch *change) {
	if p.group != nil {
		s.foldCopiesLocked(p, nil, OutcomeCanceled, now, ch)
	}
}

// ringer is a known answer: a task of the app, its payload and the
// result a quorum agreed on.
type ringer struct {
	kind, module string
	timeout      time.Duration
	payload      []byte
	result       []byte
}

// maxRingers bounds the known answers kept per app.
const maxRingers = 64

// addRingerLocked keeps p's payload and canonical result as a known
// answer, replacing a random one once the app has maxRingers. Ringers
// live only in memory: after a restart quorums fill the pool again.
func (s *Scheduler) addRingerLocked(p *task, result []byte) {
	if len(p.payload)+len(result) > 64<<10 {
		return // a ringer is held in memory: keep them small
	}
	a := p.app
	r := &ringer{kind: p.kind, module: p.module, timeout: p.timeout, payload: p.payload, result: result}
	if len(a.ringers) < maxRingers {
		a.ringers = append(a.ringers, r)
		return
	}
	a.ringers[rand.IntN(len(a.ringers))] = r
}

// ringerLocked makes a ringer task of t's class, or nil if t's app knows
// no answer for it. Its id is fresh, like any task's; it is never
// stored: lost, it is forgotten.
func (s *Scheduler) ringerLocked(t *task) *task {
	var pick *ringer
	seen := 0
	for _, r := range t.app.ringers { // reservoir sampling among those of t's class
		if r.kind == t.kind && r.module == t.module {
			if seen++; rand.IntN(seen) == 0 {
				pick = r
			}
		}
	}
	if pick == nil {
		return nil
	}
	rt := &task{
		id: s.nextID, app: t.app, kind: pick.kind, module: pick.module, key: t.key, priority: t.priority,
		timeout: pick.timeout, maxAttempts: 1, createdAt: s.opts.Now(), payload: pick.payload, quiet: true,
		state: protocol.StatePending, ringer: pick,
	}
	s.nextID++
	s.metrics.Ringer(t.kind)
	return rt
}

// ringerDoneLocked judges sl's answer to a ringer, then lets the task it
// checks go on.
func (s *Scheduler) ringerDoneLocked(sl *Slave, t *task, ok bool, out []byte, claim time.Duration, now time.Time, ch *change) {
	t.state = protocol.StateDone
	rec := s.trustLocked(sl.who.Identity, t.app.name)
	passed := ok && string(out) == string(t.ringer.result)
	if passed {
		s.policy.Valid(rec, claim.Seconds())
	} else {
		s.policy.Invalid(rec)
		s.metrics.Invalid(t.kind)
		s.opts.Logger.Info("a volunteer failed a spot check", "volunteer", sl.who.Identity, "app", t.app.name)
	}
	s.saveTrustLocked(sl.who.Identity, t.app.name)
	s.checkEndedLocked(t, passed, now, ch)
}

// checkEndedLocked ends the check the ringer r made: the task it checks,
// if its result waits, is believed when the check passed, and forked with
// that result as a first copy when it did not (or r was lost).
func (s *Scheduler) checkEndedLocked(r *task, passed bool, now time.Time, ch *change) {
	t := r.checks
	r.checks = nil
	if t == nil || t.check != r {
		return
	}
	t.check = nil
	if !t.holding {
		t.checkFailed = !passed // its result, when it comes, is held no longer
		return
	}
	out, claim := t.held, t.heldClaim
	t.holding, t.held = false, nil
	if !passed {
		s.forkHeldLocked(t, out, now, ch)
		return
	}
	t.state, t.result, t.err = protocol.StateDone, out, ""
	id, _ := Attribution(t.ranOn)
	s.onTrustDoneLocked(id, t, claim, ch)
	s.finishLocked(t, now, ch)
}

// holdLocked keeps t's result until its ringer answers, or forks t at
// once if the ringer failed already.
func (s *Scheduler) holdLocked(t *task, out []byte, claim time.Duration, now time.Time, ch *change) {
	if t.checkFailed {
		s.forkHeldLocked(t, out, now, ch)
		return
	}
	t.holding, t.held, t.heldClaim = true, out, claim
	t.state = protocol.StateRunning // off its slave, waiting for the check
}

// forkHeldLocked forks t after its volunteer failed a check: the result
// it gave becomes a first copy, carrying no weight (its volunteer is a
// suspect now), and n copies go to other volunteers.
func (s *Scheduler) forkHeldLocked(t *task, out []byte, now time.Time, ch *change) {
	t.onTrust, t.checkFailed = false, false
	n, m, _ := t.replication()
	n = max(n, 2)
	g := newGroup(n, m)
	t.group = g
	t.state = protocol.StateRunning
	c0 := s.newCopyLocked(t, now, &ch.b)
	c0.state, c0.result, c0.attempts, c0.ranOn, c0.remote = protocol.StateDone, out, 1, t.ranOn, t.remote
	c0.startedAt, c0.finishedAt = t.startedAt, now
	c0.history = []Attempt{{Slave: t.ranOn, Started: t.startedAt, Ended: now, Outcome: OutcomeDone}}
	s.put(&ch.b, c0)
	for range n {
		c := s.newCopyLocked(t, now, &ch.b)
		s.pushLocked(c)
	}
	s.repump = true
	s.metrics.Forked(t.kind)
}

// uncheckLocked forgets the check of t's run, which did not end in a
// result: the next run is placed anew.
func (s *Scheduler) uncheckLocked(t *task) {
	if t.check != nil {
		t.check.checks = nil
		t.check = nil
	}
	t.onTrust, t.checkFailed = false, false
}

// onTrustDoneLocked credits, pending its next check, the volunteer whose
// single copy of t was believed.
func (s *Scheduler) onTrustDoneLocked(volunteer string, t *task, claim time.Duration, ch *change) {
	rec := s.trustLocked(volunteer, t.app.name)
	s.policy.OnTrust(rec, claim.Seconds())
	s.saveTrustLocked(volunteer, t.app.name)
}

// claimOf is the CPU time a result claims, bounded by the time the master
// saw the attempt take.
func claimOf(claimed time.Duration, started, now time.Time) time.Duration {
	return min(claimed, now.Sub(started))
}

// reloadCopy rebuilds the copy r of a task loaded before it (a copy's id
// is always above its task's), or returns nil if its task is gone or
// final: the delete of this record did not make it.
func (s *Scheduler) reloadCopy(r *store.Record) *task {
	p := s.tasks[r.Parent]
	if p == nil || p.state.Final() || p.parent != nil {
		return nil
	}
	if p.group == nil {
		p.group = newGroup(int(r.Replicas), int(r.Quorum))
		p.state = protocol.StateRunning
	}
	c := taskOf(r, p.app)
	c.parent, c.payload, c.maxAttempts = p, p.payload, 1
	if c.state.Final() {
		c.claim = r.FinishedAt.Sub(r.StartedAt)
	} else {
		c.state = protocol.StatePending
	}
	p.group.copies = append(p.group.copies, c)
	return c
}

// reloadValues reads the trust records and the apps' configurations.
func (s *Scheduler) reloadValues() error {
	err := s.st.LoadValues(store.BucketTrust, func(key string, v []byte) error {
		volunteer, app, ok := strings.Cut(key, "\x00")
		if !ok {
			return fmt.Errorf("trust record %q: no app in its key", key)
		}
		r, err := trust.DecodeRecord(v)
		if err != nil {
			return fmt.Errorf("%q of %q: %w", volunteer, app, err)
		}
		s.trust[trustKey{volunteer, app}] = &r
		s.noteSuspectLocked(trustKey{volunteer, app})
		return nil
	})
	if err != nil {
		return fmt.Errorf("reload trust: %w", err)
	}
	err = s.st.LoadValues(store.BucketApps, func(app string, v []byte) error {
		c, err := decodeAppConfig(v)
		if err != nil {
			return fmt.Errorf("app %q: %w", app, err)
		}
		s.confs[app] = c
		return nil
	})
	if err != nil {
		return fmt.Errorf("reload app configurations: %w", err)
	}
	err = s.st.LoadValues(store.BucketVolunteers, func(name string, v []byte) error {
		if len(v) != 2 || v[0] != volunteerFormat || v[1] > 1 {
			return fmt.Errorf("volunteer %q: corrupt settings %x", name, v)
		}
		if v[1] == 1 {
			s.public[name] = true
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("reload volunteers: %w", err)
	}
	return nil
}

// AppTrust is what a volunteer has shown for one application.
type AppTrust struct {
	App            string
	Valid, Invalid uint64
	Streak         uint64 // valid results since the last invalid one
	Need           uint64 // the streak that makes it trusted
	Trusted        bool   // its tasks for the app may run as a single copy
	Suspect        bool   // caught, and not trusted again: its copies carry no weight
	Credit         float64
	Pending        float64 // claimed on trust, granted at its next passed check
}

// VolunteerTrust is what a volunteer has shown, over its apps.
type VolunteerTrust struct {
	Name           string
	Valid, Invalid uint64
	Credit         float64 // CPU seconds granted for validated work
	Trusted        bool    // by at least one app
	Public         bool    // it agreed to be listed on the leaderboard
	Apps           []AppTrust
}

// Trust returns every volunteer with a record, by name.
func (s *Scheduler) Trust() []VolunteerTrust { return s.trustOf("") }

// VolunteerTrustOf returns one volunteer's record; a volunteer without
// one has a zero record.
func (s *Scheduler) VolunteerTrustOf(name string) VolunteerTrust {
	if v := s.trustOf(name); len(v) == 1 {
		return v[0]
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return VolunteerTrust{Name: name, Public: s.public[name]}
}

// trustOf gathers the records of volunteer, or of every volunteer when
// it is "", one VolunteerTrust each, by name.
func (s *Scheduler) trustOf(volunteer string) []VolunteerTrust {
	s.mu.Lock()
	defer s.mu.Unlock()
	by := map[string]*VolunteerTrust{}
	for k, r := range s.trust {
		if volunteer != "" && k.volunteer != volunteer {
			continue
		}
		v := by[k.volunteer]
		if v == nil {
			v = &VolunteerTrust{Name: k.volunteer, Public: s.public[k.volunteer]}
			by[k.volunteer] = v
		}
		a := AppTrust{
			App: k.app, Valid: r.Valid, Invalid: r.Invalid, Streak: r.Streak, Need: s.policy.Need(r),
			Trusted: s.policy.Trusted(r), Suspect: s.policy.Suspect(r), Credit: r.Credit, Pending: r.Pending,
		}
		v.Apps = append(v.Apps, a)
		v.Valid += a.Valid
		v.Invalid += a.Invalid
		v.Credit += a.Credit
		v.Trusted = v.Trusted || a.Trusted
	}
	out := make([]VolunteerTrust, 0, len(by))
	for _, v := range by {
		slices.SortFunc(v.Apps, func(a, b AppTrust) int { return strings.Compare(a.App, b.App) })
		out = append(out, *v)
	}
	slices.SortFunc(out, func(a, b VolunteerTrust) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Leaderboard is the volunteers who agreed to be listed, most credit
// first.
func (s *Scheduler) Leaderboard() []VolunteerTrust {
	all := s.Trust()
	out := all[:0]
	for _, v := range all {
		if v.Public {
			v.Apps = nil // a public page names no app's numbers
			out = append(out, v)
		}
	}
	slices.SortStableFunc(out, func(a, b VolunteerTrust) int { return cmp.Compare(b.Credit, a.Credit) })
	return out
}

// volunteerFormat is the first byte of a stored volunteer's settings.
const volunteerFormat = 1

// publishLocked remembers whether volunteer agreed to be listed, as its
// latest Hello said, writing it only when it changed.
func (s *Scheduler) publishLocked(volunteer string, public bool) {
	if s.public[volunteer] == public {
		return
	}
	var v byte
	if public {
		s.public[volunteer] = true
		v = 1
	} else {
		delete(s.public, volunteer)
	}
	b := new(store.Batch)
	b.PutValue(store.BucketVolunteers, volunteer, []byte{volunteerFormat, v})
	s.commitLocked(b, func(err error) {
		if err != nil {
			s.opts.OnFatal(fmt.Errorf("commit a volunteer's settings: %w", err))
		}
	})
}
