// Package protocol is the one wire contract between the master, its slaves
// and applications: every message that crosses a WebSocket, its binary
// encoding and the protocol Version. It imports only the standard library
// and internal/binenc (the reader of its binary bodies, itself standard
// library only), and holds no connection state; master, slave and appnode
// all speak it and none of them redefines a message.
//
// # Protocol flow
//
// Every WebSocket message is one binary frame: a type byte followed by the
// body. Handshake and error bodies are JSON (rare, and easier to extend);
// the hot-path bodies (tasks, results, acknowledgements) are a compact
// binary encoding with varints, so payloads and results travel as raw bytes
// and one frame carries a whole batch.
//
//	slave                      master                      application
//	  |-- Hello(role=slave) ----->|<----- Hello(role=app) -------|
//	  |<------------- Welcome ----|---- Welcome --------------->|
//	  |                           |<----- Submit(seq, tasks) ---|
//	  |                           |-- SubmitAck(seq, ids) ----->|  (after fsync)
//	  |<-- Dispatch(tasks+leases)-|                             |
//	  |-- Results(+leases) ------>|                             |
//	  |                           |-- Notify(finished) -------->|  (after fsync)
//	  |                           |<----- NotifyAck(ids) -------|
//	  |                           |-- NotifyDone(ids) --------->|  (ack durable)
//
// In the polling pattern the slave sends Request(n) for every free slot and
// the master dispatches only against requests; in the sending pattern the
// master keeps each slave's window full on its own: concurrency + prefetch,
// capped by the master and grown from a slow start as results arrive. Each
// dispatched attempt carries a random lease that its result must echo, on
// the same session; the master counts no other result (see DecodeWith for
// the element limits a receiver sets).
// Heartbeats are WebSocket ping/pong control frames; a peer that misses two
// heartbeat intervals is dropped. A slave hands back work it will not run
// with Return; the master asks a slave to abandon work with Cancel. Either
// side may send Error before it closes the connection.
package protocol
