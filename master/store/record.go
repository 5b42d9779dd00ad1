package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/anthill-project/anthill/internal/binenc"
	"github.com/anthill-project/anthill/protocol"
)

// Record is one task as the store keeps it.
type Record struct {
	ID   uint64
	App  string
	Kind string
	// Module is the hash of the WASM module a task of kind "wasm" runs;
	// empty for every other task.
	Module      string
	Key         string
	Priority    int32
	Timeout     time.Duration
	MaxAttempts uint32
	Attempts    uint32
	State       protocol.State
	CreatedAt   time.Time
	StartedAt   time.Time // zero if never started
	FinishedAt  time.Time // zero unless final
	Slave       string    // name of the slave that ran the last attempt
	Payload     []byte
	Result      []byte
	Err         string
	Acked       bool // the application acknowledged the final notification
	// Quiet marks a task submitted over the API: no application connection
	// acknowledges it, so it is stored acknowledged once final.
	Quiet bool
	// History holds the task's attempts, oldest first: at most MaxHistory,
	// the most recent ones (Attempts still counts them all). Records of
	// format 1 have none (nil).
	History []Attempt
	// Replicas is how many copies of the task run on distinct volunteers
	// (0: its app's default), Quorum how many must agree (0: a majority).
	// Parent is set on a copy: the id of the task it is a copy of.
	Replicas, Quorum uint8
	Parent           uint64
}

// Attempt is one run of a task on a slave.
type Attempt struct {
	Slave   string
	Started time.Time
	Ended   time.Time // zero while the attempt runs
	Outcome Outcome
	Err     string // the attempt's error, at most MaxAttemptErr bytes (see ClipErr)
}

// Bounds of a record's history, so that it cannot bloat the record: the
// encoder keeps the last MaxHistory entries and clips longer errors with
// ClipErr, and the decoder refuses more as corrupt.
const (
	MaxHistory    = 16
	MaxAttemptErr = 256
)

// Outcome is how an attempt ended, as the byte the store keeps. What each
// means is the scheduler's (sched.Outcome); the store only keeps them
// apart and refuses a byte past the last. Never renumber them.
type Outcome uint8

// The stored outcomes.
const (
	OutcomeRunning Outcome = iota
	OutcomeDone
	OutcomeFailed
	OutcomeTimeout
	OutcomeLost
	OutcomeReturned
	OutcomeCanceled
	OutcomeCanonical // a copy whose result a quorum accepted
	OutcomeInvalid   // a copy whose result disagreed with the canonical one
	OutcomeNotNeeded // a copy canceled because a quorum was reached without it

	maxOutcome = OutcomeNotNeeded
)

// ClipErr returns s if it fits MaxAttemptErr bytes, otherwise its longest
// prefix that ends on a rune boundary and leaves room for a trailing "…".
func ClipErr(s string) string {
	if len(s) <= MaxAttemptErr {
		return s
	}
	const ellipsis = "…"
	cut := MaxAttemptErr - len(ellipsis)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + ellipsis
}

// Push remembers that an application's submit batch Seq was given the ids
// FirstID..FirstID+Count-1, so a resent batch gets the same answer instead
// of new tasks.
type Push struct {
	App     string
	Seq     uint64
	FirstID uint64
	Count   uint32
	At      time.Time
}

