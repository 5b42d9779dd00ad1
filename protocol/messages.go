package protocol

import (
	"fmt"
	"time"
)

// Version is the wire protocol version. A peer whose Hello carries another
// version is refused with CodeUnsupportedVersion; bump it on any change a
// peer of the previous version would misread. Version 2 added the lease
// of a dispatched attempt (Task.Lease, echoed in Result.Lease); version 3
// the module of a WASM task (NewTask.Module, Task.Module), the modules a
// slave holds and the keys it trusts (Hello.Modules, Hello.TrustKeys, the
// Modules frame); version 4 the copies a task asks for (NewTask.Replicas,
// NewTask.Quorum) and a volunteer's consent to the leaderboard
// (Hello.Leaderboard).
const Version = 4

// Type is the first byte of every frame.
type Type byte

// Message types. Values are part of the wire contract: never renumber.
const (
	TypeHello        Type = 1  // client → master, JSON: first frame on every connection
	TypeWelcome      Type = 2  // master → client, JSON: handshake accepted
	TypeError        Type = 3  // either way, JSON: the sender closes after it
	TypeDispatch     Type = 10 // master → slave: tasks to run
	TypeResults      Type = 11 // slave → master: finished attempts
	TypeRequest      Type = 12 // slave → master: polling pattern, n more tasks wanted
	TypeReturn       Type = 13 // slave → master: tasks handed back unrun (no attempt spent)
	TypeCancel       Type = 14 // master → slave: abandon these tasks
	TypeModules      Type = 15 // slave → master: the WASM modules it holds now
	TypeSubmit       Type = 20 // app → master: a batch of new tasks
	TypeSubmitAck    Type = 21 // master → app: the batch is durable, ids assigned
	TypeSubmitReject Type = 22 // master → app: the batch was refused, nothing stored
	TypeNotify       Type = 23 // master → app: tasks that reached a final state
	TypeNotifyAck    Type = 24 // app → master: notifications handled
	TypeNotifyDone   Type = 25 // master → app: those acknowledgements are durable
)

var typeNames = map[Type]string{
	TypeHello: "hello", TypeWelcome: "welcome", TypeError: "error",
	TypeDispatch: "dispatch", TypeResults: "results", TypeRequest: "request",
	TypeReturn: "return", TypeCancel: "cancel", TypeModules: "modules", TypeSubmit: "submit",
	TypeSubmitAck: "submit_ack", TypeSubmitReject: "submit_reject",
	TypeNotify: "notify", TypeNotifyAck: "notify_ack", TypeNotifyDone: "notify_done",
}

func (t Type) String() string {
	if n, ok := typeNames[t]; ok {
		return n
	}
	return fmt.Sprintf("type(%d)", byte(t))
}

// Message is any frame body. Encode writes it; Decode returns one.
type Message interface {
	Type() Type
}

// Roles a client announces in its Hello.
const (
	RoleSlave = "slave"
	RoleApp   = "app"
)

// Dispatch patterns announced in Welcome (see the package doc).
const (
	DispatchSend = "send"
	DispatchPoll = "poll"
)

// Hello opens every connection. Slaves describe the machine they donate;
// applications only need Role and Name (their app id).
type Hello struct {
	Version     int      `json:"version"`
	Role        string   `json:"role"`
	Name        string   `json:"name"`
	Token       string   `json:"token,omitempty"`
	Software    string   `json:"software,omitempty"`
	Host        string   `json:"host,omitempty"`
	OS          string   `json:"os,omitempty"`
	Arch        string   `json:"arch,omitempty"`
	Cores       int      `json:"cores,omitempty"`
	MemoryBytes uint64   `json:"memory_bytes,omitempty"`
	Kinds       []string `json:"kinds,omitempty"`
	Concurrency int      `json:"concurrency,omitempty"`
	Prefetch    int      `json:"prefetch,omitempty"`
	// Modules are the hashes of the WASM modules the slave holds already
	// (KindWASM in Kinds): the master prefers it for their tasks.
	Modules []string `json:"modules,omitempty"`
	// TrustKeys, when set, are the only signers whose modules the slave
	// runs (public keys, modsig's text form): the master sends it no other
	// module's task, and the slave refuses one anyway.
	TrustKeys []string `json:"trust_keys,omitempty"`
	// Leaderboard is the volunteer's consent to be listed by name, with
	// its validated results and credit, on the master's public
	// leaderboard.
	Leaderboard bool `json:"leaderboard,omitempty"`
}

