package protocol

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"
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
		dst = binary.AppendUvarint(dst, uint64(len(m.Tasks)))
		for i := range m.Tasks {
			t := &m.Tasks[i]
			dst = binary.AppendUvarint(dst, t.ID)
			dst = binary.AppendUvarint(dst, uint64(t.Attempt))
			dst = appendString(dst, t.Kind)
			dst = binary.AppendUvarint(dst, uint64(t.Timeout/time.Millisecond))
			dst = appendBytes(dst, t.Payload)
		}
	case *Results:
		dst = binary.AppendUvarint(dst, uint64(len(m.Results)))
		for i := range m.Results {
			r := &m.Results[i]
			dst = binary.AppendUvarint(dst, r.ID)
			dst = binary.AppendUvarint(dst, uint64(r.Attempt))
			dst = binary.AppendUvarint(dst, uint64(r.Duration/time.Microsecond))
			dst = appendString(dst, r.Err)
			dst = appendBytes(dst, r.Output)
		}
	case *Request:
		dst = binary.AppendUvarint(dst, uint64(m.N))
	case *IDs:
		dst = appendIDs(dst, m.IDs)
	case *Submit:
		dst = binary.AppendUvarint(dst, m.Seq)
		dst = binary.AppendUvarint(dst, uint64(len(m.Tasks)))
		for i := range m.Tasks {
			t := &m.Tasks[i]
			dst = appendString(dst, t.Kind)
			dst = binary.AppendVarint(dst, int64(t.Priority))
			dst = binary.AppendUvarint(dst, uint64(t.Timeout/time.Millisecond))
			dst = binary.AppendUvarint(dst, uint64(t.MaxAttempts))
			dst = appendString(dst, t.Key)
			dst = appendBytes(dst, t.Payload)
		}
	case *SubmitAck:
		dst = binary.AppendUvarint(dst, m.Seq)
		dst = binary.AppendUvarint(dst, m.FirstID)
		dst = binary.AppendUvarint(dst, uint64(m.Count))
	case *SubmitReject:
		dst = binary.AppendUvarint(dst, m.Seq)
		dst = binary.AppendVarint(dst, int64(m.Index))
		dst = appendString(dst, m.Code)
		dst = appendString(dst, m.Message)
	case *Notify:
		dst = binary.AppendUvarint(dst, uint64(len(m.Tasks)))
		for i := range m.Tasks {
			f := &m.Tasks[i]
			dst = binary.AppendUvarint(dst, f.ID)
			dst = appendString(dst, f.Kind)
			dst = append(dst, byte(f.State))
			dst = binary.AppendUvarint(dst, uint64(f.Attempts))
			dst = appendString(dst, f.Err)
			dst = appendBytes(dst, f.Result)
		}
	default:
		panic(fmt.Sprintf("protocol: cannot encode %T", m))
	}
	return dst
}

