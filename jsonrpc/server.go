package jsonrpc

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gorilla/rpc/v2"
	"github.com/gorilla/rpc/v2/json2"

	"github.com/anthill-project/anthill/internal/netguard"
	"github.com/anthill-project/anthill/protocol"
)

// Options configures the handler. Every field's zero value means the
// default written beside it, except Token, which is required.
type Options struct {
	// Token is the admin bearer token every call must present, at least
	// MinTokenLen bytes. Required: LoadOrCreateToken provides one.
	Token string
	// Logger receives calls that failed with an internal error and panics
	// recovered from a method. Nil discards.
	Logger *slog.Logger
	// Now is the clock of Stats.Series's default span. Default time.Now.
	Now func() time.Time
	// MaxBody caps a request body in bytes; a larger one gets HTTP 413 and
	// CodeTooLarge. Default: the larger of 32 MiB, twice the master's
	// MaxPayload (base64 inflates a payload by a third) and, with Modules,
	// a module of Modules.MaxModuleBytes in base64 with room to spare.
	MaxBody int64
	// MaxBatch caps the tasks of one Tasks.SubmitBatch. Default 10000; at
	// most protocol.MaxSubmitTasks.
	MaxBatch int
	// MaxWait caps Tasks.Wait's timeout_ms. Default 60s.
	MaxWait time.Duration
	// Limiter counts wrong tokens per IP and locks an address out after a
	// few (pass the master's, master.Limiter, so every door shares it).
	// Default: one of the handler's own.
	Limiter *netguard.Limiter
	// TrustProxy counts failures per X-Forwarded-For address: set it only
	// behind a reverse proxy that sets the header (master.Options).
	TrustProxy bool
	// Identities serves the credential methods (Apps.Enroll, Apps.Revoke,
	// Apps.Credentials, Volunteers.*). Default nil: they answer
	// CodeUnavailable.
	Identities Identities
	// Modules serves the module methods (Modules.*). Default nil: they
	// answer CodeUnavailable.
	Modules Modules
}

// DefaultWait is Tasks.Wait's timeout when the call gives none (or
// Options.MaxWait if that is shorter).
const DefaultWait = 30 * time.Second

// MaxWaitIDs caps the ids of one Tasks.Wait.
const MaxWaitIDs = 10000

// Path is where cmd/anthill attaches the handler.
const Path = "/rpc"

type handler struct {
	m     Master
	opts  Options
	log   *slog.Logger
	token [sha256.Size]byte // compared as hashes: constant time, whatever the lengths
	rpc   *rpc.Server
}

