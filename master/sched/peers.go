package sched

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/anthill-project/anthill/master/store"
	"github.com/anthill-project/anthill/protocol"
	"github.com/anthill-project/anthill/stats"
)

// Slave is one connected slave session. The transport holds it between
// AttachSlave and DetachSlave and passes it to the slave's verbs; its
// fields are the scheduler's, under its lock.
type Slave struct {
	out   Outbox
	hello protocol.Hello
	kinds []string  // the kinds it announced, sorted
	view  SlaveView // Name is the attribution: "identity/session"; Classes: its kinds' and the modules' it may run
	// held is view narrowed to the kinds and the modules it holds
	// already: dispatch tries it first (see pumpLocked).
	held      SlaveView
	wasm      bool            // it runs protocol.KindWASM tasks
	trust     []string        // only modules signed by one of these keys (canonical text); none: any
	holds     map[string]bool // module hashes it holds
	who       Who
	host      string // who.Remote without its port: what --replica-distinct ip compares
	session   string
	window    int // tasks it may hold now: slow start, up to maxWindow
	maxWindow int // min(Concurrency+Prefetch, Options.MaxWindow)
	heldBytes int // payload bytes of the tasks in running
	poll      bool
	credit    int  // slots the slave asked for (polling pattern)
	draining  bool // Drain, or the slave is stopping: no more work
	running   map[uint64]*task
	// withdrawn holds the ids last taken back from the session with a
	// cancel (a copy not needed, a task canceled), oldest first in
	// withdrawnOrder: a result for one crossed the cancel, and is late,
	// not forged.
	withdrawn      map[uint64]struct{}
	withdrawnOrder []uint64
	// strikes counts the session's rejected results (see Complete) since
	// its last accepted one.
	strikes   int
	connected time.Time
	metrics   *stats.Slave
	keeper    SlotKeeper // the strategy, if it counts slots
}

// Session is the slave's session id.
func (sl *Slave) Session() string { return sl.session }

// MaxFrameItems is the most results or returned ids a frame of the
// session may carry: its largest window, and as many again for tasks the
// master withdrew (see withdraw) and refilled before the slave heard of
// the cancel.
func (sl *Slave) MaxFrameItems() int { return 2 * sl.maxWindow }

// withdraw frees the slot of id, which the master no longer wants done,
// and remembers it so a result that crosses the cancel counts as late.
func (sl *Slave) withdraw(id uint64) {
	sl.release(id)
	if sl.withdrawn == nil {
		sl.withdrawn = map[uint64]struct{}{}
	}
	if len(sl.withdrawnOrder) >= max(4*sl.maxWindow, 64) {
		delete(sl.withdrawn, sl.withdrawnOrder[0])
		sl.withdrawnOrder = sl.withdrawnOrder[1:]
	}
	sl.withdrawn[id] = struct{}{}
	sl.withdrawnOrder = append(sl.withdrawnOrder, id)
}

// wasWithdrawn reports, once, whether id was withdrawn from the session.
func (sl *Slave) wasWithdrawn(id uint64) bool {
	if _, ok := sl.withdrawn[id]; ok {
		delete(sl.withdrawn, id)
		return true
	}
	return false
}

// release frees the slot of id.
func (sl *Slave) release(id uint64) {
	if t, ok := sl.running[id]; ok {
		delete(sl.running, id)
		sl.heldBytes -= t.size
		if sl.keeper != nil {
			sl.keeper.Freed(t.q)
		}
	}
}

// hold gives t a slot of sl.
func (sl *Slave) hold(t *task) {
	sl.running[t.id] = t
	sl.heldBytes += t.size
	if sl.keeper != nil {
		sl.keeper.Took(t.q)
	}
}

func (sl *Slave) free() int {
	if sl.draining {
		return 0
	}
	room := sl.window - len(sl.running)
	if sl.poll {
		room = min(room, sl.credit)
	}
	return room
}

// App is one application id; it outlives its connections.
type App struct {
	name    string
	out     Outbox           // nil while disconnected
	pending []*task          // final, not yet sent on out
	sent    map[uint64]*task // sent on out, not yet acknowledged
	pushes  map[uint64]*push // submit batches with unacknowledged tasks, by seq
	// pushOrder has the same batches by id, and some spent ones (see
	// forgetPush): a cold task's batch is found in it.
	pushOrder []*push
	ref       AppRef
	acked     uint64     // notifications acknowledged: the protocol's, not a statistic
	conf      AppConfig  // its tasks' defaults (see ConfigureApp)
	ringers   []*ringer  // known answers for spot checks (see addRingerLocked)
	metrics   *stats.App // every other number of the application

	// What the quotas count: its unfinished tasks and their payload
	// bytes, and its tasks in Scheduler.tasks.
	queuedTasks, queuedBytes int64
	live                     int
	idleSince                time.Time // zero until forgetApps saw it idle
}

