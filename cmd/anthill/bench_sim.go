package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/anthill-project/anthill/jsonrpc"
	"github.com/anthill-project/anthill/sandbox"
	"github.com/anthill-project/anthill/slave"
)

// A simulated fleet for anthill bench --sim-slaves: n real slave sessions
// (the slave package, the real protocol, concurrency 1 each, echo) in this
// process, so a master can be measured against thousands of volunteers on
// one machine. What they cost this process is not the master's.

// simFleet is the running sessions.
type simFleet struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// startSimFleet connects n sessions to url as the identities sim-1..sim-n
// (the admin token enrolls each), at most 200 dialing at once so the
// master's accept loop is not flooded.
func startSimFleet(url, token string, n int, stderr io.Writer) (*simFleet, error) {
	raiseFileLimit()
	reg := sandbox.NewRegistry()
	slave.RegisterBuiltins(reg)
	ctx, cancel := context.WithCancel(context.Background())
	f := &simFleet{cancel: cancel}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	for i := range n {
		s, err := slave.New(slave.Options{
			Master: url, Name: fmt.Sprintf("sim-%d", i+1), Token: token, Registry: reg,
			Concurrency: 1, Prefetch: -1, Grace: -1, Logger: log,
		})
		if err != nil {
			f.stop()
			return nil, err
		}
		f.wg.Go(func() { _ = s.Run(ctx) })
		if i%200 == 199 {
			time.Sleep(50 * time.Millisecond) // let the handshakes drain
		}
	}
	return f, nil
}

func (f *simFleet) stop() {
	f.cancel()
	f.wg.Wait()
}

// raiseFileLimit lifts this process's open-file limit to its hard limit:
// each session is a socket. The master process started before it keeps
// its own limit, which the bench raises the same way (see runBench).
func raiseFileLimit() {
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) == nil && l.Cur < l.Max {
		l.Cur = l.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
	}
}

// waitSimConnected waits until the master counts n connected slaves.
func waitSimConnected(ctx context.Context, rpc *jsonrpc.Client, n int, d time.Duration) error {
	deadline := time.Now().Add(d)
	var s jsonrpc.Summary
	for time.Now().Before(deadline) {
		if err := rpc.Call(ctx, "Stats.Summary", nil, &s); err == nil && s.Slaves.Connected >= n {
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("%d of %d simulated slaves connected after %v", s.Slaves.Connected, n, d)
}

// procMem is a process's resident memory and the anonymous part of it
// (heap and stacks, not mapped files), in bytes.
func procMem(pid int) (rss, anon int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "VmRSS":
			rss = kb << 10
		case "RssAnon":
			anon = kb << 10
		}
	}
	return rss, anon, nil
}

// goMemStats is what the Go runtime of a process says of its memory.
type goMemStats struct{ stack, heap, goroutines int64 }

// goMem reads a master's stack and heap in use from its /metrics, which
// splits what RSS lumps together with the collector's headroom.
func goMem(ctx context.Context, base string) (goMemStats, error) {
	b, err := httpGet(ctx, base+"/metrics")
	if err != nil {
		return goMemStats{}, err
	}
	var m goMemStats
	for _, line := range strings.Split(string(b), "\n") {
		name, v, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		f, _ := strconv.ParseFloat(v, 64)
		switch name {
		case "go_memstats_stack_inuse_bytes":
			m.stack = int64(f)
		case "go_memstats_heap_inuse_bytes":
			m.heap = int64(f)
		case "go_goroutines":
			m.goroutines = int64(f)
		}
	}
	if m.stack == 0 || m.heap == 0 {
		return m, fmt.Errorf("%s/metrics: no go_memstats_stack_inuse_bytes or go_memstats_heap_inuse_bytes", base)
	}
	return m, nil
}

// collect has a master run a garbage collection, through its
// --pprof-addr: a heap profile with gc=1 collects first.
func collect(ctx context.Context, base string) error {
	_, err := httpGet(ctx, base+"/debug/pprof/heap?gc=1")
	return err
}

// httpGet returns the body of a GET of url that answered 200.
func httpGet(ctx context.Context, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return b, err
}
