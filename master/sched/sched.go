package sched

import (
	"context"
	crand "crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/anthill-project/anthill/master/store"
	"github.com/anthill-project/anthill/master/trust"
	"github.com/anthill-project/anthill/protocol"
	"github.com/anthill-project/anthill/stats"
)

// Defaults of Options, which the master's options share.
const (
	DefaultMaxPayload      = 1 << 20
	DefaultMaxFrame        = 16 << 20
	DefaultTimeout         = time.Minute
	DefaultMaxTimeout      = 24 * time.Hour
	DefaultLeaseGrace      = 5 * time.Second
	DefaultAttempts        = 3
	DefaultRetryBackoff    = 100 * time.Millisecond
	DefaultRetryBackoffMax = 30 * time.Second
	DefaultRetention       = 24 * time.Hour
	DefaultNotifyWindow    = 8192

	// The quotas' defaults fit a master on an ordinary machine: every
	// unfinished task lives in memory with its payload (about 700 bytes
	// of bookkeeping each beside it), so a million tasks and 1 GiB of
	// payloads is a few GiB of RAM at most. One application may use all
	// of it unless the per-app quotas are lowered.
	DefaultMaxQueuedTasks = 1 << 20
	DefaultMaxQueuedBytes = 1 << 30
	// DefaultMaxSubmitTasks is the JSON-RPC API's batch cap as well: an
	// appnode cuts its batches at half a frame anyway.
	DefaultMaxSubmitTasks = 10000
	// DefaultMaxKinds leaves room for many jobs; the metrics label only
	// the first stats.MaxKinds of them.
	DefaultMaxKinds = 10000
	// DefaultMaxApps bounds the applications known at once, and with them
	// the application series on /metrics (about 24 each).
	DefaultMaxApps = 1000
	// DefaultAppIdle is how long an application with nothing left on the
	// master is kept before it is forgotten.
	DefaultAppIdle = 10 * time.Minute
	// DefaultMaxWindow caps a slave's window whatever it asks: enough to
	// keep a 64-core volunteer fed across a slow round trip, while one
	// session can hold (and, by vanishing, delay) at most this many tasks.
	DefaultMaxWindow = 1024
	// SlowStartWindow is the most a new session is given before it
	// delivers results; each accepted result widens its window by one
	// (doubling it per round trip, as TCP's slow start does).
	SlowStartWindow = 4
	// DefaultHotTasks is the unfinished tasks kept whole in memory before
	// newly submitted ones wait in the store (see cold.go): a dispatch
	// reads a cold task in a few microseconds, and a queue of millions
	// costs 32 bytes a task rather than its payload and more.
	DefaultHotTasks = 1024
)

