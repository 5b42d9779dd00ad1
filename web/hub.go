package web

import (
	"encoding/json"
	"slices"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/anthill-project/anthill/internal/view"
	"github.com/anthill-project/anthill/stats"
)

// maxSparkShift is how many seconds a sparkline may have moved on between
// two frames and still be sent as its newest points: a producer running
// late by a few ticks still sends deltas.
const maxSparkShift = 8

// hub builds each second's update once for every open feed: one read of
// the master, one encoding, the same bytes written to each feed (and
// compressed once for all that negotiated compression). With 1,000 slaves
// an update is 3 ms of CPU and 400 KB; each feed building its own made
// watching cost grow with the tabs open.
//
// Every feed sees the same data: the dashboard has one principal, the
// holder of the admin token, and a feed is opened only for a valid
// session of it, so sharing the snapshot shows no one anything more.
//
// The producer runs only while feeds are open. A feed gets a full frame
// when it joins and whenever it fell behind (its previous frame was still
// unwritten when the next was ready); otherwise a delta, whose sparklines
// are only the seconds that closed since the previous frame. A slow feed
// thus never holds the producer or the other feeds up, and never misses a
// delta it would need: what it skipped is in the full frame it gets.
type hub struct {
	s    *Server
	kick chan struct{} // a feed joined and waits for its first frame
	wg   sync.WaitGroup

	mu      sync.Mutex
	feeds   map[*feed]struct{}
	running bool // a producer goroutine is on

	// The producer's alone; a new producer starts over, since every
	// feed it serves starts with a full frame.
	since  time.Time            // series were sent up to here
	sparks map[string][]float64 // each slave's sparkline as the last frame left it
}

// feed is one open live feed as the producer sees it.
type feed struct {
	wake chan struct{} // cap 1: next is set
	// Guarded by hub.mu.
	next   *frame // the frame its writer has not taken yet
	resync bool   // the next frame it gets must be full
}

// frame is one update, encoded, as every feed it goes to writes it.
type frame struct {
	msg  *websocket.PreparedMessage
	full bool
}

func newHub(s *Server) *hub {
	return &hub{s: s, kick: make(chan struct{}, 1), feeds: map[*feed]struct{}{}}
}

// join adds a feed; the producer starts if it was off, and builds a frame
// now rather than at its next tick, so a page shows numbers at once.
func (h *hub) join() *feed {
	f := &feed{wake: make(chan struct{}, 1), resync: true}
	h.mu.Lock()
	h.feeds[f] = struct{}{}
	if !h.running {
		h.running = true
		h.wg.Add(1)
		go h.run()
	}
	h.mu.Unlock()
	select {
	case h.kick <- struct{}{}:
	default: // a round is due anyway, and will see this feed
	}
	return f
}

func (h *hub) leave(f *feed) {
	h.mu.Lock()
	delete(h.feeds, f)
	h.mu.Unlock()
}

// take is f's pending frame, nil if the producer has none for it.
func (h *hub) take(f *feed) *frame {
	h.mu.Lock()
	defer h.mu.Unlock()
	m := f.next
	f.next = nil
	return m
}

// wait is the hub's producer gone; after the Server's quit it soon is.
func (h *hub) wait() { h.wg.Wait() }

func (h *hub) run() {
	defer h.wg.Done()
	tick := time.NewTicker(h.s.opts.Interval)
	defer tick.Stop()
	h.since = h.s.opts.Now().Add(-history)
	h.sparks = nil
	for {
		select {
		case <-tick.C:
		case <-h.kick:
		case <-h.s.quit:
			return
		}
		if !h.round() {
			return
		}
	}
}

