package web

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/anthill-project/anthill/internal/testmaster"
	"github.com/anthill-project/anthill/master"
	"github.com/anthill-project/anthill/stats"
)

// clockedMaster is a real master whose numbers come from a recorder with a
// clock the test moves, so seconds close when the test says.
type clockedMaster struct {
	Master
	met *stats.Master
}

func (m clockedMaster) Metrics() *stats.Master { return m.met }

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func clockedServer(t *testing.T, o Options) (*Server, *stats.Master, *fakeClock) {
	t.Helper()
	clock := &fakeClock{now: time.Unix(1_800_000_000, 0)}
	met := stats.NewMaster(clock.Now)
	var s *Server
	testmaster.Start(t, master.Options{NoSync: true}, func(m *master.Master) (err error) {
		o.Token = "hub-test-token-0123456789abcdef"
		s, err = New(clockedMaster{m.Scheduler(), met}, o)
		return err
	})
	t.Cleanup(s.Close)
	return s, met, clock
}

// wireUpdate is an update as the page reads it.
type wireUpdate struct {
	Full   bool                     `json:"full"`
	Info   json.RawMessage          `json:"info"`
	Series map[string][]stats.Point `json:"series"`
	Slaves []struct {
		Name   string     `json:"name"`
		Done   uint64     `json:"done"`
		Recent *[]float64 `json:"recent"`
		Spark  []float64  `json:"spark"`
	} `json:"slaves"`
}

// page keeps sparklines as app.js does (applySparks).
type pageLines map[string][]float64

func (p pageLines) apply(t *testing.T, b []byte) wireUpdate {
	t.Helper()
	var u wireUpdate
	if err := json.Unmarshal(b, &u); err != nil {
		t.Fatal(err)
	}
	if u.Full {
		clear(p)
	}
	seen := map[string]bool{}
	for _, s := range u.Slaves {
		line := p[s.Name]
		switch {
		case s.Recent != nil:
			line = *s.Recent
		case s.Spark != nil:
			line = append(slices.Clone(line[min(len(s.Spark), len(line)):]), s.Spark...)
		}
		p[s.Name] = line
		seen[s.Name] = true
	}
	for n := range p {
		if !seen[n] {
			delete(p, n)
		}
	}
	return u
}

