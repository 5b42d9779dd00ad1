package protocol

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/anthill-project/anthill/internal/binenc"
)

// ErrMalformed wraps every decoding failure, so a receiver can tell a bad
// peer (close that connection) from its own faults.
var ErrMalformed = errors.New("malformed frame")

// Encode appends the frame for m to dst and returns the extended slice.
// Reusing dst across calls avoids an allocation per frame.
func Encode(dst []byte, m Message) []byte {
	dst = append(dst, byte(m.Type()))
	switch m := m.(type) {
	case *Hello, *Welcome, *Error:
		b, err := json.Marshal(m)
		if err != nil {
			// These structs hold only strings and numbers: Marshal cannot fail.
			panic(err)
		}
		return append(dst, b...)
	case *Dispatch:
		// Sized first: a frame of many payloads grown by append (a
		// quarter at a time) was copied several times over.
		size := binary.MaxVarintLen64
		for i := range m.Tasks {
			t := &m.Tasks[i]
			size += 6*binary.MaxVarintLen64 + len(t.Kind) + len(t.Module) + len(t.Payload)
		}
		dst = slices.Grow(dst, size)
		dst = binary.AppendUvarint(dst, uint64(len(m.Tasks)))
		for i := range m.Tasks {
			t := &m.Tasks[i]
			dst = binary.AppendUvarint(dst, t.ID)
			dst = binary.AppendUvarint(dst, uint64(t.Attempt))
			dst = binary.AppendUvarint(dst, t.Lease)
			dst = binenc.AppendString(dst, t.Kind)
			dst = binenc.AppendString(dst, t.Module)
			dst = binary.AppendUvarint(dst, uint64(t.Timeout/time.Millisecond))
			dst = binenc.AppendBytes(dst, t.Payload)
		}
	case *Results:
		dst = binary.AppendUvarint(dst, uint64(len(m.Results)))
		for i := range m.Results {
			r := &m.Results[i]
			dst = binary.AppendUvarint(dst, r.ID)
			dst = binary.AppendUvarint(dst, uint64(r.Attempt))
			dst = binary.AppendUvarint(dst, r.Lease)
			dst = binary.AppendUvarint(dst, uint64(r.Duration/time.Microsecond))
			dst = binenc.AppendString(dst, r.Err)
			dst = binenc.AppendBytes(dst, r.Output)
		}
	case *Request:
		dst = binary.AppendUvarint(dst, uint64(m.N))
	case *Modules:
		dst = binary.AppendUvarint(dst, uint64(len(m.Held)))
		for _, h := range m.Held {
			dst = binenc.AppendString(dst, h)
		}
	case *IDs:
		dst = appendIDs(dst, m.IDs)
	case *Submit:
		dst = binary.AppendUvarint(dst, m.Seq)
		dst = binary.AppendUvarint(dst, uint64(len(m.Tasks)))
		for i := range m.Tasks {
			t := &m.Tasks[i]
			dst = binenc.AppendString(dst, t.Kind)
			dst = binary.AppendVarint(dst, int64(t.Priority))
			dst = binary.AppendUvarint(dst, uint64(t.Timeout/time.Millisecond))
			dst = binary.AppendUvarint(dst, uint64(t.MaxAttempts))
			dst = binenc.AppendString(dst, t.Key)
			dst = binenc.AppendString(dst, t.Module)
			dst = append(dst, t.Replicas, t.Quorum)
			dst = binenc.AppendBytes(dst, t.Payload)
		}
	case *SubmitAck:
		dst = binary.AppendUvarint(dst, m.Seq)
		dst = binary.AppendUvarint(dst, m.FirstID)
		dst = binary.AppendUvarint(dst, uint64(m.Count))
	case *SubmitReject:
		dst = binary.AppendUvarint(dst, m.Seq)
		dst = binary.AppendVarint(dst, int64(m.Index))
		dst = binenc.AppendString(dst, m.Code)
		dst = binenc.AppendString(dst, m.Message)
	case *Notify:
		dst = binary.AppendUvarint(dst, uint64(len(m.Tasks)))
		for i := range m.Tasks {
			f := &m.Tasks[i]
			dst = binary.AppendUvarint(dst, f.ID)
			dst = binenc.AppendString(dst, f.Kind)
			dst = append(dst, byte(f.State))
			dst = binary.AppendUvarint(dst, uint64(f.Attempts))
			dst = binenc.AppendString(dst, f.Err)
			dst = binenc.AppendBytes(dst, f.Result)
		}
	default:
		panic(fmt.Sprintf("protocol: cannot encode %T", m))
	}
	return dst
}

