package slave

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"time"

	"github.com/anthill-project/anthill/internal/dial"
	"github.com/anthill-project/anthill/internal/wire"
	"github.com/anthill-project/anthill/protocol"
	"github.com/anthill-project/anthill/sandbox"
)

// Options configures a Slave. Each field's comment states its zero-value
// default; New validates the rest.
type Options struct {
	// Master is the master's base URL: ws://host:port or wss://…, or
	// http:// and https://, which mean ws:// and wss://. The slave dials
	// Master + "/ws/slave". Required.
	Master string
	// CA is a PEM file of the certificates that verify a wss:// master
	// (a private CA or a self-signed master). Default "": the system's
	// roots. TLS, when set, is used instead.
	CA string
	// TLS verifies a wss:// master. Default: from CA.
	TLS *tls.Config
	// MaxFrame caps a frame the slave reads, whatever the master
	// announces (the smaller of the two counts; an announced 0 means
	// this). Default 16 MiB. Negative is refused.
	MaxFrame int
	// Name identifies the slave on the master, 1 to 128 bytes. Default
	// "<hostname>-<pid>".
	Name string
	// Token is the credential sent in the Hello: this volunteer's own
	// token (Volunteers.Enroll), or an invitation (the master's
	// --slave-token), in exchange for which the master issues an identity
	// token of its own. Default "": none, which a master admits only under
	// open enrollment.
	Token string
	// State is the directory where the slave keeps the identity token a
	// master issued it (one file per master, mode 0600, directory 0700),
	// and presents it on later starts in place of an invitation. Default
	// "": nothing is kept, and the identity lasts while the process runs.
	State string
	// Registry holds the in-process Go handlers the slave runs, for
	// trusted clusters: they share the slave's process. Default: none.
	Registry *sandbox.Registry
	// WASM runs tasks of kind "wasm" in the sandbox, fetching their
	// modules from the master. Default nil: no WASM.
	WASM *WASMOptions
	// Exec runs allow-listed programs, each program's name a kind: for
	// trusted clusters only (rlimits and a private directory are not a
	// sandbox). Default nil: none.
	Exec *sandbox.Exec
	// The slave must run at least one kind, from any of the three.
	// Concurrency is how many tasks run at once, 1 to 4096. Default
	// runtime.NumCPU().
	Concurrency int
	// Prefetch is how many tasks the slave holds beyond Concurrency, so a
	// slot that frees up finds work without a round trip, up to 65536.
	// Default Concurrency; negative means none.
	Prefetch int
	// Grace is how long running tasks may finish once Run's context ends;
	// those still running then are canceled and handed back. It applies
	// while connected: with no master to report to, running tasks are
	// canceled at once. Default 30s; negative means no grace.
	Grace time.Duration
	// ReconnectMin and ReconnectMax bound the jittered exponential backoff
	// between connection attempts. Defaults 100ms and 10s.
	ReconnectMin, ReconnectMax time.Duration
	// Logger receives connection events, panics and timeouts of tasks.
	// Default: discard.
	Logger *slog.Logger
	// Software is the version string sent in the Hello. Default "".
	Software string
	// Leaderboard lists this volunteer's name, with its validated results
	// and credit, on the master's public leaderboard. Default false: the
	// master shows it only to its operator.
	Leaderboard bool
}

// The master's limits on a Hello; New checks them so a misconfigured
// slave fails at once rather than being refused forever.
const (
	maxNameBytes   = protocol.MaxNameBytes
	maxConcurrency = protocol.MaxConcurrency
	maxPrefetch    = protocol.MaxPrefetch
)

// withDefaults returns o with every zero field defaulted, or an error for
// a field out of range.
func (o Options) withDefaults() (Options, error) {
	if o.MaxFrame < 0 {
		return o, fmt.Errorf("slave: negative max frame %d", o.MaxFrame)
	}
	if o.MaxFrame == 0 {
		o.MaxFrame = dial.DefaultMaxFrame
	}
	if o.TLS == nil {
		c, err := dial.ClientTLS(o.CA)
		if err != nil {
			return o, fmt.Errorf("slave: %w", err)
		}
		o.TLS = c
	}
	if o.Registry == nil {
		o.Registry = sandbox.NewRegistry()
	}
	if len(o.Registry.Kinds()) == 0 && o.WASM == nil && (o.Exec == nil || len(o.Exec.Kinds()) == 0) {
		return o, errors.New("slave: no task kinds: give it a registry of handlers, WASM or allowed programs")
	}
	if registered(o.Registry, protocol.KindWASM) {
		return o, fmt.Errorf("slave: kind %q is the WASM runner's; a handler may not take it", protocol.KindWASM)
	}
	if o.Exec != nil {
		for _, k := range o.Exec.Kinds() {
			if k == protocol.KindWASM || registered(o.Registry, k) {
				return o, fmt.Errorf("slave: allowed program %q has the name of another kind", k)
			}
		}
	}
	if o.Name == "" {
		host, err := os.Hostname()
		if err != nil || host == "" {
			host = "slave"
		}
		o.Name = fmt.Sprintf("%s-%d", host, os.Getpid())
		if len(o.Name) > maxNameBytes {
			o.Name = o.Name[len(o.Name)-maxNameBytes:]
		}
	}
	if len(o.Name) > maxNameBytes {
		return o, fmt.Errorf("slave: name of %d bytes; the limit is %d", len(o.Name), maxNameBytes)
	}
	switch {
	case o.Concurrency == 0:
		o.Concurrency = runtime.NumCPU()
	case o.Concurrency < 0 || o.Concurrency > maxConcurrency:
		return o, fmt.Errorf("slave: concurrency %d out of range 1 to %d", o.Concurrency, maxConcurrency)
	}
	switch {
	case o.Prefetch == 0:
		o.Prefetch = o.Concurrency
	case o.Prefetch < 0:
		o.Prefetch = 0
	}
	o.Prefetch = min(o.Prefetch, maxPrefetch)
	if o.Grace == 0 {
		o.Grace = 30 * time.Second
	}
	if o.ReconnectMin == 0 {
		o.ReconnectMin = 100 * time.Millisecond
	}
	if o.ReconnectMax == 0 {
		o.ReconnectMax = 10 * time.Second
	}
	if o.ReconnectMin < 0 || o.ReconnectMax < o.ReconnectMin {
		return o, fmt.Errorf("slave: reconnect backoff %v to %v is not a range", o.ReconnectMin, o.ReconnectMax)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o, nil
}

// slaveURL turns the master's base URL into the slave endpoint's.
func slaveURL(master string) (string, error) {
	u, err := wire.EndpointURL(master, "/ws/slave")
	if err != nil {
		return "", fmt.Errorf("slave: %w", err)
	}
	return u, nil
}

func registered(r *sandbox.Registry, kind string) bool {
	_, ok := r.Lookup(kind)
	return ok
}
