package slave

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anthill-project/anthill/internal/modsig"
	"github.com/anthill-project/anthill/internal/wire"
	"github.com/anthill-project/anthill/protocol"
	"github.com/anthill-project/anthill/sandbox"
)

// Defaults of WASMOptions.
const (
	DefaultModuleCacheBytes = 1 << 30
	DefaultMaxModuleBytes   = 64 << 20
)

// WASMOptions configures the WASM runner of a slave.
type WASMOptions struct {
	// Memory caps one module instance's memory in bytes. Default
	// sandbox.DefaultWASMMemory.
	Memory uint64
	// Cache is the directory where modules and their compiled code are
	// kept across restarts, so a module is fetched and compiled once per
	// machine. Default "": in memory, while the process runs.
	Cache string
	// CacheBytes bounds the modules kept in Cache; the least recently used
	// go first. Default DefaultModuleCacheBytes.
	CacheBytes int64
	// MaxModuleBytes refuses a larger module from the master. Default
	// DefaultMaxModuleBytes.
	MaxModuleBytes int64
	// TrustKeys, when set, are the only signers (public keys, `anthill
	// keygen`'s text) whose modules the slave runs; the master is told
	// in the Hello and sends no other, and the slave refuses one anyway.
	TrustKeys []string
	// InProcess runs modules in the slave's own process, where wazero
	// must check for the deadline at every loop header: compute runs
	// several times slower. Default: in worker processes of the slave's
	// binary, killed at a task's deadline, when the binary serves them
	// (it calls sandbox.ServeWorkerIfAsked first thing in main, as the
	// anthill command does); in process otherwise.
	InProcess bool
}

// wasmRunner is what a slave needs of a WASM runtime: *sandbox.WASM (in
// process) and *sandbox.WASMProcesses (in worker processes) both are one.
type wasmRunner interface {
	Load(ctx context.Context, hash, name string, code []byte) error
	Loaded(hash string) bool
	Run(ctx context.Context, hash string, payload []byte, maxOutput int) ([]byte, error)
	Close(ctx context.Context) error
}

// modules fetches the WASM modules tasks name, checks them against their
// hash (and, with trust keys, their signatures) before anything runs
// them, keeps them within a bound, and runs them in the sandbox.
type modules struct {
	base     string // http(s)://master/modules/
	client   *http.Client
	token    atomic.Pointer[string]
	dir      string // "" keeps modules in memory
	maxBytes int64
	maxSize  int64
	trust    []string
	log      *slog.Logger
	wasm     wasmRunner // made by start

	runtime   sandbox.WASMOptions
	inProcess bool
	workers   int
	changed   func() // the held set changed: tell the master

	// Fetches run on goroutines of their own (see load); close ends them.
	fetchCtx  context.Context
	stopFetch context.CancelFunc
	fetches   sync.WaitGroup

	mu      sync.Mutex
	held    map[string]*heldModule
	total   int64
	flights map[string]*flight
}

type heldModule struct {
	size int64
	used time.Time
	code []byte // only without a cache directory
}

// flight is one fetch that concurrent tasks of the module share.
type flight struct {
	done chan struct{}
	err  error
}

