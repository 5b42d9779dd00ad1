// Package primes counts the primes in a range: the second sample kernel,
// a task that is all arithmetic and almost no data. Handler is its
// in-process form; samples/wasm/primes the same code as a WASI module.
package primes

import (
	"context"
	"fmt"
	"strconv"
	"strings"
)

// Kind is the task kind slaves register Handler under.
const Kind = "primes"

// MaxSpan bounds a range, so one task stays seconds long.
const MaxSpan = 1_000_000_000

// Parse reads a task's payload, "LO HI" in decimal.
func Parse(payload []byte) (lo, hi uint64, err error) {
	f := strings.Fields(string(payload))
	if len(f) != 2 {
		return 0, 0, fmt.Errorf(`want "LO HI", got %q`, clip(payload))
	}
	lo, err1 := strconv.ParseUint(f[0], 10, 64)
	hi, err2 := strconv.ParseUint(f[1], 10, 64)
	switch {
	case err1 != nil || err2 != nil:
		return 0, 0, fmt.Errorf(`want "LO HI" as decimal numbers, got %q`, clip(payload))
	case lo > hi:
		return 0, 0, fmt.Errorf("LO %d is above HI %d", lo, hi)
	case hi-lo > MaxSpan:
		return 0, 0, fmt.Errorf("a range of %d numbers; the limit is %d", hi-lo, MaxSpan)
	case hi > 1<<62:
		return 0, 0, fmt.Errorf("HI %d is above 2^62", hi)
	}
	return lo, hi, nil
}

func clip(b []byte) []byte { return b[:min(len(b), 64)] }

// Handler counts the primes of the payload's range; the result is the
// count in decimal and a newline, as the module prints it.
func Handler(_ context.Context, payload []byte) ([]byte, error) {
	lo, hi, err := Parse(payload)
	if err != nil {
		return nil, err
	}
	return fmt.Appendf(nil, "%d\n", Count(lo, hi)), nil
}

// Count is the number of primes p with lo <= p < hi.
func Count(lo, hi uint64) uint64 {
	if hi <= 2 {
		return 0
	}
	lo = max(lo, 2)
	limit := isqrt(hi-1) + 1
	small := sieve(limit)
	const seg = 1 << 18
	composite := make([]bool, seg)
	var n uint64
	for start := lo; start < hi; start += seg {
		end := min(start+seg, hi)
		clear(composite)
		for _, p := range small {
			if p*p >= end {
				break
			}
			first := max(p*p, (start+p-1)/p*p)
			for m := first; m < end; m += p {
				composite[m-start] = true
			}
		}
		for i := range end - start {
			if !composite[i] {
				n++
			}
		}
	}
	return n
}

// sieve returns the primes below n.
func sieve(n uint64) []uint64 {
	comp := make([]bool, n)
	var ps []uint64
	for i := uint64(2); i < n; i++ {
		if !comp[i] {
			ps = append(ps, i)
			for m := i * i; m < n; m += i {
				comp[m] = true
			}
		}
	}
	return ps
}

func isqrt(n uint64) uint64 {
	r := uint64(0)
	for bit := uint64(1) << 62; bit > 0; bit >>= 2 {
		if r+bit <= n {
			n -= r + bit
			r = r>>1 + bit
		} else {
			r >>= 1
		}
	}
	return r
}
