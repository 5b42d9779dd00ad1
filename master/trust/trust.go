// Package trust is the policy by which a master believes volunteers'
// results: each volunteer's record per application, when a record earns
// trust, how often a trusted volunteer is checked, which of several copies
// of a task is the canonical result, and what credit a copy earns. It is
// pure: no clock, no randomness of its own, no I/O. The scheduler and the
// saboteur simulator run the same code.
package trust

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"

	"github.com/anthill-project/anthill/internal/binenc"
)

// Policy is how trust is earned and checked. The zero value means the
// defaults named on each field.
type Policy struct {
	// Threshold is how many consecutive valid results a volunteer needs,
	// per application, before its tasks run as a single copy. Zero: 10.
	Threshold uint32
	// MaxThreshold caps the threshold, which doubles with every invalid
	// result: a volunteer caught lying must prove itself over ever longer
	// runs, so one that lies half the time practically never regains
	// trust. Zero: 10,000.
	MaxThreshold uint32
	// SpotMin is the least probability that a trusted volunteer's task is
	// checked, however long its record. Zero: 0.01; a value above 1 is 1.
	SpotMin float64
}

func (p Policy) threshold() uint32 {
	if p.Threshold == 0 {
		return 10
	}
	return p.Threshold
}

func (p Policy) maxThreshold() uint32 {
	if p.MaxThreshold == 0 {
		return 10_000
	}
	return max(p.MaxThreshold, p.threshold())
}

func (p Policy) spotMin() float64 {
	if p.SpotMin == 0 {
		return 0.01
	}
	return min(p.SpotMin, 1)
}

// Record is what one volunteer has shown for one application.
type Record struct {
	Valid   uint64 // results that agreed with the canonical result, or passed a check
	Invalid uint64 // results that did not
	// Streak is the valid results since the last invalid one.
	Streak uint64
	// Threshold is the streak this record needs to be trusted; zero until
	// the first invalid result, meaning the policy's Threshold.
	Threshold uint32
	// Credit is the CPU seconds granted for validated work.
	Credit float64
	// Pending is the CPU seconds claimed by results accepted on trust,
	// without a second copy: granted at the volunteer's next passed check,
	// forfeited at its next failed one. So no unvalidated result is ever
	// paid for.
	Pending float64
}

// need is the streak r needs to be trusted.
func (p Policy) need(r *Record) uint64 {
	if r.Threshold == 0 {
		return uint64(p.threshold())
	}
	return uint64(r.Threshold)
}

// Trusted says whether the volunteer's tasks may run as a single copy.
func (p Policy) Trusted(r *Record) bool { return r != nil && r.Streak >= p.need(r) }

// Suspect says whether the volunteer has been caught and has not earned
// trust back. A suspect's copies carry no weight in a quorum: they are
// only compared with the canonical result. Without that, saboteurs who
// agree on their lies outvote honest copies whenever two of them meet in
// one quorum.
func (p Policy) Suspect(r *Record) bool { return r != nil && r.Invalid > 0 && !p.Trusted(r) }

// SpotCheck is the probability that a trusted volunteer's task is checked
// rather than believed: 1/(1+streak beyond the threshold), at least
// SpotMin. It starts at 1, so a volunteer that just earned trust is
// checked at once, and falls as the record grows.
func (p Policy) SpotCheck(r *Record) float64 {
	if !p.Trusted(r) {
		return 1
	}
	beyond := float64(r.Streak - p.need(r))
	return max(p.spotMin(), 1/(1+beyond))
}

// Replicate decides, for a task about to go to the volunteer with record
// r, whether it must be checked (replicated, or accompanied by a ringer);
// u is a uniform draw from [0, 1) the caller makes.
func (p Policy) Replicate(r *Record, u float64) bool { return u < p.SpotCheck(r) }

// Valid records a result that was validated, granting it credit seconds
// and whatever was pending.
func (p Policy) Valid(r *Record, credit float64) {
	r.Valid++
	r.Streak++
	r.Credit += seconds(credit) + r.Pending
	r.Pending = 0
}

// seconds is a claim fit to add: a negative, NaN or infinite one is 0,
// so no claim can spoil a record.
func seconds(c float64) float64 {
	if !(c > 0) || math.IsInf(c, 0) {
		return 0
	}
	return c
}

// Invalid records a result that disagreed with the canonical one or
// failed a check: the streak restarts, the threshold doubles and the
// credit pending is forfeited.
func (p Policy) Invalid(r *Record) {
	r.Invalid++
	r.Streak = 0
	r.Threshold = uint32(min(2*p.need(r), uint64(p.maxThreshold())))
	r.Pending = 0
}

// OnTrust records a result accepted without a check: its claim waits in
// Pending until the next check.
func (p Policy) OnTrust(r *Record, claim float64) { r.Pending += seconds(claim) }

// Vote is one copy's result, as the quorum sees it.
type Vote struct {
	OK     bool   // the task succeeded; Output is its result, else Err its error
	Output []byte // the result
	Err    string
	// Weight is what the copy counts for: 1, or 0 for a suspect's copy.
	Weight int
	Claim  float64 // the CPU seconds its volunteer claims
}

