package main

import (
	"bufio"
	"context"
	_ "embed"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	neturl "net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gorilla/websocket"

	"github.com/anthill-project/anthill/appnode"
	"github.com/anthill-project/anthill/jsonrpc"
)

// runBench measures the whole path a task takes: an appnode pushes no-op
// echo tasks to a master process with its durable store, which dispatches
// them to slave processes; the bench waits for every notification. The
// master runs as its own process so its CPU time can be read apart.
func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("bench", stderr)
	slaves := fs.Int("slaves", 4, "slave processes")
	tasks := fs.Int("tasks", 200000, "tasks in the throughput run")
	batch := fs.Int("batch", 1000, "tasks per push in the throughput run")
	window := fs.Int("window", 50000, "tasks in flight in the throughput run")
	prefetch := fs.Int("prefetch", 512, "tasks each slave holds beyond its concurrency")
	rate := fs.Int("rate", 1000, "offered tasks/s in the latency run")
	latDur := fs.Duration("latency-duration", 10*time.Second, "length of the latency run")
	runs := fs.Int("runs", 3, "repetitions; medians are reported")
	noSync := fs.Bool("no-sync", false, "run the master without fsync (to see what durability costs)")
	wal := fs.Bool("wal", true, "run the master with its write-ahead log (--wal=false: bbolt fsyncs each commit, as before the log)")
	profile := fs.String("master-profile", "", "write the master's CPU profile to this file")
	dashboards := fs.Int("dashboards", 0, "live dashboard feeds kept open during the runs, to measure what watching costs")
	useWASM := fs.Bool("wasm", false, "tasks run a tiny WASM echo module on the slaves instead of their built-in echo")
	replicas := fs.Int("replicas", 0, "run each task as this many copies on distinct slaves (quorum: a majority), to measure what replication costs")
	sim := fs.Int("sim-slaves", 0, "run this many slave sessions in the bench process (concurrency 1 each) in place of the slave processes, and report the master's memory per idle slave")
	queued := fs.Int("queued", 0, "measure a deep queue instead: push this many tasks with no slave, report the master's memory, restart it and report its time to serve and memory, then drain --drain of them with --slaves")
	payload := fs.Int("payload", 1024, "payload bytes of each --queued task")
	drainN := fs.Int("drain", 200000, "tasks of the --queued queue the slaves drain")
	adaptive := fs.Bool("adaptive", false, "adaptive replication: the bench app replicates (--replicas, default 2) until the slaves are trusted, then runs single copies, spot-checked")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *queued > 0 {
		return benchQueue(ctx, *queued, *payload, *slaves, *drainN, *noSync, *profile, stdout, stderr)
	}
	if *adaptive && *replicas == 0 {
		*replicas = 2
	}
	if *sim > 0 {
		*slaves = 0
		raiseFileLimit() // before the master starts: it inherits the limit
	}
	if *replicas < 0 || *replicas > max(*slaves, *sim) {
		return fmt.Errorf("--replicas %d: want 0 to the number of slaves (%d): copies need distinct slaves", *replicas, *slaves)
	}
	dir, err := os.MkdirTemp("", "anthill-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	addr, err := freeAddr()
	if err != nil {
		return err
	}
	margs := []string{"master", "--listen", addr, "--data", dir, "--log-level", "warn", "--retention", "-1s"}
	var pprofAddr string
	if *sim > 0 {
		if pprofAddr, err = freeAddr(); err != nil {
			return err
		}
		margs = append(margs, "--max-conns", "-1", "--max-conns-per-ip", "-1", "--pprof-addr", pprofAddr)
	}
	if *noSync {
		margs = append(margs, "--no-sync")
	}
	if !*wal {
		margs = append(margs, "--wal=false")
	}
	if *profile != "" {
		margs = append(margs, "--cpu-profile", *profile)
	}
	mp, _, err := startBenchMaster(margs, stderr)
	if err != nil {
		return err
	}
	defer func() {
		_ = mp.Process.Signal(syscall.SIGTERM)
		_ = mp.Wait()
	}()
	url := "ws://" + addr

	tokb, err := os.ReadFile(filepath.Join(dir, jsonrpc.TokenFile))
	if err != nil {
		return err
	}
	// The operator's own machine: the admin token enrolls each slave.
	admin := strings.TrimSpace(string(tokb))
	sp, err := startSlaves(url, "bench", *slaves, func(string) (string, error) { return admin, nil }, stderr, "--prefetch", fmt.Sprint(*prefetch))
	defer stopSlaves(sp, slog.New(slog.NewTextHandler(stderr, nil)))
	if err != nil {
		return err
	}
	fleet := fmt.Sprintf("%d slave processes", *slaves)
	if *sim > 0 {
		rss0, anon0, err := procMem(mp.Process.Pid)
		if err != nil {
			return err
		}
		go0, err := goMem(ctx, "http://"+addr)
		if err != nil {
			return err
		}
		f, err := startSimFleet(url, admin, *sim, stderr)
		if err != nil {
			return err
		}
		defer f.stop()
		rpc := &jsonrpc.Client{URL: "http://" + addr, Token: admin}
		if err := waitSimConnected(ctx, rpc, *sim, 5*time.Minute); err != nil {
			return err
		}
		time.Sleep(2 * time.Second) // the handshakes settled
		per := func(a, b int64) float64 { return float64(b-a) / 1024 / float64(*sim) }
		report := func(when string) error {
			rss1, anon1, err := procMem(mp.Process.Pid)
			if err != nil {
				return err
			}
			go1, err := goMem(ctx, "http://"+addr)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "%d simulated slaves idle, %s: master RSS %.1f MiB -> %.1f MiB (%.1f KiB a slave), anonymous %.1f KiB, stacks %.1f KiB, heap in use %.1f KiB a slave; %.2f goroutines a slave\n",
				*sim, when, float64(rss0)/(1<<20), float64(rss1)/(1<<20), per(rss0, rss1), per(anon0, anon1),
				per(go0.stack, go1.stack), per(go0.heap, go1.heap), float64(go1.goroutines-go0.goroutines)/float64(*sim))
			return nil
		}
		if err := report("before a GC"); err != nil {
			return err
		}
		// A live master collects every two minutes at least; the handshakes'
		// garbage (the HTTP server's buffers above all) is no slave's cost.
		if err := collect(ctx, "http://"+pprofAddr); err != nil {
			return err
		}
		time.Sleep(time.Second) // the scavenger returns the freed pages
		if err := report("after a GC"); err != nil {
			return err
		}
		fleet = fmt.Sprintf("%d simulated slaves in the bench process", *sim)
	}

	var updates atomic.Int64
	if *dashboards > 0 {
		stop, err := watchDashboards(ctx, addr, dir, *dashboards, &updates)
		if err != nil {
			return err
		}
		defer stop()
	}

	var lat latencies
	node, err := appnode.Connect(ctx, appnode.Options{Master: url, App: "bench", Token: admin, TaskFinished: lat.finished})
	if err != nil {
		return err
	}
	defer node.Shutdown(context.WithoutCancel(ctx))
	mk := func(payload []byte) *appnode.Task { return &appnode.Task{Kind: "echo", Payload: payload} }
	tasksAre := "built-in echo"
	switch {
	case *adaptive:
		rpc := &jsonrpc.Client{URL: "http://" + addr, Token: admin}
		yes := true
		if err := rpc.Call(ctx, "Apps.Configure", jsonrpc.AppConfigParams{App: "bench", Replicas: replicas, Adaptive: &yes}, nil); err != nil {
			return err
		}
		tasksAre += fmt.Sprintf(", adaptive replication of %d", *replicas)
	case *replicas > 1:
		tasksAre += fmt.Sprintf(", %d copies, quorum %d", *replicas, *replicas/2+1)
	}
	if *useWASM {
		hash, err := node.UploadModule(ctx, "echo", benchEchoModule)
		if err != nil {
			return err
		}
		mk = func(payload []byte) *appnode.Task { return &appnode.Task{Module: hash, Payload: payload} }
		tasksAre = strings.Replace(tasksAre, "built-in echo", fmt.Sprintf("WASM echo (%d-byte module)", len(benchEchoModule)), 1)
	}
	if *replicas > 1 && !*adaptive {
		one, n := mk, uint8(*replicas)
		mk = func(payload []byte) *appnode.Task { t := one(payload); t.Replicas = n; return t }
	}

	fmt.Fprintf(stdout, "machine: %s/%s, %d CPUs; master pid %d, %s; fsync %v; %d dashboards open; tasks: %s\n",
		runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), mp.Process.Pid, fleet, !*noSync, *dashboards, tasksAre)
	// Warm up connections, pages and the slaves' windows.
	if _, err := throughput(ctx, node, mk, 20000, *batch, *window); err != nil {
		return err
	}

	var tput, cpu, p50, p99 []float64
	for r := range *runs {
		before, err := procCPU(mp.Process.Pid)
		if err != nil {
			return err
		}
		el, err := throughput(ctx, node, mk, *tasks, *batch, *window)
		if err != nil {
			return err
		}
		after, _ := procCPU(mp.Process.Pid)
		tps := float64(*tasks) / el.Seconds()
		us := float64((after - before).Microseconds()) / float64(*tasks)
		tput, cpu = append(tput, tps), append(cpu, us)
		fmt.Fprintf(stdout, "run %d: throughput %8.0f tasks/s  master CPU %5.1f µs/task  (%d tasks in %v)\n",
			r+1, tps, us, *tasks, el.Round(time.Millisecond))

		l50, l99, err := lat.run(ctx, node, mk, *rate, *latDur)
		if err != nil {
			return err
		}
		p50, p99 = append(p50, ms(l50)), append(p99, ms(l99))
		fmt.Fprintf(stdout, "run %d: latency at %d tasks/s: p50 %.3f ms  p99 %.3f ms\n", r+1, *rate, ms(l50), ms(l99))
	}
	fmt.Fprintf(stdout, "median of %d: %.0f tasks/s, %.1f µs master CPU/task, latency p50 %.3f ms p99 %.3f ms at %d tasks/s\n",
		*runs, median(tput), median(cpu), median(p50), median(p99), *rate)
	if *dashboards > 0 {
		fmt.Fprintf(stdout, "dashboards received %d live updates\n", updates.Load())
	}
	return nil
}

