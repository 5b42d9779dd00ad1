package trust

import (
	"math"
	"strings"
	"testing"
)

func TestTrustIsEarnedAndLost(t *testing.T) {
	var p Policy
	var r Record
	for i := range 9 {
		p.Valid(&r, 1)
		if p.Trusted(&r) {
			t.Fatalf("trusted after %d valid results", i+1)
		}
	}
	p.Valid(&r, 1)
	if !p.Trusted(&r) || p.SpotCheck(&r) != 1 {
		t.Fatalf("after 10: trusted %v, spot check %v; want trusted and checked at once", p.Trusted(&r), p.SpotCheck(&r))
	}
	p.Valid(&r, 1)
	if s := p.SpotCheck(&r); s != 0.5 {
		t.Errorf("one beyond the threshold: spot check %v, want 1/2", s)
	}
	for range 1000 {
		p.Valid(&r, 1)
	}
	if s := p.SpotCheck(&r); s != 0.01 {
		t.Errorf("a long record: spot check %v, want the floor 0.01", s)
	}
	p.OnTrust(&r, 5)
	p.Invalid(&r)
	if p.Trusted(&r) || !p.Suspect(&r) || r.Pending != 0 || p.Need(&r) != 20 {
		t.Errorf("after a lie: %+v, need %d; want a suspect needing 20, nothing pending", r, p.Need(&r))
	}
	credit := r.Credit
	for range 20 {
		p.Valid(&r, 1)
	}
	if !p.Trusted(&r) || p.Suspect(&r) || r.Credit != credit+20 {
		t.Errorf("after 20 more: %+v", r)
	}
	for range 20 {
		p.Invalid(&r)
	}
	if p.Need(&r) != 10_000 {
		t.Errorf("the threshold reached %d, want the cap 10000", p.Need(&r))
	}
	if p.Trusted(nil) || p.Suspect(nil) || p.SpotCheck(nil) != 1 {
		t.Error("a volunteer without a record is neither trusted nor suspect, and always checked")
	}
}

func TestPendingCreditWaitsForACheck(t *testing.T) {
	p := Policy{Threshold: 1}
	var r Record
	p.Valid(&r, 2)
	p.OnTrust(&r, 3)
	p.OnTrust(&r, 4)
	if r.Credit != 2 || r.Pending != 7 {
		t.Fatalf("%+v: believed results are not paid before a check", r)
	}
	p.Valid(&r, 1)
	if r.Credit != 10 || r.Pending != 0 {
		t.Errorf("%+v: a passed check pays what was pending", r)
	}
}

func vote(out string, w int, claim float64) Vote {
	return Vote{OK: true, Output: []byte(out), Weight: w, Claim: claim}
}

func TestDecide(t *testing.T) {
	for _, tc := range []struct {
		name      string
		votes     []Vote
		m         int
		canonical int
		agrees    []bool
		best      int
	}{
		{"two of three", []Vote{vote("a", 1, 1), vote("b", 1, 1), vote("a", 1, 1)}, 2, 0, []bool{true, false, true}, 2},
		{"no quorum yet", []Vote{vote("a", 1, 1), vote("b", 1, 1)}, 2, -1, nil, 1},
		{"a suspect cannot make a quorum", []Vote{vote("x", 0, 1), vote("x", 1, 1)}, 2, -1, nil, 1},
		{"a suspect agreeing is marked", []Vote{vote("x", 0, 1), vote("x", 1, 1), vote("x", 1, 1)}, 2, 0, []bool{true, true, true}, 2},
		{"errors agree on their text", []Vote{{Err: "e", Weight: 1}, {Err: "e", Weight: 1}, vote("e", 1, 1)}, 2, 0, []bool{true, true, false}, 2},
	} {
		v := Decide(tc.votes, tc.m, nil)
		if v.Canonical != tc.canonical || v.Best != tc.best || len(v.Agrees) != len(tc.agrees) {
			t.Errorf("%s: %+v", tc.name, v)
			continue
		}
		for i := range tc.agrees {
			if v.Agrees[i] != tc.agrees[i] {
				t.Errorf("%s: agrees %v, want %v", tc.name, v.Agrees, tc.agrees)
			}
		}
	}
	if n := More(Verdict{Canonical: -1, Best: 1}, 0, 2); n != 1 {
		t.Errorf("one agreeing, none running, quorum 2: %d more, want 1", n)
	}
	if n := More(Verdict{Canonical: -1, Best: 1}, 1, 2); n != 0 {
		t.Errorf("a running copy may complete the quorum: %d more, want 0", n)
	}
}

func TestCreditIsBoundedByTheQuorum(t *testing.T) {
	votes := []Vote{vote("a", 1, 10), vote("a", 1, 1000), vote("a", 1, 12), vote("b", 1, 50)}
	v := Decide(votes, 2, nil)
	if c := Credit(votes, v, 1); c != 12 {
		t.Errorf("an inflated claim earns %v, want the median of the agreeing claims, 12", c)
	}
	if c := Credit(votes, v, 0); c != 10 {
		t.Errorf("a modest claim earns %v, want its own 10", c)
	}
	if c := Credit(votes, v, 3); c != 0 {
		t.Errorf("an invalid copy earns %v", c)
	}
	// A suspect's claim does not cut the others' pay.
	votes = []Vote{vote("a", 1, 10), vote("a", 1, 10), vote("a", 0, 0), vote("a", 0, 0)}
	if c := Credit(votes, Decide(votes, 2, nil), 0); c != 10 {
		t.Errorf("with two weightless copies claiming 0: %v, want 10", c)
	}
	var p Policy
	var r Record
	p.Valid(&r, math.NaN())
	p.OnTrust(&r, math.Inf(1))
	p.Valid(&r, -3)
	if r.Credit != 0 || r.Pending != 0 {
		t.Errorf("bad claims spoiled the record: %+v", r)
	}
	if _, err := DecodeRecord(AppendRecord(nil, &r)); err != nil {
		t.Error(err)
	}
}

func TestRecordEncoding(t *testing.T) {
	r := Record{Valid: 7, Invalid: 2, Streak: 3, Threshold: 40, Credit: 1.5, Pending: 0.25}
	b := AppendRecord(nil, &r)
	got, err := DecodeRecord(b)
	if err != nil || got != r {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	nan := AppendRecord(nil, &Record{Credit: math.NaN()})
	inf := AppendRecord(nil, &Record{Pending: math.Inf(1)})
	for name, bad := range map[string][]byte{
		"empty":          nil,
		"unknown format": append([]byte{9}, b[1:]...),
		"truncated":      b[:len(b)-1],
		"trailing":       append(append([]byte{}, b...), 0),
		"NaN credit":     nan,
		"infinite":       inf,
	} {
		if _, err := DecodeRecord(bad); err == nil || !strings.HasPrefix(err.Error(), "trust record") {
			t.Errorf("%s: %v", name, err)
		}
	}
}
