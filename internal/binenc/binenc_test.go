package binenc

import (
	"bytes"
	"encoding/binary"
	"math"
	"strings"
	"testing"
)

// A buffer of every field kind, as a format would lay them out.
func sample() []byte {
	b := binary.AppendUvarint(nil, 1<<40)
	b = binary.AppendVarint(b, -7)
	b = binary.AppendUvarint(b, math.MaxUint32)
	b = binary.AppendVarint(b, math.MinInt32)
	b = append(b, 0xAB)
	b = binary.AppendUvarint(b, 2) // a count of two one-byte elements
	b = append(b, 1, 2)
	b = AppendBytes(b, []byte("payload"))
	return AppendString(b, "kind")
}

func readSample(d *Decoder) []any {
	return []any{
		d.Uvarint("id"), d.Varint("priority"), d.Uint32("attempts"), d.Int32("index"),
		d.Byte("state"), d.Count("count", 1), d.Byte("first"), d.Byte("second"),
		string(d.Bytes("payload")), d.String("kind"),
	}
}

func TestReadsWhatWasWritten(t *testing.T) {
	d := NewDecoder(sample())
	got := readSample(&d)
	want := []any{uint64(1 << 40), int64(-7), uint32(math.MaxUint32), int32(math.MinInt32),
		byte(0xAB), 2, byte(1), byte(2), "payload", "kind"}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("field %d = %v, want %v", i, got[i], want[i])
		}
	}
	if err := d.End(); err != nil {
		t.Fatal(err)
	}
}

// Every strict prefix fails, with an error naming the field it stopped in,
// and never panics.
func TestTruncated(t *testing.T) {
	full := sample()
	for n := range len(full) {
		d := NewDecoder(full[:n])
		readSample(&d)
		err := d.End()
		if err == nil {
			t.Fatalf("prefix of %d/%d bytes read without error", n, len(full))
		}
		if !strings.HasPrefix(err.Error(), "bad ") && !strings.Contains(err.Error(), "exceeds") {
			t.Errorf("prefix of %d bytes: %v", n, err)
		}
	}
}