// New returns the http.Handler of the JSON-RPC API of m. Attach it before
// m.Run: m.Handle(jsonrpc.Path, h). It holds no goroutines and needs no
// closing.
func New(m Master, opts Options) (http.Handler, error) {
	if m == nil {
		return nil, errors.New("jsonrpc: nil master")
	}
	if err := checkToken(opts.Token); err != nil {
		return nil, fmt.Errorf("jsonrpc: Options.Token: %w", err)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MaxBody == 0 {
		opts.MaxBody = max(32<<20, 2*int64(m.MaxPayload()))
		if opts.Modules != nil {
			opts.MaxBody = max(opts.MaxBody, base64Len(opts.Modules.MaxModuleBytes())+1<<20)
		}
	}
	if opts.MaxBatch == 0 {
		opts.MaxBatch = 10000
	}
	if opts.MaxWait == 0 {
		opts.MaxWait = 60 * time.Second
	}
	if opts.Limiter == nil {
		opts.Limiter = netguard.NewLimiter(netguard.LimiterOptions{Logger: opts.Logger})
	}
	if opts.MaxBatch > protocol.MaxSubmitTasks {
		return nil, fmt.Errorf("jsonrpc: MaxBatch %d exceeds the protocol's %d", opts.MaxBatch, protocol.MaxSubmitTasks)
	}
	if opts.MaxBody < 0 || opts.MaxBatch < 0 || opts.MaxWait < 0 {
		return nil, errors.New("jsonrpc: negative MaxBody, MaxBatch or MaxWait")
	}
	h := &handler{m: m, opts: opts, log: opts.Logger, token: sha256.Sum256([]byte(opts.Token))}
	h.rpc = rpc.NewServer()
	h.rpc.RegisterCodec(json2.NewCustomCodecWithErrorMapper(rpc.DefaultEncoderSelector, h.mapError), "application/json")
	for name, svc := range map[string]any{
		"Tasks": &tasksService{h}, "Slaves": &slavesService{h}, "Apps": &appsService{h},
		"Stats": &statsService{h}, "Master": &masterService{h}, "Volunteers": &volunteersService{h},
		"Modules": &modulesService{h},
	} {
		if err := h.rpc.RegisterService(svc, name); err != nil {
			return nil, fmt.Errorf("jsonrpc: %w", err)
		}
	}
	return h, nil
}

// base64Len is the length of n bytes in padded base64.
func base64Len(n int) int64 { return 4 * ((int64(n) + 2) / 3) }

// ServeHTTP authenticates, reads and checks the request envelope itself,
// then lets gorilla/rpc dispatch a canonical copy of it. gorilla alone
// would answer a wrong Content-Type (curl's default) with text, decode
// member names case-insensitively, accept trailing garbage, report an
// unknown method as -32000 and silently drop calls without an id.
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// A refused request is answered at once without reading its body, on
	// a connection closed after it: a stranger's slow body holds nothing.
	ip := netguard.ClientIP(r, h.opts.TrustProxy)
	if wait := h.opts.Limiter.Allow(ip); wait > 0 {
		netguard.CloseAfter(w)
		w.Header().Set("Retry-After", strconv.Itoa(int(wait/time.Second)+1))
		writeError(w, http.StatusTooManyRequests, nil, rpcError(CodeRateLimited, nil, "too many wrong tokens from %s; try again in %v", ip, wait.Round(time.Second)))
		return
	}
	if msg, presented := h.authenticate(r); msg != "" {
		if presented {
			h.opts.Limiter.Fail(ip, "rpc")
		}
		netguard.CloseAfter(w)
		w.Header().Set("WWW-Authenticate", `Bearer realm="anthill"`)
		writeError(w, http.StatusUnauthorized, nil, rpcError(CodeUnauthorized, nil, "unauthorized: %s", msg))
		return
	}
	h.opts.Limiter.Succeed(ip)
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeError(w, http.StatusMethodNotAllowed, nil, rpcError(CodeInvalidRequest, nil, "invalid request: use POST, not %s", r.Method))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.opts.MaxBody))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			writeError(w, http.StatusRequestEntityTooLarge, nil, rpcError(CodeTooLarge, nil, "payload too large: the request body exceeds %d bytes", h.opts.MaxBody))
			return
		}
		writeError(w, http.StatusBadRequest, nil, rpcError(CodeParseError, nil, "parse error: reading the body: %v", err))
		return
	}
	req, rerr := parseRequest(body)
	if rerr == nil && !h.rpc.HasMethod(req.method) {
		rerr = rpcError(CodeMethodNotFound, nil, "method not found: %q", clip(req.method))
	}
	if rerr != nil {
		writeError(w, http.StatusOK, req.id, rerr)
		return
	}

	r2 := r.Clone(r.Context())
	canon := req.canonical()
	r2.Body = io.NopCloser(bytes.NewReader(canon))
	r2.ContentLength = int64(len(canon))
	r2.Header.Set("Content-Type", "application/json")
	tw := &trackingWriter{ResponseWriter: w}
	defer func() {
		if p := recover(); p != nil {
			h.log.Error("jsonrpc method panicked", "method", req.method, "panic", p)
			if !tw.wrote {
				writeError(w, http.StatusOK, req.id, rpcError(CodeInternal, nil, "internal error: %s panicked", req.method))
			}
		}
	}()
	h.rpc.ServeHTTP(tw, r2)
}

// authenticate returns why r is refused, or "", and whether r presented
// a credential at all: only a wrong one counts as a guess.
func (h *handler) authenticate(r *http.Request) (string, bool) {
	auth := r.Header.Get("Authorization")
	if auth == "" {
		return "missing bearer token (send the header Authorization: Bearer <token>; the master keeps it in <data dir>/" + TokenFile + ")", false
	}
	scheme, tok, _ := strings.Cut(auth, " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return "the Authorization header must be Bearer <token>", true
	}
	tok = strings.TrimSpace(tok)
	if tok == "" {
		return "empty bearer token", true
	}
	got := sha256.Sum256([]byte(tok))
	if subtle.ConstantTimeCompare(got[:], h.token[:]) != 1 {
		return "wrong token", true
	}
	return "", true
}

