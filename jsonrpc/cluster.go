package jsonrpc

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/anthill-project/anthill/internal/view"
	"github.com/anthill-project/anthill/master/sched"
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
	out.Slaves = view.Slaves(s.h.m)
	return nil
}

// Get returns one connected slave session.
func (s *slavesService) Get(r *http.Request, raw *json.RawMessage, out *Slave) error {
	var p SessionParams
	if err := decodeParams(raw, &p); err != nil {
		return err
	}
	for _, sl := range view.Slaves(s.h.m) {
		if sl.ID == p.ID {
			*out = sl
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

// appsService is the Apps.* methods.
type appsService struct{ h *handler }

// List returns every application id the master knows.
func (s *appsService) List(r *http.Request, raw *json.RawMessage, out *AppList) error {
	var p struct{}
	if err := decodeParams(raw, &p); err != nil {
		return err
	}
	out.Apps = view.Apps(s.h.m)
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
	*out = view.Summarize(s.h.m)
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
	out.Series = view.Series(s.h.m.Metrics(), names, since)
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
	*out = view.InfoOf(s.h.m)
	return nil
}

// AppConfigParams are Apps.Configure's parameters. A field left out
// keeps its value.
type AppConfigParams struct {
	App      string `json:"app" rpc:"required"`
	Replicas *int   `json:"replicas,omitempty"` // copies of each task on distinct volunteers; 0 or 1: one
	Quorum   *int   `json:"quorum,omitempty"`   // copies that must agree; 0: a majority
	Adaptive *bool  `json:"adaptive,omitempty"` // a trusted volunteer's task runs as one copy, spot-checked
	// Validator is the hash of an uploaded module that says whether two
	// results agree (docs/TRUST.md); "" goes back to byte equality.
	Validator *string `json:"validator,omitempty"`
	// Weight is the app's share of the slots under --strategy fair,
	// against the other apps' weights: 1 to 65535.
	Weight *int `json:"weight,omitempty"`
}

// AppConfig is an app's defaults for its tasks: Apps.Configure's result.
type AppConfig struct {
	App       string `json:"app"`
	Replicas  int    `json:"replicas"`
	Quorum    int    `json:"quorum"`
	Adaptive  bool   `json:"adaptive"`
	Validator string `json:"validator"`
	Weight    int    `json:"weight"`
}

// Configure sets an application's defaults for the tasks it submits from
// then on; tasks already running keep theirs.
func (s *appsService) Configure(r *http.Request, raw *json.RawMessage, out *AppConfig) error {
	var p AppConfigParams
	if err := decodeParams(raw, &p); err != nil {
		return err
	}
	if err := checkApp(p.App); err != nil {
		return err
	}
	c := s.h.m.AppConfigOf(p.App)
	if p.Replicas != nil {
		if err := checkCopies("", "replicas", *p.Replicas); err != nil {
			return err
		}
		c.Replicas = uint8(*p.Replicas)
	}
	if p.Quorum != nil {
		if err := checkCopies("", "quorum", *p.Quorum); err != nil {
			return err
		}
		c.Quorum = uint8(*p.Quorum)
	}
	if p.Adaptive != nil {
		c.Adaptive = *p.Adaptive
	}
	if p.Validator != nil {
		c.Validator = *p.Validator
	}
	if p.Weight != nil {
		if *p.Weight < 1 || *p.Weight > math.MaxUint16 {
			return invalidParam("weight", fmt.Sprintf("%d is not between 1 and %d", *p.Weight, math.MaxUint16))
		}
		c.Weight = uint16(*p.Weight)
	}
	if err := s.h.m.ConfigureApp(p.App, c); err != nil {
		if qe, ok := errors.AsType[*sched.QuotaError](err); ok {
			return rpcError(CodeQuotaExceeded, quotaData{Quota: qe.Quota, Limit: qe.Limit}, "%s", qe.Error())
		}
		if ce, ok := errors.AsType[*sched.ConfigError](err); ok {
			return invalidParam(ce.Field, ce.Problem)
		}
		return s.h.masterError(err)
	}
	*out = AppConfig{App: p.App, Replicas: int(c.Replicas), Quorum: int(c.Quorum), Adaptive: c.Adaptive, Validator: c.Validator,
		Weight: int(max(c.Weight, 1))}
	return nil
}
