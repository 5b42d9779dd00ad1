package master

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/anthill-project/anthill/internal/netguard"
	"github.com/anthill-project/anthill/master/sched"
	"github.com/anthill-project/anthill/master/trust"
	"github.com/anthill-project/anthill/protocol"
)

// Options configures a Master. Every field's zero value means the default
// written beside it; New validates the rest.
type Options struct {
	// Listen is the TCP address to serve on. Default "127.0.0.1:7070";
	// tests use "127.0.0.1:0".
	Listen string
	// Data is the directory holding the bbolt file. Default "./anthill-data".
	Data string
	// TLSCert and TLSKey are PEM files of the master's certificate (with
	// its chain) and key. Set both to serve https and wss on Listen; URL
	// then says wss://. Default "": cleartext, for loopback and trusted
	// networks only.
	TLSCert, TLSKey string
	// TLSConfig, when not nil, serves TLS with this configuration instead
	// of TLSCert and TLSKey (tests and embedders). It must hold a
	// certificate.
	TLSConfig *tls.Config
	// TrustProxy says the master sits behind a TLS-terminating reverse
	// proxy that sets X-Forwarded-Proto and X-Forwarded-For: the dashboard
	// then marks its cookie Secure when the proxy says https, and
	// credential failures are counted per forwarded client address. Never
	// set it when clients can reach the master directly: they could forge
	// both headers. Default false.
	TrustProxy bool
	// IdleTimeout closes a keep-alive HTTP connection with no request for
	// this long. Default 90s.
	IdleTimeout time.Duration
	// ReadTimeout bounds reading one HTTP request, body included (a
	// WebSocket's deadlines are wire's own once upgraded). Default 2m,
	// generous for a large /rpc body on a slow link.
	ReadTimeout time.Duration
	// WriteTimeout bounds writing one HTTP answer, from the end of the
	// request's headers; it must exceed the longest Tasks.Wait. Default
	// 3m. Upgraded WebSockets are not affected.
	WriteTimeout time.Duration
	// MaxHeaderBytes caps a request's header. Default 32 KiB; a larger
	// header gets 431.
	MaxHeaderBytes int
	// MaxConnsPerIP caps the open TCP connections from one IP address; a
	// connection over it is closed at once. Default 256 (a lab of slaves
	// behind one NAT shares an address). Negative means no cap.
	MaxConnsPerIP int
	// MaxConns caps the open TCP connections in total. Default 8192.
	// Negative means no cap.
	MaxConns int
	// MetricsToken, when set, is the bearer token /metrics requires
	// (cmd/anthill mounts /metrics). Default "": /metrics is open to
	// anyone who can reach the port.
	MetricsToken string
	// Limiter counts credential failures per IP for every door of the
	// master: slave and app handshakes here, and the dashboard and the API
	// when given Master.Limiter. Default: one with netguard's defaults,
	// logging to Logger.
	Limiter *netguard.Limiter
	// Strategy orders pending tasks: "fifo" (default) or "priority".
	Strategy string
	// ReplicaDistinct is "ip" to keep the copies of a replicated task on
	// distinct IP addresses as well as distinct volunteers. Default "":
	// distinct volunteers only.
	ReplicaDistinct string
	// Trust is when volunteers earn trust for an app's adaptive
	// replication and how often the trusted are checked. Default: the
	// zero trust.Policy, its documented defaults.
	Trust trust.Policy
	// Dispatch is the work pattern: "send" (default: the master keeps each
	// slave's window full) or "poll" (slaves ask for every free slot).
	Dispatch string
	// MaxPayload caps a task payload in bytes. Default 1 MiB.
	MaxPayload int
	// MaxModuleBytes caps an uploaded WASM module in bytes (POST /modules,
	// Modules.Upload). Default 32 MiB (modules.DefaultMaxBytes).
	MaxModuleBytes int
	// MaxFrame caps a WebSocket frame in bytes. Default 16 MiB; it must
	// exceed MaxPayload.
	MaxFrame int
	// MaxResult caps a task result in bytes; a larger one fails its
	// attempt and counts against the slave. Default MaxPayload. A
	// notification of one such result must fit MaxFrame.
	MaxResult int
	// MaxWindow caps the tasks one slave session holds, whatever its
	// Concurrency+Prefetch; a new session starts with at most 4 and gains
	// one per accepted result. Default 1024.
	MaxWindow int
	// MaxWindowBytes caps the payload bytes one slave session holds
	// (beyond its first task, so a big task can always run). Default
	// 4 × MaxFrame.
	MaxWindowBytes int
	// Heartbeat is the ping interval; a peer silent for two is dropped.
	// Default 5s.
	Heartbeat time.Duration
	// DefaultTimeout applies to tasks submitted without one. Default 1m.
	DefaultTimeout time.Duration
	// MaxTimeout caps a task's timeout. Default 24h.
	MaxTimeout time.Duration
	// LeaseGrace is added to a task's timeout before the master takes the
	// task back from a silent slave. Default 5s.
	LeaseGrace time.Duration
	// DefaultAttempts applies to tasks submitted without MaxAttempts.
	// Default 3.
	DefaultAttempts int
	// RetryBackoff is the delay before the second attempt; it doubles per
	// attempt up to RetryBackoffMax. Defaults 100ms and 30s.
	RetryBackoff    time.Duration
	RetryBackoffMax time.Duration
	// Retention is how long a finished task stays in the store after its
	// application acknowledged it. Default 24h; negative removes at once.
	Retention time.Duration
	// SendQueue bounds frames waiting for one peer; a peer that lets it
	// fill up is dropped as too slow. Default 1024.
	SendQueue int
	// NotifyWindow bounds notifications sent to an application and not yet
	// acknowledged. Default 8192.
	NotifyWindow int
	// SendQueueBytes bounds the bytes of the frames waiting for one peer,
	// so a peer that does not read pins at most this much memory; past it
	// the peer is dropped as too slow. Default 4 × MaxFrame.
	SendQueueBytes int64
	// Quotas (see sched.Options for each): MaxQueuedTasks and
	// MaxQueuedBytes over all applications (defaults 1Mi tasks, 1 GiB),
	// MaxQueuedTasksPerApp and MaxQueuedBytesPerApp (default the global
	// ones), MaxSubmitTasks per submit (default 10000), MaxKinds (default
	// 10000) and MaxApps (default 1000). Negative means no limit, except
	// for MaxSubmitTasks.
	MaxQueuedTasks, MaxQueuedBytes             int64
	MaxQueuedTasksPerApp, MaxQueuedBytesPerApp int64
	MaxSubmitTasks, MaxKinds, MaxApps          int
	// AppIdle is how long an application with nothing left on the master
	// (no connection, task, notification or submit record) is kept before
	// it and its series are forgotten. Default 10m.
	AppIdle time.Duration
	// AdminToken is the operator's credential, the JSON-RPC API's bearer
	// token (cmd/anthill loads it with jsonrpc.LoadOrCreateToken). An
	// application presenting it may connect as any app id; a slave
	// presenting it (the operator's own machine) runs as the volunteer
	// identity its Hello's name names (cleaned up to a valid identity
	// name), created on first use; no token of its own is issued. Default
	// "": the WebSocket endpoints accept no admin credential.
	AdminToken string
	// SlaveToken, when set, is an invitation: a slave presenting it in its
	// Hello is enrolled as a new volunteer identity and given that
	// identity's own token in the Welcome, which it presents from then on.
	// At least MinSlaveTokenBytes bytes. Default "": no invitation.
	SlaveToken string
	// OpenEnrollment lets anyone join: a slave that presents no credential
	// is enrolled as a new volunteer identity on first contact, as with an
	// invitation. Default false: a slave needs a volunteer token
	// (Volunteers.Enroll), the invitation or the admin token.
	OpenEnrollment bool
	// Metrics is where the master's Prometheus metrics are registered (serve
	// them with promexport.Handler). Nil keeps the numbers, for Stats and
	// the time series, without exporting them.
	Metrics prometheus.Registerer
	// NoSync skips fsync. Only for tests and benchmarks that say so.
	NoSync bool
	// NoWAL commits without the store's write-ahead log: bbolt fsyncs
	// each commit itself (see store.Options.NoWAL).
	NoWAL bool
	// Now is the clock for leases, retries and retention. Default time.Now.
	Now func() time.Time
	// Logger receives the master's logs. Nil discards them.
	Logger *slog.Logger
	// Version is reported in Info. Default "dev".
	Version string
}