// Agree says whether two votes are the same result. Equal is byte
// equality of outputs, and of errors for failed copies.
type Agree func(a, b *Vote) bool

// Equal is the default agreement: both succeeded with the same bytes, or
// both failed with the same error.
func Equal(a, b *Vote) bool {
	if a.OK != b.OK {
		return false
	}
	if a.OK {
		return string(a.Output) == string(b.Output)
	}
	return a.Err == b.Err
}

// Verdict is what a quorum decided.
type Verdict struct {
	// Canonical is the index of the canonical vote, -1 while there is no
	// quorum.
	Canonical int
	// Agrees marks, once Canonical is set, the votes that agree with it.
	Agrees []bool
	// Best is the weight of the heaviest group of agreeing votes.
	Best int
}

// Decide finds the group of agreeing votes whose weight reaches quorum m.
// Groups are formed against each group's first vote, in order, so the
// result depends only on the votes and agree. Two groups cannot both
// reach m when m is a majority; if they could (a smaller m), the first
// formed wins.
func Decide(votes []Vote, m int, agree Agree) Verdict {
	if agree == nil {
		agree = Equal
	}
	v := Verdict{Canonical: -1}
	group := make([]int, len(votes)) // the first vote of each vote's group
	for i := range votes {
		group[i] = i
		for j := 0; j < i; j++ {
			if group[j] == j && agree(&votes[j], &votes[i]) {
				group[i] = j
				break
			}
		}
	}
	for i := range votes {
		if group[i] != i {
			continue
		}
		w := 0
		for j := range votes {
			if group[j] == i {
				w += votes[j].Weight
			}
		}
		v.Best = max(v.Best, w)
		if w >= m && v.Canonical < 0 {
			v.Canonical = i
		}
	}
	if v.Canonical >= 0 {
		v.Agrees = make([]bool, len(votes))
		for j := range votes {
			v.Agrees[j] = group[j] == v.Canonical
		}
	}
	return v
}

// More is how many more copies a task needs so that a quorum of m is
// still possible: none while the copies running could complete the best
// group, otherwise enough to complete it if they all agreed with it.
func More(v Verdict, running, m int) int {
	if v.Canonical >= 0 {
		return 0
	}
	return max(m-v.Best-running, 0)
}

// Credit is what a validated copy earns: its claim, bounded by the median
// claim of the copies that agreed with it and carry weight, so one
// volunteer cannot inflate its pay beyond what its peers measured for the
// same work, nor a suspect's claim cut theirs.
func Credit(votes []Vote, v Verdict, i int) float64 {
	if v.Agrees == nil || !v.Agrees[i] {
		return 0
	}
	var claims, weightless []float64
	for j := range votes {
		if !v.Agrees[j] {
			continue
		}
		if votes[j].Weight > 0 {
			claims = append(claims, seconds(votes[j].Claim))
		} else {
			weightless = append(weightless, seconds(votes[j].Claim))
		}
	}
	if len(claims) == 0 {
		claims = weightless
	}
	return min(seconds(votes[i].Claim), median(claims))
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(xs))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// recordFormat is the first byte of an encoded Record.
const recordFormat = 1

// AppendRecord encodes r for the store.
func AppendRecord(dst []byte, r *Record) []byte {
	dst = append(dst, recordFormat)
	dst = binary.AppendUvarint(dst, r.Valid)
	dst = binary.AppendUvarint(dst, r.Invalid)
	dst = binary.AppendUvarint(dst, r.Streak)
	dst = binary.AppendUvarint(dst, uint64(r.Threshold))
	dst = binary.AppendUvarint(dst, math.Float64bits(r.Credit))
	return binary.AppendUvarint(dst, math.Float64bits(r.Pending))
}

// DecodeRecord reads what AppendRecord wrote.
func DecodeRecord(b []byte) (Record, error) {
	if len(b) == 0 {
		return Record{}, fmt.Errorf("trust record: empty")
	}
	if b[0] != recordFormat {
		return Record{}, fmt.Errorf("trust record: format %d, want %d", b[0], recordFormat)
	}
	d := binenc.NewDecoder(b[1:])
	r := Record{
		Valid:     d.Uvarint("valid"),
		Invalid:   d.Uvarint("invalid"),
		Streak:    d.Uvarint("streak"),
		Threshold: d.Uint32("threshold"),
	}
	r.Credit = math.Float64frombits(d.Uvarint("credit"))
	r.Pending = math.Float64frombits(d.Uvarint("pending"))
	if err := d.End(); err != nil {
		return Record{}, fmt.Errorf("trust record: %w", err)
	}
	if seconds(r.Credit) != r.Credit || seconds(r.Pending) != r.Pending {
		return Record{}, fmt.Errorf("trust record: credit %v, pending %v", r.Credit, r.Pending)
	}
	return r, nil
}

// Need is the streak r needs to be trusted.
func (p Policy) Need(r *Record) uint64 { return p.need(r) }
