// Package master is the MasterNode's server: it opens the store, binds the
// listener and the HTTP mux, accepts slaves and applications over
// WebSockets, checks their handshakes and turns the frames they send into
// calls of its scheduler (master/sched), which owns every task's life. It
// serves the WASM modules of its registry (master/modules) over HTTP. It
// owns the shutdown order. It does not parse flags or handle signals
// (cmd/anthill does) and never imports slave.
//
// # Locking
//
// Master.mu guards only the connections being tracked for shutdown; the
// scheduler has its own lock. Master.mu is never held while calling the
// scheduler, and the scheduler never calls back into the master, so the
// two never nest. The one lookup the scheduler makes of the master, a
// module's signers, reads the module registry's memory under its own lock,
// which is never held while calling the scheduler.
package master

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/anthill-project/anthill/internal/netguard"
	"github.com/anthill-project/anthill/internal/wire"
	"github.com/anthill-project/anthill/master/identity"
	"github.com/anthill-project/anthill/master/modules"
	"github.com/anthill-project/anthill/master/sched"
	"github.com/anthill-project/anthill/master/store"
	"github.com/anthill-project/anthill/protocol"
	"github.com/anthill-project/anthill/sandbox"
	"github.com/anthill-project/anthill/stats"
	"github.com/anthill-project/anthill/stats/promexport"
)

// StoreFile is the name of the bbolt file inside Options.Data.
const StoreFile = "anthill.db"

// Master is a running MasterNode. Create it with New, serve with Run, stop
// with Close or by cancelling Run's context.
type Master struct {
	opts     Options
	ln       net.Listener
	srv      *http.Server
	mux      *http.ServeMux
	st       *store.Store
	sched    *sched.Scheduler
	upgrader websocket.Upgrader
	tls      bool // serving https and wss

	ctx    context.Context // root lifetime: ends when Run stops
	cancel context.CancelCauseFunc
	conns  sync.WaitGroup // connection handlers

	runOnce   sync.Once
	closeOnce sync.Once
	closed    chan struct{} // Close called
	stopping  chan struct{} // Run began its shutdown
	stopped   chan struct{} // Run finished its shutdown
	runErr    error

	ident *identity.Registry
	mods  *modules.Registry
	vals  *validators

	mu       sync.Mutex
	sessions map[string]map[*sched.Slave]*peer // live slave sessions by volunteer identity
	appConns map[string]map[*peer]bool         // live application connections by app id: admin or not
	live     map[*wire.Conn]struct{}
	raw      map[*websocket.Conn]struct{} // still in the handshake
	closing  bool                         // no more connections are accepted
}