// push remembers a submit batch so a re-sent one gets its original ids.
// It is needed only until the application has acknowledged every task of
// the batch: an application cannot acknowledge a task before it has the
// batch's ack (it does not know the id), so it cannot re-send the batch
// after that.
type push struct {
	seq, firstID uint64
	count        uint32
	left         int // tasks of the batch not yet acknowledged
	durable      bool
	waiters      []Outbox // connections to ack once durable
}

func (s *Scheduler) appLocked(name string) *App {
	a := s.apps[name]
	if a == nil {
		a = &App{name: name, sent: map[uint64]*task{}, pushes: map[uint64]*push{}, metrics: s.metrics.App(name), conf: s.confs[name]}
		s.newRefLocked(a)
		s.apps[name] = a
		s.weighLocked(a) // a reused ref may carry a forgotten app's weight
	}
	return a
}

// Who is a slave session as the master authenticated it: the volunteer
// identity it runs under (unique, chosen by the master or its operator),
// its session id and the address it connects from. Hello.Name is only a
// label the slave chose for itself; nothing is attributed or merged by it.
type Who struct {
	Identity, Session, Remote string
}

// Attribution is how results, history and errors name a session:
// "identity/session". Identity names hold no '/' (see master/identity).
func (w Who) Attribution() string { return w.Identity + "/" + w.Session }

// Attribution splits what Who.Attribution wrote. A record written before
// identities holds a bare name: that is its identity, with no session.
func Attribution(s string) (identity, session string) {
	identity, session, _ = strings.Cut(s, "/")
	return identity, session
}

// AttachSlave registers a slave session whose identity is its Hello's
// name: for callers that authenticate nothing (the scheduler's tests).
// The master uses AttachVolunteer.
func (s *Scheduler) AttachSlave(session string, h *protocol.Hello, out Outbox) *Slave {
	return s.AttachVolunteer(Who{Identity: h.Name, Session: session}, h, out)
}

// AttachVolunteer registers a slave session that completed its handshake
// and fills its window. The transport sent the Welcome first, so no
// dispatch can overtake it. Numbers are kept per identity: sessions of one
// identity share them, two identities never do, whatever their names.
func (s *Scheduler) AttachVolunteer(who Who, h *protocol.Hello, out Outbox) *Slave {
	session := who.Session
	kinds := slices.Clone(h.Kinds)
	sort.Strings(kinds)
	kinds = slices.Compact(kinds)
	maxWindow := min(h.Concurrency+h.Prefetch, s.opts.MaxWindow)
	keeper, _ := s.queue.strategy.(SlotKeeper)
	sl := &Slave{
		keeper:    keeper,
		out:       out,
		hello:     *h,
		kinds:     kinds,
		view:      SlaveView{Name: who.Attribution()},
		held:      SlaveView{Name: who.Attribution()},
		wasm:      slices.Contains(kinds, protocol.KindWASM),
		trust:     canonicalKeys(h.TrustKeys),
		who:       who,
		host:      hostOf(who.Remote),
		session:   session,
		window:    min(maxWindow, h.Concurrency, SlowStartWindow),
		maxWindow: maxWindow,
		poll:      s.opts.Dispatch == protocol.DispatchPoll,
		running:   map[uint64]*task{},
		connected: s.opts.Now(),
		metrics:   s.metrics.SlaveSeen(who.Identity, maxWindow),
	}
	sl.hello.Token = "" // nothing after the handshake needs it
	sl.hello.Modules = nil
	s.mu.Lock()
	defer s.mu.Unlock()
	sl.view.Classes = s.kindClassesLocked(kinds)
	s.slaves[sl] = struct{}{}
	s.publishLocked(who.Identity, h.Leaderboard)
	for _, k := range kinds {
		s.kinds[k]++
	}
	s.setHeldLocked(sl, h.Modules)
	for _, m := range s.modules {
		s.offerLocked(sl, m)
	}
	s.dispatchLocked(sl, false)
	return sl
}

// Request adds n slots the slave asked for (polling pattern) and fills
// them.
func (s *Scheduler) Request(sl *Slave, n uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	// Credit is kept up to the largest window: the slow start only delays
	// what the slave asked for.
	sl.credit = min(sl.credit+int(n), sl.maxWindow)
	s.dispatchLocked(sl, false)
}

// Return re-queues tasks a stopping slave hands back; they cost no
// attempt. The slave gets no more work.
func (s *Scheduler) Return(sl *Slave, ids []uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.takeBackLocked(sl, ids, "handed the task back while stopping")
}

// requeueChunk bounds the tasks one hold of the lock re-queues when a
// slave goes: a slave can hold tens of thousands.
const requeueChunk = 1024

// RevokeSlave takes back everything the session runs or holds, at no
// attempt cost (the volunteer lost its credential; the tasks did nothing
// wrong), and gives it no more work. The transport then closes it; its
// DetachSlave finds nothing left to re-queue. It returns how many tasks
// went back.
func (s *Scheduler) RevokeSlave(sl *Slave, why string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := make([]uint64, 0, len(sl.running))
	for id := range sl.running {
		ids = append(ids, id)
	}
	return s.takeBackLocked(sl, ids, why)
}

