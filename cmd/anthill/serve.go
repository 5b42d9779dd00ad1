package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	httppprof "net/http/pprof"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/anthill-project/anthill/internal/netguard"
	"github.com/anthill-project/anthill/jsonrpc"
	"github.com/anthill-project/anthill/master"
	"github.com/anthill-project/anthill/master/sched"
	"github.com/anthill-project/anthill/samples/hello"
	"github.com/anthill-project/anthill/samples/mandelbrot"
	"github.com/anthill-project/anthill/samples/primes"
	"github.com/anthill-project/anthill/sandbox"
	"github.com/anthill-project/anthill/slave"
	"github.com/anthill-project/anthill/stats/promexport"
	"github.com/anthill-project/anthill/web"
)

// masterFlags binds one flag per master.Options field, same name.
func masterFlags(fs *flag.FlagSet, o *master.Options) {
	fs.StringVar(&o.Listen, "listen", "127.0.0.1:7070", "address to serve slaves, apps and HTTP on")
	fs.StringVar(&o.Data, "data", "./anthill-data", "directory of the bbolt store")
	fs.StringVar(&o.TLSCert, "tls-cert", "", "PEM certificate (with chain) to serve https and wss; needs --tls-key")
	fs.StringVar(&o.TLSKey, "tls-key", "", "PEM private key of --tls-cert")
	fs.BoolVar(&o.TrustProxy, "trust-proxy", false, "behind a TLS-terminating reverse proxy: trust its X-Forwarded-Proto and X-Forwarded-For (never when clients can reach the master directly)")
	fs.StringVar(&o.MetricsToken, "metrics-token", "", "bearer token /metrics requires (default: /metrics is open to anyone who can reach the port)")
	fs.DurationVar(&o.IdleTimeout, "idle-timeout", 90*time.Second, "close a keep-alive HTTP connection idle this long")
	fs.DurationVar(&o.ReadTimeout, "read-timeout", 2*time.Minute, "longest time to read one HTTP request, body included")
	fs.DurationVar(&o.WriteTimeout, "write-timeout", 3*time.Minute, "longest time to write one HTTP answer (must exceed a Tasks.Wait)")
	fs.IntVar(&o.MaxHeaderBytes, "max-header-bytes", 32<<10, "largest HTTP request header in bytes")
	fs.IntVar(&o.MaxConnsPerIP, "max-conns-per-ip", 256, "open TCP connections allowed from one IP address (negative: no cap)")
	fs.IntVar(&o.MaxConns, "max-conns", 8192, "open TCP connections allowed in total (negative: no cap)")
	fs.StringVar(&o.Strategy, "strategy", "fifo", "task order: fifo, priority, or fair (slots shared between apps by weight: anthill apps configure APP weight=W)")
	fs.StringVar(&o.ReplicaDistinct, "replica-distinct", "", "keep the copies of a replicated task on distinct IP addresses too (\"ip\"), not only distinct volunteers")
	fs.StringVar(&o.Dispatch, "dispatch", "send", "work pattern: send (master fills each slave's window) or poll (slaves ask)")
	fs.IntVar(&o.MaxPayload, "max-payload", 1<<20, "largest task payload in bytes")
	fs.IntVar(&o.MaxFrame, "max-frame", 16<<20, "largest WebSocket frame in bytes")
	fs.IntVar(&o.MaxResult, "max-result", 0, "largest task result in bytes; a larger one fails its attempt (0: --max-payload)")
	fs.IntVar(&o.MaxModuleBytes, "max-module-bytes", 0, "largest WASM module an upload may carry, in bytes (0: 32 MiB)")
	fs.IntVar(&o.MaxWindow, "max-window", 1024, "most tasks one slave session holds, whatever it asks; a new session starts at 4 and grows by one per result")
	fs.IntVar(&o.MaxWindowBytes, "max-window-bytes", 0, "most payload bytes one slave session holds, beyond its first task (0: 4 × --max-frame)")
	fs.DurationVar(&o.Heartbeat, "heartbeat", 5*time.Second, "ping interval; a peer silent for two is dropped")
	fs.DurationVar(&o.DefaultTimeout, "default-timeout", time.Minute, "timeout of a task submitted without one")
	fs.DurationVar(&o.MaxTimeout, "max-timeout", 24*time.Hour, "largest task timeout accepted")
	fs.DurationVar(&o.LeaseGrace, "lease-grace", 5*time.Second, "added to a task's timeout before it is taken back from a silent slave")
	fs.IntVar(&o.DefaultAttempts, "default-attempts", 3, "attempts of a task submitted without max attempts")
	fs.DurationVar(&o.RetryBackoff, "retry-backoff", 100*time.Millisecond, "delay before a second attempt; doubles per attempt")
	fs.DurationVar(&o.RetryBackoffMax, "retry-backoff-max", 30*time.Second, "largest delay between attempts")
	fs.DurationVar(&o.Retention, "retention", 24*time.Hour, "how long finished, acknowledged tasks stay in the store (negative: delete at once)")
	fs.Int64Var(&o.MaxQueuedTasks, "max-queued-tasks", sched.DefaultMaxQueuedTasks, "most unfinished tasks the master holds, over all apps (negative: no limit)")
	fs.Int64Var(&o.MaxQueuedBytes, "max-queued-bytes", sched.DefaultMaxQueuedBytes, "most payload bytes of unfinished tasks, over all apps (negative: no limit)")
	fs.Int64Var(&o.MaxQueuedTasksPerApp, "max-queued-tasks-per-app", 0, "most unfinished tasks of one app (default: --max-queued-tasks)")
	fs.Int64Var(&o.MaxQueuedBytesPerApp, "max-queued-bytes-per-app", 0, "most payload bytes of one app's unfinished tasks (default: --max-queued-bytes)")
	fs.IntVar(&o.MaxSubmitTasks, "max-submit-tasks", sched.DefaultMaxSubmitTasks, "most tasks in one submit")
	fs.IntVar(&o.MaxKinds, "max-kinds", sched.DefaultMaxKinds, "most distinct kinds of the tasks held (negative: no limit)")
	fs.IntVar(&o.MaxApps, "max-apps", sched.DefaultMaxApps, "most applications known at once (negative: no limit)")
	fs.DurationVar(&o.AppIdle, "app-idle", sched.DefaultAppIdle, "how long an app with nothing left on the master is kept before it and its metrics are forgotten")
	fs.Int64Var(&o.SendQueueBytes, "send-queue-bytes", 0, "most bytes queued for one peer before it is dropped as too slow (default: 4 × --max-frame)")
	fs.StringVar(&o.SlaveToken, "slave-token", "", "invitation: a slave presenting it is enrolled as a new volunteer identity (at least 16 bytes; default: none)")
	fs.BoolVar(&o.OpenEnrollment, "open-enrollment", false, "let any slave join: one without a token is enrolled as a new volunteer identity")
	fs.BoolVar(&o.NoSync, "no-sync", false, "skip fsync (benchmarks only: accepted tasks can be lost on a crash)")
	fs.BoolFunc("wal", "commit through the write-ahead log, one fsync per commit group (default true; --wal=false: bbolt fsyncs each commit itself)", func(v string) error {
		on, err := strconv.ParseBool(v)
		o.NoWAL = !on
		return err
	})
}