// Options configures a Scheduler. Every field's zero value means the
// default written beside it.
type Options struct {
	// Strategy orders pending tasks: "fifo" (default) or "priority".
	Strategy string
	// Dispatch is the work pattern: "send" (default: each slave's window
	// is kept full) or "poll" (slaves ask for every free slot).
	Dispatch string
	// MaxPayload caps a task payload in bytes. Default DefaultMaxPayload.
	MaxPayload int
	// MaxFrame is the largest frame a peer accepts; a dispatch or notify
	// the scheduler builds stays near half of it. Default DefaultMaxFrame.
	MaxFrame int
	// DefaultTimeout applies to tasks submitted without one; MaxTimeout
	// caps a task's timeout. Defaults DefaultTimeout, DefaultMaxTimeout.
	DefaultTimeout, MaxTimeout time.Duration
	// LeaseGrace is added to a task's timeout before the task is taken
	// back from a silent slave. Default DefaultLeaseGrace.
	LeaseGrace time.Duration
	// DefaultAttempts applies to tasks submitted without MaxAttempts.
	// Default DefaultAttempts.
	DefaultAttempts int
	// RetryBackoff is the delay before the second attempt; it doubles per
	// attempt up to RetryBackoffMax. Defaults DefaultRetryBackoff and
	// DefaultRetryBackoffMax.
	RetryBackoff, RetryBackoffMax time.Duration
	// Retention is how long a final task stays in the store after its
	// application acknowledged it. Default DefaultRetention; negative
	// removes it at once.
	Retention time.Duration
	// NotifyWindow bounds notifications sent to an application and not yet
	// acknowledged. Default DefaultNotifyWindow.
	NotifyWindow int
	// MaxQueuedTasks and MaxQueuedBytes cap the tasks accepted and not
	// final (pending or running) and their payload bytes, over every
	// application; a submit that would pass either is refused whole with
	// protocol.CodeQuotaExceeded. Defaults DefaultMaxQueuedTasks and
	// DefaultMaxQueuedBytes; negative means no limit.
	MaxQueuedTasks, MaxQueuedBytes int64
	// MaxQueuedTasksPerApp and MaxQueuedBytesPerApp are the same quotas
	// for each application. Default: the global ones; negative means no
	// limit of its own.
	MaxQueuedTasksPerApp, MaxQueuedBytesPerApp int64
	// MaxSubmitTasks caps the tasks of one submit, from an application or
	// the operator API. Default DefaultMaxSubmitTasks, at most
	// protocol.MaxSubmitTasks.
	MaxSubmitTasks int
	// MaxKinds caps the distinct kinds of the tasks the scheduler holds; a
	// submit that brings a new kind past it is refused. Default
	// DefaultMaxKinds; negative means no limit.
	MaxKinds int
	// MaxApps caps the applications known at once; a new one past it is
	// refused (its connection closed, its API submit refused). Default
	// DefaultMaxApps; negative means no limit.
	MaxApps int
	// AppIdle is how long an application with no connection, no
	// unfinished or unacknowledged task and no live submit record is kept
	// before it and its series are forgotten. Default DefaultAppIdle.
	AppIdle time.Duration
	// HotTasks is how many unfinished tasks stay whole in memory before a
	// newly submitted task that is still pending once durable is left in
	// the store until dispatched. Default DefaultHotTasks; negative: none
	// (every such task waits in the store).
	HotTasks int
	// MaxWindow caps the tasks one slave session holds, whatever its
	// Concurrency+Prefetch; a new session starts at SlowStartWindow and
	// grows by one per accepted result. Default DefaultMaxWindow.
	MaxWindow int
	// MaxWindowBytes caps the payload bytes one slave session holds; a
	// session holding nothing may always take one task, so the cap is
	// exceeded by at most one payload. Default 4 × MaxFrame.
	MaxWindowBytes int
	// MaxResult caps a result's output in bytes; a larger one fails its
	// attempt and counts against the slave. Default MaxPayload.
	MaxResult int
	// Module looks up an uploaded WASM module by hash: whether the master
	// has it, and the public keys of its valid signatures. A submit naming
	// a module it does not know is refused; slaves with trust keys get only
	// tasks of modules one of their keys signed. It must not call back
	// into the scheduler. Default: no module is known.
	Module func(hash string) (signers []string, ok bool)
	// ReplicaDistinct is "ip" to keep a task's copies on distinct IP
	// addresses as well as distinct volunteers. Default "": identities
	// only.
	ReplicaDistinct string
	// Trust is when volunteers earn trust and how often the trusted are
	// checked (see trust.Policy, whose zero value is its defaults).
	Trust trust.Policy
	// Agree runs an app's validator, the WASM module of that hash, on two
	// results a and b and says whether they agree; an error counts as
	// disagreement. It is called on a goroutine of its own, never under
	// the scheduler's lock, and must honour ctx. Default nil: apps cannot
	// name validators, and results agree when their bytes are equal.
	Agree func(ctx context.Context, module string, a, b []byte) (bool, error)
	// Metrics records the scheduler's numbers. Default: a recorder of its
	// own, exported nowhere.
	Metrics *stats.Master
	// OnFatal is called when a commit fails: nothing acknowledged after it
	// could be trusted, so the owner must stop. Default: log it.
	OnFatal func(error)
	// Now is the clock of leases, retries, retention and the duties.
	// Default time.Now.
	Now func() time.Time
	// Logger receives the scheduler's logs. Nil discards them.
	Logger *slog.Logger
	// Version is reported by Info. Default "dev".
	Version string
}

