package protocol

import (
	"fmt"
	"strings"
	"time"
)

// Limits of the contract. The master refuses what lies outside them;
// clients check them first, so a misconfiguration fails at once instead of
// being refused on every reconnect, and every client names the same bound.

// Limits on a Hello, refused with CodeBadHandshake.
const (
	MaxNameBytes   = 128   // Hello.Name (an app id, a slave name): 1 to this many bytes
	MaxKinds       = 1024  // a slave announces 1 to this many kinds
	MaxConcurrency = 4096  // a slave's Concurrency: 1 to this
	MaxPrefetch    = 65536 // a slave's Prefetch: 0 to this
	MaxHeld        = 1024  // module hashes in a Hello or a Modules frame
	MaxTrustKeys   = 64    // a slave's Hello.TrustKeys
	// MaxHandshakeBytes bounds a Hello, a Welcome or a refusal: every side
	// reads the first frame with this limit, before it knows the other's.
	MaxHandshakeBytes = 64 << 10
)

// DefaultHeartbeat is the ping interval of a peer whose Welcome announces
// none, and the master's default.
const DefaultHeartbeat = 5 * time.Second

// Limits on a submitted task and batch, refused with CodeInvalidTask.
// The payload's limit is the master's own (Welcome.MaxPayloadBytes) and is
// refused with CodePayloadTooLarge; the timeout's limit is the master's
// too.
const (
	MaxKindBytes   = 128    // NewTask.Kind: 1 to this many bytes
	MaxKeyBytes    = 1024   // NewTask.Key: at most this many bytes
	MaxAttempts    = 1000   // NewTask.MaxAttempts: at most this (0: the master's default)
	MaxSubmitTasks = 100000 // tasks in one Submit: 1 to this
	MaxReplicas    = 16     // NewTask.Replicas and Quorum: at most this
)

// MaxErrBytes bounds Result.Err: a longer error fails the attempt as
// oversized, like an output over the master's Welcome.MaxResultBytes.
const MaxErrBytes = 4096

// TaskField names the field of a NewTask a TaskError is about, as a
// human reads it; clients map it to their own names (jsonrpc's
// "timeout_ms").
type TaskField string

// The fields of a NewTask that can be refused.
const (
	FieldKind        TaskField = "kind"
	FieldPayload     TaskField = "payload"
	FieldTimeout     TaskField = "timeout"
	FieldMaxAttempts TaskField = "max attempts"
	FieldKey         TaskField = "key"
	FieldModule      TaskField = "module"
	FieldReplicas    TaskField = "replicas"
	FieldQuorum      TaskField = "quorum"
)

// TaskError refuses a batch because of one task, or the batch itself.
// Problem is said of the field ("must not be empty", "is 11 bytes; the
// limit is 10"), so a caller can name the field its own way without
// parsing the text.
type TaskError struct {
	Index   int       // the task's index in its batch; -1 for the batch itself
	Field   TaskField // "" when Index is -1
	Code    string    // CodeInvalidTask or CodePayloadTooLarge
	Problem string
}

// Error reads "task 3: kind must not be empty", or just the problem of a
// batch.
func (e *TaskError) Error() string {
	if e.Index < 0 {
		return e.Problem
	}
	return fmt.Sprintf("task %d: %s %s", e.Index, e.Field, e.Problem)
}

// CheckTask checks nt against the contract's limits and the master's:
// maxPayload bytes and maxTimeout, either of which is not checked when
// zero (a client that does not know it). It returns nil or the first
// problem found, with Index i.
func CheckTask(i int, nt *NewTask, maxPayload int, maxTimeout time.Duration) *TaskError {
	bad := func(f TaskField, format string, a ...any) *TaskError {
		return &TaskError{Index: i, Field: f, Code: CodeInvalidTask, Problem: fmt.Sprintf(format, a...)}
	}
	if nt.Module != "" && nt.Kind == "" {
		// Naming the code says what kind of task it is.
		nt.Kind = KindWASM
	}
	switch {
	case nt.Kind == "":
		return bad(FieldKind, "must not be empty")
	case nt.Module != "" && !ValidModuleHash(nt.Module):
		return bad(FieldModule, "must be a module's hash: 64 lowercase hex digits")
	case nt.Module != "" && nt.Kind != KindWASM:
		return bad(FieldKind, "must be %q (or empty) for a task that names a module; it is %q", KindWASM, nt.Kind)
	case nt.Module == "" && nt.Kind == KindWASM:
		return bad(FieldModule, "must name the module a %q task runs", KindWASM)
	case len(nt.Kind) > MaxKindBytes:
		return bad(FieldKind, "is longer than %d bytes", MaxKindBytes)
	case strings.IndexByte(nt.Kind, 0) >= 0:
		// The scheduler's queues of WASM modules are named with one.
		return bad(FieldKind, "must not contain a NUL byte")
	case maxPayload > 0 && len(nt.Payload) > maxPayload:
		return &TaskError{Index: i, Field: FieldPayload, Code: CodePayloadTooLarge,
			Problem: fmt.Sprintf("is %d bytes; the limit is %d", len(nt.Payload), maxPayload)}
	case nt.Timeout < 0:
		return bad(FieldTimeout, "must not be negative")
	case maxTimeout > 0 && nt.Timeout > maxTimeout:
		return bad(FieldTimeout, "of %v exceeds the limit of %v", nt.Timeout, maxTimeout)
	case nt.MaxAttempts > MaxAttempts:
		return bad(FieldMaxAttempts, "exceeds %d", MaxAttempts)
	case len(nt.Key) > MaxKeyBytes:
		return bad(FieldKey, "is longer than %d bytes", MaxKeyBytes)
	case nt.Replicas > MaxReplicas:
		return bad(FieldReplicas, "of %d exceeds %d", nt.Replicas, MaxReplicas)
	case nt.Quorum > MaxReplicas:
		return bad(FieldQuorum, "of %d exceeds %d", nt.Quorum, MaxReplicas)
	case nt.Replicas > 0 && nt.Quorum > nt.Replicas:
		return bad(FieldQuorum, "of %d exceeds the task's replicas (%d)", nt.Quorum, nt.Replicas)
	}
	return nil
}

// ValidModuleHash reports whether h is a module's content address: the
// lowercase hex SHA-256 of its bytes.
func ValidModuleHash(h string) bool {
	if len(h) != 64 {
		return false
	}
	for i := 0; i < len(h); i++ {
		if c := h[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// CheckBatch checks a batch's size, then each task with CheckTask.
func CheckBatch(tasks []NewTask, maxPayload int, maxTimeout time.Duration) *TaskError {
	switch {
	case len(tasks) == 0:
		return &TaskError{Index: -1, Code: CodeInvalidTask, Problem: "a batch needs at least one task"}
	case len(tasks) > MaxSubmitTasks:
		return &TaskError{Index: -1, Code: CodeInvalidTask,
			Problem: fmt.Sprintf("a batch of %d tasks; the limit is %d", len(tasks), MaxSubmitTasks)}
	}
	for i := range tasks {
		if err := CheckTask(i, &tasks[i], maxPayload, maxTimeout); err != nil {
			return err
		}
	}
	return nil
}
