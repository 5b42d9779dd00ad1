package master

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

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
	// SlaveToken, when set, is the enrollment token every slave must
	// present in its Hello; a slave without it is refused as unauthorized.
	// Default "": any slave may join.
	SlaveToken string
	// Metrics is where the master's Prometheus metrics are registered (serve
	// them with stats.Handler). Nil keeps the numbers, for Stats and the
	// time series, without exporting them.
	Metrics prometheus.Registerer
	// NoSync skips fsync. Only for tests and benchmarks that say so.
	NoSync bool
	// Now is the clock for leases, retries and retention. Default time.Now.
	Now func() time.Time
	// Logger receives the master's logs. Nil discards them.
	Logger *slog.Logger
	// Version is reported to peers and in Info. Default "dev".
	Version string
}

func (o *Options) setDefaults() error {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if o.Listen == "" {
		o.Listen = "127.0.0.1:7070"
	}
	if o.Data == "" {
		o.Data = "./anthill-data"
	}
	if o.Dispatch == "" {
		o.Dispatch = protocol.DispatchSend
	}
	if o.Dispatch != protocol.DispatchSend && o.Dispatch != protocol.DispatchPoll {
		return fmt.Errorf("dispatch %q: want %q or %q", o.Dispatch, protocol.DispatchSend, protocol.DispatchPoll)
	}
	if o.MaxPayload == 0 {
		o.MaxPayload = 1 << 20
	}
	if o.MaxFrame == 0 {
		o.MaxFrame = 16 << 20
	}
	if o.MaxPayload < 0 || o.MaxFrame <= o.MaxPayload+1024 {
		return errors.New("max frame must exceed max payload by at least 1 KiB")
	}
	def(&o.Heartbeat, 5*time.Second)
	def(&o.DefaultTimeout, time.Minute)
	def(&o.MaxTimeout, 24*time.Hour)
	def(&o.LeaseGrace, 5*time.Second)
	def(&o.RetryBackoff, 100*time.Millisecond)
	def(&o.RetryBackoffMax, 30*time.Second)
	def(&o.Retention, 24*time.Hour)
	if o.DefaultAttempts == 0 {
		o.DefaultAttempts = 3
	}
	if o.DefaultTimeout > o.MaxTimeout {
		return errors.New("default timeout exceeds max timeout")
	}
	if o.SendQueue == 0 {
		o.SendQueue = 1024
	}
	if o.NotifyWindow == 0 {
		o.NotifyWindow = 8192
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Version == "" {
		o.Version = "dev"
	}
	return nil
}