func (o *Options) setDefaults() error {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if o.Dispatch == "" {
		o.Dispatch = protocol.DispatchSend
	}
	if o.Dispatch != protocol.DispatchSend && o.Dispatch != protocol.DispatchPoll {
		return fmt.Errorf("dispatch %q: want %q or %q", o.Dispatch, protocol.DispatchSend, protocol.DispatchPoll)
	}
	if o.ReplicaDistinct != "" && o.ReplicaDistinct != DistinctIP {
		return fmt.Errorf("replica distinct %q: want %q or nothing", o.ReplicaDistinct, DistinctIP)
	}
	if o.MaxPayload == 0 {
		o.MaxPayload = DefaultMaxPayload
	}
	if o.MaxFrame == 0 {
		o.MaxFrame = DefaultMaxFrame
	}
	if o.MaxPayload < 0 || o.MaxFrame <= o.MaxPayload+1024 {
		return errors.New("max frame must exceed max payload by at least 1 KiB")
	}
	if o.MaxWindow == 0 {
		o.MaxWindow = DefaultMaxWindow
	}
	if o.MaxWindowBytes == 0 {
		o.MaxWindowBytes = 4 * o.MaxFrame
	}
	if o.MaxResult == 0 {
		o.MaxResult = o.MaxPayload
	}
	if o.MaxWindow < 0 || o.MaxWindowBytes < 0 || o.MaxResult < 0 {
		return errors.New("negative max window, max window bytes or max result")
	}
	// A notification carries one final task whole: it must fit a frame.
	if need := o.MaxResult + notifyOneOverhead; need > o.MaxFrame {
		return fmt.Errorf("max frame %d cannot carry the notification of a result of max result %d bytes (%d needed)",
			o.MaxFrame, o.MaxResult, need)
	}
	def(&o.DefaultTimeout, DefaultTimeout)
	def(&o.MaxTimeout, DefaultMaxTimeout)
	def(&o.LeaseGrace, DefaultLeaseGrace)
	def(&o.RetryBackoff, DefaultRetryBackoff)
	def(&o.RetryBackoffMax, DefaultRetryBackoffMax)
	def(&o.Retention, DefaultRetention)
	// A negative duration has no meaning here (Retention's is "at once"),
	// and the arithmetic on them assumes none: a negative backoff once
	// panicked in a connection handler.
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"default timeout", o.DefaultTimeout}, {"max timeout", o.MaxTimeout}, {"lease grace", o.LeaseGrace},
		{"retry backoff", o.RetryBackoff}, {"retry backoff max", o.RetryBackoffMax},
	} {
		if d.v < 0 {
			return fmt.Errorf("%s %v must not be negative", d.name, d.v)
		}
	}
	if o.RetryBackoff > o.RetryBackoffMax {
		return fmt.Errorf("retry backoff %v exceeds retry backoff max %v", o.RetryBackoff, o.RetryBackoffMax)
	}
	if o.DefaultTimeout > o.MaxTimeout {
		return errors.New("default timeout exceeds max timeout")
	}
	if o.DefaultAttempts == 0 {
		o.DefaultAttempts = DefaultAttempts
	}
	if o.DefaultAttempts < 0 || o.DefaultAttempts > protocol.MaxAttempts {
		return fmt.Errorf("default attempts %d: want 1 to %d", o.DefaultAttempts, protocol.MaxAttempts)
	}
	if o.NotifyWindow == 0 {
		o.NotifyWindow = DefaultNotifyWindow
	}
	if o.NotifyWindow < 0 {
		return fmt.Errorf("notify window %d must not be negative", o.NotifyWindow)
	}
	if err := o.setQuotas(); err != nil {
		return err
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.OnFatal == nil {
		log := o.Logger
		o.OnFatal = func(err error) { log.Error("scheduler failing", "err", err) }
	}
	if o.Version == "" {
		o.Version = "dev"
	}
	return nil
}

// setQuotas fills the quotas' defaults; a negative quota means none.
func (o *Options) setQuotas() error {
	def64 := func(v *int64, d int64) {
		if *v == 0 {
			*v = d
		}
		if *v < 0 {
			*v = math.MaxInt64
		}
	}
	def64(&o.MaxQueuedTasks, DefaultMaxQueuedTasks)
	def64(&o.MaxQueuedBytes, DefaultMaxQueuedBytes)
	def64(&o.MaxQueuedTasksPerApp, o.MaxQueuedTasks)
	def64(&o.MaxQueuedBytesPerApp, o.MaxQueuedBytes)
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
		if *v < 0 {
			*v = math.MaxInt
		}
	}
	if o.Module == nil {
		o.Module = func(string) ([]string, bool) { return nil, false }
	}
	def(&o.MaxKinds, DefaultMaxKinds)
	def(&o.MaxApps, DefaultMaxApps)
	if o.MaxSubmitTasks == 0 {
		o.MaxSubmitTasks = DefaultMaxSubmitTasks
	}
	if o.MaxSubmitTasks < 0 || o.MaxSubmitTasks > protocol.MaxSubmitTasks {
		return fmt.Errorf("max submit tasks %d: want 1 to %d", o.MaxSubmitTasks, protocol.MaxSubmitTasks)
	}
	if o.AppIdle == 0 {
		o.AppIdle = DefaultAppIdle
	}
	if o.HotTasks == 0 {
		o.HotTasks = DefaultHotTasks
	}
	if o.AppIdle < 0 {
		return fmt.Errorf("app idle %v: must not be negative", o.AppIdle)
	}
	return nil
}