// KindWASM is the kind of every task that names a module: the slave runs
// the module of Task.Module on the task's payload. A slave that runs WASM
// announces it in Hello.Kinds.
const KindWASM = "wasm"

// Welcome accepts a Hello and tells the client the master's limits.
type Welcome struct {
	Version         int    `json:"version"`
	Session         string `json:"session"`
	Dispatch        string `json:"dispatch,omitempty"`
	HeartbeatMillis int    `json:"heartbeat_ms"`
	MaxFrameBytes   int    `json:"max_frame_bytes"`
	MaxPayloadBytes int    `json:"max_payload_bytes"`
	// MaxSubmitTasks is the most tasks the master takes in one submit; a
	// larger one is refused with CodeQuotaExceeded. Zero: not announced
	// (an older master), MaxSubmitTasks applies.
	MaxSubmitTasks int `json:"max_submit_tasks,omitempty"`
	// MaxResultBytes is the largest Result.Output the master accepts; a
	// larger one fails the attempt. Absent (0) from masters that announce
	// none: the slave then keeps within its frame limit.
	MaxResultBytes int `json:"max_result_bytes,omitempty"`
	// Volunteer is the identity a slave's session runs under, chosen by
	// the master; Hello.Name is only its display label. Empty for apps.
	Volunteer string `json:"volunteer,omitempty"`
	// VolunteerToken is set once, when the master has just enrolled the
	// slave (open enrollment, an invitation or the admin token): the
	// slave's own credential, to keep and present as Hello.Token from then
	// on. The master keeps only its hash and never sends it again.
	VolunteerToken string `json:"volunteer_token,omitempty"`
}

// Heartbeat is the interval a Welcome announces.
func (w *Welcome) Heartbeat() time.Duration {
	return time.Duration(w.HeartbeatMillis) * time.Millisecond
}

// Error codes. Stable: scripts and peers match on them.
const (
	CodeBadFrame           = "bad_frame"           // undecodable or unexpected frame
	CodeFrameTooLarge      = "frame_too_large"     // frame over the master's limit
	CodeUnsupportedVersion = "unsupported_version" // Hello.Version differs
	CodeBadHandshake       = "bad_handshake"       // Hello missing or invalid
	CodeUnauthorized       = "unauthorized"        // wrong or missing token
	CodePayloadTooLarge    = "payload_too_large"   // a task payload over the limit
	CodeInvalidTask        = "invalid_task"        // a task field out of range
	CodeShuttingDown       = "shutting_down"       // master is stopping
	CodeReplaced           = "replaced"            // a newer connection took over this app id
	CodeInternal           = "internal"            // the master failed (e.g. store error)
	// CodeQuotaExceeded refuses a whole submit (SubmitReject, Index -1)
	// or an application's connection that would pass one of the master's
	// quotas; the message names the quota and its value. Nothing already
	// accepted is touched, and the same submit may succeed later.
	CodeQuotaExceeded = "quota_exceeded"

	// CodeBadResult closes a slave that kept sending results it holds no
	// lease for.
	CodeBadResult = "bad_result"
)

// Error is sent before the sender closes the connection on a fault.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// CodeRateLimited refuses a handshake from an address that presented too
// many wrong credentials lately; its credential was not checked. Worth a
// retry later, unlike unauthorized.
const CodeRateLimited = "rate_limited"

// Task is one attempt of a task, as dispatched to a slave.
type Task struct {
	ID      uint64
	Attempt uint32 // 1 for the first run
	// Lease is the master's random id of this attempt on this session: a
	// result counts only if it echoes it (see Result.Lease).
	Lease uint64
	Kind  string
	// Module is the hash of the WASM module to run when Kind is KindWASM:
	// the slave fetches it by hash and checks the bytes against it.
	Module  string
	Timeout time.Duration // the slave cancels the run after it; 0 means none
	Payload []byte
}

