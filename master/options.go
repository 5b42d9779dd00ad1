package master

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/anthill-project/anthill/master/sched"
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
	// Strategy orders pending tasks: "fifo" (default) or "priority".
	Strategy string
	// Dispatch is the work pattern: "send" (default: the master keeps each
	// slave's window full) or "poll" (slaves ask for every free slot).
	Dispatch string
	// MaxPayload caps a task payload in bytes. Default 1 MiB.
	MaxPayload int
	// MaxFrame caps a WebSocket frame in bytes. Default 16 MiB; it must
	// exceed MaxPayload.
	MaxFrame int
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
	if o.MaxFrame == 0 {
		o.MaxFrame = sched.DefaultMaxFrame
	}
	if o.Heartbeat == 0 {
		o.Heartbeat = protocol.DefaultHeartbeat
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
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}