// round builds one frame and hands it to every feed. It reports false,
// and the producer is off, when no feed is open: nothing is built for
// no one.
func (h *hub) round() bool {
	h.mu.Lock()
	if len(h.feeds) == 0 {
		h.running = false
		h.mu.Unlock()
		return false
	}
	needFull := false
	for f := range h.feeds {
		if f.resync || f.next != nil {
			needFull = true
			break
		}
	}
	h.mu.Unlock()

	delta, full, err := h.prepare(needFull)
	if err != nil {
		h.s.opts.Logger.Error("live dashboard update not built", "err", err)
		return true
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for f := range h.feeds {
		m := delta
		if f.resync || f.next != nil {
			if full == nil {
				// Joined after the look above: the kick it sent brings
				// the round that builds its full frame.
				f.resync = true
				continue
			}
			m, f.resync = full, false
		}
		f.next = m
		select {
		case f.wake <- struct{}{}:
		default:
		}
	}
	return true
}

// prepare is build's frames ready to be written to any number of feeds.
func (h *hub) prepare(withFull bool) (delta, full *frame, err error) {
	d, f, err := h.build(withFull)
	if err != nil {
		return nil, nil, err
	}
	delta = &frame{}
	if delta.msg, err = websocket.NewPreparedMessage(websocket.TextMessage, d); err != nil || f == nil {
		return delta, nil, err
	}
	full = &frame{full: true}
	full.msg, err = websocket.NewPreparedMessage(websocket.TextMessage, f)
	return delta, full, err
}

// build reads the master once and encodes the delta from the previous
// frame and, when withFull, the full frame as well; both leave a page in
// the same state.
func (h *hub) build(withFull bool) (delta, full []byte, err error) {
	s := h.s
	o := view.Build(s.m)
	now := s.opts.Now().UTC()
	met := s.m.Metrics()

	var hist, series map[string][]stats.Point
	if withFull {
		// One read serves both frames: the delta's part of the
		// history is what the full frame's readers get too.
		hist = view.Series(met, liveSeries, now.Add(-history))
		series = make(map[string][]stats.Point, len(hist))
		for n, pts := range hist {
			i := len(pts)
			for i > 0 && time.Unix(pts[i-1].T, 0).After(h.since) {
				i--
			}
			series[n] = pts[i:]
		}
	} else {
		series = view.Series(met, liveSeries, h.since)
	}
	h.since = lastPoint(series, h.since)

	rows := make([]liveSlave, len(o.Names))
	sparks := make(map[string][]float64, len(o.Names))
	for i := range o.Names {
		n := &o.Names[i]
		rows[i].SlaveName = n
		if add, ok := sparkShift(h.sparks[n.Name], n.Recent); ok {
			rows[i].Spark = add
		} else {
			rows[i].Recent = &n.Recent
		}
		sparks[n.Name] = n.Recent
	}
	h.sparks = sparks

	u := update{Now: now, Summary: o.Summary, Series: series, Slaves: rows, Apps: o.Apps}
	if delta, err = json.Marshal(&u); err != nil {
		return nil, nil, err
	}
	if !withFull {
		return delta, nil, nil
	}
	in := view.InfoOf(s.m)
	u.Full, u.Info, u.Series = true, &in, hist
	u.Slaves = make([]liveSlave, len(o.Names))
	for i := range o.Names {
		u.Slaves[i] = liveSlave{SlaveName: &o.Names[i], Recent: &o.Names[i].Recent}
	}
	full, err = json.Marshal(&u)
	return delta, full, err
}

// sparkShift finds how cur follows from old, a sparkline as last sent:
// old with its oldest len(add) seconds dropped and add appended (add is
// empty when nothing changed). ok is false when no shift of at most
// maxSparkShift does it, or when there is no old to shift: then cur is
// sent whole. Any shift that matches rebuilds cur exactly, so a line that
// stays flat is simply unchanged.
func sparkShift(old, cur []float64) (add []float64, ok bool) {
	if old == nil || len(old) != len(cur) {
		return nil, false
	}
	for k := 0; k <= min(maxSparkShift, len(cur)); k++ {
		if slices.Equal(old[k:], cur[:len(cur)-k]) {
			return cur[len(cur)-k:], true
		}
	}
	return nil, false
}