// ErrStopping refuses work once Stop was called.
var ErrStopping = errors.New("master is shutting down")

// Scheduler is every task's life on one master. Create it with New, run
// its background work with Run.
type Scheduler struct {
	opts    Options
	st      *store.Store
	metrics *stats.Master
	started time.Time
	stopped chan struct{} // closed by Stop, under mu

	mu sync.Mutex
	// tasks are the unfinished tasks but the cold ones (see cold.go), and
	// the final ones not yet acknowledged.
	tasks map[uint64]*task
	cold  int // unfinished tasks only the queue and the store hold
	queue *queue
	// queuedCopies are the copies of replicated tasks in the queue, by
	// id: a copy lives in its task's group, not in tasks, and the queue
	// holds ids.
	queuedCopies map[uint64]*task
	// classes name every kind and module class queued since the start
	// by a Class, classNames by Class; apps' AppRefs are handed out
	// from nextRef, and forgotten apps' reused.
	classes    map[string]Class
	classNames []string
	nextRef    uint32
	freeRefs   []AppRef
	nextID     uint64
	slaves     map[*Slave]struct{}
	hungry     map[*Slave]struct{} // slaves with free window
	kinds      map[string]int      // connected slaves per kind
	// modules are the WASM modules of the tasks held since the start (see
	// module), by hash.
	modules map[string]*module
	// moduleTasks sums the modules' unfinished tasks: while it is 0 the
	// pump needs no pass for holders.
	moduleTasks int
	// liveKinds counts the tasks in tasks by kind, so Stats and the gauges
	// see the kinds that wait for a slave without walking the tasks, and
	// the kind quota counts kinds that are still there, not every kind
	// ever seen.
	liveKinds map[string]int
	apps      map[string]*App
	retries   indexed[*task]        // tasks waiting for their retry, by retryAt
	watch     map[uint64][]*watcher // Wait callers by task id
	expiry    []expiring            // acknowledged tasks in finish order, for retention
	leaseSrc  *rand.ChaCha8         // unguessable leases; seeded from crypto/rand
	leases    leaseHeap             // running attempts by deadline
	dispatchN uint64                // dispatches so far, to order a slave's tasks
	commitQ   []commitReq
	commitCh  chan struct{}
	duties    []duty
	scratch   []store.Attempt // see put
	// trust is every volunteer's record per app; confs every app's
	// configuration, kept apart from apps, which forgets idle ones.
	trust  map[trustKey]*trust.Record
	confs  map[string]AppConfig
	public map[string]bool // volunteers listed on the leaderboard
	// suspects are the volunteers some app suspects, with their invalid
	// results per app (see throttledLocked).
	suspects map[string]map[string]uint64
	policy   trust.Policy
	// dirtyTrust are the records changed and not yet put in a batch.
	dirtyTrust map[trustKey]struct{}
	repump     bool // a verdict queued copies or freed slots: pump every slave
	// cancels are the cancel frames to send, per slave (see cancelLocked).
	cancels map[*Slave][]uint64
	// bg is the context of the validators' comparisons, canceled by
	// Stop; validating counts the goroutines running them.
	bg         context.Context
	stopBG     context.CancelFunc
	validating sync.WaitGroup

	// queuedTasks and queuedBytes are the tasks accepted and not final,
	// and their payload bytes: what the queue quotas count.
	queuedTasks, queuedBytes int64
}

type expiring struct {
	id uint64
	at time.Time
}

