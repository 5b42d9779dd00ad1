// Package dial is the client's end of a session with the master, shared
// by slave and appnode: open it (dial, Hello, Welcome or refusal), tell
// fatal refusals from transient ones, pace reconnects and read frames into
// the client's handler. It must not know what a client does with a frame,
// keep task, push or notification state, or log: callers log what it
// returns.
package dial

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/gorilla/websocket"

	"github.com/anthill-project/anthill/internal/wire"
	"github.com/anthill-project/anthill/protocol"
)

// handshakeTimeout bounds the dial, the Hello and the wait for the answer:
// a master that has not answered by then is treated as unreachable.
const handshakeTimeout = 10 * time.Second

// Options tunes Open.
type Options struct {
	// Queue bounds the frames waiting for the connection's writer. Zero
	// means 64.
	Queue int
	// BufferBytes sizes the socket's read and write buffers. Zero means
	// gorilla/websocket's default (4 KiB).
	BufferBytes int
	// MaxFrame caps a frame this client reads, whatever the master
	// announces: the limit is the smaller of the two, and an announced
	// limit of zero or less means this one. Zero means DefaultMaxFrame. A
	// hostile master (or a man in the middle of ws://) cannot make the
	// client buffer more.
	MaxFrame int
	// TLS verifies a wss:// master. Nil means the system's roots
	// (ClientTLS builds one from a CA file).
	TLS *tls.Config
}

// DefaultMaxFrame is the frame cap of a client that sets none: the
// master's default frame limit.
const DefaultMaxFrame = 16 << 20

// ReadLimit is the frame limit a client with local cap local (zero:
// DefaultMaxFrame) keeps when the master announces announced.
func ReadLimit(local, announced int) int {
	if local <= 0 {
		local = DefaultMaxFrame
	}
	if announced <= 0 {
		return local
	}
	return min(local, announced)
}

// ClientTLS is the TLS configuration of a client that trusts the PEM
// certificates in caFile (a private CA, or a self-signed master) instead
// of the system's roots. An empty caFile means the system's roots: nil.
func ClientTLS(caFile string) (*tls.Config, error) {
	if caFile == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("CA file %s holds no PEM certificate", caFile)
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// RefusedError is an Error frame from the master: in answer to the Hello
// it refuses the session, later it ends it. A Welcome of another protocol
// version is reported the same way, with CodeUnsupportedVersion, because
// this client refuses it for the reason the master would. errors.As finds
// the *protocol.Error; Fatal says whether reconnecting can help.
type RefusedError struct {
	Err *protocol.Error
}

func (e *RefusedError) Error() string { return "master: " + e.Err.Error() }
func (e *RefusedError) Unwrap() error { return e.Err }

// Fatal reports whether err carries a protocol Error that reconnecting
// cannot fix: the master would refuse the same Hello again (unauthorized,
// unsupported_version, bad_handshake), or another process took over this
// identity and the two would take it from each other forever (replaced).
// Every other code (shutting_down, internal, ...) and every other error,
// a lost connection included, is worth a retry.
func Fatal(err error) bool {
	var pe *protocol.Error
	if !errors.As(err, &pe) {
		return false
	}
	switch pe.Code {
	case protocol.CodeUnauthorized, protocol.CodeUnsupportedVersion, protocol.CodeBadHandshake, protocol.CodeReplaced:
		return true
	}
	return false
}

// Open dials url, sends hello and waits for the master's answer. It
// returns the Welcome and a connection set up from it: its heartbeat (or
// protocol.DefaultHeartbeat when it announces none) and its frame limit.
// The error is a *RefusedError when the master refused, wraps ctx's error
// when ctx ended first, and is otherwise the dial or handshake failure.
// ctx ending aborts the handshake at once; once Open has returned, ctx no
// longer matters to the connection.
func Open(ctx context.Context, url string, hello *protocol.Hello, o Options) (*wire.Conn, *protocol.Welcome, error) {
	d := websocket.Dialer{
		Proxy:            http.ProxyFromEnvironment,
		HandshakeTimeout: handshakeTimeout,
		ReadBufferSize:   o.BufferBytes,
		WriteBufferSize:  o.BufferBytes,
		TLSClientConfig:  o.TLS,
	}
	ws, resp, err := d.DialContext(ctx, url, nil)
	if err != nil {
		if resp != nil {
			err = fmt.Errorf("%w (HTTP %s)", err, resp.Status)
		}
		return nil, nil, fmt.Errorf("dial %s: %w", url, err)
	}
	// The raw socket has no context of its own: closing it is the only way
	// to abort a read or write that is under way.
	closed := make(chan struct{})
	unwatch := context.AfterFunc(ctx, func() {
		ws.Close()
		close(closed)
	})
	w, err := handshake(ws, hello)
	if !unwatch() {
		<-closed
		return nil, nil, fmt.Errorf("handshake with %s: %w", url, ctx.Err())
	}
	if err != nil {
		ws.Close()
		return nil, nil, fmt.Errorf("handshake with %s: %w", url, err)
	}
	hb := w.Heartbeat()
	if hb <= 0 {
		hb = protocol.DefaultHeartbeat
	}
	q := o.Queue
	if q <= 0 {
		q = 64
	}
	c := wire.New(ws, hb, q)
	c.SetReadLimit(int64(ReadLimit(o.MaxFrame, w.MaxFrameBytes)))
	return c, w, nil
}

// handshake runs on the raw socket because the heartbeat, and so the read
// deadline wire.Conn keeps, is only known from the Welcome.
func handshake(ws *websocket.Conn, hello *protocol.Hello) (*protocol.Welcome, error) {
	deadline := time.Now().Add(handshakeTimeout)
	_ = ws.SetWriteDeadline(deadline)
	if err := ws.WriteMessage(websocket.BinaryMessage, protocol.Encode(nil, hello)); err != nil {
		return nil, fmt.Errorf("send hello: %w", err)
	}
	_ = ws.SetReadDeadline(deadline)
	ws.SetReadLimit(protocol.MaxHandshakeBytes)
	typ, frame, err := ws.ReadMessage()
	if err != nil {
		return nil, fmt.Errorf("wait for welcome: %w", err)
	}
	if typ != websocket.BinaryMessage {
		return nil, errors.New("wait for welcome: text frame on a binary protocol")
	}
	msg, err := protocol.Decode(frame)
	if err != nil {
		return nil, fmt.Errorf("wait for welcome: %w", err)
	}
	switch m := msg.(type) {
	case *protocol.Welcome:
		if m.Version != protocol.Version {
			return nil, &RefusedError{&protocol.Error{Code: protocol.CodeUnsupportedVersion,
				Message: fmt.Sprintf("welcome of protocol version %d; this client speaks %d", m.Version, protocol.Version)}}
		}
		_ = ws.SetReadDeadline(time.Time{})
		_ = ws.SetWriteDeadline(time.Time{})
		ws.SetReadLimit(0) // wire.Conn enforces the Welcome's limit itself, with a clear error
		return m, nil
	case *protocol.Error:
		return nil, &RefusedError{m}
	default:
		return nil, fmt.Errorf("wait for welcome: got %s", msg.Type())
	}
}
