// Package binenc reads the varint binary formats of the wire protocol and
// the store: a Decoder whose first error sticks, so a format's decoder reads
// field after field and checks once, with the appenders for the
// length-prefixed fields it reads. It knows no message or record (protocol
// and master/store own their formats) and imports only the standard
// library.
package binenc

import (
	"encoding/binary"
	"fmt"
	"math"
)

// Decoder reads fields from the front of a buffer. Every read names its
// field (what), so that a failure says which one was bad, as in "bad
// priority: truncated". The first failure sticks: it empties the buffer,
// later reads return zero values, and Err and End report it.
//
// Byte slices it returns alias the buffer. A Decoder is a small value: kept
// in a local variable it costs no allocation, and neither does any read
// that succeeds.
type Decoder struct {
	b   []byte
	err error
}

// NewDecoder returns a Decoder that reads b.
func NewDecoder(b []byte) Decoder { return Decoder{b: b} }

// Err returns the first failure, or nil.
func (d *Decoder) Err() error { return d.err }

// Rest returns the unread bytes without consuming them (none after a
// failure).
func (d *Decoder) Rest() []byte { return d.b }

// End returns the first failure or, if bytes are left unread, an error
// that counts them: a format that must fill its buffer ends with End.
func (d *Decoder) End() error {
	if d.err == nil && len(d.b) != 0 {
		d.Failf("%d trailing bytes", len(d.b))
	}
	return d.err
}

// Failf records a failure of the format's own, such as a value a field
// may not hold, unless one is recorded already, and stops the reading.
func (d *Decoder) Failf(format string, a ...any) {
	if d.err == nil {
		d.err = fmt.Errorf(format, a...)
	}
	d.b = nil
}

// bad records that field what (what+suffix) could not be read: n is what
// binary.Uvarint returned for it, 0 for too few bytes and negative for a
// varint past 64 bits. It is apart from the reads so that they stay small.
func (d *Decoder) bad(what, suffix string, n int) {
	if n == 0 {
		d.Failf("bad %s%s: truncated", what, suffix)
	} else {
		d.Failf("bad %s%s: varint overflows 64 bits", what, suffix)
	}
}

// advance consumes the n bytes that binary.Uvarint or binary.Varint read,
// or records why they read none (n <= 0). Since a failure empties the
// buffer, every read after it fails too, and Failf keeps the first error:
// the reads need no check of their own that one happened.
func (d *Decoder) advance(what string, n int) bool {
	if n <= 0 {
		d.bad(what, "", n)
		return false
	}
	d.b = d.b[n:]
	return true
}

// Uvarint reads an unsigned varint.
func (d *Decoder) Uvarint(what string) uint64 {
	v, n := binary.Uvarint(d.b)
	if !d.advance(what, n) {
		return 0
	}
	return v
}

// Varint reads a signed (zig-zag) varint.
func (d *Decoder) Varint(what string) int64 {
	v, n := binary.Varint(d.b)
	if !d.advance(what, n) {
		return 0
	}
	return v
}

// Uint32 reads an unsigned varint that must fit a uint32.
func (d *Decoder) Uint32(what string) uint32 {
	// Not through Uvarint, nor Int32 through Varint: a call less per
	// field is measurable in a record's decoding.
	v, n := binary.Uvarint(d.b)
	if !d.advance(what, n) {
		return 0
	}
	if v > math.MaxUint32 {
		d.Failf("%s %d overflows uint32", what, v)
		return 0
	}
	return uint32(v)
}

// Int32 reads a signed varint that must fit an int32.
func (d *Decoder) Int32(what string) int32 {
	v, n := binary.Varint(d.b)
	if !d.advance(what, n) {
		return 0
	}
	if v > math.MaxInt32 || v < math.MinInt32 {
		d.Failf("%s %d overflows int32", what, v)
		return 0
	}
	return int32(v)
}

// Byte reads one byte.
func (d *Decoder) Byte(what string) byte {
	if len(d.b) == 0 {
		d.bad(what, "", 0)
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

// Count reads an element count (an unsigned varint) and refuses one that
// the unread bytes cannot hold when each element takes at least minSize
// bytes, so that a forged count cannot make the caller allocate gigabytes.
// minSize must be at least 1.
func (d *Decoder) Count(what string, minSize int) int {
	n := d.Uvarint(what) // 0 if it fails
	if n > uint64(len(d.b)/minSize) {
		d.Failf("%s %d exceeds the %d bytes left", what, n, len(d.b))
		return 0
	}
	return int(n)
}

// Bytes reads a length-prefixed byte string, as AppendBytes writes it. The
// result aliases the buffer, with its capacity cut to its length so that
// an append to it cannot overwrite what follows.
func (d *Decoder) Bytes(what string) []byte {
	n, k := binary.Uvarint(d.b)
	if k <= 0 {
		d.bad(what, " length", k)
		return nil
	}
	if n > uint64(len(d.b)-k) {
		d.Failf("%s length %d exceeds the %d bytes left", what, n, len(d.b)-k)
		return nil
	}
	v := d.b[k : k+int(n) : k+int(n)]
	d.b = d.b[k+int(n):]
	return v
}

// String reads a length-prefixed string, as AppendString writes it. It
// copies the bytes.
func (d *Decoder) String(what string) string { return string(d.Bytes(what)) }

// AppendBytes appends b with its length before it, as an unsigned varint.
func AppendBytes(dst, b []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(b)))
	return append(dst, b...)
}

// AppendString appends s as AppendBytes does.
func AppendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}
