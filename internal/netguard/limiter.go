package netguard

import (
	"log/slog"
	"sync"
	"time"
)

// LimiterOptions configures a Limiter. Every field's zero value means the
// default written beside it.
type LimiterOptions struct {
	// Free is how many failures an IP may make before it is locked out.
	// Default 10: a person who mistypes a token, or a script run a few
	// times with an old one, is not punished.
	Free int
	// Base is the first lockout; each further failure doubles it, up to
	// Max. Defaults 1s and 15m.
	Base, Max time.Duration
	// Forget is how long an IP must stay quiet (no failure, no refusal)
	// before its count starts over. Default 1h.
	Forget time.Duration
	// SampleEvery is the period of the per-IP summary of failures: the
	// first failure of an IP is logged at once, the rest only counted and
	// summed up at most once per period. Default 1m.
	SampleEvery time.Duration
	// MaxIPs bounds the IPs tracked, so an attacker with many addresses
	// cannot grow the table without bound. Default 65536.
	MaxIPs int
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Logger receives the sampled lines. Nil discards them.
	Logger *slog.Logger
}

// Limiter counts credential failures per IP and locks an IP out, with an
// exponential backoff, once it has made more than Free of them. A locked
// out client is refused before its credential is checked, so guessing
// online costs the guesser time, not the master CPU or log lines. One
// Limiter is shared by every door of a master (login, bearer tokens,
// WebSocket handshakes): a guesser cannot spread its tries across them.
// It is safe for concurrent use.
type Limiter struct {
	o LimiterOptions

	mu  sync.Mutex
	ips map[string]*failures
	// Lines about first failures, across addresses, in the current
	// SampleEvery: many addresses must not flood the log either.
	window     time.Time
	firsts     int
	suppressed int // first failures not logged in the window
}

// maxFirstLines bounds the lines about addresses' first failures logged
// per SampleEvery; the rest are summed up in one line.
const maxFirstLines = 20

type failures struct {
	n        int       // failures since the IP was last forgotten
	until    time.Time // locked out until
	last     time.Time // last failure or refusal
	logged   time.Time // last line logged for the IP; zero: none yet
	unlogged int       // failures and refusals since that line
}

// NewLimiter returns a Limiter with o's settings.
func NewLimiter(o LimiterOptions) *Limiter {
	if o.Free <= 0 {
		o.Free = 10
	}
	if o.Base <= 0 {
		o.Base = time.Second
	}
	if o.Max <= 0 {
		o.Max = 15 * time.Minute
	}
	if o.Forget <= 0 {
		o.Forget = time.Hour
	}
	if o.SampleEvery <= 0 {
		o.SampleEvery = time.Minute
	}
	if o.MaxIPs <= 0 {
		o.MaxIPs = 65536
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Limiter{o: o, ips: map[string]*failures{}}
}

// Allow returns 0 when ip may present a credential now, else how long it
// is still locked out. A refusal counts towards the IP's log summary.
func (l *Limiter) Allow(ip string) time.Duration {
	now := l.o.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.ips[ip]
	if f == nil || !now.Before(f.until) {
		return 0
	}
	f.last = now
	f.unlogged++
	l.sampleLocked(ip, f, now, "")
	return f.until.Sub(now)
}

// Fail records that ip presented a wrong credential at door (such as
// "login" or "rpc"), and locks it out if that was one too many.
func (l *Limiter) Fail(ip, door string) {
	now := l.o.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.ips[ip]
	if f != nil && now.Sub(f.last) >= l.o.Forget {
		delete(l.ips, ip)
		f = nil
	}
	if f == nil {
		if len(l.ips) >= l.o.MaxIPs {
			l.pruneLocked(now)
		}
		f = &failures{}
		l.ips[ip] = f
	}
	f.n++
	f.last = now
	if over := f.n - l.o.Free; over > 0 {
		f.until = now.Add(lockout(l.o.Base, l.o.Max, over))
	}
	f.unlogged++
	l.sampleLocked(ip, f, now, door)
}

// lockout is base doubled for each failure after the first over the
// free ones, at most ceiling; doubling stops before it could overflow.
func lockout(base, ceiling time.Duration, over int) time.Duration {
	d := min(base, ceiling)
	for i := 1; i < over && d < ceiling; i++ {
		if d > ceiling/2 {
			return ceiling
		}
		d *= 2
	}
	return d
}

// Succeed forgets ip's failures: it holds a valid credential.
func (l *Limiter) Succeed(ip string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.ips, ip)
}

// sampleLocked logs the first failure of an IP, then a summary at most
// once per SampleEvery: never a line per failure, so guessing cannot
// flood the logs.
func (l *Limiter) sampleLocked(ip string, f *failures, now time.Time, door string) {
	if now.Sub(l.window) >= l.o.SampleEvery {
		if l.suppressed > 0 {
			l.o.Logger.Warn("credential refused from more addresses", "addresses", l.suppressed, "within", l.o.SampleEvery.String())
		}
		l.window, l.firsts, l.suppressed = now, 0, 0
	}
	switch {
	case f.logged.IsZero() && l.firsts >= maxFirstLines:
		l.suppressed++
		f.logged = now // its summary comes a period later, like everyone's
		return
	case f.logged.IsZero():
		l.firsts++
		l.o.Logger.Warn("credential refused", "remote", ip, "door", door,
			"note", "further failures from this address are summed up at most every "+l.o.SampleEvery.String())
	case now.Sub(f.logged) >= l.o.SampleEvery:
		args := []any{"remote", ip, "failures", f.unlogged, "total", f.n}
		if now.Before(f.until) {
			args = append(args, "locked_for", f.until.Sub(now).Round(time.Second).String())
		}
		l.o.Logger.Warn("credential failures", args...)
	default:
		return
	}
	f.logged, f.unlogged = now, 0
}

// pruneLocked makes room: first the IPs quiet long enough to forget, then,
// if the table is still full, the ones not locked out, and last any one:
// the table never outgrows MaxIPs, even against an attacker holding that
// many addresses in lockout at once (who then frees one of its own,
// most likely).
func (l *Limiter) pruneLocked(now time.Time) {
	for ip, f := range l.ips {
		if now.Sub(f.last) >= l.o.Forget {
			delete(l.ips, ip)
		}
	}
	if len(l.ips) < l.o.MaxIPs {
		return
	}
	for ip, f := range l.ips {
		if !now.Before(f.until) {
			delete(l.ips, ip)
			if len(l.ips) < l.o.MaxIPs {
				return
			}
		}
	}
	for ip := range l.ips {
		delete(l.ips, ip)
		return
	}
}
