package jsonrpc

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/anthill-project/anthill/master/sched"
	"github.com/anthill-project/anthill/protocol"
	"github.com/anthill-project/anthill/stats"
)

// slavesService is the Slaves.* methods.
type slavesService struct{ h *handler }

// List returns the connected slave sessions.
func (s *slavesService) List(r *http.Request, raw *json.RawMessage, out *SlaveList) error {
	var p struct{}
	if err := decodeParams(raw, &p); err != nil {
		return err
	}
	st := s.h.m.Stats()
	out.Slaves = make([]Slave, len(st.Slaves))
	for i := range st.Slaves {
		out.Slaves[i] = slaveOut(&st.Slaves[i])
	}
	return nil
}

// Get returns one connected slave session.
func (s *slavesService) Get(r *http.Request, raw *json.RawMessage, out *Slave) error {
	var p SessionParams
	if err := decodeParams(raw, &p); err != nil {
		return err
	}
	st := s.h.m.Stats()
	for i := range st.Slaves {
		if st.Slaves[i].Session == p.ID {
			*out = slaveOut(&st.Slaves[i])
			return nil
		}
	}
	return rpcError(CodeNotFound, sessionData{p.ID}, "slave session %q not found", clip(p.ID))
}

// Drain stops dispatching to a slave session; what it runs finishes.
func (s *slavesService) Drain(r *http.Request, raw *json.RawMessage, out *OKResult) error {
	var p SessionParams
	if err := decodeParams(raw, &p); err != nil {
		return err
	}
	if err := s.h.m.Drain(p.ID); err != nil {
		if errors.Is(err, sched.ErrUnknownSlave) {
			return rpcError(CodeNotFound, sessionData{p.ID}, "slave session %q not found", clip(p.ID))
		}
		return s.h.masterError(err)
	}
	out.OK = true
	return nil
}

type sessionData struct {
	ID string `json:"id"`
}

func slaveOut(s *sched.SlaveStats) Slave {
	kinds := s.Kinds
	if kinds == nil {
		kinds = []string{}
	}
	return Slave{
		ID: s.Session, Name: s.Name, Host: s.Host, OS: s.OS, Arch: s.Arch,
		Cores: s.Cores, Concurrency: s.Concurrency, Window: s.Window, Kinds: kinds,
		Running: s.Running, Draining: s.Draining, Dispatched: s.Dispatched, Done: s.Done, Failed: s.Failed,
		BusyMS: s.Busy.Milliseconds(), ConnectedAt: s.Connected.UTC(),
	}
}

// appsService is the Apps.* methods.
type appsService struct{ h *handler }

// List returns every application id the master knows.
func (s *appsService) List(r *http.Request, raw *json.RawMessage, out *AppList) error {
	var p struct{}
	if err := decodeParams(raw, &p); err != nil {
		return err
	}
	st := s.h.m.Stats()
	out.Apps = make([]App, len(st.Apps))
	for i, a := range st.Apps {
		out.Apps[i] = App{
			Name: a.Name, Connected: a.Connected, Pushed: a.Pushed, Done: a.Done, Failed: a.Failed,
			Acked: a.Acked, PendingNotifications: a.PendingNotifications,
		}
		if fin := a.Done + a.Failed; a.Pushed > fin {
			out.Apps[i].Unfinished = a.Pushed - fin
		}
	}
	return nil
}

// statsService is the Stats.* methods.
type statsService struct{ h *handler }

// Summary returns the master's counters and rates.
func (s *statsService) Summary(r *http.Request, raw *json.RawMessage, out *Summary) error {
	var p struct{}
	if err := decodeParams(raw, &p); err != nil {
		return err
	}
	st := s.h.m.Stats()
	now := s.h.opts.Now()
	c := counts{finished: st.Done + st.Failed + st.Canceled, submitted: st.Submitted, dispatched: st.Dispatched}
	base := s.h.sampler.observe(now, now.Add(-st.Uptime), c)
	*out = Summary{
		Tasks: TaskCounts{
			Pending: st.Pending, Running: st.Running, Unacked: st.Unacked,
			Submitted: st.Submitted, Dispatched: st.Dispatched, Done: st.Done, Failed: st.Failed,
			Canceled: st.Canceled, Retried: st.Retried, Requeued: st.Requeued, LateResults: st.LateResults,
		},
		Kinds:      make([]KindCount, len(st.Kinds)),
		Throughput: rates(base, now, c),
		UptimeMS:   st.Uptime.Milliseconds(),
	}
	for i, k := range st.Kinds {
		out.Kinds[i] = KindCount{Kind: k.Kind, Pending: k.Pending, Slaves: k.Slaves}
	}
	for _, sl := range st.Slaves {
		out.Slaves.Connected++
		out.Slaves.Concurrency += sl.Concurrency
		out.Slaves.Running += sl.Running
	}
	if d := out.Throughput.DispatchedPerSec; d > 0 {
		ms := float64(st.Pending) / d * 1000
		out.DispatchLatencyEstimateMS = &ms
	}
	return nil
}

// defaultSeriesSpan is what Stats.Series returns without since.
const defaultSeriesSpan = 5 * time.Minute

// Series returns the master's per-second series: the numbers behind the
// dashboard's charts.
func (s *statsService) Series(r *http.Request, raw *json.RawMessage, out *SeriesResult) error {
	var p SeriesParams
	if err := decodeParams(raw, &p); err != nil {
		return err
	}
	known := stats.SeriesNames()
	names := p.Names
	if len(names) == 0 {
		names = known
	}
	for _, n := range names {
		if !slices.Contains(known, n) {
			return invalidParam("names", fmt.Sprintf("unknown series %q; known: %s", clip(n), strings.Join(known, ", ")))
		}
	}
	if p.Since < 0 {
		return invalidParam("since", "must be a Unix time in seconds, or 0")
	}
	since := s.h.opts.Now().Add(-defaultSeriesSpan)
	if p.Since > 0 {
		since = time.Unix(p.Since, 0)
	}
	met := s.h.m.Metrics()
	out.Series = make(map[string][]stats.Point, len(names))
	for _, n := range names {
		pts := met.Since(n, since)
		if pts == nil {
			pts = []stats.Point{}
		}
		out.Series[n] = pts
	}
	return nil
}

// masterService is the Master.* methods.
type masterService struct{ h *handler }

// Info describes the master.
func (s *masterService) Info(r *http.Request, raw *json.RawMessage, out *MasterInfo) error {
	var p struct{}
	if err := decodeParams(raw, &p); err != nil {
		return err
	}
	in := s.h.m.Info()
	*out = MasterInfo{
		Version: in.Version, Protocol: in.Protocol, Strategy: in.Strategy, Dispatch: in.Dispatch,
		DataDir: in.Data, StartedAt: in.Started.UTC(), UptimeMS: in.Uptime.Milliseconds(),
		MaxPayload: s.h.m.MaxPayload(),
	}
	if out.Protocol == 0 {
		out.Protocol = protocol.Version
	}
	return nil
}
