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
// the charts' series closed since the previous update.
type update struct {
	Now     time.Time                `json:"now"`
	Info    *view.Info               `json:"info,omitempty"`
	Summary view.Summary             `json:"summary"`
	Series  map[string][]stats.Point `json:"series"`
	Slaves  []view.SlaveName         `json:"slaves"`
	Apps    []view.App               `json:"apps"`
}

// serveLive streams an update every Interval. The first one carries the
// recent history; the page keeps the rest.
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

	tick := time.NewTicker(s.opts.Interval)
	defer tick.Stop()
	ping := time.NewTicker(livePing)
	defer ping.Stop()
	since := s.opts.Now().Add(-history)
	first := true
	for {
		u := s.snapshot(since, first)
		first = false
		since = lastPoint(u.Series, since)
		_ = ws.SetWriteDeadline(time.Now().Add(liveWriteWait))
		if err := ws.WriteJSON(u); err != nil {
			return
		}
		select {
		case <-tick.C:
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

// snapshot reads the master once; series are those closed after since.
func (s *Server) snapshot(since time.Time, withInfo bool) update {
	o := view.Build(s.m)
	u := update{
		Now: s.opts.Now().UTC(), Summary: o.Summary, Slaves: o.Names, Apps: o.Apps,
		Series: view.Series(s.m.Metrics(), liveSeries, since),
	}
	if withInfo {
		in := view.InfoOf(s.m)
		u.Info = &in
	}
	return u
}