// watchDashboards logs in to the master's dashboard with the admin token in
// dir and keeps n live feeds open, reading them as a browser would, until
// the returned stop is called. Each update read is counted in updates.
func watchDashboards(ctx context.Context, addr, dir string, n int, updates *atomic.Int64) (stop func(), err error) {
	tok, err := os.ReadFile(filepath.Join(dir, jsonrpc.TokenFile))
	if err != nil {
		return nil, err
	}
	base := "http://" + addr
	noRedirect := &http.Client{Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.PostForm(base+"/login", neturl.Values{"token": {strings.TrimSpace(string(tok))}})
	if err != nil {
		return nil, err
	}
	resp.Body.Close()
	var cookie string
	for _, c := range resp.Cookies() {
		if c.Name == "anthill_session" {
			cookie = c.Name + "=" + c.Value
		}
	}
	if cookie == "" {
		return nil, fmt.Errorf("dashboard login: %s, no session cookie", resp.Status)
	}
	hdr := http.Header{"Cookie": {cookie}, "Origin": {base}}
	var wg sync.WaitGroup
	var conns []*websocket.Conn
	stop = func() {
		for _, c := range conns {
			c.Close()
		}
		wg.Wait()
	}
	for range n {
		ws, _, err := websocket.DefaultDialer.DialContext(ctx, "ws://"+addr+"/ui/live", hdr)
		if err != nil {
			stop()
			return nil, fmt.Errorf("dashboard feed: %w", err)
		}
		conns = append(conns, ws)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				if _, _, err := ws.ReadMessage(); err != nil {
					return
				}
				updates.Add(1)
			}
		}()
	}
	return stop, nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