// DecodeLimits bound what one frame may declare, checked before anything
// is allocated for it: a receiver states how many items it would accept,
// so a small frame cannot make it allocate for millions.
type DecodeLimits struct {
	// MaxItems caps the element count of a frame: tasks of a Dispatch,
	// Submit or Notify, results of a Results, ids of an IDs. 0 means no
	// cap beyond what the frame's length can hold.
	MaxItems int
}

// Decode parses one frame with no DecodeLimits. See DecodeWith.
func Decode(frame []byte) (Message, error) { return DecodeWith(frame, DecodeLimits{}) }

// DecodeWith parses one frame, refusing one that declares more items than
// lim allows. Payloads and outputs of a frame with one item alias frame
// (the frame is little more than that item); with several items each is
// copied, so one that lives on does not keep the whole frame in memory.
// The caller must not reuse frame while it holds the result.
func DecodeWith(frame []byte, lim DecodeLimits) (Message, error) {
	if len(frame) == 0 {
		return nil, fmt.Errorf("%w: empty", ErrMalformed)
	}
	t, body := Type(frame[0]), frame[1:]
	var m Message
	switch t {
	case TypeHello:
		m = new(Hello)
	case TypeWelcome:
		m = new(Welcome)
	case TypeError:
		m = new(Error)
	}
	if m != nil {
		if err := json.Unmarshal(body, m); err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrMalformed, t, err)
		}
		return m, nil
	}
	d := decoder{Decoder: binenc.NewDecoder(body), max: lim.MaxItems}
	switch t {
	case TypeDispatch:
		n := d.count("task count", 6)
		msg := &Dispatch{Tasks: make([]Task, n)}
		for i := range msg.Tasks {
			x := &msg.Tasks[i]
			x.ID = d.Uvarint("task id")
			x.Attempt = d.Uint32("attempt")
			x.Lease = d.Uvarint("lease")
			x.Kind = d.kind()
			x.Module = d.module()
			x.Timeout = d.millis("timeout")
			x.Payload = d.bytes("payload", n)
		}
		m = msg
	case TypeResults:
		n := d.count("result count", 6)
		msg := &Results{Results: make([]Result, n)}
		for i := range msg.Results {
			x := &msg.Results[i]
			x.ID = d.Uvarint("task id")
			x.Attempt = d.Uint32("attempt")
			x.Lease = d.Uvarint("lease")
			x.Duration = d.micros("duration")
			x.Err = d.String("error")
			x.Output = d.bytes("output", n)
		}
		m = msg
	case TypeRequest:
		m = &Request{N: d.Uint32("requested tasks")}
	case TypeModules:
		n := d.count("module count", 1)
		msg := &Modules{Held: make([]string, n)}
		for i := range msg.Held {
			msg.Held[i] = d.String("module")
		}
		m = msg
	case TypeReturn, TypeCancel, TypeNotifyAck, TypeNotifyDone:
		m = &IDs{T: t, IDs: d.ids()}
	case TypeSubmit:
		msg := &Submit{Seq: d.Uvarint("seq")}
		n := d.count("task count", 6)
		msg.Tasks = make([]NewTask, n)
		for i := range msg.Tasks {
			x := &msg.Tasks[i]
			x.Kind = d.kind()
			x.Priority = d.Int32("priority")
			x.Timeout = d.millis("timeout")
			x.MaxAttempts = d.Uint32("max attempts")
			x.Key = d.String("key")
			x.Module = d.module()
			x.Replicas = d.Byte("replicas")
			x.Quorum = d.Byte("quorum")
			x.Payload = d.bytes("payload", n)
		}
		m = msg
	case TypeSubmitAck:
		m = &SubmitAck{Seq: d.Uvarint("seq"), FirstID: d.Uvarint("first id"), Count: d.Uint32("count")}
	case TypeSubmitReject:
		m = &SubmitReject{Seq: d.Uvarint("seq"), Index: d.Int32("index"), Code: d.String("code"), Message: d.String("message")}
	case TypeNotify:
		n := d.count("task count", 6)
		msg := &Notify{Tasks: make([]Finished, n)}
		for i := range msg.Tasks {
			x := &msg.Tasks[i]
			x.ID = d.Uvarint("task id")
			x.Kind = d.kind()
			x.State = State(d.Byte("state"))
			x.Attempts = d.Uint32("attempts")
			x.Err = d.String("error")
			x.Result = d.bytes("result", n)
		}
		m = msg
	default:
		return nil, fmt.Errorf("%w: unknown message type %d", ErrMalformed, byte(t))
	}
	if err := d.End(); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrMalformed, t, err)
	}
	return m, nil
}

