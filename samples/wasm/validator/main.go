// Command validator is a sample result validator for replicated tasks:
// two results agree when they hold the same words, numbers equal to a
// relative tolerance of 1e-9 (so floating-point results computed on
// different CPUs agree). Build it for WASI and name it in Apps.Configure:
//
//	GOOS=wasip1 GOARCH=wasm go build -o validator.wasm ./samples/wasm/validator
//	anthill modules push validator.wasm
//	anthill apps configure APP replicas=2 validator=HASH
//
// Its stdin is the first result's length as 4 bytes big-endian, the first
// result, then the second; it exits 0 when they agree, 1 when they do not
// (docs/TRUST.md, "Validators").
package main

import (
	"bytes"
	"encoding/binary"
	"io"
	"math"
	"os"
	"strconv"
)

func main() {
	in, err := io.ReadAll(os.Stdin)
	if err != nil || len(in) < 4 {
		os.Exit(2)
	}
	n := binary.BigEndian.Uint32(in)
	if uint64(n) > uint64(len(in)-4) {
		os.Exit(2)
	}
	a, b := in[4:4+n], in[4+n:]
	if agree(a, b) {
		os.Exit(0)
	}
	os.Exit(1)
}

func agree(a, b []byte) bool {
	wa, wb := bytes.Fields(a), bytes.Fields(b)
	if len(wa) != len(wb) {
		return false
	}
	for i := range wa {
		if bytes.Equal(wa[i], wb[i]) {
			continue
		}
		x, errx := strconv.ParseFloat(string(wa[i]), 64)
		y, erry := strconv.ParseFloat(string(wb[i]), 64)
		if errx != nil || erry != nil || math.Abs(x-y) > 1e-9*math.Max(1, math.Max(math.Abs(x), math.Abs(y))) {
			return false
		}
	}
	return true
}