func TestErrors(t *testing.T) {
	over64 := bytes.Repeat([]byte{0xff}, 11) // no varint of 64 bits takes 11 bytes
	for _, tc := range []struct {
		name string
		in   []byte
		read func(*Decoder)
		want string
	}{
		{"empty uvarint", nil, func(d *Decoder) { d.Uvarint("id") }, "bad id: truncated"},
		{"cut uvarint", []byte{0x80}, func(d *Decoder) { d.Uvarint("id") }, "bad id: truncated"},
		{"uvarint past 64 bits", over64, func(d *Decoder) { d.Uvarint("id") }, "bad id: varint overflows 64 bits"},
		{"varint past 64 bits", over64, func(d *Decoder) { d.Varint("priority") }, "bad priority: varint overflows 64 bits"},
		{"cut varint", []byte{0xff}, func(d *Decoder) { d.Varint("priority") }, "bad priority: truncated"},
		{"uint32 overflow", binary.AppendUvarint(nil, math.MaxUint32+1), func(d *Decoder) { d.Uint32("attempts") },
			"attempts 4294967296 overflows uint32"},
		{"int32 overflow", binary.AppendVarint(nil, math.MaxInt32+1), func(d *Decoder) { d.Int32("priority") },
			"priority 2147483648 overflows int32"},
		{"int32 underflow", binary.AppendVarint(nil, math.MinInt32-1), func(d *Decoder) { d.Int32("priority") },
			"priority -2147483649 overflows int32"},
		{"empty byte", nil, func(d *Decoder) { d.Byte("state") }, "bad state: truncated"},
		{"forged count", []byte{0xff, 0xff, 0xff, 0xff, 0x0f, 1, 2, 3}, func(d *Decoder) { d.Count("task count", 1) },
			"task count 4294967295 exceeds the 3 bytes left"},
		{"count of big elements", []byte{2, 1, 2, 3, 4, 5, 6, 7, 8, 9}, func(d *Decoder) { d.Count("task count", 5) },
			"task count 2 exceeds the 9 bytes left"},
		{"cut length", []byte{0x80}, func(d *Decoder) { d.Bytes("payload") }, "bad payload length: truncated"},
		{"length past the end", []byte{4, 'a', 'b'}, func(d *Decoder) { d.Bytes("payload") },
			"payload length 4 exceeds the 2 bytes left"},
		{"huge length", binary.AppendUvarint(nil, math.MaxUint64), func(d *Decoder) { d.String("kind") },
			"kind length 18446744073709551615 exceeds the 0 bytes left"},
		{"trailing bytes", []byte{1, 2, 3}, func(d *Decoder) { d.Byte("state") }, "2 trailing bytes"},
		{"the format's own", []byte{9}, func(d *Decoder) {
			if v := d.Byte("outcome"); v > 6 {
				d.Failf("invalid outcome %d", v)
			}
		}, "invalid outcome 9"},
	} {
		d := NewDecoder(tc.in)
		tc.read(&d)
		if err := d.End(); err == nil || err.Error() != tc.want {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}

// After the first failure every read returns its zero value and consumes
// nothing, and the first error is the one kept.
func TestErrorSticks(t *testing.T) {
	d := NewDecoder(append(binary.AppendUvarint(nil, math.MaxUint32+1), sample()...))
	if v := d.Uint32("attempts"); v != 0 {
		t.Errorf("Uint32 after overflow = %d, want 0", v)
	}
	first := d.Err()
	if first == nil {
		t.Fatal("no error")
	}
	if len(d.Rest()) != 0 {
		t.Errorf("%d bytes left to read after the failure", len(d.Rest()))
	}
	for i, v := range readSample(&d) {
		switch v := v.(type) {
		case string:
			if v != "" {
				t.Errorf("field %d = %q after the failure", i, v)
			}
		default:
			if v != 0 && v != uint64(0) && v != int64(0) && v != uint32(0) && v != int32(0) && v != byte(0) {
				t.Errorf("field %d = %v after the failure", i, v)
			}
		}
	}
	if b := d.Bytes("payload"); b != nil {
		t.Errorf("Bytes after the failure = %q, want nil", b)
	}
	d.Failf("a later failure")
	if d.Err() != first || d.End() != first {
		t.Errorf("error %v then %v, want the first, %v, kept", d.Err(), d.End(), first)
	}
}

func TestZeroDecoder(t *testing.T) {
	var d Decoder
	if err := d.End(); err != nil {
		t.Errorf("End of an empty buffer = %v", err)
	}
	d.Uvarint("id")
	if d.Err() == nil {
		t.Error("Uvarint of an empty buffer succeeded")
	}
}

// Bytes aliases the buffer but cannot be appended over what follows.
func TestBytesAliasesWithCappedCapacity(t *testing.T) {
	buf := AppendBytes(nil, []byte("ab"))
	buf = append(buf, 'z')
	d := NewDecoder(buf)
	b := d.Bytes("payload")
	if string(b) != "ab" || &b[0] != &buf[1] {
		t.Fatalf("Bytes = %q, not aliasing the buffer", b)
	}
	if cap(b) != 2 {
		t.Errorf("cap = %d, want 2", cap(b))
	}
	_ = append(b, 'x')
	if buf[3] != 'z' {
		t.Error("an append to the result overwrote the next byte")
	}
	if empty := NewDecoder([]byte{0}); len(empty.Bytes("payload")) != 0 || empty.End() != nil {
		t.Error("an empty byte string does not read back empty")
	}
}

func TestAppendersMatchTheReads(t *testing.T) {
	long := strings.Repeat("x", 300) // a two-byte length
	b := AppendString(AppendBytes(nil, []byte(long)), "")
	if want := 2 + 300 + 1; len(b) != want {
		t.Fatalf("%d bytes, want %d", len(b), want)
	}
	d := NewDecoder(b)
	if got := string(d.Bytes("payload")); got != long {
		t.Errorf("Bytes = %d bytes, want %d", len(got), len(long))
	}
	if got := d.String("kind"); got != "" {
		t.Errorf("String = %q, want empty", got)
	}
	if err := d.End(); err != nil {
		t.Fatal(err)
	}
}

// Reads that succeed allocate nothing (String copies, by design).
func TestReadsDoNotAllocate(t *testing.T) {
	buf := sample()
	allocs := testing.AllocsPerRun(100, func() {
		d := NewDecoder(buf)
		d.Uvarint("id")
		d.Varint("priority")
		d.Uint32("attempts")
		d.Int32("index")
		d.Byte("state")
		d.Count("count", 1)
		d.Byte("first")
		d.Byte("second")
		d.Bytes("payload")
		d.Bytes("kind")
		if d.End() != nil {
			t.Fatal(d.Err())
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per run", allocs)
	}
}

// No input makes a read panic or step outside the buffer; a failure
// leaves nothing to read.
func FuzzDecoder(f *testing.F) {
	f.Add(sample())
	f.Add(bytes.Repeat([]byte{0xff}, 11))
	f.Fuzz(func(t *testing.T, b []byte) {
		d := NewDecoder(b)
		readSample(&d)
		rest := d.Rest()
		if d.Err() != nil && len(rest) != 0 {
			t.Fatalf("%d bytes left after %v", len(rest), d.Err())
		}
		if len(rest) > 0 && &rest[len(rest)-1] != &b[len(b)-1] {
			t.Fatal("the unread bytes are not the end of the buffer")
		}
		if d.End() == nil && len(d.Rest()) != 0 {
			t.Fatal("End accepted unread bytes")
		}
	})
}
