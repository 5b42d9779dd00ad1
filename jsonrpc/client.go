package jsonrpc

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
)

// Client calls the API from Go, for scripts and the CLI. Set URL and
// Token; HTTP defaults to http.DefaultClient. It is safe for concurrent
// use.
type Client struct {
	// URL is the master's base URL: http://host:port (https, ws and wss
	// work too: ws means http). The client posts to URL + Path.
	URL string
	// Token is the admin token (LoadOrCreateToken).
	Token string
	// HTTP sends the requests. Default http.DefaultClient. Tasks.Wait
	// holds a request up to a minute: a Timeout must allow for it.
	HTTP *http.Client

	id atomic.Uint64
}

// Call invokes method with params (marshalled as a JSON object: a struct
// such as SubmitParams, a map, or nil for none) and decodes its result
// into result unless result is nil. A JSON-RPC error is returned as an
// *Error, including the HTTP 401 of a wrong token.
func (c *Client) Call(ctx context.Context, method string, params, result any) error {
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
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint(c.URL), bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("jsonrpc: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+c.Token)
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("jsonrpc: %s: %w", method, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("jsonrpc: %s: %w", method, err)
	}
	var res struct {
		Result json.RawMessage `json:"result"`
		Error  *Error          `json:"error"`
	}
	if err := json.Unmarshal(raw, &res); err != nil {
		return fmt.Errorf("jsonrpc: %s: HTTP %d, not a JSON-RPC response: %.200q", method, resp.StatusCode, raw)
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

// endpoint turns a master base URL into the RPC endpoint's.
func endpoint(base string) string {
	base = strings.TrimRight(base, "/")
	switch {
	case strings.HasPrefix(base, "ws://"):
		base = "http://" + strings.TrimPrefix(base, "ws://")
	case strings.HasPrefix(base, "wss://"):
		base = "https://" + strings.TrimPrefix(base, "wss://")
	case !strings.Contains(base, "://"):
		base = "http://" + base
	}
	return base + Path
}