func newModules(o WASMOptions, concurrency int, master string, tlsConf *tls.Config, log *slog.Logger, changed func()) (*modules, error) {
	if o.CacheBytes == 0 {
		o.CacheBytes = DefaultModuleCacheBytes
	}
	if o.MaxModuleBytes == 0 {
		o.MaxModuleBytes = DefaultMaxModuleBytes
	}
	if o.CacheBytes < 0 || o.MaxModuleBytes < 0 {
		return nil, errors.New("slave: negative module cache or module size bound")
	}
	if o.Memory != 0 && (o.Memory < 64<<10 || o.Memory > 4<<30) {
		return nil, fmt.Errorf("slave: WASM memory of %d bytes: want 64 KiB to 4 GiB", o.Memory)
	}
	if len(o.TrustKeys) > protocol.MaxTrustKeys {
		return nil, fmt.Errorf("slave: %d trust keys; the limit is %d", len(o.TrustKeys), protocol.MaxTrustKeys)
	}
	var trust []string
	for _, k := range o.TrustKeys {
		pub, err := modsig.ParsePublic(k)
		if err != nil {
			return nil, fmt.Errorf("slave: trust key: %w", err)
		}
		trust = append(trust, modsig.PublicText(pub))
	}
	base, err := wire.HTTPURL(master, protocol.ModulesPath+"/")
	if err != nil {
		return nil, fmt.Errorf("slave: %w", err)
	}
	m := &modules{
		base:     base,
		client:   &http.Client{Transport: &http.Transport{TLSClientConfig: tlsConf, Proxy: http.ProxyFromEnvironment}},
		dir:      o.Cache,
		maxBytes: o.CacheBytes,
		maxSize:  o.MaxModuleBytes,
		trust:    trust,
		log:      log,
		changed:  changed,
		held:     map[string]*heldModule{},
		flights:  map[string]*flight{},
	}
	m.runtime = sandbox.WASMOptions{MemoryLimit: o.Memory, Logger: log}
	m.inProcess, m.workers = o.InProcess, concurrency
	if m.dir != "" {
		if err := os.MkdirAll(m.dir, 0o700); err != nil {
			return nil, fmt.Errorf("slave: module cache: %w", err)
		}
		m.runtime.CacheDir = filepath.Join(m.dir, "compiled")
		m.scan()
	}
	m.fetchCtx, m.stopFetch = context.WithCancel(context.Background())
	return m, nil
}

// start makes the runtime: worker processes (see WASMOptions.InProcess)
// or one in this process. Run calls it, so a Slave that is never run
// starts no process.
func (m *modules) start(ctx context.Context) error {
	wo := m.runtime
	var err error
	if m.inProcess || !sandbox.ServesWorkers() {
		m.wasm, err = sandbox.NewWASM(ctx, wo)
		m.log.Info("WASM modules run in this process, with loop checks")
	} else {
		wo.NoLoopChecks = true
		m.wasm, err = sandbox.NewWASMProcesses(ctx, sandbox.WASMProcessOptions{WASMOptions: wo, Workers: m.workers})
	}
	if err != nil {
		return fmt.Errorf("slave: %w", err)
	}
	return nil
}

// scan takes the modules a previous run left in the cache directory. Their
// bytes are checked against their names when they are read, not here.
func (m *modules) scan() {
	ents, err := os.ReadDir(m.dir)
	if err != nil {
		m.log.Warn("cannot read the module cache", "dir", m.dir, "err", err)
		return
	}
	for _, e := range ents {
		hash, ok := strings.CutSuffix(e.Name(), ".wasm")
		if !ok || !protocol.ValidModuleHash(hash) {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		m.held[hash] = &heldModule{size: info.Size(), used: info.ModTime()}
		m.total += info.Size()
	}
	m.evictLocked()
}

// setToken is the credential module fetches present: the slave's, once the
// master issued one.
func (m *modules) setToken(t string) { m.token.Store(&t) }

// list is the held modules, most recently used first, at most
// protocol.MaxHeld of them.
func (m *modules) list() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	hs := make([]string, 0, len(m.held))
	for h := range m.held {
		hs = append(hs, h)
	}
	slices.SortFunc(hs, func(a, b string) int { return m.held[b].used.Compare(m.held[a].used) })
	return hs[:min(len(hs), protocol.MaxHeld)]
}

