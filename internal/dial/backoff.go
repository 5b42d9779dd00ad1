package dial

import (
	"math/rand/v2"
	"time"
)

// Backoff paces reconnection attempts: Min doubled for every attempt since
// the last Reset, capped at Max, then jittered down by up to half so that
// clients dropped together do not come back together. The zero Backoff
// never waits. It is not safe for concurrent use; each client loop owns
// one.
type Backoff struct {
	Min, Max time.Duration // a Max below Min is taken as Min
	n        int           // attempts since the last Reset
}

// Next returns the delay before the next attempt and counts it.
func (b *Backoff) Next() time.Duration {
	hi := max(b.Max, b.Min)
	d := b.Min
	for i := 0; i < b.n && d < hi; i++ {
		if d > hi/2 {
			d = hi // 2*d would pass hi, and might overflow
		} else {
			d *= 2
		}
	}
	b.n++
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2+1)
}

// Reset starts the doubling over from Min, for when the master was
// reached and the next loss is not part of the same outage.
func (b *Backoff) Reset() { b.n = 0 }