// benchEchoModule is bench_echo.wat assembled: see that file.
//
//go:embed bench_echo.wasm
var benchEchoModule []byte

// counter is a TaskSystem of n echo tasks that only counts outcomes.
type counter struct {
	mk     func(payload []byte) *appnode.Task
	left   int
	failed atomic.Int64
}

func (c *counter) Next() *appnode.Task {
	if c.left == 0 {
		return nil
	}
	c.left--
	return c.mk(nil)
}

func (c *counter) Finished(_ *appnode.Task, _ []byte, err error) {
	if err != nil {
		c.failed.Add(1)
	}
}

func throughput(ctx context.Context, node *appnode.Node, mk func([]byte) *appnode.Task, n, batch, window int) (time.Duration, error) {
	c := &counter{mk: mk, left: n}
	start := time.Now()
	if err := node.Run(ctx, c, appnode.RunOptions{Window: window, Batch: batch}); err != nil {
		return 0, err
	}
	if f := c.failed.Load(); f > 0 {
		return 0, fmt.Errorf("%d echo tasks failed", f)
	}
	return time.Since(start), nil
}

// latencies measures push-to-finished time at a fixed offered rate: each
// task is pushed on its own schedule, whether or not earlier ones are done.
type latencies struct {
	mu      sync.Mutex
	pending map[*appnode.Task]time.Time
	got     []time.Duration
	done    chan struct{}
	want    int
}

