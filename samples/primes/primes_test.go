package primes

import "testing"

func naive(lo, hi uint64) uint64 {
	var n uint64
	for x := lo; x < hi; x++ {
		if x < 2 {
			continue
		}
		prime := true
		for d := uint64(2); d*d <= x; d++ {
			if x%d == 0 {
				prime = false
				break
			}
		}
		if prime {
			n++
		}
	}
	return n
}

func TestCount(t *testing.T) {
	for _, c := range [][2]uint64{{0, 0}, {0, 1}, {0, 2}, {0, 3}, {2, 3}, {0, 100}, {90, 97}, {90, 98}, {1 << 18, 1<<18 + 1000}, {999_000, 1_300_000}} {
		if got, want := Count(c[0], c[1]), naive(c[0], c[1]); got != want {
			t.Errorf("Count(%d, %d) = %d, want %d", c[0], c[1], got, want)
		}
	}
	if got := Count(0, 10_000_000); got != 664579 {
		t.Errorf("primes below 10^7: %d, want 664579", got)
	}
}

func TestIsqrt(t *testing.T) {
	for _, n := range []uint64{0, 1, 2, 3, 4, 15, 16, 17, 1<<62 - 1, 1 << 62, 1<<64 - 1} {
		r := isqrt(n)
		if r*r > n || (r+1)*(r+1) <= n && r+1 != 1<<32 {
			t.Errorf("isqrt(%d) = %d", n, r)
		}
	}
}