// takeBackLocked re-queues the tasks of ids that sl holds, at no attempt
// cost, and stops giving it work. It returns how many went back.
func (s *Scheduler) takeBackLocked(sl *Slave, ids []uint64, why string) int {
	now := s.opts.Now()
	sl.draining = true
	delete(s.hungry, sl)
	var c change
	n := 0
	for _, id := range ids {
		t := sl.running[id]
		if t == nil {
			continue
		}
		sl.release(id)
		if t.slave == sl && t.state == protocol.StateRunning {
			s.requeueLocked(t, OutcomeReturned, "slave "+sl.view.Name+" "+why, now, &c)
			n++
		}
	}
	s.pumpLocked()
	s.commitChangeLocked(&c)
	return n
}

// DetachSlave re-queues everything the slave was running and forgets it.
// Only the oldest Concurrency tasks it held (by dispatch order) could have
// started, so only they cost an attempt: a task that kills every slave it
// touches fails in the end, but a slave that vanishes with a prefetch
// burns nothing of it. It returns how many tasks went back. The tasks go
// back requeueChunk at a time, the lock released between chunks, so a
// slave that held many does not stall the master.
func (s *Scheduler) DetachSlave(sl *Slave) int {
	now := s.opts.Now()
	s.mu.Lock()
	delete(s.slaves, sl)
	delete(s.hungry, sl)
	for _, k := range sl.kinds {
		if s.kinds[k]--; s.kinds[k] == 0 {
			delete(s.kinds, k)
		}
	}
	sl.draining = true // nothing may be dispatched to it between chunks
	held := make([]*task, 0, len(sl.running))
	for _, t := range sl.running {
		if t.slave == sl && t.state == protocol.StateRunning {
			held = append(held, t)
		}
	}
	sort.Slice(held, func(i, j int) bool { return held[i].seq < held[j].seq })
	sl.running = nil
	sl.metrics.Gone()
	s.mu.Unlock()
	n, started := 0, sl.hello.Concurrency
	for len(held) > 0 {
		chunk := held[:min(len(held), requeueChunk)]
		held = held[len(chunk):]
		n += s.requeueHeld(sl, chunk, started, now)
		started = max(started-len(chunk), 0)
	}
	return n
}

// requeueHeld re-queues the tasks of chunk, in dispatch order, that still
// run on the gone slave sl (a result from elsewhere or a cancel may have
// taken others meanwhile); the first started of them cost an attempt.
func (s *Scheduler) requeueHeld(sl *Slave, chunk []*task, started int, now time.Time) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	var c change
	n := 0
	for i, t := range chunk {
		if t.slave != sl || t.state != protocol.StateRunning {
			continue
		}
		if i < started {
			s.requeueLocked(t, OutcomeLost, fmt.Sprintf("slave %s disconnected while running the task", sl.view.Name), now, &c)
		} else {
			s.requeueLocked(t, OutcomeReturned, fmt.Sprintf("slave %s disconnected before starting the task", sl.view.Name), now, &c)
		}
		n++
	}
	s.pumpLocked()
	s.commitChangeLocked(&c)
	return n
}

// AttachApp makes out the connection of application name and sends it the
// notifications that waited. The newest connection wins: an older one,
// most likely dead and not yet noticed, is closed as replaced. The
// welcome (if non-nil) is sent first, under the lock that orders the
// attachments: a client that has read its Welcome and connects again is
// sure to replace the first connection, not to be replaced by it. It
// returns the application and how many notifications waited; a nil
// application when a new one would pass MaxApps, and out was closed with
// protocol.CodeQuotaExceeded.
func (s *Scheduler) AttachApp(name string, out Outbox, welcome protocol.Message) (*App, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.apps[name] == nil {
		if err := s.checkNewAppLocked(name); err != nil {
			out.Close(protocol.CodeQuotaExceeded, err.Error())
			return nil, 0
		}
	}
	if welcome != nil {
		out.Send(welcome)
	}
	a := s.appLocked(name)
	if old := a.out; old != nil {
		old.Close(protocol.CodeReplaced, "replaced by a new connection of the same app")
		s.detachAppLocked(a)
	}
	a.out = out
	waiting := len(a.pending)
	s.notifyLocked(a)
	return a, waiting
}

// DetachApp forgets out as a's connection, unless a newer one replaced it.
func (s *Scheduler) DetachApp(a *App, out Outbox) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a.out == out {
		s.detachAppLocked(a)
	}
}

// detachAppLocked forgets a's connection: what was sent and not
// acknowledged goes back to pending, oldest first, for the next one.
func (s *Scheduler) detachAppLocked(a *App) {
	a.out = nil
	if len(a.sent) == 0 {
		return
	}
	back := make([]*task, 0, len(a.sent)+len(a.pending))
	for _, t := range a.sent {
		back = append(back, t)
	}
	sort.Slice(back, func(i, j int) bool { return back[i].id < back[j].id })
	a.pending = append(back, a.pending...)
	clear(a.sent)
}

// change collects what one state transition writes: the batch, and the
// tasks it makes final, whose applications hear of them once it is
// durable.
type change struct {
	b     store.Batch
	final []*task
}