// Decode parses one frame. Byte slices in the result (payloads, outputs)
// alias frame: the caller must not reuse frame while it holds them.
func Decode(frame []byte) (Message, error) {
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
	d := decoder{b: body}
	switch t {
	case TypeDispatch:
		n := d.count(5)
		msg := &Dispatch{Tasks: make([]Task, n)}
		for i := range msg.Tasks {
			x := &msg.Tasks[i]
			x.ID = d.uvarint()
			x.Attempt = d.uint32()
			x.Kind = d.kind()
			x.Timeout = d.millis()
			x.Payload = d.bytes()
		}
		m = msg
	case TypeResults:
		n := d.count(5)
		msg := &Results{Results: make([]Result, n)}
		for i := range msg.Results {
			x := &msg.Results[i]
			x.ID = d.uvarint()
			x.Attempt = d.uint32()
			x.Duration = d.micros()
			x.Err = d.string()
			x.Output = d.bytes()
		}
		m = msg
	case TypeRequest:
		m = &Request{N: d.uint32()}
	case TypeReturn, TypeCancel, TypeNotifyAck, TypeNotifyDone:
		m = &IDs{T: t, IDs: d.ids()}
	case TypeSubmit:
		msg := &Submit{Seq: d.uvarint()}
		msg.Tasks = make([]NewTask, d.count(6))
		for i := range msg.Tasks {
			x := &msg.Tasks[i]
			x.Kind = d.kind()
			x.Priority = d.int32()
			x.Timeout = d.millis()
			x.MaxAttempts = d.uint32()
			x.Key = d.string()
			x.Payload = d.bytes()
		}
		m = msg
	case TypeSubmitAck:
		m = &SubmitAck{Seq: d.uvarint(), FirstID: d.uvarint(), Count: d.uint32()}
	case TypeSubmitReject:
		m = &SubmitReject{Seq: d.uvarint(), Index: d.int32(), Code: d.string(), Message: d.string()}
	case TypeNotify:
		n := d.count(6)
		msg := &Notify{Tasks: make([]Finished, n)}
		for i := range msg.Tasks {
			x := &msg.Tasks[i]
			x.ID = d.uvarint()
			x.Kind = d.kind()
			x.State = State(d.byte())
			x.Attempts = d.uint32()
			x.Err = d.string()
			x.Result = d.bytes()
		}
		m = msg
	default:
		return nil, fmt.Errorf("%w: unknown message type %d", ErrMalformed, byte(t))
	}
	if d.err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrMalformed, t, d.err)
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("%w: %s: %d trailing bytes", ErrMalformed, t, len(d.b))
	}
	return m, nil
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

func appendBytes(dst, b []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(b)))
	return append(dst, b...)
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

// decoder reads a body; the first error sticks and later reads return
// zero values, so decoding code stays linear.
type decoder struct {
	b        []byte
	err      error
	lastKind string
}

// kind reads a kind, reusing the previous string when it repeats: a batch
// usually holds one kind, and this saves an allocation per task.
func (d *decoder) kind() string {
	b := d.bytes()
	if string(b) != d.lastKind {
		d.lastKind = string(b)
	}
	return d.lastKind
}

func (d *decoder) fail(format string, a ...any) {
	if d.err == nil {
		d.err = fmt.Errorf(format, a...)
	}
	d.b = nil
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) uint32() uint32 {
	v := d.uvarint()
	if v > math.MaxUint32 {
		d.fail("value %d overflows uint32", v)
		return 0
	}
	return uint32(v)
}

func (d *decoder) int32() int32 {
	v := d.varint()
	if v > math.MaxInt32 || v < math.MinInt32 {
		d.fail("value %d overflows int32", v)
		return 0
	}
	return int32(v)
}

func (d *decoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) == 0 {
		d.fail("truncated")
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

// maxDuration keeps decoded durations from overflowing time.Duration.
const maxMillis = uint64(math.MaxInt64 / int64(time.Millisecond))

func (d *decoder) millis() time.Duration {
	v := d.uvarint()
	if v > maxMillis {
		d.fail("duration %d ms out of range", v)
		return 0
	}
	return time.Duration(v) * time.Millisecond
}

func (d *decoder) micros() time.Duration {
	v := d.uvarint()
	if v > maxMillis {
		d.fail("duration %d µs out of range", v)
		return 0
	}
	return time.Duration(v) * time.Microsecond
}

// count reads an element count and rejects one that the remaining bytes
// cannot possibly hold (each element takes at least minSize bytes), so a
// forged count cannot make us allocate gigabytes.
func (d *decoder) count(minSize int) int {
	n := d.uvarint()
	if d.err == nil && n > uint64(len(d.b)/minSize) {
		d.fail("count %d exceeds frame", n)
		return 0
	}
	return int(n)
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.fail("length %d exceeds frame", n)
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) string() string { return string(d.bytes()) }

func (d *decoder) ids() []uint64 {
	n := d.count(1)
	ids := make([]uint64, n)
	var prev uint64
	for i := range ids {
		prev += uint64(d.varint())
		ids[i] = prev
	}
	return ids
}
