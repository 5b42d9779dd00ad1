package appnode

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/anthill-project/anthill/internal/modsig"
	"github.com/anthill-project/anthill/internal/wire"
	"github.com/anthill-project/anthill/protocol"
)

// UploadError is the master's refusal of an upload: Status is the HTTP
// status (400 for a module it refuses, 413 for one over its size limit,
// 401 for a token it does not take) and Message says why, naming the
// field at fault ("wasm: …", "name: …", "signatures[0]: …").
type UploadError struct {
	Status  int
	Message string
}

func (e *UploadError) Error() string {
	return fmt.Sprintf("module upload refused (HTTP %d): %s", e.Status, e.Message)
}

// UploadModule stores a WebAssembly module (a WASI preview 1 command) on
// the master the node is connected to, with this node's app id and token,
// and returns its hash, what a Task's Module names. sigs, made with
// modsig.Sign over modsig.Hash(code), are checked by the master and handed
// to slaves; uploading the same bytes again only adds new signatures. The
// module is durable on the master when UploadModule returns. A refusal is
// an *UploadError.
func (n *Node) UploadModule(ctx context.Context, name string, code []byte, sigs ...modsig.Signature) (string, error) {
	u, err := wire.HTTPURL(n.opts.Master, protocol.ModulesPath)
	if err != nil {
		return "", fmt.Errorf("appnode: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u+"?name="+url.QueryEscape(name), bytes.NewReader(code))
	if err != nil {
		return "", fmt.Errorf("appnode: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+n.opts.Token)
	req.Header.Set(protocol.HeaderApp, n.opts.App)
	req.Header.Set("Content-Type", "application/wasm")
	if len(sigs) > 0 {
		sj, err := json.Marshal(sigs)
		if err != nil {
			return "", fmt.Errorf("appnode: %w", err)
		}
		req.Header.Set(protocol.HeaderSignatures, string(sj))
	}
	// A client of its own, without keep-alive: uploads are rare, and the
	// node must leave no idle connection behind when it shuts down.
	hc := &http.Client{Transport: &http.Transport{
		TLSClientConfig:   n.opts.TLS,
		Proxy:             http.ProxyFromEnvironment,
		DisableKeepAlives: true,
	}}
	resp, err := hc.Do(req)
	if err != nil {
		return "", fmt.Errorf("appnode: upload module: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return "", fmt.Errorf("appnode: upload module: reading the answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(body, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(body))
		}
		return "", &UploadError{Status: resp.StatusCode, Message: e.Error}
	}
	var res struct {
		Hash string `json:"hash"`
	}
	if err := json.Unmarshal(body, &res); err != nil {
		return "", fmt.Errorf("appnode: upload module: unexpected answer %.200q: %w", body, err)
	}
	if want := modsig.Hash(code); res.Hash != want {
		return "", fmt.Errorf("appnode: upload module: the master stored %q, not %s", res.Hash, want)
	}
	return res.Hash, nil
}