// New validates opts, opens the store, reloads unfinished work and binds the
// listener, so Addr works before Run.
func New(opts Options) (*Master, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(opts.Data, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	st, err := store.Open(filepath.Join(opts.Data, StoreFile), store.Options{NoSync: opts.NoSync, NoWAL: opts.NoWAL})
	if err != nil {
		return nil, err
	}
	ident, err := identity.Open(st, opts.Now)
	if err != nil {
		st.Close()
		return nil, err
	}
	mods, err := modules.Open(st, modules.Options{MaxBytes: opts.MaxModuleBytes, Check: sandbox.CheckModule, Now: opts.Now})
	if err != nil {
		st.Close()
		return nil, err
	}
	m := &Master{
		opts:     opts,
		st:       st,
		ident:    ident,
		mods:     mods,
		vals:     newValidators(mods, opts.Logger),
		sessions: map[string]map[*sched.Slave]*peer{},
		appConns: map[string]map[*peer]bool{},
		live:     map[*wire.Conn]struct{}{},
		raw:      map[*websocket.Conn]struct{}{},
		closed:   make(chan struct{}),
		stopped:  make(chan struct{}),
		stopping: make(chan struct{}),
	}
	m.ctx, m.cancel = context.WithCancelCause(context.Background())
	metrics := stats.NewMaster(opts.Now)
	if opts.Metrics != nil {
		if err := promexport.Register(opts.Metrics, metrics); err != nil {
			st.Close()
			return nil, err
		}
	}
	m.sched, err = sched.New(st, sched.Options{
		Strategy: opts.Strategy, Dispatch: opts.Dispatch, MaxPayload: opts.MaxPayload,
		MaxFrame: opts.MaxFrame, DefaultTimeout: opts.DefaultTimeout, MaxTimeout: opts.MaxTimeout,
		LeaseGrace: opts.LeaseGrace, DefaultAttempts: opts.DefaultAttempts,
		RetryBackoff: opts.RetryBackoff, RetryBackoffMax: opts.RetryBackoffMax,
		Retention: opts.Retention, NotifyWindow: opts.NotifyWindow, Metrics: metrics,
		Module:         mods.Signers,
		MaxQueuedTasks: opts.MaxQueuedTasks, MaxQueuedBytes: opts.MaxQueuedBytes,
		MaxQueuedTasksPerApp: opts.MaxQueuedTasksPerApp, MaxQueuedBytesPerApp: opts.MaxQueuedBytesPerApp,
		MaxSubmitTasks: opts.MaxSubmitTasks, MaxKinds: opts.MaxKinds, MaxApps: opts.MaxApps, AppIdle: opts.AppIdle,
		MaxResult: opts.MaxResult, MaxWindow: opts.MaxWindow, MaxWindowBytes: opts.MaxWindowBytes,
		ReplicaDistinct: opts.ReplicaDistinct, Trust: opts.Trust, Agree: m.vals.agree,
		OnFatal: m.fail, Now: opts.Now, Logger: opts.Logger, Version: opts.Version,
	})
	if err != nil {
		st.Close()
		return nil, err
	}
	tlsConf, err := serverTLS(opts)
	if err != nil {
		st.Close()
		return nil, err
	}
	ln, err := net.Listen("tcp", opts.Listen)
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("listen: %w", err)
	}
	m.ln = m.guard(ln, tlsConf)
	// A connection holds a write buffer only while it writes, and reads
	// through the HTTP server's 4 KiB reader: an idle volunteer must cost
	// kilobytes, and a master holds thousands.
	m.upgrader = websocket.Upgrader{
		// A read buffer of its own, smaller than the HTTP server's 4 KiB
		// (which is let go once the handler returns): an idle volunteer
		// holds it for good, and a large frame is read past it, straight
		// into the frame's buffer.
		ReadBufferSize:  1 << 10,
		WriteBufferSize: 64 << 10,
		WriteBufferPool: &sync.Pool{},
		CheckOrigin:     m.checkOrigin,
	}
	m.mux = http.NewServeMux()
	m.mux.HandleFunc("/ws/slave", m.serveSlave)
	m.mux.HandleFunc("/ws/app", m.serveApp)
	m.mux.HandleFunc("GET /modules/{hash}", m.serveModule)
	m.mux.HandleFunc("POST /modules", m.serveUpload)
	m.mux.HandleFunc("/healthz", m.serveHealth)
	m.srv = &http.Server{
		Handler:           m.mux,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       opts.ReadTimeout,
		WriteTimeout:      opts.WriteTimeout,
		IdleTimeout:       opts.IdleTimeout,
		MaxHeaderBytes:    opts.MaxHeaderBytes,
		ErrorLog:          log.New(serverLog{opts.Logger}, "", 0),
	}
	return m, nil
}

// serverLog takes net/http's own complaints into the master's log. A
// failed TLS handshake is anyone's to cause, once per connection, so it
// goes to debug; the rest (a handler's panic) is worth a warning.
type serverLog struct{ log *slog.Logger }

func (l serverLog) Write(p []byte) (int, error) {
	msg := strings.TrimSpace(string(p))
	if strings.Contains(msg, "TLS handshake error") {
		l.log.Debug(msg)
	} else {
		l.log.Warn(msg)
	}
	return len(p), nil
}

// serverTLS is the TLS configuration opts ask for, or nil for cleartext.
func serverTLS(opts Options) (*tls.Config, error) {
	if opts.TLSConfig != nil {
		c := opts.TLSConfig.Clone()
		if len(c.Certificates) == 0 && c.GetCertificate == nil {
			return nil, errors.New("TLSConfig holds no certificate")
		}
		c.NextProtos = []string{"http/1.1"}
		return c, nil
	}
	if opts.TLSCert == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(opts.TLSCert, opts.TLSKey)
	if err != nil {
		return nil, fmt.Errorf("TLS certificate: %w", err)
	}
	// HTTP/1.1 only: WebSockets upgrade from it, and one protocol keeps
	// the server's timeouts and connection cap meaning one thing.
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}, nil
}

// guard caps connections per IP and in total (counting TCP connections,
// before any TLS handshake costs a thing) and adds TLS when configured.
func (m *Master) guard(ln net.Listener, tlsConf *tls.Config) net.Listener {
	perIP, total := max(m.opts.MaxConnsPerIP, 0), max(m.opts.MaxConns, 0)
	// A line per refused connection would let a flood write the log: one
	// a minute at most, with the count since the last.
	var mu sync.Mutex
	var last time.Time
	refused := 0
	ln = netguard.NewListener(ln, perIP, total, func(ip string, overTotal bool) {
		mu.Lock()
		defer mu.Unlock()
		refused++
		if now := time.Now(); now.Sub(last) >= time.Minute {
			m.opts.Logger.Warn("connections refused: over the cap", "refused", refused, "last_remote", ip, "total_cap", overTotal,
				"max_conns_per_ip", perIP, "max_conns", total)
			last, refused = now, 0
		}
	})
	m.tls = tlsConf != nil
	if tlsConf != nil {
		ln = tls.NewListener(ln, tlsConf)
	}
	return ln
}

// Limiter is the master's limiter of credential failures, for the other
// doors mounted with Handle (the dashboard, the API, /metrics) to share.
func (m *Master) Limiter() *netguard.Limiter { return m.opts.Limiter }

