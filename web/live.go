package web

import (
	"net/http"
	"sort"
	"time"

	"github.com/gorilla/websocket"

	"github.com/anthill-project/anthill/stats"
)

const (
	// history is how much of each series a new feed starts with: enough
	// for the charts, a fraction of the hour stats keeps.
	history = 10 * time.Minute
	// failureWindow is the span, in closed seconds, of the overview's
	// "failed in the last minute".
	failureWindow = 60
	liveWriteWait = 10 * time.Second
	livePing      = 20 * time.Second
)

// liveSeries are the series a feed sends: the overview's charts.
var liveSeries = []string{
	stats.SeriesSubmitted, stats.SeriesDispatched, stats.SeriesDone, stats.SeriesFailed,
	stats.SeriesLatencyMean, stats.SeriesLatencyP99, stats.SeriesPending, stats.SeriesRunning,
}

// update is one message of the live feed.
type update struct {
	Now     int64                    `json:"now"` // Unix ms
	Info    *infoOut                 `json:"info,omitempty"`
	Summary summary                  `json:"summary"`
	Series  map[string][]stats.Point `json:"series"` // seconds closed since the previous update
	Slaves  []slaveRow               `json:"slaves"`
	Apps    []appRow                 `json:"apps"`
}

type infoOut struct {
	Version  string `json:"version"`
	Strategy string `json:"strategy"`
	Dispatch string `json:"dispatch"`
	Started  int64  `json:"started_at"`
}

// summary carries the numbers of the JSON-RPC Stats.Summary under the same
// names, so a script and the page agree, plus what the overview adds.
type summary struct {
	Tasks struct {
		Pending     int    `json:"pending"`
		Running     int    `json:"running"`
		Unacked     int    `json:"unacked"`
		Submitted   uint64 `json:"submitted"`
		Dispatched  uint64 `json:"dispatched"`
		Done        uint64 `json:"done"`
		Failed      uint64 `json:"failed"`
		Canceled    uint64 `json:"canceled"`
		Retried     uint64 `json:"retried"`
		Requeued    uint64 `json:"requeued"`
		LateResults uint64 `json:"late_results"`
	} `json:"tasks"`
	Slaves struct {
		Connected   int `json:"connected"`
		Concurrency int `json:"concurrency"`
		Running     int `json:"running"`
	} `json:"slaves"`
	Kinds            []kindRow `json:"kinds"`
	FailedLastMinute uint64    `json:"failed_last_minute"`
	UptimeMS         int64     `json:"uptime_ms"`
	Store            storeOut  `json:"store"`
}

// storeOut shows group commit at work: how many changes share a commit
// and what a commit, fsync included, costs.
type storeOut struct {
	Commits      uint64  `json:"commits"`
	Ops          uint64  `json:"ops"`
	LastBatchOps int     `json:"last_batch_ops"`
	LastCommitMS float64 `json:"last_commit_ms"`
	MeanCommitMS float64 `json:"mean_commit_ms"`
}

type kindRow struct {
	Kind    string `json:"kind"`
	Pending int    `json:"pending"`
	Slaves  int    `json:"slaves"`
}

// slaveRow is one slave name: its live sessions (usually one) and the
// numbers stats keeps for the name across reconnects.
type slaveRow struct {
	Name         string    `json:"name"`
	Sessions     []string  `json:"sessions"` // empty once it has gone
	Host         string    `json:"host"`
	Platform     string    `json:"platform"`
	Cores        int       `json:"cores"`
	Slots        int       `json:"slots"`
	Running      int       `json:"running"`
	Draining     bool      `json:"draining"`
	Done         uint64    `json:"done"`
	Failed       uint64    `json:"failed"`
	Reconnects   uint64    `json:"reconnects"`
	Throughput   float64   `json:"throughput"`    // results/s, one-minute average
	BusyFraction float64   `json:"busy_fraction"` // of its slots, one-minute average
	MeanTaskMS   float64   `json:"mean_task_ms"`
	LastSeen     int64     `json:"last_seen"` // Unix ms
	Recent       []float64 `json:"recent"`    // results per second, last minute
}