func (l *latencies) finished(t *appnode.Task, _ []byte, _ error) {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if start, ok := l.pending[t]; ok {
		delete(l.pending, t)
		l.got = append(l.got, now.Sub(start))
		if len(l.got) == l.want {
			close(l.done)
		}
	}
}

func (l *latencies) run(ctx context.Context, node *appnode.Node, mk func([]byte) *appnode.Task, rate int, d time.Duration) (p50, p99 time.Duration, err error) {
	n := int(d.Seconds() * float64(rate))
	l.mu.Lock()
	l.pending, l.got, l.done, l.want = map[*appnode.Task]time.Time{}, nil, make(chan struct{}), n
	l.mu.Unlock()
	interval := time.Second / time.Duration(rate)
	start := time.Now()
	errs := make(chan error, n)
	for i := range n {
		if wait := time.Until(start.Add(time.Duration(i) * interval)); wait > 0 {
			time.Sleep(wait)
		}
		t := mk([]byte("x"))
		l.mu.Lock()
		l.pending[t] = time.Now()
		l.mu.Unlock()
		go func() { errs <- node.PushTask(ctx, t) }()
	}
	for range n {
		if err := <-errs; err != nil {
			return 0, 0, err
		}
	}
	select {
	case <-l.done:
	case <-ctx.Done():
		return 0, 0, ctx.Err()
	case <-time.After(30 * time.Second):
		return 0, 0, fmt.Errorf("latency run: notifications missing")
	}
	slices.Sort(l.got)
	return l.got[len(l.got)/2], l.got[len(l.got)*99/100], nil
}

// procCPU reads a process's user+system CPU time from /proc (Linux).
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("master CPU: %w", err)
	}
	// The command name may hold spaces; fields count from after its ')'.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	const clockTicks = 100 // USER_HZ on every Linux we run on
	return time.Duration(utime+stime) * time.Second / clockTicks, nil
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func waitLine(r io.Reader, s string, d time.Duration) error {
	found := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			if strings.Contains(sc.Text(), s) {
				found <- nil
				return
			}
		}
		found <- fmt.Errorf("master exited before saying %q", s)
	}()
	select {
	case err := <-found:
		return err
	case <-time.After(d):
		return fmt.Errorf("master did not start within %v", d)
	}
}
