package main

// The scripting commands (submit, get, wait, tasks, cancel, retry in
// client_tasks.go; slaves, apps, stats in client_cluster.go; apps' and
// volunteers' credentials in client_idents.go; modules in
// client_modules.go) make JSON-RPC 2.0 calls over HTTP to a running
// master: POST <master>/rpc with an admin bearer token, through
// jsonrpc.Client. They decode each result into the
// jsonrpc package's result types and render.go prints their fields; with
// --json they print the result as the master sent it, so a field the
// master adds shows up there without a change here. This file holds what
// every one of them shares: the flags, the token, the call and its exit
// codes.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/anthill-project/anthill/internal/dial"
	"github.com/anthill-project/anthill/jsonrpc"
)

func clientCommands() []command {
	return []command{
		{"submit", "submit tasks to a running master", runSubmit},
		{"get", "show a task", runGet},
		{"wait", "wait until tasks are finished", runWait},
		{"tasks", "list tasks", runTasks},
		{"cancel", "cancel a task", runCancel},
		{"retry", "run a failed or canceled task again", runRetry},
		{"slaves", "list the connected slaves, or drain one", runSlaves},
		{"apps", "list the applications, or enroll or revoke one's token", runApps},
		{"volunteers", "list, enroll or revoke volunteer identities", runVolunteers},
		{"modules", "upload, list, show or delete WASM modules", runModules},
		{"stats", "show the master's statistics", runStats},
	}
}

// Exit codes of the client commands. main's run turns an error into one
// with exitCode.
const (
	exitOK           = 0
	exitFailed       = 1 // an RPC error; for wait, a task failed or was canceled
	exitUsage        = 2
	exitTimeout      = 3 // wait: not every task was final in time
	exitUnauthorized = 4 // no token, or the master refused it
	exitUnreachable  = 5 // no connection to the master, or no answer
)

const exitCodesHelp = `exit codes:
  0  ok
  1  error: the master refused the call (a JSON-RPC error), or a task failed or was canceled (wait)
  2  usage: a bad command line
  3  timed out before every task was final (wait)
  4  not authorized: no token found, or the master refused it (HTTP 401; 429 after too many wrong tokens)
  5  master unreachable: no connection, or no answer in time`

// exitError carries the exit code of a failed command; any other error
// exits 1 (errUsage 2).
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// exitCode is the process exit code of a command's error.
func exitCode(err error) int {
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.Is(err, errUsage):
		return exitUsage
	}
	if ce, ok := errors.AsType[*exitError](err); ok {
		return ce.code
	}
	return exitFailed
}

const (
	defaultMaster = "http://127.0.0.1:7070"
	// callTimeout bounds one call, on top of the time the call itself asks
	// the master to wait (Tasks.Wait).
	callTimeout = time.Minute
)

// clientStdin is what --stdin and --payload-file - read; tests replace it.
var clientStdin io.Reader = os.Stdin

// clientFlags are the flags every client command takes.
type clientFlags struct {
	fs       *flag.FlagSet
	name     string
	synopsis string
	master   string
	token    string
	data     string
	ca       string
	json     bool
}

// newClientFlags makes the flag set of a client command. Its --help shows
// synopsis, about, the flags and the exit codes.
func newClientFlags(name, synopsis, about string, stderr io.Writer) *clientFlags {
	c := &clientFlags{fs: newFlags(name, stderr), name: name, synopsis: synopsis}
	master := os.Getenv("ANTHILL_MASTER")
	if master == "" {
		master = defaultMaster
	}
	c.fs.StringVar(&c.master, "master", master, "URL of the master, http(s):// or ws(s)://; $ANTHILL_MASTER sets the default")
	c.fs.StringVar(&c.token, "token", "", "admin token (default $ANTHILL_TOKEN, else the file admin.token in --data)")
	c.fs.StringVar(&c.data, "data", "./anthill-data", "the master's data dir, where admin.token is read when neither --token nor $ANTHILL_TOKEN is set")
	c.fs.StringVar(&c.ca, "ca", "", "PEM file of the CA (or certificate) that verifies an https master (default: the system's roots)")
	c.fs.BoolVar(&c.json, "json", false, "print the result as the master sent it, one JSON document")
	c.fs.Usage = func() {
		w := c.fs.Output()
		fmt.Fprintf(w, "usage: anthill %s %s\n\n%s\n\nflags:\n", name, synopsis, about)
		c.fs.PrintDefaults()
		fmt.Fprintf(w, "\n%s\n", exitCodesHelp)
	}
	return c
}

// parse parses args, flags and operands in any order ("--" ends the
// flags), and returns the operands.
func (c *clientFlags) parse(args []string) ([]string, error) {
	var operands []string
	for {
		if err := c.fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, errUsage
		}
		rest := c.fs.Args()
		if len(rest) == 0 {
			return operands, nil
		}
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return append(operands, rest...), nil
		}
		operands, args = append(operands, rest[0]), rest[1:]
	}
}

// parseNone parses args for a command that takes no operands.
func (c *clientFlags) parseNone(args []string) error {
	operands, err := c.parse(args)
	if err != nil {
		return err
	}
	if len(operands) > 0 {
		return c.usageError("unexpected arguments: %s", strings.Join(operands, " "))
	}
	return nil
}

// usageError prints a command line problem and returns errUsage.
func (c *clientFlags) usageError(format string, args ...any) error {
	w := c.fs.Output()
	fmt.Fprintf(w, "anthill %s: %s\n", c.name, fmt.Sprintf(format, args...))
	fmt.Fprintf(w, "usage: anthill %s %s   (anthill %s --help for more)\n", c.name, c.synopsis, c.name)
	return errUsage
}