// New validates opts and rebuilds the scheduler's memory from st: tasks
// that were unfinished are pending again, final unacknowledged ones wait
// for their application. The caller keeps st and closes it after Run has
// returned.
func New(st *store.Store, opts Options) (*Scheduler, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	queue, err := NewStrategy(opts.Strategy)
	if err != nil {
		return nil, err
	}
	metrics := opts.Metrics
	if metrics == nil {
		metrics = stats.NewMaster(opts.Now)
	}
	bg, stopBG := context.WithCancel(context.Background())
	s := &Scheduler{
		opts:         opts,
		st:           st,
		metrics:      metrics,
		started:      opts.Now(),
		stopped:      make(chan struct{}),
		tasks:        map[uint64]*task{},
		queue:        newQueue(queue),
		queuedCopies: map[uint64]*task{},
		classes:      map[string]Class{},
		slaves:       map[*Slave]struct{}{},
		hungry:       map[*Slave]struct{}{},
		kinds:        map[string]int{},
		liveKinds:    map[string]int{},
		modules:      map[string]*module{},
		apps:         map[string]*App{},
		retries:      indexed[*task]{less: retriesBefore, slot: retrySlot},
		watch:        map[uint64][]*watcher{},
		commitCh:     make(chan struct{}, 1),
		duties:       newDuties(),
		leaseSrc:     newLeaseSource(),
		trust:        map[trustKey]*trust.Record{},
		confs:        map[string]AppConfig{},
		public:       map[string]bool{},
		suspects:     map[string]map[string]uint64{},
		cancels:      map[*Slave][]uint64{},
		dirtyTrust:   map[trustKey]struct{}{},
		bg:           bg,
		stopBG:       stopBG,
		policy:       opts.Trust,
	}
	if err := s.reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// maxErr is the longest error a result may carry: the protocol's,
// or less when frames are too small to notify one that long.
func (s *Scheduler) maxErr() int { return min(protocol.MaxErrBytes, s.opts.MaxFrame-notifyOneOverhead) }

// notifyOneOverhead bounds a notify frame of one task beyond its result
// or error: the frame's header, the task's fixed fields and a kind of
// protocol.MaxKindBytes.
const notifyOneOverhead = notifyHeader + notifyOverhead + protocol.MaxKindBytes

func newLeaseSource() *rand.ChaCha8 {
	var seed [32]byte
	_, _ = crand.Read(seed[:]) // crypto/rand.Read never fails
	return rand.NewChaCha8(seed)
}

// newLeaseLocked draws a lease; never 0, which no attempt has.
func (s *Scheduler) newLeaseLocked() uint64 {
	for {
		if l := s.leaseSrc.Uint64(); l != 0 {
			return l
		}
	}
}

func retriesBefore(a, b *task) bool { return a.retryAt.Before(b.retryAt) }
func retrySlot(t *task) *int        { return &t.retrySlot }

// reload rebuilds memory from the store after a (re)start.
func (s *Scheduler) reload() error {
	now := s.opts.Now()
	// Ids are handed out optimistically before their commit; one that was
	// dispatched but never durable must not be reused, or a late result for
	// it would land on a new task. Microseconds since the epoch advance
	// faster than any submit rate, so a restart always starts past them.
	s.nextID = max(s.st.NextID(), uint64(now.UnixMicro()))
	if err := s.reloadValues(); err != nil {
		return err
	}
	// The pushes first: each task read finds its own as the tasks are
	// read in id order, and counts in it.
	var pushes []reloadPush
	err := s.st.LoadPushes(func(sp store.Push) error {
		pushes = append(pushes, reloadPush{sp.App, &push{seq: sp.Seq, firstID: sp.FirstID, count: sp.Count, durable: true}})
		return nil
	})
	if err != nil {
		return fmt.Errorf("reload pushes: %w", err)
	}
	sort.Slice(pushes, func(i, j int) bool { return pushes[i].p.firstID < pushes[j].p.firstID })
	pi := 0
	pushOf := func(id uint64) *push {
		for pi < len(pushes) && pushes[pi].p.firstID+uint64(pushes[pi].p.count) <= id {
			pi++
		}
		if pi < len(pushes) && pushes[pi].p.firstID <= id {
			return pushes[pi].p
		}
		return nil
	}
	var acked []expiring
	var copies []*store.Record
	var spent store.Batch
	err = s.st.LoadIndex(func(sum *store.Summary, full func() (*store.Record, error)) error {
		if sum.Parent != 0 {
			r, err := full()
			copies = append(copies, r)
			return err
		}
		if sum.State.Final() && sum.Acked {
			acked = append(acked, expiring{sum.ID, sum.FinishedAt})
			return nil
		}
		p := pushOf(sum.ID)
		if p != nil {
			p.left++
		}
		if !sum.State.Final() {
			s.addColdLocked(sum)
			return nil
		}
		r, err := full()
		if err != nil {
			return err
		}
		t := taskOf(r, s.appLocked(r.App))
		t.push = p
		s.addLocked(t)
		t.settled = true
		t.payload = nil
		t.app.pending = append(t.app.pending, t)
		return nil
	})
	if err != nil {
		return fmt.Errorf("reload tasks: %w", err)
	}
	for _, rp := range pushes {
		if rp.p.left == 0 {
			// Every task was acknowledged before the stop; the delete of
			// this record did not make it.
			spent.DeletePush(rp.app, rp.p.seq)
			continue
		}
		s.appLocked(rp.app).addPush(rp.p)
	}
	var queued []*task
	for _, r := range copies {
		if p := s.tasks[r.Parent]; p == nil {
			// Its task is cold: warm it, for its group.
			if t := s.liveLocked(r.Parent); t != nil {
				s.unpushLocked(t) // a task with copies waits for them, not in the queue
			}
		}
		if c := s.reloadCopy(r); c == nil {
			spent.DeleteTask(r.ID) // its task's verdict was written; this delete was not
		} else if !c.state.Final() {
			queued = append(queued, c)
		}
	}
	var judge change
	for _, c := range queued {
		s.pushLocked(c)
	}
	judged := map[*task]bool{}
	for _, c := range copies {
		p := s.tasks[c.Parent]
		if p == nil || judged[p] {
			continue
		}
		judged[p] = true
		if g := p.group; g != nil && !slices.ContainsFunc(g.copies, func(c *task) bool { return !c.state.Final() }) {
			// Every copy ended before the stop, and neither a verdict
			// nor more copies were written: judge now. The verdict
			// commits once Run starts the pump.
			s.judgeLocked(p, now, &judge)
		}
	}
	s.commitChangeLocked(&judge)
	sort.Slice(acked, func(i, j int) bool { return acked[i].at.Before(acked[j].at) })
	s.expiry = acked
	if spent.Len() > 0 {
		if err := s.st.CommitWait(context.Background(), &spent); err != nil {
			return fmt.Errorf("forget spent pushes: %w", err)
		}
	}
	s.opts.Logger.Info("store loaded", "path", s.st.Path(), "unfinished", len(s.tasks)+s.cold, "in_store", s.cold, "next_id", s.nextID)
	return nil
}

// reloadPush is a submit batch read back, and its app.
type reloadPush struct {
	app string
	p   *push
}

// Run runs the commit pump and the background duties until ctx ends, then
// hands the store every batch still queued. The store's own Close waits
// for them to commit.
func (s *Scheduler) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Go(func() { s.pump(ctx) })
	s.runDuties(ctx)
	wg.Wait()
	// Comparisons under way are abandoned: their quorums are judged again
	// after a restart.
	s.stopBG()
	s.validating.Wait()
	// A duty may have queued a batch after the pump's last flush.
	s.flushCommits()
}

