package sandbox

import (
	"cmp"
	"slices"
)

// Go's linker emits tens of thousands of small data segments, split at
// runs of zeros: 45,000 for a 4 MB module. wazero evaluates and copies
// each one at every instantiation, which cost a Go module 2 ms per task.
// Merging neighbours, with their gap filled with the zeros the memory
// holds anyway, leaves a few hundred and changes nothing the module can
// observe.

// maxDataGap is the widest gap between two segments that merging fills:
// about the cost of one segment's evaluation in copied zeros.
const maxDataGap = 1024

const (
	sectionData      = 11
	sectionDataCount = 12
)

// mergeDataSegments returns code with its neighbouring active data
// segments merged, or code itself when merging would gain nothing or
// might not be exact: it needs every segment active on memory 0 at an
// i32.const offset, no two overlapping, and no data
// count section, without which no instruction can name a segment.
func mergeDataSegments(code []byte) []byte {
	if len(code) < 8 {
		return code
	}
	r := wasmReader{b: code[8:]}
	var dataStart, dataEnd int // of the whole section, id and size included
	for len(r.b) > 0 {
		start := len(code) - len(r.b)
		id := r.byte()
		size := r.u32()
		if r.bad || int(size) > len(r.b) || id == sectionDataCount {
			return code
		}
		r.b = r.b[size:]
		if id == sectionData {
			dataStart, dataEnd = start, len(code)-len(r.b)
		}
	}
	if dataStart == 0 {
		return code
	}

	type segment struct {
		expr []byte // i32.const offset end, as encoded
		off  uint64
		data []byte
	}
	sec := wasmReader{b: code[dataStart+1 : dataEnd]}
	sec.u32() // the section's size
	n := sec.u32()
	if sec.bad || n < 2 || uint64(n) > uint64(len(sec.b)) {
		return code
	}
	segs := make([]segment, 0, n)
	for range n {
		if sec.byte() != 0 { // flags: active on memory 0
			return code
		}
		exprStart := sec.b
		if sec.byte() != 0x41 { // i32.const
			return code
		}
		off := uint64(uint32(sec.s32()))
		if sec.byte() != 0x0b { // end
			return code
		}
		expr := exprStart[:len(exprStart)-len(sec.b)]
		size := sec.u32()
		if sec.bad || int(size) > len(sec.b) {
			return code
		}
		segs = append(segs, segment{expr, off, sec.b[:size]})
		sec.b = sec.b[size:]
	}
	if len(sec.b) != 0 {
		return code
	}
	// Segments that do not overlap can be applied in any order. (Go's
	// are sorted within runs, not across them.)
	slices.SortStableFunc(segs, func(a, b segment) int { return cmp.Compare(a.off, b.off) })

	// The merged segments' bytes are appended to all, in order.
	type span struct {
		expr   []byte
		off    uint64
		lo, hi int // in all
	}
	var merged []span
	var all []byte
	for _, s := range segs {
		if k := len(merged); k > 0 {
			last := &merged[k-1]
			end := last.off + uint64(last.hi-last.lo)
			if s.off < end {
				return code // overlapping: the order matters
			}
			if s.off-end <= maxDataGap {
				all = append(all, make([]byte, s.off-end)...)
				all = append(all, s.data...)
				last.hi = len(all)
				continue
			}
		}
		all = append(all, s.data...)
		merged = append(merged, span{s.expr, s.off, len(all) - len(s.data), len(all)})
	}
	if len(merged) == int(n) {
		return code
	}

	var body []byte
	body = appendU32(body, uint32(len(merged)))
	for _, s := range merged {
		body = append(body, 0)
		body = append(body, s.expr...)
		body = appendU32(body, uint32(s.hi-s.lo))
		body = append(body, all[s.lo:s.hi]...)
	}
	out := make([]byte, 0, len(code))
	out = append(out, code[:dataStart]...)
	out = append(out, sectionData)
	out = appendU32(out, uint32(len(body)))
	out = append(out, body...)
	return append(out, code[dataEnd:]...)
}

// s32 reads a signed LEB128 of at most 5 bytes.
func (r *wasmReader) s32() int32 {
	var v int32
	for shift := 0; shift < 35; shift += 7 {
		c := r.byte()
		v |= int32(c&0x7f) << shift
		if c&0x80 == 0 {
			if shift+7 < 32 && c&0x40 != 0 {
				v |= -1 << (shift + 7) // sign extension
			}
			return v
		}
	}
	r.bad = true
	return 0
}

func appendU32(b []byte, v uint32) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}
