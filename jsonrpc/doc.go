// Package jsonrpc is the master's JSON-RPC 2.0 API for scripts and
// operators: an http.Handler for POST /rpc, built on gorilla/rpc/v2 and its
// json2 codec, that submits, inspects, waits for, cancels and retries
// tasks, lists and drains slaves, manages credentials and WASM modules and
// reports statistics. It calls the
// master's public API only; it does not schedule, store or speak the
// WebSocket protocol itself.
//
// Every call needs an admin bearer token (LoadOrCreateToken keeps one in
// the master's data dir). Methods, parameters, results and error codes are
// documented for users in docs/api.md; the Go types of this package mirror
// them for Go clients (see Client).
//
// # Caveats
//
// A request is one JSON object with an id: batches (a JSON array) and
// notifications (no id, or a null id) are refused with -32600, so every
// call is answered. Binary fields travel base64-encoded.
package jsonrpc
