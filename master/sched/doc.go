// Package sched owns every task's life on the master: submitted and
// accepted, pending in a Strategy's queue, dispatched under a lease,
// completed, retried or requeued, canceled, final, notified to its
// application and acknowledged, then kept for the retention and swept. It
// writes every change as a store batch through one commit pump, keeps each
// task's attempt history, runs the background duties (retries, leases,
// gauges, series, retention) and serves the operator API (Submit, Task,
// Tasks, Wait, Cancel, Retry, Drain, Stats).
//
// It knows no sockets, HTTP or handshake: a connection is an Outbox it
// sends messages to, and the transport calls its verbs (AttachSlave,
// Request, Complete, Return, DetachSlave, AttachApp, SubmitBatch,
// Acknowledge, DetachApp) with what it read.
//
// # Locking
//
// One mutex guards all scheduling state. It is held while messages go to
// an Outbox, so an Outbox must never block (the master's queues a frame
// and drops a peer too slow to drain its queue), and never across a store
// transaction: batches are queued under the lock, which keeps their order,
// and handed to the store by the commit pump outside it; the store's
// completion callbacks take the lock again to deliver acks and
// notifications.
package sched
