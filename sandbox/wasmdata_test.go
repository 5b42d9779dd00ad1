package sandbox

import (
	"bytes"
	"testing"
)

// dataSegments counts the data segments of code.
func dataSegments(t *testing.T, code []byte) int {
	t.Helper()
	r := wasmReader{b: code[8:]}
	for len(r.b) > 0 {
		id, size := r.byte(), r.u32()
		if r.bad || int(size) > len(r.b) {
			t.Fatal("malformed module")
		}
		sec := wasmReader{b: r.b[:size]}
		r.b = r.b[size:]
		if id == sectionData {
			return int(sec.u32())
		}
	}
	return 0
}

func TestMergeDataSegments(t *testing.T) {
	w := newWASM(t, WASMOptions{})

	code := fixture(t, "data")
	merged := mergeDataSegments(code)
	// 10, 100 and 103 are close enough to merge; so are 1500 and 2000.
	if n, m := dataSegments(t, code), dataSegments(t, merged); n != 5 || m != 2 {
		t.Errorf("%d segments merged into %d, want 5 into 2", n, m)
	}
	want := make([]byte, 2048)
	for off, s := range map[int]string{100: "abc", 103: "def", 10: "xy", 2000: "far", 1500: "mid"} {
		copy(want[off:], s)
	}
	if out, err := run(w, load(t, w, "data"), ""); err != nil || !bytes.Equal([]byte(out), want) {
		t.Errorf("the memory of a module with merged segments differs: %q, %v", out, err)
	}

	overlap := fixture(t, "overlap")
	if got := mergeDataSegments(overlap); !bytes.Equal(got, overlap) {
		t.Error("overlapping segments were merged")
	}
	if out, err := run(w, load(t, w, "overlap"), ""); err != nil || out != "aZc" {
		t.Errorf("overlapping segments: %q, %v", out, err)
	}

	// A Go module's tens of thousands of segments become a few.
	hostile := fixture(t, "hostile")
	if n, m := dataSegments(t, hostile), dataSegments(t, mergeDataSegments(hostile)); m > n/100 {
		t.Errorf("a Go module's %d segments merged into %d only", n, m)
	}
	for _, bad := range [][]byte{nil, []byte("\x00asm"), hostile[:len(hostile)/2]} {
		if got := mergeDataSegments(bad); !bytes.Equal(got, bad) {
			t.Errorf("a malformed module of %d bytes was rewritten", len(bad))
		}
	}
}