// run runs the module of hash on payload, fetching and compiling it first
// if this slave does not hold it yet.
func (m *modules) run(ctx context.Context, hash string, payload []byte, maxOutput int) ([]byte, error) {
	if !protocol.ValidModuleHash(hash) {
		return nil, fmt.Errorf("task names module %q, which is not a module hash", hash)
	}
	if !m.wasm.Loaded(hash) {
		if err := m.load(ctx, hash); err != nil {
			return nil, err
		}
	}
	m.touch(hash)
	out, err := m.wasm.Run(ctx, hash, payload, maxOutput)
	if errors.Is(err, sandbox.ErrNotLoaded) {
		// Evicted from the runtime between Loaded and Run by other
		// modules' tasks: load it again, once.
		if err := m.load(ctx, hash); err != nil {
			return nil, err
		}
		out, err = m.wasm.Run(ctx, hash, payload, maxOutput)
	}
	return out, err
}

// load makes the module runnable: one fetch for every task that needs it.
func (m *modules) load(ctx context.Context, hash string) error {
	m.mu.Lock()
	f := m.flights[hash]
	if f == nil {
		f = &flight{done: make(chan struct{})}
		m.flights[hash] = f
		m.fetches.Add(1)
		go func() {
			defer m.fetches.Done()
			// Not the first task's context, so its timeout does not fail
			// the others that wait; bounded by its own, ended by close.
			fctx, cancel := context.WithTimeout(m.fetchCtx, fetchTimeout)
			defer cancel()
			f.err = m.fetchAndLoad(fctx, hash)
			m.mu.Lock()
			delete(m.flights, hash)
			m.mu.Unlock()
			close(f.done)
		}()
	}
	m.mu.Unlock()
	select {
	case <-f.done:
		return f.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (m *modules) fetchAndLoad(ctx context.Context, hash string) error {
	code, name, sigs, ok := m.fromCache(hash)
	if !ok {
		var err error
		if code, name, sigs, err = m.fetch(ctx, hash); err != nil {
			return err
		}
	}
	if len(m.trust) > 0 && !modsig.SignedBy(sigs, hash, m.trust) {
		return fmt.Errorf("module %s is not signed by a key this slave trusts; refused", hash)
	}
	if err := m.wasm.Load(ctx, hash, name, code); err != nil {
		return fmt.Errorf("module %s: %w", hash, err)
	}
	if !ok {
		m.keep(hash, name, sigs, code)
	}
	return nil
}

// meta is what the cache keeps beside a module's bytes.
type meta struct {
	Name       string             `json:"name"`
	Signatures []modsig.Signature `json:"signatures,omitempty"`
}

// fromCache reads a held module, checking its bytes against the hash: a
// damaged file is dropped and the module fetched again.
func (m *modules) fromCache(hash string) (code []byte, name string, sigs []modsig.Signature, ok bool) {
	m.mu.Lock()
	h := m.held[hash]
	m.mu.Unlock()
	if h == nil {
		return nil, "", nil, false
	}
	if m.dir == "" {
		code = h.code
	} else {
		var err error
		if code, err = os.ReadFile(m.path(hash, ".wasm")); err != nil {
			m.drop(hash)
			return nil, "", nil, false
		}
		var md meta
		if b, err := os.ReadFile(m.path(hash, ".json")); err == nil {
			_ = json.Unmarshal(b, &md) // a damaged meta loses the name and signatures only
		}
		name, sigs = md.Name, md.Signatures
	}
	if modsig.Hash(code) != hash {
		m.log.Warn("a cached module does not match its hash; fetching it again", "module", hash)
		m.drop(hash)
		return nil, "", nil, false
	}
	return code, name, sigs, true
}

// fetch asks the master for a module and checks the bytes against the
// hash the task named: the master is trusted with the scheduling, not with
// the code.
func (m *modules) fetch(ctx context.Context, hash string) ([]byte, string, []modsig.Signature, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.base+hash, nil)
	if err != nil {
		return nil, "", nil, err
	}
	if t := m.token.Load(); t != nil && *t != "" {
		req.Header.Set("Authorization", "Bearer "+*t)
	}
	resp, err := m.client.Do(req)
	if err != nil {
		return nil, "", nil, fmt.Errorf("fetch module %s: %w", hash, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, "", nil, fmt.Errorf("fetch module %s: the master answered %s: %s", hash, resp.Status, strings.TrimSpace(string(msg)))
	}
	code, err := io.ReadAll(io.LimitReader(resp.Body, m.maxSize+1))
	if err != nil {
		return nil, "", nil, fmt.Errorf("fetch module %s: %w", hash, err)
	}
	if int64(len(code)) > m.maxSize {
		return nil, "", nil, fmt.Errorf("module %s is larger than this slave's limit of %d bytes", hash, m.maxSize)
	}
	if got := modsig.Hash(code); got != hash {
		return nil, "", nil, fmt.Errorf("module hash mismatch: the master served bytes whose sha256 is %s for module %s; refused", got, hash)
	}
	var sigs []modsig.Signature
	if h := resp.Header.Get(protocol.HeaderSignatures); h != "" {
		if err := json.Unmarshal([]byte(h), &sigs); err != nil {
			return nil, "", nil, fmt.Errorf("module %s: malformed %s header: %v", hash, protocol.HeaderSignatures, err)
		}
	}
	name := resp.Header.Get(protocol.HeaderModuleName)
	if name == "" || len(name) > protocol.MaxNameBytes || strings.ContainsAny(name, "\x00/") {
		name = "module"
	}
	return code, name, sigs, nil
}

// keep records a verified module as held, on disk if there is a cache
// directory, and tells the master.
func (m *modules) keep(hash, name string, sigs []modsig.Signature, code []byte) {
	h := &heldModule{size: int64(len(code)), used: time.Now()}
	if m.dir == "" {
		h.code = code
	} else {
		b, _ := json.Marshal(meta{Name: name, Signatures: sigs})
		if err := writeFileAtomic(m.path(hash, ".json"), b); err != nil {
			m.log.Warn("cannot keep a module", "module", hash, "err", err)
			return
		}
		if err := writeFileAtomic(m.path(hash, ".wasm"), code); err != nil {
			m.log.Warn("cannot keep a module", "module", hash, "err", err)
			return
		}
	}
	m.mu.Lock()
	if old := m.held[hash]; old != nil {
		m.total -= old.size
	}
	m.held[hash] = h
	m.total += h.size
	m.evictLocked()
	m.mu.Unlock()
	m.changed()
}

func (m *modules) touch(hash string) {
	m.mu.Lock()
	if h := m.held[hash]; h != nil {
		h.used = time.Now()
	}
	m.mu.Unlock()
}

func (m *modules) drop(hash string) {
	m.mu.Lock()
	m.dropLocked(hash)
	m.mu.Unlock()
	m.changed()
}

func (m *modules) dropLocked(hash string) {
	h := m.held[hash]
	if h == nil {
		return
	}
	delete(m.held, hash)
	m.total -= h.size
	if m.dir != "" {
		os.Remove(m.path(hash, ".wasm"))
		os.Remove(m.path(hash, ".json"))
	}
}

// evictLocked drops the least recently used modules while the held ones
// exceed the bound; the newest always stays, however large.
func (m *modules) evictLocked() {
	for m.total > m.maxBytes && len(m.held) > 1 {
		var oldest string
		for h, v := range m.held {
			if oldest == "" || v.used.Before(m.held[oldest].used) {
				oldest = h
			}
		}
		m.log.Debug("module cache full; dropping the least recently used", "module", oldest)
		m.dropLocked(oldest)
	}
}

func (m *modules) path(hash, ext string) string { return filepath.Join(m.dir, hash+ext) }

// fetchTimeout bounds one module's fetch and compilation.
const fetchTimeout = 5 * time.Minute

// close ends fetches in flight and the runtime; the workers have stopped.
func (m *modules) close(ctx context.Context) error {
	m.stopFetch()
	m.fetches.Wait()
	m.client.CloseIdleConnections()
	if m.wasm == nil {
		return nil
	}
	return m.wasm.Close(ctx)
}

// writeFileAtomic writes through a temporary file and a rename, so a
// crash leaves the old file or the new one, never half of one.
func writeFileAtomic(path string, b []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}