// Dispatch carries tasks to a slave.
type Dispatch struct{ Tasks []Task }

// Result is the outcome of one attempt. Err non-empty means the attempt
// failed; Output is then ignored.
type Result struct {
	ID       uint64
	Attempt  uint32
	Lease    uint64 // the Task.Lease of the attempt it answers
	Err      string
	Output   []byte
	Duration time.Duration // time the handler ran
}

// Results carries finished attempts to the master.
type Results struct{ Results []Result }

// Modules lists every WASM module a slave holds now, replacing what it
// said before (in its Hello or an earlier Modules frame).
type Modules struct{ Held []string }

// Request asks for N more tasks (polling pattern).
type Request struct{ N uint32 }

// IDs lists task ids; it is the body of Return, Cancel, NotifyAck and
// NotifyDone, which differ only in their Type.
type IDs struct {
	T   Type
	IDs []uint64
}

// NewTask is a task as an application submits it. Zero values take the
// master's defaults.
type NewTask struct {
	Kind        string
	Payload     []byte
	Priority    int32 // higher runs first under the priority strategy
	Timeout     time.Duration
	MaxAttempts uint32
	Key         string // routing key; optional
	// Module names the task's code by hash (a module uploaded to the
	// master); Kind is then KindWASM, and an empty Kind means it.
	Module string
	// Replicas is how many copies of the task run on distinct volunteers,
	// Quorum how many of them must agree on its result (0: a majority);
	// 0 and 0: the application's defaults on the master.
	Replicas, Quorum uint8
}

// Submit carries new tasks. Seq identifies the batch per application: a
// batch re-sent after a reconnect with the same Seq is answered with the
// original ids, never stored twice.
type Submit struct {
	Seq   uint64
	Tasks []NewTask
}

// SubmitAck says the batch Seq is durable; its tasks got the ids
// FirstID .. FirstID+Count-1 in submission order.
type SubmitAck struct {
	Seq     uint64
	FirstID uint64
	Count   uint32
}

// SubmitReject says the batch Seq was refused as a whole; Index is the
// offending task (-1 when the batch itself is at fault).
type SubmitReject struct {
	Seq     uint64
	Index   int32
	Code    string
	Message string
}

// State is a task's lifecycle state.
type State byte

// Task states. Values are part of the wire contract and the store format.
const (
	StatePending  State = 1
	StateRunning  State = 2
	StateDone     State = 3
	StateFailed   State = 4
	StateCanceled State = 5
)

var stateNames = [...]string{"unknown", "pending", "running", "done", "failed", "canceled"}

func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("state(%d)", byte(s))
}

// Final reports whether no further attempt will be made.
func (s State) Final() bool { return s >= StateDone && s <= StateCanceled }

// ParseState is the inverse of State.String.
func ParseState(s string) (State, bool) {
	for i, n := range stateNames {
		if i > 0 && n == s {
			return State(i), true
		}
	}
	return 0, false
}

// Finished tells an application that a task reached a final state.
type Finished struct {
	ID       uint64
	Kind     string
	State    State
	Attempts uint32
	Result   []byte
	Err      string
}

// Notify carries finished tasks to their application.
type Notify struct{ Tasks []Finished }

func (*Hello) Type() Type        { return TypeHello }
func (*Welcome) Type() Type      { return TypeWelcome }
func (*Error) Type() Type        { return TypeError }
func (*Dispatch) Type() Type     { return TypeDispatch }
func (*Results) Type() Type      { return TypeResults }
func (*Request) Type() Type      { return TypeRequest }
func (*Modules) Type() Type      { return TypeModules }
func (m *IDs) Type() Type        { return m.T }
func (*Submit) Type() Type       { return TypeSubmit }
func (*SubmitAck) Type() Type    { return TypeSubmitAck }
func (*SubmitReject) Type() Type { return TypeSubmitReject }
func (*Notify) Type() Type       { return TypeNotify }
