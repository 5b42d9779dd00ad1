package dial

import (
	"errors"
	"fmt"

	"github.com/gorilla/websocket"

	"github.com/anthill-project/anthill/internal/wire"
	"github.com/anthill-project/anthill/protocol"
)

// ReadLoop reads frames from c, the session's one reader, and hands each
// decoded message to handle until the session ends; it returns why.
//
//   - An Error frame from the master ends the session: ReadLoop closes c
//     normally and returns a *RefusedError (see Fatal). handle never sees
//     one.
//   - A frame that does not decode, or that handle returns an error for,
//     is the master breaking the contract: ReadLoop closes c with a
//     bad_frame Error saying why, so the master can log it, and returns
//     the error. A frame over the Welcome's limit is closed the same way,
//     with frame_too_large.
//   - Any other read failure means the connection is gone or its frames
//     cannot be trusted; ReadLoop returns it and leaves closing c to the
//     caller.
//
// handle runs on ReadLoop's goroutine, so a slow handler delays reading
// (and with it the heartbeat's read deadline): it must hand long work off.
func ReadLoop(c *wire.Conn, handle func(protocol.Message) error) error {
	for {
		frame, err := c.Read()
		if err != nil {
			if errors.Is(err, wire.ErrTooLarge) {
				closeWith(c, protocol.CodeFrameTooLarge, err, websocket.CloseMessageTooBig)
			}
			return fmt.Errorf("read: %w", err)
		}
		msg, err := protocol.Decode(frame)
		if err == nil {
			if e, ok := msg.(*protocol.Error); ok {
				c.Close()
				return &RefusedError{e}
			}
			err = handle(msg)
		}
		if err != nil {
			closeWith(c, protocol.CodeBadFrame, err, websocket.CloseUnsupportedData)
			return fmt.Errorf("bad frame from the master: %w", err)
		}
	}
}

// closeWith tells the master why this client closes: the Error frame for
// its logs, the close code for any WebSocket tooling in between.
func closeWith(c *wire.Conn, code string, err error, closeCode int) {
	c.CloseWith(protocol.Encode(nil, &protocol.Error{Code: code, Message: err.Error()}), closeCode, code)
}

// HangUp closes c normally and returns once its writer has exited. The
// writer holds the socket open until the master's close reply (so the
// master reads everything written before the close), and only a reader
// sees that reply: HangUp reads, and drops, whatever the master still
// sends until it comes. Call it only where nothing else reads c; on a
// connection whose read already failed it returns at once.
func HangUp(c *wire.Conn) {
	c.Close()
	for {
		if _, err := c.Read(); err != nil {
			break
		}
	}
	c.Wait()
}