// wasSet reports whether the flag name was given on the command line.
func (c *clientFlags) wasSet(name string) bool {
	set := false
	c.fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// parseID parses a task id operand.
func (c *clientFlags) parseID(s string) (uint64, error) {
	id, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, c.usageError("%q is not a task id", s)
	}
	return id, nil
}

// client resolves the master's endpoint and the token.
func (c *clientFlags) client() (*rpcClient, error) {
	endpoint, err := jsonrpc.Endpoint(c.master)
	if err != nil {
		return nil, c.usageError("--master: %v", err)
	}
	token, err := findToken(c.token, c.data)
	if err != nil {
		return nil, err
	}
	// A transport of its own, closed by close: a command leaves no idle
	// connection behind, which matters to tests that run many.
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if tr.TLSClientConfig, err = dial.ClientTLS(c.ca); err != nil {
		return nil, c.usageError("--ca: %v", err)
	}
	return &rpcClient{endpoint: endpoint, c: jsonrpc.Client{URL: endpoint, Token: token, HTTP: &http.Client{Transport: tr}}}, nil
}

// callOnce makes the one call of a command that needs no more, with a
// client closed when it returns.
func (c *clientFlags) callOnce(ctx context.Context, method string, params any) (json.RawMessage, error) {
	cl, err := c.client()
	if err != nil {
		return nil, err
	}
	defer cl.close()
	return cl.call(ctx, method, params, 0)
}

// findToken returns the admin token: the --token flag, else $ANTHILL_TOKEN,
// else the file admin.token in the data dir.
func findToken(flagToken, dataDir string) (string, error) {
	if t := strings.TrimSpace(flagToken); t != "" {
		return t, nil
	}
	if t := strings.TrimSpace(os.Getenv("ANTHILL_TOKEN")); t != "" {
		return t, nil
	}
	path := filepath.Join(dataDir, jsonrpc.TokenFile)
	f, err := os.Open(path)
	if err != nil {
		return "", &exitError{exitUnauthorized, fmt.Errorf("no admin token: pass --token, set ANTHILL_TOKEN, or point --data at the master's data dir (%v)", err)}
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 4096))
	if err != nil {
		return "", &exitError{exitUnauthorized, fmt.Errorf("admin token: %w", err)}
	}
	t := strings.TrimSpace(string(b))
	if t == "" {
		return "", &exitError{exitUnauthorized, fmt.Errorf("admin token: %s is empty", path)}
	}
	return t, nil
}

// rpcClient makes JSON-RPC calls to one master and turns their failures
// into the exit codes scripts rely on.
type rpcClient struct {
	endpoint string
	c        jsonrpc.Client
}

// close closes the client's idle connections.
func (c *rpcClient) close() { c.c.HTTP.CloseIdleConnections() }

// call invokes method with params (nil for none) and returns its raw
// result, which --json prints unchanged. wait is how long the call asks
// the master to hold it. Errors are a *jsonrpc.Error (exit 1), or a
// *exitError for a refused token (4) and an unreachable master (5).
func (c *rpcClient) call(ctx context.Context, method string, params any, wait time.Duration) (json.RawMessage, error) {
	cctx, cancel := context.WithTimeout(ctx, callTimeout+wait)
	defer cancel()
	var raw json.RawMessage
	err := c.c.Call(cctx, method, params, &raw)
	if err == nil {
		return raw, nil
	}
	if rerr, ok := errors.AsType[*jsonrpc.Error](err); ok {
		if rerr.Code == jsonrpc.CodeUnauthorized || rerr.Code == jsonrpc.CodeRateLimited {
			return nil, &exitError{exitUnauthorized, rerr}
		}
		return nil, rerr
	}
	if herr, ok := errors.AsType[*jsonrpc.HTTPError](err); ok {
		err := fmt.Errorf("%s: %w from %s", method, herr, c.endpoint)
		switch herr.Status {
		case http.StatusUnauthorized:
			return nil, &exitError{exitUnauthorized, fmt.Errorf("unauthorized: the master refused the token (HTTP 401)")}
		case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			return nil, &exitError{exitUnreachable, err}
		}
		return nil, err
	}
	if ctx.Err() != nil { // interrupted
		return nil, ctx.Err()
	}
	if cctx.Err() != nil {
		err = fmt.Errorf("no answer within %v", callTimeout+wait)
	} else if ue, ok := errors.AsType[*url.Error](err); ok {
		err = ue.Err
	}
	return nil, &exitError{exitUnreachable, fmt.Errorf("master unreachable at %s: %w", c.endpoint, err)}
}

// decodeResult decodes method's raw result into v, one of the jsonrpc
// result types. Every result is an object: anything else (null included,
// which Unmarshal would take as an empty result) is refused.
func decodeResult(method string, raw json.RawMessage, v any) error {
	if !bytes.HasPrefix(bytes.TrimSpace(raw), []byte("{")) {
		return fmt.Errorf("%s: unexpected result %.200s", method, raw)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("%s: unexpected result %.200s: %v", method, raw, err)
	}
	return nil
}

// show prints method's result: with --json as the master sent it, else
// decoded into T and rendered.
func show[T any](w io.Writer, c *clientFlags, method string, raw json.RawMessage, render func(io.Writer, *T) error) error {
	if c.json {
		return printJSON(w, raw)
	}
	var v T
	if err := decodeResult(method, raw, &v); err != nil {
		return err
	}
	return render(w, &v)
}

// showCall makes method's call and shows its result.
func showCall[T any](ctx context.Context, w io.Writer, c *clientFlags, method string, params any, render func(io.Writer, *T) error) error {
	raw, err := c.callOnce(ctx, method, params)
	if err != nil {
		return err
	}
	return show(w, c, method, raw, render)
}
