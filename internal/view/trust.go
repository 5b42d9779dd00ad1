package view

import (
	"cmp"
	"slices"
	"time"

	"github.com/anthill-project/anthill/master/identity"
	"github.com/anthill-project/anthill/master/sched"
)

// Copy is one copy of a replicated task. Outcome is running (or waiting
// for a volunteer, Slave empty), then done, failed, lost or timeout, and
// once the quorum decided: canonical, invalid, lost or not needed.
type Copy struct {
	ID        uint64     `json:"id,omitempty"` // while the verdict is pending
	Slave     string     `json:"slave"`        // the volunteer identity; "" while queued
	Session   string     `json:"session"`
	StartedAt *time.Time `json:"started_at"`
	EndedAt   *time.Time `json:"ended_at"`
	Outcome   string     `json:"outcome"`
	Error     string     `json:"error"`
}

// copiesOf is ti's copies: those running while its verdict is pending,
// else, for a task that ran replicated, its history.
func copiesOf(ti *sched.TaskInfo) []Copy {
	var out []Copy
	if ti.Copies != nil {
		for _, c := range ti.Copies {
			id, session := sched.Attribution(c.Slave)
			cp := Copy{ID: c.ID, Slave: id, Session: session, StartedAt: Time(c.Started), EndedAt: Time(c.Ended), Outcome: c.Outcome.String(), Error: c.Err}
			if c.Slave == "" {
				cp.Outcome = "waiting"
			}
			out = append(out, cp)
		}
		return out
	}
	if ti.Replicas < 2 || !ti.State.Final() {
		return nil
	}
	for _, a := range ti.History {
		id, session := sched.Attribution(a.Slave)
		out = append(out, Copy{Slave: id, Session: session, StartedAt: Time(a.Started), EndedAt: Time(a.Ended), Outcome: a.Outcome.String(), Error: a.Err})
	}
	return out
}

// Volunteer is a volunteer identity and what it has shown: results the
// quorums judged valid and invalid, whether an app trusts it, its credit
// (CPU seconds granted for validated work).
type Volunteer struct {
	identity.Volunteer
	ValidResults   uint64  `json:"valid_results"`
	InvalidResults uint64  `json:"invalid_results"`
	Trusted        bool    `json:"trusted"` // by at least one app
	Credit         float64 `json:"credit"`
	Leaderboard    bool    `json:"leaderboard"` // it agreed to be listed publicly
	// Apps is the record per app; Volunteers.Get only.
	Apps []VolunteerApp `json:"apps,omitempty"`
}

// VolunteerApp is a volunteer's record for one app.
type VolunteerApp struct {
	App            string  `json:"app"`
	ValidResults   uint64  `json:"valid_results"`
	InvalidResults uint64  `json:"invalid_results"`
	Streak         uint64  `json:"streak"` // valid results since the last invalid one
	Need           uint64  `json:"need"`   // the streak that makes it trusted
	Trusted        bool    `json:"trusted"`
	Suspect        bool    `json:"suspect"` // caught and not trusted again: its copies do not vote
	Credit         float64 `json:"credit"`
	PendingCredit  float64 `json:"pending_credit"` // claimed on trust, granted at its next passed check
}

// VolunteerOf joins an identity (zero if not enrolled) and its record.
func VolunteerOf(id identity.Volunteer, tr sched.VolunteerTrust, withApps bool) Volunteer {
	if id.Name == "" {
		id.Name = tr.Name
	}
	if id.Sessions == nil {
		id.Sessions = []string{}
	}
	v := Volunteer{Volunteer: id, ValidResults: tr.Valid, InvalidResults: tr.Invalid, Trusted: tr.Trusted, Credit: tr.Credit, Leaderboard: tr.Public}
	if withApps {
		v.Apps = []VolunteerApp{}
		for _, a := range tr.Apps {
			v.Apps = append(v.Apps, VolunteerApp{App: a.App, ValidResults: a.Valid, InvalidResults: a.Invalid, Streak: a.Streak,
				Need: a.Need, Trusted: a.Trusted, Suspect: a.Suspect, Credit: a.Credit, PendingCredit: a.Pending})
		}
	}
	return v
}

// Volunteers joins the enrolled identities with every record: a
// volunteer of an open master has a record and no enrollment. By name.
func Volunteers(ids []identity.Volunteer, trust []sched.VolunteerTrust) []Volunteer {
	by := make(map[string]sched.VolunteerTrust, len(trust))
	for _, t := range trust {
		by[t.Name] = t
	}
	out := make([]Volunteer, 0, len(ids)+len(trust))
	for _, id := range ids {
		out = append(out, VolunteerOf(id, by[id.Name], false))
		delete(by, id.Name)
	}
	for _, t := range trust {
		if _, left := by[t.Name]; left {
			out = append(out, VolunteerOf(identity.Volunteer{}, t, false))
		}
	}
	slices.SortFunc(out, func(a, b Volunteer) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// Leader is one line of the public leaderboard: a name, its validated
// results and credit, nothing else.
type Leader struct {
	Rank         int     `json:"rank"`
	Name         string  `json:"name"`
	ValidResults uint64  `json:"valid_results"`
	Credit       float64 `json:"credit"`
}

// Leaders is the leaderboard, most credit first.
func Leaders(board []sched.VolunteerTrust) []Leader {
	out := make([]Leader, len(board))
	for i, v := range board {
		out[i] = Leader{Rank: i + 1, Name: v.Name, ValidResults: v.Valid, Credit: v.Credit}
	}
	return out
}