// A page that applies the deltas has, every second, the sparklines a
// full update has, while the deltas carry a few numbers where the full
// carries a minute for every slave: seconds that close one at a time or
// several at once, lines that stay flat, slaves that come and go.
func TestSparklineDeltasRebuildTheLines(t *testing.T) {
	s, met, clock := clockedServer(t, Options{})
	h := newHub(s)
	handles := map[string]*stats.Slave{}
	for i := range 50 {
		name := fmt.Sprintf("slave-%02d", i)
		handles[name] = met.SlaveSeen(name, 2)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	page := pageLines{}
	_, full, err := h.build(true)
	if err != nil {
		t.Fatal(err)
	}
	page.apply(t, full)
	var deltaBytes, fullBytes int
	for round := range 150 {
		for name, sl := range handles {
			if name < "slave-10" {
				continue // idle: their lines stay flat
			}
			for range rng.IntN(4) {
				sl.Result(rng.IntN(5) > 0, time.Millisecond)
			}
		}
		switch {
		case round == 40:
			handles["slave-07"].Gone()
			delete(handles, "slave-07")
		case round == 60:
			handles["newcomer"] = met.SlaveSeen("newcomer", 1)
		}
		step := time.Second
		if round%17 == 5 {
			step = 3 * time.Second // the producer ran late
		}
		if round%23 == 9 {
			step = 300 * time.Millisecond // or twice within a second
		}
		clock.add(step)
		delta, full, err := h.build(true)
		if err != nil {
			t.Fatal(err)
		}
		deltaBytes, fullBytes = deltaBytes+len(delta), fullBytes+len(full)
		u := page.apply(t, delta)
		if u.Full || u.Info != nil {
			t.Fatalf("round %d: a delta marked full or with info", round)
		}
		want := pageLines{}
		want.apply(t, full)
		if len(want) != len(page) {
			t.Fatalf("round %d: the page has %d lines, the full update %d", round, len(page), len(want))
		}
		for n, line := range want {
			if !slices.Equal(page[n], line) {
				t.Fatalf("round %d, %s: the page shows\n%v\nthe full update\n%v", round, n, page[n], line)
			}
		}
	}
	if deltaBytes*2 > fullBytes {
		t.Errorf("deltas %d bytes, full updates %d: the sparklines are not being spared", deltaBytes, fullBytes)
	}
	t.Logf("150 rounds of 50 slaves: deltas %d bytes, full updates %d", deltaBytes, fullBytes)
}

func TestSparkShift(t *testing.T) {
	for _, c := range []struct {
		old, cur, add []float64
		ok            bool
	}{
		{nil, []float64{1, 2}, nil, false},
		{[]float64{1, 2, 3}, []float64{1, 2, 3}, []float64{}, true},
		{[]float64{1, 2, 3}, []float64{2, 3, 4}, []float64{4}, true},
		{[]float64{1, 2, 3}, []float64{3, 0, 0}, []float64{0, 0}, true},
		{[]float64{1, 2, 3}, []float64{9, 9, 9}, []float64{9, 9, 9}, true}, // moved on by all of it
		{[]float64{1, 2, 3}, []float64{1, 2}, nil, false},
		{make([]float64, 60), append(make([]float64, 50), 1, 2, 3, 4, 5, 6, 7, 8, 9, 10), nil, false}, // further than maxSparkShift
	} {
		add, ok := sparkShift(c.old, c.cur)
		if ok != c.ok || (ok && !slices.Equal(add, c.add)) {
			t.Errorf("sparkShift(%v, %v) = %v, %v; want %v, %v", c.old, c.cur, add, ok, c.add, c.ok)
		}
	}
}

// waitFrame waits for the producer to hand f a frame and takes it.
func waitFrame(t *testing.T, h *hub, f *feed) *frame {
	t.Helper()
	for {
		select {
		case <-f.wake:
		case <-time.After(10 * time.Second):
			t.Fatal("no frame for a feed")
		}
		// A wake may be left from a frame taken already, as in serveLive.
		if fr := h.take(f); fr != nil {
			return fr
		}
	}
}

// Every feed is handed the same frame, built once; a feed that does not
// take its frames holds no one up and gets a full frame when it comes
// back; with no feed open the producer stops.
func TestHubSharesFramesAndSparesSlowFeeds(t *testing.T) {
	s, _, _ := clockedServer(t, Options{Interval: 150 * time.Millisecond})
	h := s.hub
	a, b, slow := h.join(), h.join(), h.join()
	first := map[*feed]*frame{}
	for _, f := range []*feed{a, b} {
		first[f] = waitFrame(t, h, f)
		if !first[f].full {
			t.Fatal("a feed's first frame is not full")
		}
	}
	for range 8 {
		fa, fb := waitFrame(t, h, a), waitFrame(t, h, b)
		if fa != fb {
			t.Fatal("two feeds were handed different frames in one round")
		}
		if fa.full {
			t.Fatal("a feed that keeps up got a full frame")
		}
	}
	if fr := h.take(slow); fr == nil || !fr.full {
		t.Fatalf("the feed that took nothing has %+v pending, want a full frame", fr)
	}
	// Back in step: deltas again.
	if fr := waitFrame(t, h, slow); fr.full {
		if fr = waitFrame(t, h, slow); fr.full {
			t.Fatal("a feed back in step still gets full frames")
		}
	}
	h.leave(a)
	h.leave(b)
	h.leave(slow)
	deadline := time.Now().Add(10 * time.Second)
	for {
		h.mu.Lock()
		on := h.running
		h.mu.Unlock()
		if !on {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the producer runs with no feed open")
		}
		time.Sleep(5 * time.Millisecond)
	}
	h.wait()
	// And starts again for the next feed.
	c := h.join()
	defer h.leave(c)
	if !waitFrame(t, h, c).full {
		t.Fatal("a feed's first frame is not full")
	}
}