// Record encoding, format 2 (format 3 below). The header is fixed so
// AckTask can flip the flag on a copy of the stored bytes without decoding
// the record:
//
//	[0] format  [1] flags  [2] state
//	varint priority, varint timeout, uvarint maxAttempts, uvarint attempts,
//	varint createdAt, startedAt, finishedAt (unix ns, 0 = zero time),
//	uvarint len of app, kind, key, slave, err,
//	uvarint len+1 of payload, result (0 = nil),
//	then the bytes of app, kind, key, slave, err, payload, result,
//	then the history: uvarint count, and per attempt
//	  varint started, ended (unix ns, 0 = zero time), byte outcome,
//	  uvarint len of slave, err;
//	then the bytes of every attempt's slave and err, attempt by attempt.
//
// A record with flagModule carries its Module right after the header,
// before the priority: uvarint length, then the bytes. It is a flag, not a
// format, because every record without a module stays byte for byte what
// it was; an older Anthill refuses a record with a module as corrupt (an
// unknown flag) rather than run it as the wrong kind.
//
// A record with flagReplica carries, after the module if any and before
// the priority, uvarint replicas, uvarint quorum and uvarint parent; the
// flag is set when any of them is not zero, so records of tasks that are
// not replicated are what they were.
//
// A record of format 3 whose payload is kept apart carries, with
// flagPaySize, the payload's size as a uvarint after the replica fields
// and before the priority, so a restart counts a queue's bytes from the
// tasks' records alone rather than by reading every payload's page. A
// record written without a payload in hand (a final task's, a copy's)
// has no size; LoadIndex then looks the payload up.
//
// Format 1 is format 2 without the history; it is still read (History
// nil) and its header is the same, so AckTask flips either.
//
// Format 3 is format 2 with large payloads kept apart. A payload of at
// most InlinePayload bytes stays inline; a larger one (payload length 0)
// is the value of the same key in the payloads bucket (payloadFormat, then
// the bytes; no key: no payload), written once, with the task (PutTask),
// and never again: the writes of a task's later life (PutState: requeues,
// retries, results) are a small state record. Formats 1 and 2 are still read: opening a file of
// store format 2 or older rewrites its records as format 3 (see
// migratePayloads).
//
// The id is the bucket key, not part of the value. The strings come before
// the byte slices and are contiguous so decoding needs one string conversion
// and one copy; the history's strings likewise need one conversion.
const (
	recordFormat   = 3
	recordFormatV2 = 2
	recordFormatV1 = 1

	payloadFormat = 1

	offFormat = 0
	offFlags  = 1
	offState  = 2
	headerLen = 3

	flagAcked   = 1 << 0
	flagQuiet   = 1 << 1
	flagModule  = 1 << 2
	flagReplica = 1 << 3
	flagPaySize = 1 << 4
)

// maxHeaderLen bounds the encoded fields before the variable-length bytes,
// the history's count included.
const maxHeaderLen = headerLen + 15*binary.MaxVarintLen64

// maxAttemptLen bounds an attempt's encoded fields before its strings.
const maxAttemptLen = 1 + 4*binary.MaxVarintLen64

// appendRecord encodes r in format 2, its payload inline: the encoder of
// the files older Anthills wrote, kept for the tests that build them.
func appendRecord(dst []byte, r *Record) []byte {
	return encodeRecord(dst, r, recordFormatV2, r.Payload)
}

// InlinePayload is the largest payload a record of format 3 carries
// itself. Larger ones live in the payloads bucket, written once, so that a
// requeue of a large task rewrites a small record; a small one costs less
// inline than a second key written and deleted with every task.
const InlinePayload = 512

// appendState encodes r in format 3: everything, and the payload only if
// it is at most InlinePayload bytes.
func appendState(dst []byte, r *Record) []byte {
	if r.Payload != nil && len(r.Payload) <= InlinePayload {
		return encodeRecord(dst, r, recordFormat, r.Payload)
	}
	return encodeRecord(dst, r, recordFormat, nil)
}