func runMaster(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("master", stderr)
	var o master.Options
	masterFlags(fs, &o)
	cpuProfile := fs.String("cpu-profile", "", "write a CPU profile of the whole run to this file")
	pprofAddr := fs.String("pprof-addr", "", "serve Go's live profiles (net/http/pprof) on this address, such as 127.0.0.1:6060; they need no token, so keep it on loopback (default: off)")
	logger := logFlags(fs, stderr)
	if err := parse(fs, args); err != nil {
		return err
	}
	if *pprofAddr != "" {
		stop, err := servePprof(*pprofAddr)
		if err != nil {
			return err
		}
		defer stop()
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	log, err := logger()
	if err != nil {
		return err
	}
	o.Logger, o.Version = log, versionString()
	reg := newRegistry()
	o.Metrics = reg
	tok, tokPath, _, err := jsonrpc.LoadOrCreateToken(o.Data)
	if err != nil {
		return err
	}
	o.AdminToken = tok
	m, err := master.New(o)
	if err != nil {
		return err
	}
	parts, err := attachHTTP(m, o, tok, tokPath, reg, log)
	if err != nil {
		m.Close()
		return err
	}
	base := httpBase(m)
	fmt.Fprintf(stdout, "anthill master listening on %s (data in %s)\n", m.Addr(), o.Data)
	fmt.Fprintf(stdout, "JSON-RPC API at %s%s; admin token in %s\n", base, jsonrpc.Path, parts.tokenPath)
	switch {
	case o.OpenEnrollment:
		fmt.Fprintf(stdout, "open enrollment: any slave may join (anthill slave --master %s) and is given its own identity\n", m.URL())
	case o.SlaveToken != "":
		fmt.Fprintf(stdout, "slaves join with the invitation (anthill slave --master %s --token <slave token>) or their own token\n", m.URL())
	default:
		fmt.Fprintf(stdout, "slaves need a token: anthill volunteers enroll NAME, then anthill slave --master %s --token TOKEN (or start the master with --open-enrollment)\n", m.URL())
	}
	fmt.Fprintln(stdout, "apps need a token: anthill apps enroll APP (or the admin token)")
	// A one-time login link is a credential for 15 minutes: print it to a
	// person at a terminal, not into logs that others may read.
	if isTerminal(stdout) {
		fmt.Fprintf(stdout, "dashboard at %s/ (log in with the admin token, or once with %s)\n", base, parts.dash.LoginURL(base))
	} else {
		fmt.Fprintf(stdout, "dashboard at %s/ (log in with the admin token)\n", base)
	}
	switch {
	case o.OpenEnrollment:
		fmt.Fprintf(stdout, "browser volunteers: %s/volunteer\n", base)
	default:
		fmt.Fprintf(stdout, "browser volunteers: %s/volunteer#token=TOKEN (an invitation or a volunteer's token)\n", base)
	}
	return m.Run(ctx)
}

// servePprof serves net/http/pprof on a listener of its own, apart from
// the master's doors and their tokens; stop closes it and waits.
func servePprof(addr string) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--pprof-addr: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", httppprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", httppprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", httppprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", httppprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", httppprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	return func() { srv.Close(); <-done }, nil
}

