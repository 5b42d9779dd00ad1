// Package appnode is the Go library for applications: connect to a master
// under an app id, push tasks, and get each task's final outcome exactly
// once, asynchronously; optionally drive a whole job through a TaskSystem
// with backpressure; upload the WASM modules its tasks name
// (UploadModule, over the master's HTTP door POST /modules). It speaks only
// the protocol package's wire contract and that door's, and must not know
// how the master stores or schedules anything.
//
// It mirrors the seed's ApplicationNode: PushTask is push_task, the
// Options.TaskFinished callback is task_finished, and Run with a TaskSystem
// is get_task_system.
//
// # Guarantees
//
// A push returns only after the master acknowledged the batch, which it does
// once the batch is durable; the tasks' IDs are set then. An unacknowledged
// batch is re-sent with its original sequence number after every reconnect
// (the master dedupes by app id and sequence number), so a push survives
// master restarts and network failures and fails only on its context,
// Shutdown or a fatal error from the master.
//
// Every finished task is reported once per process: to the TaskSystem of the
// Run that pushed it while that Run is running, otherwise to
// Options.TaskFinished. The node acknowledges a notification only after the
// callback returned, so a process that dies before that gets it again when
// it comes back under the same app id (as a Task holding only ID and Kind:
// Payload and Value do not survive the process).
//
// # Goroutines and locks
//
// Per node: one loop goroutine that dials, reads frames and reconnects; the
// writer goroutine of the current wire.Conn; one dispatcher goroutine that
// calls Options.TaskFinished; a short-lived resender per connection that
// re-sends unacknowledged batches. TaskSystem methods are called on the
// goroutine that called Run. State lives under Node.mu; Node.sendSem orders
// Submit frames on the wire and is always taken before mu, never while
// holding it. No lock is held while waiting for a connection's send queue.
//
// # Caveats
//
// Shutdown must be called to release the goroutines. Acknowledged
// notifications are remembered (to drop duplicates) until the master
// confirms the acknowledgement is durable; a confirmation lost with a
// connection leaves one small entry behind for the life of the node.
package appnode