func encodeRecord(dst []byte, r *Record, rf byte, payload []byte) []byte {
	var flags byte
	if r.Acked {
		flags |= flagAcked
	}
	if r.Quiet {
		flags |= flagQuiet
	}
	if r.Module != "" {
		flags |= flagModule
	}
	replica := r.Replicas != 0 || r.Quorum != 0 || r.Parent != 0
	if replica {
		flags |= flagReplica
	}
	apart := rf == recordFormat && payload == nil && len(r.Payload) > InlinePayload
	if apart {
		flags |= flagPaySize
	}
	dst = append(dst, rf, flags, byte(r.State))
	if r.Module != "" {
		dst = binenc.AppendString(dst, r.Module)
	}
	if replica {
		dst = binary.AppendUvarint(dst, uint64(r.Replicas))
		dst = binary.AppendUvarint(dst, uint64(r.Quorum))
		dst = binary.AppendUvarint(dst, r.Parent)
	}
	if apart {
		dst = binary.AppendUvarint(dst, uint64(len(r.Payload)))
	}
	dst = binary.AppendVarint(dst, int64(r.Priority))
	dst = binary.AppendVarint(dst, int64(r.Timeout))
	dst = binary.AppendUvarint(dst, uint64(r.MaxAttempts))
	dst = binary.AppendUvarint(dst, uint64(r.Attempts))
	dst = binary.AppendVarint(dst, unixNano(r.CreatedAt))
	dst = binary.AppendVarint(dst, unixNano(r.StartedAt))
	dst = binary.AppendVarint(dst, unixNano(r.FinishedAt))
	dst = binary.AppendUvarint(dst, uint64(len(r.App)))
	dst = binary.AppendUvarint(dst, uint64(len(r.Kind)))
	dst = binary.AppendUvarint(dst, uint64(len(r.Key)))
	dst = binary.AppendUvarint(dst, uint64(len(r.Slave)))
	dst = binary.AppendUvarint(dst, uint64(len(r.Err)))
	dst = appendNilLen(dst, payload)
	dst = appendNilLen(dst, r.Result)
	dst = append(dst, r.App...)
	dst = append(dst, r.Kind...)
	dst = append(dst, r.Key...)
	dst = append(dst, r.Slave...)
	dst = append(dst, r.Err...)
	dst = append(dst, payload...)
	dst = append(dst, r.Result...)
	h := history(r)
	dst = binary.AppendUvarint(dst, uint64(len(h)))
	for i := range h {
		a := &h[i]
		dst = binary.AppendVarint(dst, unixNano(a.Started))
		dst = binary.AppendVarint(dst, unixNano(a.Ended))
		dst = append(dst, byte(a.Outcome))
		dst = binary.AppendUvarint(dst, uint64(len(a.Slave)))
		dst = binary.AppendUvarint(dst, uint64(len(ClipErr(a.Err))))
	}
	for i := range h {
		dst = append(dst, h[i].Slave...)
		dst = append(dst, ClipErr(h[i].Err)...)
	}
	return dst
}

// history is what appendRecord keeps of r.History: the last MaxHistory.
func history(r *Record) []Attempt {
	return r.History[max(len(r.History)-MaxHistory, 0):]
}

// encodedLen is an upper bound of appendRecord's output, used to grow the
// batch buffer once instead of several times per record.
func encodedLen(r *Record) int {
	n := maxHeaderLen + 4*binary.MaxVarintLen64 + len(r.Module) + len(r.App) + len(r.Kind) + len(r.Key) + len(r.Slave) +
		len(r.Err) + len(r.Payload) + len(r.Result)
	for _, a := range history(r) {
		n += maxAttemptLen + len(a.Slave) + min(len(a.Err), MaxAttemptErr)
	}
	return n
}

