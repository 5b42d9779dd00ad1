package jsonrpc

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
)

// Client calls the API from Go, for scripts and the CLI. Set URL and
// Token; HTTP defaults to http.DefaultClient. It is safe for concurrent
// use.
type Client struct {
	// URL is the master's base URL: http://host:port (https, ws and wss
	// work too: ws means http; see Endpoint). The client posts to its
	// Endpoint.
	URL string
	// Token is the admin token (LoadOrCreateToken).
	Token string
	// HTTP sends the requests. Default http.DefaultClient. Tasks.Wait
	// holds a request up to a minute: a Timeout must allow for it.
	HTTP *http.Client
	// TLS verifies an https master when HTTP is nil (with HTTP set, its
	// transport's configuration counts). Nil means the system's roots.
	TLS *tls.Config

	id    atomic.Uint64
	once  sync.Once
	ownHC *http.Client
}

// HTTPError is an answer that is not a JSON-RPC response: a proxy's error
// page, a server that is not an Anthill master. Callers can tell a bad
// gateway (the master is unreachable) from the rest by its Status.
type HTTPError struct {
	Status int
	Body   string // the start of the answer
}

func (e *HTTPError) Error() string {
	return fmt.Sprintf("HTTP %d, not a JSON-RPC response: %.200q", e.Status, e.Body)
}

// maxResponse caps what is read of an answer.
const maxResponse = 1 << 30

// Call invokes method with params (marshalled as a JSON object: a struct
// such as SubmitParams, a map, or nil for none) and decodes its result
// into result unless result is nil (a *json.RawMessage keeps it as is).
// A JSON-RPC error is returned as an *Error, including the HTTP 401 of a
// wrong token; an answer that is not JSON-RPC as an *HTTPError; a failure
// to reach the master as the transport's error, wrapped.
func (c *Client) Call(ctx context.Context, method string, params, result any) error {
	endpoint, err := Endpoint(c.URL)
	if err != nil {
		return fmt.Errorf("jsonrpc: master URL %w", err)
	}
	if params == nil {
		params = struct{}{}
	}
	body, err := json.Marshal(struct {
		Version string `json:"jsonrpc"`
		ID      uint64 `json:"id"`
		Method  string `json:"method"`
		Params  any    `json:"params"`
	}{"2.0", c.id.Add(1), method, params})
	if err != nil {
		return fmt.Errorf("jsonrpc: %s params: %w", method, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("jsonrpc: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Authorization", "Bearer "+c.Token)
	hc := c.HTTP
	if hc == nil && c.TLS != nil {
		c.once.Do(func() {
			tr := http.DefaultTransport.(*http.Transport).Clone()
			tr.TLSClientConfig = c.TLS
			c.ownHC = &http.Client{Transport: tr}
		})
		hc = c.ownHC
	}
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("jsonrpc: %s: %w", method, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return fmt.Errorf("jsonrpc: %s: reading the answer: %w", method, err)
	}
	var res struct {
		Result json.RawMessage `json:"result"`
		Error  *Error          `json:"error"`
	}
	if err := json.Unmarshal(raw, &res); err != nil || (res.Error == nil && res.Result == nil) {
		return &HTTPError{Status: resp.StatusCode, Body: string(raw[:min(len(raw), 200)])}
	}
	if res.Error != nil {
		return res.Error
	}
	if result != nil {
		if err := json.Unmarshal(res.Result, result); err != nil {
			return fmt.Errorf("jsonrpc: %s result: %w", method, err)
		}
	}
	return nil
}

// Endpoint turns a master URL as a person types it into the API's
// endpoint: ws and wss become http and https, a bare host:port gets
// http://, a path prefix (a proxy) is kept and Path is added once.
func Endpoint(master string) (string, error) {
	s := strings.TrimSpace(master)
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", err
	}
	switch strings.ToLower(u.Scheme) {
	case "http", "ws":
		u.Scheme = "http"
	case "https", "wss":
		u.Scheme = "https"
	default:
		return "", fmt.Errorf("%q: want http://host:port", master)
	}
	if u.Host == "" {
		return "", fmt.Errorf("%q: no host", master)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	if !strings.HasSuffix(u.Path, Path) {
		u.Path += Path
	}
	u.RawQuery, u.Fragment = "", ""
	return u.String(), nil
}
