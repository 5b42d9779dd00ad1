package web

import (
	"net/http"
	"strconv"
	"time"

	"github.com/anthill-project/anthill/internal/view"
	"github.com/anthill-project/anthill/master/identity"
)

// The Volunteers page's data, and the public leaderboard: what each
// volunteer has shown (valid and invalid results, trust, credit). The
// leaderboard is public, read-only and lists only the volunteers that
// agreed (anthill slave --leaderboard): a name, its validated results and
// its credit, nothing about apps, sessions or machines.

type volunteersOut struct {
	Volunteers []view.Volunteer `json:"volunteers"`
}

func (s *Server) serveVolunteers(w http.ResponseWriter, r *http.Request) {
	out := volunteersOut{Volunteers: []view.Volunteer{}}
	for _, v := range s.m.Trust() {
		out.Volunteers = append(out.Volunteers, view.VolunteerOf(identity.Volunteer{}, v, true))
	}
	writeJSON(w, http.StatusOK, out)
}

type leadersOut struct {
	Leaders []view.Leader `json:"leaders"`
}

func (s *Server) serveLeaderboardJSON(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, leadersOut{Leaders: s.leaders()})
}

// leaderTTL is how long the leaderboard is served from memory: the page
// is public, and each build walks every record under the scheduler's
// lock, so strangers reloading it cannot make the master do that more
// than once a second.
const leaderTTL = time.Second

// leaders is the leaderboard, built at most once per leaderTTL.
func (s *Server) leaders() []view.Leader {
	s.boardMu.Lock()
	defer s.boardMu.Unlock()
	if now := s.opts.Now(); s.boardAt.IsZero() || now.Sub(s.boardAt) >= leaderTTL || now.Before(s.boardAt) {
		s.board = view.Leaders(s.m.Leaderboard())
		s.boardAt = now
	}
	return s.board
}

// leaderRow is a leaderboard line as the page prints it.
type leaderRow struct {
	Rank          int
	Name, Credit  string
	Valid         uint64
	CreditSeconds float64
}

func (s *Server) serveLeaderboard(w http.ResponseWriter, r *http.Request) {
	leaders := s.leaders()
	rows := make([]leaderRow, len(leaders))
	for i, l := range leaders {
		rows[i] = leaderRow{Rank: l.Rank, Name: l.Name, Valid: l.ValidResults, CreditSeconds: l.Credit, Credit: fmtCredit(l.Credit)}
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	_ = s.boardPage.Execute(w, map[string]any{"Version": s.m.Info().Version, "Rows": rows})
}

// fmtCredit prints CPU seconds as a person reads them.
func fmtCredit(sec float64) string {
	switch {
	case sec < 60:
		return strconv.FormatFloat(sec, 'f', 2, 64) + " s"
	case sec < 3600:
		return strconv.FormatFloat(sec/60, 'f', 1, 64) + " min"
	}
	return strconv.FormatFloat(sec/3600, 'f', 1, 64) + " h"
}
