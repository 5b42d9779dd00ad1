package sched

import "github.com/anthill-project/anthill/protocol"

// Outbox is a connection as the scheduler sees it. The scheduler calls it
// with its lock held, so neither method may block.
type Outbox interface {
	// Send queues msg for the peer. It returns false when the peer is
	// gone or too slow to keep; the Outbox then closes itself, and the
	// transport detaches the peer when its read loop ends.
	Send(msg protocol.Message) bool
	// Close tells the peer why with a protocol error code, then closes.
	Close(code, msg string)
}