// mapError turns an error a method returned that is not a *json2.Error
// into an internal error. Methods map what they expect themselves.
func (h *handler) mapError(err error) error {
	h.log.Error("jsonrpc call failed", "err", err)
	return rpcError(CodeInternal, nil, "internal error: %v", err)
}

type trackingWriter struct {
	http.ResponseWriter
	wrote bool
}

func (t *trackingWriter) WriteHeader(code int) { t.wrote = true; t.ResponseWriter.WriteHeader(code) }
func (t *trackingWriter) Write(b []byte) (int, error) {
	t.wrote = true
	return t.ResponseWriter.Write(b)
}

// request is a checked request envelope.
type request struct {
	id     json.RawMessage // a JSON string or number; nil until known
	method string
	params json.RawMessage // an object, or nil
}

// parseRequest checks the envelope. The returned request carries the id
// as soon as it is known, so errors after that echo it.
func parseRequest(body []byte) (request, *json2.Error) {
	var req request
	b := bytes.TrimLeft(body, " \t\r\n")
	if len(b) == 0 {
		return req, rpcError(CodeParseError, nil, "parse error: the body is empty; send a JSON-RPC 2.0 request object")
	}
	if !json.Valid(b) {
		var v any
		err := json.Unmarshal(b, &v)
		if err == nil { // cannot happen: both use the same scanner
			err = errors.New("invalid JSON")
		}
		return req, rpcError(CodeParseError, nil, "parse error: %v", err)
	}
	if !utf8.Valid(b) { // JSON text is UTF-8; the id is echoed as received
		return req, rpcError(CodeParseError, nil, "parse error: the body is not valid UTF-8")
	}
	switch b[0] {
	case '{':
	case '[':
		return req, rpcError(CodeInvalidRequest, nil, "invalid request: batch requests are not supported; send one request object per call (Tasks.SubmitBatch submits many tasks)")
	default:
		return req, rpcError(CodeInvalidRequest, nil, "invalid request: the body must be a JSON-RPC 2.0 request object")
	}
	var env map[string]json.RawMessage
	if err := json.Unmarshal(b, &env); err != nil {
		return req, rpcError(CodeParseError, nil, "parse error: %v", err)
	}
	id, ok := env["id"]
	if !ok {
		return req, rpcError(CodeInvalidRequest, nil, "invalid request: id is required; notifications are not supported")
	}
	switch id[0] {
	case '"', '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		req.id = id
	default:
		return req, rpcError(CodeInvalidRequest, nil, "invalid request: id must be a string or a number, not %s", kindOf(id))
	}
	var version string
	if err := json.Unmarshal(env["jsonrpc"], &version); err != nil || version != "2.0" {
		return req, rpcError(CodeInvalidRequest, nil, `invalid request: jsonrpc must be "2.0"`)
	}
	if err := json.Unmarshal(env["method"], &req.method); err != nil || req.method == "" {
		req.method = ""
		return req, rpcError(CodeInvalidRequest, nil, "invalid request: method must be a non-empty string")
	}
	if p, ok := env["params"]; ok && string(p) != "null" {
		if p[0] != '{' {
			return req, invalidParam("", "params must be an object of named parameters, not "+kindOf(p))
		}
		req.params = p
	}
	return req, nil
}

func kindOf(v json.RawMessage) string {
	switch v[0] {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number"
}

// canonical re-encodes the checked envelope for gorilla, so it dispatches
// exactly what was checked.
func (r *request) canonical() []byte {
	m, _ := json.Marshal(r.method)
	b := make([]byte, 0, len(m)+len(r.params)+len(r.id)+48)
	b = append(b, `{"jsonrpc":"2.0","method":`...)
	b = append(b, m...)
	if r.params != nil {
		b = append(b, `,"params":`...)
		b = append(b, r.params...)
	}
	b = append(b, `,"id":`...)
	b = append(b, r.id...)
	return append(b, '}')
}

// response is a JSON-RPC error response the way json2 writes them.
type response struct {
	Version string          `json:"jsonrpc"`
	Error   *json2.Error    `json:"error"`
	ID      json.RawMessage `json:"id"` // nil encodes as null
}

func writeError(w http.ResponseWriter, status int, id json.RawMessage, e *json2.Error) {
	b, err := json.Marshal(response{Version: "2.0", Error: e, ID: id})
	if err != nil { // cannot happen: every field marshals
		b = []byte(`{"jsonrpc":"2.0","error":{"code":-32603,"message":"internal error","data":null},"id":null}`)
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}
