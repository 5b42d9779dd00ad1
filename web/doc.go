// Package web is the master's browser dashboard: pages embedded in the
// binary (no CDN, it works offline), a live feed over a WebSocket, and the
// few JSON calls the pages make to list tasks and to cancel, retry or drain.
// It also serves /volunteer, the browser volunteer: a public page whose Web
// Workers run WASM tasks as a slave of the master, over /ws/slave like any
// slave, with modules from /modules/{hash} (assets/volunteer; the WASI
// host is the vendored browser_wasi_shim).
//
// It reads and acts only through the master's operator API and its stats
// recorder; it keeps no state of its own beyond one-time login codes.
//
// # Security
//
// Every page and call but the login page and the static assets needs a
// session cookie, obtained by presenting the admin token (the one the
// JSON-RPC API takes) or a one-time login code. The cookie is an HMAC of
// its expiry keyed by the admin token, so it survives a master restart and
// rotating the token revokes every session. Actions (POST) must carry the
// session's CSRF token in the X-CSRF-Token header and, when the browser
// sends one, an Origin of the dashboard's own host; the cookie is
// SameSite=Strict as well. The live WebSocket refuses foreign Origins, since
// browsers let any page open a WebSocket with the user's cookies.
//
// The volunteer page and its scripts need no session: the page holds no
// power of its own; it presents a volunteer token (an invitation link's,
// or one the master issued it) in its slave Hello, and the master decides
// there, as for a native slave. They alone are served with a policy that
// allows 'wasm-unsafe-eval' (WebAssembly compilation, not JavaScript
// eval); the token is kept in the page's localStorage.
package web