// MinSlaveTokenBytes is the shortest Options.SlaveToken New accepts.
const MinSlaveTokenBytes = 16

// setDefaults fills what the master itself uses; the scheduler's fields
// take their defaults, and are validated, in sched.New.
func (o *Options) setDefaults() error {
	if o.Listen == "" {
		o.Listen = "127.0.0.1:7070"
	}
	if o.Data == "" {
		o.Data = "./anthill-data"
	}
	if err := o.setEdgeDefaults(); err != nil {
		return err
	}
	if o.MaxFrame == 0 {
		o.MaxFrame = sched.DefaultMaxFrame
	}
	if o.Heartbeat == 0 {
		o.Heartbeat = protocol.DefaultHeartbeat
	}
	if o.MaxModuleBytes < 0 {
		return fmt.Errorf("negative MaxModuleBytes %d", o.MaxModuleBytes)
	}
	if o.Heartbeat < 0 || o.SendQueue < 0 {
		return errors.New("negative heartbeat or send queue")
	}
	if o.SlaveToken != "" && len(o.SlaveToken) < MinSlaveTokenBytes {
		// A short shared secret falls to online guessing in seconds.
		return fmt.Errorf("slave token of %d bytes: it must be at least %d (openssl rand -hex 16 makes one)", len(o.SlaveToken), MinSlaveTokenBytes)
	}
	if o.SendQueue == 0 {
		o.SendQueue = 1024
	}
	if o.SendQueueBytes < 0 {
		return errors.New("negative send queue bytes")
	}
	if o.SendQueueBytes == 0 {
		o.SendQueueBytes = 4 * int64(o.MaxFrame)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// setEdgeDefaults fills and checks the options of the network edge.
func (o *Options) setEdgeDefaults() error {
	if o.IdleTimeout < 0 || o.ReadTimeout < 0 || o.WriteTimeout < 0 || o.MaxHeaderBytes < 0 {
		return errors.New("negative idle, read or write timeout or header size")
	}
	if (o.TLSCert == "") != (o.TLSKey == "") {
		return errors.New("TLS needs both a certificate and a key (--tls-cert and --tls-key)")
	}
	if o.IdleTimeout == 0 {
		o.IdleTimeout = 90 * time.Second
	}
	if o.ReadTimeout == 0 {
		o.ReadTimeout = 2 * time.Minute
	}
	if o.WriteTimeout == 0 {
		o.WriteTimeout = 3 * time.Minute
	}
	if o.MaxHeaderBytes == 0 {
		o.MaxHeaderBytes = 32 << 10
	}
	if o.MaxConnsPerIP == 0 {
		o.MaxConnsPerIP = 256
	}
	if o.MaxConns == 0 {
		o.MaxConns = 8192
	}
	if o.Limiter == nil {
		o.Limiter = netguard.NewLimiter(netguard.LimiterOptions{Logger: o.Logger}) // nil Logger: discard, as here
	}
	return nil
}