type appRow struct {
	Name        string    `json:"name"`
	Connected   bool      `json:"connected"`
	Pushed      uint64    `json:"pushed"`
	InFlight    int       `json:"in_flight"`
	Done        uint64    `json:"done"`
	Failed      uint64    `json:"failed"`
	Canceled    uint64    `json:"canceled"`
	Throughput  float64   `json:"throughput"` // finished/s, one-minute average
	ETASeconds  *float64  `json:"eta_s"`      // in flight / throughput; null when idle
	MeanLatency float64   `json:"mean_latency_ms"`
	Recent      []float64 `json:"recent"`
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
	met := s.m.Metrics()
	st := s.m.Stats()
	u := update{Now: s.opts.Now().UnixMilli(), Series: make(map[string][]stats.Point, len(liveSeries))}
	if withInfo {
		in := s.m.Info()
		u.Info = &infoOut{Version: in.Version, Strategy: in.Strategy, Dispatch: in.Dispatch, Started: ms(in.Started)}
	}
	for _, name := range liveSeries {
		pts := met.Since(name, since)
		if pts == nil {
			pts = []stats.Point{}
		}
		u.Series[name] = pts
	}

	sm := &u.Summary
	sm.Tasks.Pending, sm.Tasks.Running, sm.Tasks.Unacked = st.Pending, st.Running, st.Unacked
	sm.Tasks.Submitted, sm.Tasks.Dispatched = st.Submitted, st.Dispatched
	sm.Tasks.Done, sm.Tasks.Failed, sm.Tasks.Canceled = st.Done, st.Failed, st.Canceled
	sm.Tasks.Retried, sm.Tasks.Requeued, sm.Tasks.LateResults = st.Retried, st.Requeued, st.LateResults
	sm.UptimeMS = st.Uptime.Milliseconds()
	sm.Store = storeOut{
		Commits: st.Store.Commits, Ops: st.Store.Ops, LastBatchOps: st.Store.LastBatchOps,
		LastCommitMS: float64(st.Store.LastCommit) / float64(time.Millisecond),
	}
	if st.Store.Commits > 0 {
		sm.Store.MeanCommitMS = float64(st.Store.TotalCommit) / float64(st.Store.Commits) / float64(time.Millisecond)
	}
	sm.Kinds = make([]kindRow, len(st.Kinds))
	for i, k := range st.Kinds {
		sm.Kinds[i] = kindRow{k.Kind, k.Pending, k.Slaves}
	}
	// Since, not Series: a feed does this every second, and the whole
	// hour is 3,600 points to copy.
	for _, p := range met.Since(stats.SeriesFailed, s.opts.Now().Add(-(failureWindow+1)*time.Second)) {
		sm.FailedLastMinute += uint64(p.V)
	}

	rows := map[string]*slaveRow{}
	for _, sl := range st.Slaves {
		sm.Slaves.Connected++
		sm.Slaves.Concurrency += sl.Concurrency
		sm.Slaves.Running += sl.Running
		row := rows[sl.Name]
		if row == nil {
			row = &slaveRow{Name: sl.Name, Host: sl.Host, Platform: sl.OS + "/" + sl.Arch, Cores: sl.Cores, Draining: true}
			rows[sl.Name] = row
		}
		row.Sessions = append(row.Sessions, sl.Session)
		row.Slots += sl.Concurrency
		row.Running += sl.Running
		row.Draining = row.Draining && sl.Draining
		row.LastSeen = max(row.LastSeen, ms(sl.Connected))
	}
	for _, ss := range met.Slaves() {
		row := rows[ss.Name]
		if row == nil { // gone, its numbers linger
			row = &slaveRow{Name: ss.Name, Sessions: []string{}, Slots: ss.Slots}
			rows[ss.Name] = row
		}
		row.Done, row.Failed, row.Reconnects = ss.Done, ss.Failed, ss.Reconnects
		row.Throughput, row.BusyFraction = ss.Throughput, ss.BusyFraction
		row.MeanTaskMS = float64(ss.MeanTaskTime) / float64(time.Millisecond)
		row.LastSeen = max(row.LastSeen, ms(ss.LastSeen))
		row.Recent = ss.Recent
	}
	u.Slaves = make([]slaveRow, 0, len(rows))
	for _, row := range rows {
		if len(row.Sessions) == 0 {
			row.Draining = false
		}
		u.Slaves = append(u.Slaves, *row)
	}
	sort.Slice(u.Slaves, func(i, j int) bool { return u.Slaves[i].Name < u.Slaves[j].Name })

	connected := map[string]bool{}
	for _, a := range st.Apps {
		connected[a.Name] = a.Connected
	}
	apps := met.Apps()
	u.Apps = make([]appRow, 0, len(apps))
	for _, a := range apps {
		row := appRow{
			Name: a.Name, Connected: connected[a.Name], Pushed: a.Pushed, InFlight: a.InFlight,
			Done: a.Done, Failed: a.Failed, Canceled: a.Canceled, Throughput: a.Throughput,
			MeanLatency: float64(a.MeanLatency) / float64(time.Millisecond), Recent: a.Recent,
		}
		if a.InFlight > 0 && a.Throughput > 0 {
			eta := float64(a.InFlight) / a.Throughput
			row.ETASeconds = &eta
		}
		u.Apps = append(u.Apps, row)
	}
	return u
}