// Stop refuses new work from then on (Submit, SubmitBatch answer
// ErrStopping) and lets Wait callers return. Tasks already accepted keep
// living until Run ends. It is idempotent.
func (s *Scheduler) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.isStopping() {
		close(s.stopped)
	}
}

func (s *Scheduler) isStopping() bool {
	select {
	case <-s.stopped:
		return true
	default:
		return false
	}
}

// Stopped is closed once Stop was called: holders of long-lived
// connections the scheduler cannot see (the dashboard's feeds) end them.
func (s *Scheduler) Stopped() <-chan struct{} { return s.stopped }

// Metrics is the recorder of the scheduler's numbers.
func (s *Scheduler) Metrics() *stats.Master { return s.metrics }

// MaxSubmitTasks is the most tasks one submit may carry.
func (s *Scheduler) MaxSubmitTasks() int { return s.opts.MaxSubmitTasks }

// MaxPayload is the largest payload a task may carry.
func (s *Scheduler) MaxPayload() int { return s.opts.MaxPayload }

// MaxResult is the largest result output accepted.
func (s *Scheduler) MaxResult() int { return s.opts.MaxResult }

// NotifyWindow is the most notifications an application has unacknowledged,
// so the most ids one NotifyAck of it may carry.
func (s *Scheduler) NotifyWindow() int { return s.opts.NotifyWindow }

// Dispatch is the work pattern, protocol.DispatchSend or DispatchPoll.
func (s *Scheduler) Dispatch() string { return s.opts.Dispatch }
