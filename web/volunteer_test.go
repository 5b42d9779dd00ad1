package web_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/anthill-project/anthill/web"
)

// The volunteer page is public, its scripts too; they, and only they,
// may compile WebAssembly. Everything else keeps the dashboard's policy.
func TestVolunteerPageIsPublicAndMayCompileWASM(t *testing.T) {
	e := newEnv(t, web.Options{})
	c := e.client() // no login
	for _, path := range []string{
		"/volunteer",
		"/static/volunteer/volunteer.js",
		"/static/volunteer/worker.js",
		"/static/volunteer/codec.js",
		"/static/volunteer/memcap.js",
		"/static/volunteer/sha256.js",
		"/static/vendor/browser_wasi_shim/index.js",
	} {
		resp, body := e.get(c, path, nil)
		if resp.StatusCode != http.StatusOK || body == "" {
			t.Fatalf("%s without a session: status %d", path, resp.StatusCode)
		}
		csp := resp.Header.Get("Content-Security-Policy")
		if !strings.Contains(csp, "script-src 'self' 'wasm-unsafe-eval';") || strings.Contains(csp, " 'unsafe-eval'") {
			t.Errorf("%s: CSP %q, want scripts from 'self' and WebAssembly compilation", path, csp)
		}
		if strings.HasSuffix(path, ".js") && !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/javascript") {
			t.Errorf("%s: Content-Type %q: module scripts need a JavaScript type", path, resp.Header.Get("Content-Type"))
		}
	}
	_, page := e.get(c, "/volunteer", nil)
	if !strings.Contains(page, `src="/static/volunteer/volunteer.js"`) || !strings.Contains(page, `id="start"`) {
		t.Error("/volunteer is not the volunteer page")
	}
	for _, path := range []string{"/login", "/static/app.js"} {
		resp, _ := e.get(c, path, nil)
		if csp := resp.Header.Get("Content-Security-Policy"); strings.Contains(csp, "wasm") {
			t.Errorf("%s: CSP %q allows WebAssembly", path, csp)
		}
	}
}