// newRegistry holds the master's metrics and the process's own.
func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// httpParts is what attachHTTP mounted on a master.
type httpParts struct {
	tokenPath string
	dash      *web.Server
}

// attachHTTP serves the JSON-RPC API and the dashboard on m, both behind
// the admin token tok (kept in the data dir at path, created on first
// start with jsonrpc.LoadOrCreateToken, and given to master.New as well),
// and the metrics in reg on /metrics, behind o.MetricsToken when set.
// Every door shares the master's limiter of credential failures.
func attachHTTP(m *master.Master, o master.Options, tok, path string, reg *prometheus.Registry, log *slog.Logger) (httpParts, error) {
	m.Handle("/metrics", netguard.RequireBearer(o.MetricsToken, m.Limiter(), o.TrustProxy, "metrics", promexport.Handler(reg)))
	h, err := jsonrpc.New(m.Scheduler(), jsonrpc.Options{Token: tok, Logger: log, Limiter: m.Limiter(), TrustProxy: o.TrustProxy, Identities: m, Modules: m})
	if err != nil {
		return httpParts{}, err
	}
	m.Handle(jsonrpc.Path, h)
	dash, err := web.New(m.Scheduler(), web.Options{Token: tok, Logger: log, Limiter: m.Limiter(), TrustProxy: o.TrustProxy,
		RevocationFile: filepath.Join(o.Data, web.RevocationFile)})
	if err != nil {
		return httpParts{}, err
	}
	m.Handle("/", dash)
	return httpParts{tokenPath: path, dash: dash}, nil
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// httpBase is the http:// (https:// under TLS) address of m for a person
// on this machine: a master listening on every interface is reached on
// loopback.
func httpBase(m *master.Master) string {
	scheme := "http://"
	if m.TLS() {
		scheme = "https://"
	}
	host, port, err := net.SplitHostPort(m.Addr().String())
	if err != nil {
		return scheme + m.Addr().String()
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return scheme + net.JoinHostPort(host, port)
}

// stockRegistry holds every kind the stock slave runs: the built-ins and
// the samples' kinds.
func stockRegistry() *sandbox.Registry {
	r := sandbox.NewRegistry()
	slave.RegisterBuiltins(r)
	r.Register(mandelbrot.Kind, mandelbrot.Render)
	r.Register(hello.Kind, hello.Handler)
	r.Register(primes.Kind, primes.Handler)
	return r
}

func runSlave(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("slave", stderr)
	var o slave.Options
	fs.StringVar(&o.Master, "master", "ws://127.0.0.1:7070", "URL of the master")
	fs.StringVar(&o.Name, "name", "", "name shown on the master (default host-pid)")
	fs.StringVar(&o.Token, "token", "", "this volunteer's token (anthill volunteers enroll), or an invitation (the master's --slave-token)")
	fs.StringVar(&o.State, "state", defaultSlaveState(), `directory keeping the identity token a master issued this slave ("" keeps none)`)
	fs.IntVar(&o.Concurrency, "concurrency", 0, "tasks run at once (default: number of CPUs)")
	fs.IntVar(&o.Prefetch, "prefetch", 0, "tasks held beyond concurrency to hide latency (default: concurrency)")
	fs.DurationVar(&o.Grace, "grace", 30*time.Second, "on SIGINT/SIGTERM, how long running tasks may finish")
	fs.StringVar(&o.CA, "ca", "", "PEM file of the CA (or certificate) that verifies a wss:// master (default: the system's roots)")
	fs.IntVar(&o.MaxFrame, "max-frame", 16<<20, "largest frame read from the master in bytes, whatever it announces")
	fs.BoolVar(&o.Leaderboard, "leaderboard", false, "list this volunteer's name, validated results and credit on the master's public leaderboard")
	noWASM := fs.Bool("no-wasm", false, "run no WASM tasks (by default the slave runs them in its sandbox)")
	wasmMemory := sizeFlag(sandbox.DefaultWASMMemory)
	fs.Var(&wasmMemory, "wasm-memory", "memory of one WASM task at most (e.g. 256MiB)")
	wasmInProcess := fs.Bool("wasm-in-process", false, "run WASM modules in the slave's process (slower compute: wazero checks the deadline at every loop) instead of worker processes")
	moduleCache := fs.String("module-cache", defaultModuleCache(), `directory keeping fetched WASM modules and their compiled code ("" keeps them in memory)`)
	cacheSize := sizeFlag(slave.DefaultModuleCacheBytes)
	fs.Var(&cacheSize, "module-cache-size", "bound of the modules kept in --module-cache")
	var trustKeys, allowExec listFlag
	fs.Var(&trustKeys, "trust-key", "run only WASM modules signed by this public key (anthill keygen); repeatable")
	fs.Var(&allowExec, "allow-exec", "NAME=PATH: run the program PATH for tasks of kind NAME, payload on stdin (trusted clusters only: no sandbox); repeatable")
	logger := logFlags(fs, stderr)
	if err := parse(fs, args); err != nil {
		return err
	}
	log, err := logger()
	if err != nil {
		return err
	}
	o.Logger, o.Software, o.Registry = log, versionString(), stockRegistry()
	if !*noWASM {
		o.WASM = &slave.WASMOptions{Memory: uint64(wasmMemory), Cache: *moduleCache, CacheBytes: int64(cacheSize), TrustKeys: trustKeys, InProcess: *wasmInProcess}
	} else if len(trustKeys) > 0 {
		fmt.Fprintln(stderr, "anthill slave: --trust-key needs WASM; drop --no-wasm")
		return errUsage
	}
	if len(allowExec) > 0 {
		o.Exec = &sandbox.Exec{Programs: map[string]string{}}
		for _, spec := range allowExec {
			name, path, err := sandbox.ParseAllowExec(spec)
			if err != nil {
				fmt.Fprintf(stderr, "anthill slave: --allow-exec: %v\n", err)
				return errUsage
			}
			o.Exec.Programs[name] = path
		}
	}
	s, err := slave.New(o)
	if err != nil {
		return err
	}
	return s.Run(ctx)
}

// defaultModuleCache keeps modules in the user's cache dir, so a
// volunteer's restarts fetch and compile nothing again.
func defaultModuleCache() string {
	dir, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(dir, "anthill", "modules")
}

// defaultSlaveState is where a slave keeps its identity by default: the
// user's config dir, so a volunteer's restarts keep their identity.
func defaultSlaveState() string {
	dir, err := os.UserConfigDir()
	if err != nil {
		return ""
	}
	return filepath.Join(dir, "anthill", "slave")
}
