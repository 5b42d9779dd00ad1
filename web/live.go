package web

import (
	"net/http"
	"time"

	"github.com/gorilla/websocket"

	"github.com/anthill-project/anthill/internal/view"
	"github.com/anthill-project/anthill/stats"
)

const (
	// history is how much of each series a new feed starts with: enough
	// for the charts, a fraction of the hour stats keeps.
	history       = 10 * time.Minute
	liveWriteWait = 10 * time.Second
	livePing      = 20 * time.Second
)

// liveSeries are the series a feed sends: the overview's charts.
var liveSeries = []string{
	stats.SeriesSubmitted, stats.SeriesDispatched, stats.SeriesDone, stats.SeriesFailed,
	stats.SeriesLatencyMean, stats.SeriesLatencyP99, stats.SeriesPending, stats.SeriesRunning,
}

// update is one message of the live feed: the operator's view, as
// Stats.Summary, Slaves.List and Apps.List show it, plus the seconds of
// the charts' series closed since the previous update. A full one (the
// first of a feed, and any after it fell behind) carries Info, the recent
// history of the series and every sparkline whole; the others carry only
// what moved of the sparklines (see liveSlave).
type update struct {
	Now     time.Time                `json:"now"`
	Full    bool                     `json:"full,omitempty"`
	Info    *view.Info               `json:"info,omitempty"`
	Summary view.Summary             `json:"summary"`
	Series  map[string][]stats.Point `json:"series"`
	Slaves  []liveSlave              `json:"slaves"`
	Apps    []view.App               `json:"apps"`
}

// liveSlave is a slave's row with its sparkline (the minute of results a
// second) sent only when it changed: every row of 1,000 carried 60
// numbers a second, most of them the same as a second before.
type liveSlave struct {
	*view.SlaveName
	// Recent, when present, is the whole sparkline: in a full update, and
	// for a row that is new or whose line did not just move on. It hides
	// the row's own.
	Recent *[]float64 `json:"recent,omitempty"`
	// Spark is the newest seconds: the page drops as many of the oldest
	// and appends these. Absent, like Recent, when the line is unchanged.
	Spark []float64 `json:"spark,omitempty"`
}

// serveLive streams the hub's updates, one every Interval. The first one
// carries the recent history; the page keeps the rest.
func (s *Server) serveLive(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	if s.closed || s.live >= s.opts.MaxLive {
		s.mu.Unlock()
		writeError(w, http.StatusServiceUnavailable, "too many live dashboards open, or the master is stopping")
		return
	}
	s.live++
	s.feeds.Add(1)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.live--
		s.mu.Unlock()
		s.feeds.Done()
	}()

	ws, err := s.up.Upgrade(w, r, nil) // refuses foreign Origins with 403
	if err != nil {
		return
	}
	defer ws.Close()
	ws.SetReadLimit(1 << 10)

	// The page sends nothing; reading is how close and pong frames, and a
	// dead peer, are noticed.
	gone := make(chan struct{})
	go func() {
		defer close(gone)
		_ = ws.SetReadDeadline(time.Now().Add(2 * livePing))
		ws.SetPongHandler(func(string) error { return ws.SetReadDeadline(time.Now().Add(2 * livePing)) })
		for {
			if _, _, err := ws.ReadMessage(); err != nil {
				return
			}
		}
	}()
	defer func() { ws.Close(); <-gone }()

	f := s.hub.join()
	defer s.hub.leave(f)
	ping := time.NewTicker(livePing)
	defer ping.Stop()
	for {
		select {
		case <-f.wake:
			if fr := s.hub.take(f); fr != nil {
				// A peer too slow for this deadline is dropped; one
				// merely slower than the ticks gets full frames and
				// skips the deltas it could not take.
				_ = ws.SetWriteDeadline(time.Now().Add(liveWriteWait))
				if err := ws.WritePreparedMessage(fr.msg); err != nil {
					return
				}
			}
		case <-ping.C:
			if err := ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(liveWriteWait)); err != nil {
				return
			}
		case <-gone:
			return
		case <-s.quit:
			_ = ws.WriteControl(websocket.CloseMessage,
				websocket.FormatCloseMessage(websocket.CloseGoingAway, "master stopping"), time.Now().Add(time.Second))
			return
		}
	}
}

func lastPoint(series map[string][]stats.Point, since time.Time) time.Time {
	for _, pts := range series {
		if n := len(pts); n > 0 {
			if t := time.Unix(pts[n-1].T, 0); t.After(since) {
				since = t
			}
		}
	}
	return since
}