// appendNilLen keeps nil and empty apart: a failed attempt's empty Result
// must not come back as "no result".
func appendNilLen(dst, b []byte) []byte {
	if b == nil {
		return append(dst, 0)
	}
	return binary.AppendUvarint(dst, uint64(len(b))+1)
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromUnixNano(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

func corruptRecord(id uint64, why string) error {
	return fmt.Errorf("task %d: corrupt record: %s", id, why)
}

// layout is a record parsed without copying: its fixed fields decoded,
// its variable parts still slices of the stored bytes. decodeRecord builds
// a Record from it; LoadIndex reads only what a queue needs.
type layout struct {
	rf, flags        byte
	state            protocol.State
	module           []byte
	replicas, quorum uint8
	parent           uint64
	paySize          int // of a payload kept apart; -1 when not written
	priority         int32
	timeout          time.Duration
	maxAttempts      uint32
	attempts         uint32
	created          int64
	started          int64
	finished         int64
	strs             [5][]byte // app, kind, key, slave, err
	strAll           []byte    // the five, back to back
	payload, result  []byte    // nil when absent
	rest             []byte    // the history section (formats 2 and 3)
}

// parseRecord checks data and locates its parts; it keeps slices of data,
// valid as long as data is.
func parseRecord(id uint64, data []byte) (layout, error) {
	var l layout
	if len(data) < headerLen {
		return l, corruptRecord(id, fmt.Sprintf("%d bytes", len(data)))
	}
	l.rf = data[offFormat]
	if l.rf < recordFormatV1 || l.rf > recordFormat {
		return l, corruptRecord(id, fmt.Sprintf("record format %d, want %d to %d", l.rf, recordFormatV1, recordFormat))
	}
	l.flags = data[offFlags]
	if l.flags&^(flagAcked|flagQuiet|flagModule|flagReplica|flagPaySize) != 0 {
		return l, corruptRecord(id, fmt.Sprintf("unknown flags %#x", l.flags))
	}
	l.state = protocol.State(data[offState])
	if _, ok := protocol.ParseState(l.state.String()); !ok {
		return l, corruptRecord(id, fmt.Sprintf("invalid state %d", data[offState]))
	}
	d := binenc.NewDecoder(data[headerLen:])
	if l.flags&flagModule != 0 {
		l.module = d.Bytes("module")
	}
	if l.flags&flagReplica != 0 {
		replicas, quorum := d.Uvarint("replicas"), d.Uvarint("quorum")
		l.parent = d.Uvarint("parent")
		if d.Err() == nil && (replicas > 255 || quorum > 255 || replicas > 0 && quorum > replicas) {
			d.Failf("replicas %d and quorum %d", replicas, quorum)
		}
		l.replicas, l.quorum = uint8(replicas), uint8(quorum)
	}
	l.paySize = -1
	if l.flags&flagPaySize != 0 {
		n := d.Uvarint("payload size")
		if d.Err() == nil && (n <= InlinePayload || n > 1<<40) {
			d.Failf("a payload kept apart of %d bytes", n)
		}
		l.paySize = int(n)
	}
	l.priority = d.Int32("priority")
	l.timeout = time.Duration(d.Varint("timeout"))
	l.maxAttempts = d.Uint32("max attempts")
	l.attempts = d.Uint32("attempts")
	l.created = d.Varint("created")
	l.started = d.Varint("started")
	l.finished = d.Varint("finished")
	var strLens [5]uint64
	for i, what := range [...]string{"app length", "kind length", "key length", "slave length", "err length"} {
		strLens[i] = d.Uvarint(what)
	}
	payLen := d.Uvarint("payload length")
	resLen := d.Uvarint("result length")
	if err := d.Err(); err != nil {
		return l, corruptRecord(id, err.Error())
	}
	if l.rf == recordFormat && payLen > InlinePayload+1 {
		return l, corruptRecord(id, fmt.Sprintf("an inline payload of %d bytes in a record of format 3", payLen-1))
	}
	buf := d.Rest()

	// Sum against what is left, one length at a time, so a huge length
	// cannot overflow the check.
	rest := uint64(len(buf))
	var strTotal uint64
	for _, n := range strLens {
		if n > rest-strTotal {
			return l, corruptRecord(id, "string length past the end")
		}
		strTotal += n
	}
	left := rest - strTotal
	var pay, res uint64
	if payLen > 0 {
		pay = payLen - 1
	}
	if resLen > 0 {
		res = resLen - 1
	}
	if pay > left || res > left-pay {
		return l, corruptRecord(id, "payload or result length past the end")
	}
	if l.rf == recordFormatV1 && pay+res != left {
		return l, corruptRecord(id, fmt.Sprintf("%d trailing bytes", left-pay-res))
	}
	l.strAll = buf[:strTotal:strTotal]
	at := uint64(0)
	for i, n := range strLens {
		l.strs[i] = buf[at : at+n : at+n]
		at += n
	}
	if payLen > 0 {
		l.payload = buf[at : at+pay : at+pay]
	}
	at += pay
	if resLen > 0 {
		l.result = buf[at : at+res : at+res]
	}
	l.rest = buf[at+res:]
	return l, nil
}

// decodeRecord never keeps a reference to data: bbolt's bytes are only valid
// inside the transaction, and callers keep the Record. A format 3 record
// comes back without its payload, which the caller reads from the payloads
// bucket (see Store.decode).
func decodeRecord(id uint64, data []byte) (*Record, error) {
	l, err := parseRecord(id, data)
	if err != nil {
		return nil, err
	}
	r := &Record{
		ID: id, Acked: l.flags&flagAcked != 0, Quiet: l.flags&flagQuiet != 0, State: l.state,
		Module: string(l.module), Replicas: l.replicas, Quorum: l.quorum, Parent: l.parent,
		Priority: l.priority, Timeout: l.timeout, MaxAttempts: l.maxAttempts, Attempts: l.attempts,
		CreatedAt: fromUnixNano(l.created), StartedAt: fromUnixNano(l.started), FinishedAt: fromUnixNano(l.finished),
	}
	// The strings are contiguous: one conversion serves them all.
	if len(l.strAll) > 0 {
		s := string(l.strAll)
		cut := func(n int) string {
			v := s[:n]
			s = s[n:]
			return v
		}
		r.App = cut(len(l.strs[0]))
		r.Kind = cut(len(l.strs[1]))
		r.Key = cut(len(l.strs[2]))
		r.Slave = cut(len(l.strs[3]))
		r.Err = cut(len(l.strs[4]))
	}
	if l.payload != nil || l.result != nil {
		b := make([]byte, len(l.payload)+len(l.result))
		copy(b, l.payload)
		copy(b[len(l.payload):], l.result)
		if l.payload != nil {
			r.Payload = b[:len(l.payload):len(l.payload)]
		}
		if l.result != nil {
			r.Result = b[len(l.payload):]
		}
	}
	if l.rf == recordFormatV1 {
		return r, nil
	}
	if r.History, err = decodeHistory(l.rest); err != nil {
		return nil, corruptRecord(id, err.Error())
	}
	return r, nil
}

// decodeHistory reads the history section of a format 2 record, which must
// fill buf exactly; it returns why not, or nil.
func decodeHistory(buf []byte) ([]Attempt, error) {
	d := binenc.NewDecoder(buf)
	n := d.Uvarint("history length")
	if n > MaxHistory {
		d.Failf("%d attempts in the history, more than %d", n, MaxHistory)
	}
	if n == 0 || d.Err() != nil {
		return nil, d.End()
	}
	h := make([]Attempt, n)
	var lens [2 * MaxHistory]uint64
	for i := range h {
		a := &h[i]
		a.Started = fromUnixNano(d.Varint("attempt start"))
		a.Ended = fromUnixNano(d.Varint("attempt end"))
		if a.Outcome = Outcome(d.Byte("attempt outcome")); a.Outcome > maxOutcome {
			d.Failf("invalid attempt outcome %d", uint8(a.Outcome))
		}
		lens[2*i] = d.Uvarint("attempt slave length")
		lens[2*i+1] = d.Uvarint("attempt err length")
		if lens[2*i+1] > MaxAttemptErr {
			d.Failf("attempt error of %d bytes, more than %d", lens[2*i+1], MaxAttemptErr)
		}
	}
	if err := d.Err(); err != nil {
		return nil, err
	}
	// As in decodeRecord: one length at a time, so none can overflow.
	rest := uint64(len(d.Rest()))
	var total uint64
	for _, l := range lens[:2*n] {
		if l > rest-total {
			return nil, errors.New("attempt string length past the end")
		}
		total += l
	}
	if total != rest {
		return nil, fmt.Errorf("%d trailing bytes", rest-total)
	}
	s := string(d.Rest())
	for i := range h {
		h[i].Slave, s = s[:lens[2*i]], s[lens[2*i]:]
		h[i].Err, s = s[:lens[2*i+1]], s[lens[2*i+1]:]
	}
	return h, nil
}

// Push keys sort by app, then by seq, so one app's pushes are adjacent.
// The seq is found from the end, so an app name may contain 0x00.
func pushKey(dst []byte, app string, seq uint64) []byte {
	dst = append(dst, app...)
	dst = append(dst, 0)
	return binary.BigEndian.AppendUint64(dst, seq)
}

func appendPushValue(dst []byte, p *Push) []byte {
	dst = binary.AppendUvarint(dst, p.FirstID)
	dst = binary.AppendUvarint(dst, uint64(p.Count))
	return binary.AppendVarint(dst, unixNano(p.At))
}

func decodePush(k, v []byte) (Push, error) {
	if len(k) < 9 || k[len(k)-9] != 0 {
		return Push{}, fmt.Errorf("corrupt push key %x", k)
	}
	p := Push{
		App: string(k[:len(k)-9]),
		Seq: binary.BigEndian.Uint64(k[len(k)-8:]),
	}
	d := binenc.NewDecoder(v)
	p.FirstID = d.Uvarint("first id")
	p.Count = d.Uint32("count")
	p.At = fromUnixNano(d.Varint("time"))
	if err := d.End(); err != nil {
		return Push{}, fmt.Errorf("push %q seq %d: corrupt record: %v", p.App, p.Seq, err)
	}
	return p, nil
}

func taskKey(dst []byte, id uint64) []byte {
	return binary.BigEndian.AppendUint64(dst, id)
}