// appendIDs writes ascending-friendly deltas: ids in a batch are usually
// close together, so most take one or two bytes.
func appendIDs(dst []byte, ids []uint64) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(ids)))
	var prev uint64
	for _, id := range ids {
		dst = binary.AppendVarint(dst, int64(id-prev))
		prev = id
	}
	return dst
}

// decoder reads a body with the protocol's own fields on top of
// binenc's: the first error sticks and later reads return zero values, so
// decoding code stays linear.
type decoder struct {
	binenc.Decoder
	lastKind   string
	lastModule string
	max        int // DecodeLimits.MaxItems
}

// count reads an element count, refusing one the bytes left cannot hold
// (binenc's forged-count guard) or one over the receiver's limit, before
// the caller allocates for it.
func (d *decoder) count(what string, minSize int) int {
	n := d.Count(what, minSize)
	if d.max > 0 && n > d.max {
		d.Failf("%s %d exceeds the limit of %d", what, n, d.max)
		return 0
	}
	return n
}

// bytes reads a length-prefixed byte field of one of n items: copied when
// n > 1 (see DecodeWith).
func (d *decoder) bytes(what string, n int) []byte {
	b := d.Bytes(what)
	if n > 1 && len(b) > 0 {
		return append(make([]byte, 0, len(b)), b...)
	}
	return b
}

// kind reads a kind, reusing the previous string when it repeats: a batch
// usually holds one kind, and this saves an allocation per task.
func (d *decoder) kind() string {
	b := d.Bytes("kind")
	if string(b) != d.lastKind {
		d.lastKind = string(b)
	}
	return d.lastKind
}

// module reads a module hash, reusing the previous string like kind.
func (d *decoder) module() string {
	b := d.Bytes("module")
	if string(b) != d.lastModule {
		d.lastModule = string(b)
	}
	return d.lastModule
}

// maxMillis keeps decoded durations from overflowing time.Duration.
const maxMillis = uint64(math.MaxInt64 / int64(time.Millisecond))

func (d *decoder) millis(what string) time.Duration {
	v := d.Uvarint(what)
	if v > maxMillis {
		d.Failf("%s %d ms out of range", what, v)
		return 0
	}
	return time.Duration(v) * time.Millisecond
}

func (d *decoder) micros(what string) time.Duration {
	v := d.Uvarint(what)
	if v > maxMillis {
		d.Failf("%s %d µs out of range", what, v)
		return 0
	}
	return time.Duration(v) * time.Microsecond
}

func (d *decoder) ids() []uint64 {
	n := d.count("id count", 1)
	ids := make([]uint64, n)
	var prev uint64
	for i := range ids {
		prev += uint64(d.Varint("id"))
		ids[i] = prev
	}
	return ids
}