// TLS reports whether the master serves https and wss.
func (m *Master) TLS() bool { return m.tls }

// Metrics is the master's statistics recorder: counters, per-slave and
// per-app numbers and the last hour of one-second time series.
func (m *Master) Metrics() *stats.Master { return m.sched.Metrics() }

// Addr is the bound listen address.
func (m *Master) Addr() net.Addr { return m.ln.Addr() }

// URL is the WebSocket base URL slaves and apps dial: wss:// under TLS.
func (m *Master) URL() string {
	if m.tls {
		return "wss://" + m.ln.Addr().String()
	}
	return "ws://" + m.ln.Addr().String()
}

// Handle attaches another HTTP handler (the JSON-RPC API, the dashboard,
// metrics) to the master's server. Call it before Run.
func (m *Master) Handle(pattern string, h http.Handler) { m.mux.Handle(pattern, h) }

// Run serves until ctx ends, Close is called or the store fails, then shuts
// down in order: stop accepting, tell every peer we are going, wait for the
// connection handlers (at most shutdownWait), stop the scheduler, close the
// store. It returns nil on a requested stop.
func (m *Master) Run(ctx context.Context) error {
	m.runOnce.Do(func() { m.run(ctx) })
	<-m.stopped
	return m.runErr
}

const shutdownWait = 5 * time.Second

func (m *Master) run(ctx context.Context) {
	defer close(m.stopped)
	// The scheduler outlives the connections: what they deliver while the
	// master shuts down is still committed.
	schedCtx, stopSched := context.WithCancel(context.Background())
	schedDone := make(chan struct{})
	go func() { defer close(schedDone); m.sched.Run(schedCtx) }()
	serveErr := make(chan error, 1)
	go func() { serveErr <- m.srv.Serve(m.ln) }()

	info := m.sched.Info()
	m.opts.Logger.Info("master serving", "addr", m.Addr().String(), "data", m.opts.Data,
		"strategy", info.Strategy, "dispatch", info.Dispatch)
	select {
	case <-ctx.Done():
	case <-m.closed:
	case <-m.ctx.Done():
	case err := <-serveErr:
		m.cancel(fmt.Errorf("serve: %w", err))
	}
	if err := context.Cause(m.ctx); err != nil {
		m.runErr = err
	}
	close(m.stopping)
	// No new work through the API from here on; long polls return now
	// rather than hold up the HTTP server's shutdown.
	m.sched.Stop()

	// Stop accepting; hijacked WebSockets are ours to close.
	sctx, cancel := context.WithTimeout(context.Background(), shutdownWait)
	defer cancel()
	_ = m.srv.Shutdown(sctx)
	m.mu.Lock()
	m.closing = true
	bye := protocol.Encode(nil, &protocol.Error{Code: protocol.CodeShuttingDown, Message: "master is shutting down"})
	for c := range m.live {
		c.CloseWith(bye, websocket.CloseGoingAway, "master shutting down")
	}
	for ws := range m.raw {
		ws.Close()
	}
	m.mu.Unlock()
	waitTimeout(&m.conns, shutdownWait)

	m.cancel(nil)
	m.vals.shutdown() // a validator compiling stops, so the scheduler's Run can end
	stopSched()
	<-schedDone
	m.vals.close()
	if err := m.st.Close(); err != nil && m.runErr == nil {
		m.runErr = err
	}
	m.opts.Logger.Info("master stopped")
}

// Close stops a running master and waits for Run to finish its shutdown.
// It is idempotent; on a master never Run it just releases the store.
func (m *Master) Close() error {
	m.closeOnce.Do(func() { close(m.closed) })
	m.runOnce.Do(func() {
		close(m.stopping)
		m.sched.Stop()
		m.ln.Close()
		m.cancel(nil)
		m.vals.close()
		m.runErr = m.st.Close()
		close(m.stopped)
	})
	<-m.stopped
	return m.runErr
}

// Stopping is closed when the master begins to shut down. Handlers attached
// with Handle that keep connections open (the dashboard's live WebSockets)
// end them on it: the master closes its own peers but cannot see those.
func (m *Master) Stopping() <-chan struct{} { return m.stopping }

// fail stops the master after an error it cannot serve through, such as a
// failed commit: acknowledging anything after that would be a lie.
func (m *Master) fail(err error) {
	m.opts.Logger.Error("master failing", "err", err)
	m.cancel(err)
}

// waitTimeout waits for wg, at most d: shutdown must end even if a
// connection handler is stuck.
func waitTimeout(wg *sync.WaitGroup, d time.Duration) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
	}
}

func (m *Master) serveHealth(w http.ResponseWriter, r *http.Request) {
	select {
	case <-m.ctx.Done():
		http.Error(w, "stopping", http.StatusServiceUnavailable)
	default:
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintln(w, "ok")
	}
}

// ErrShuttingDown refuses work while the master stops.
var ErrShuttingDown = sched.ErrStopping
