package sandbox

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// The worker protocol, between a WASMProcesses and one of its worker
// processes, over the worker's stdin (requests) and stdout (replies). The
// parent sends a request and reads its reply before it sends another.
//
// A frame is a uvarint length, then that many bytes: an op byte and its
// fields, each a uvarint, or bytes as a uvarint length and the bytes.
//
//	init  memoryLimit maxLoaded cacheDir   -> ok | failed msg
//	load  hash name code                   -> ok | failed msg
//	run   hash maxOutput payload           -> ok output | exit code stderr |
//	                                          trap msg cause stderr |
//	                                          tooLarge msg | notLoaded |
//	                                          failed msg
//
// init is the first request, once. A worker's Load may evict a module the
// parent thinks it holds: it replies notLoaded, and the parent loads it
// again. Both sides trust each other's frames to be well formed: a frame
// that is not is the end of the worker.
const (
	opInit byte = iota + 1
	opLoad
	opRun

	repOK
	repExit
	repTrap
	repTooLarge
	repNotLoaded
	repFailed
)

// maxHeader is room for a frame's length, in front of its body.
const maxHeader = binary.MaxVarintLen64

// frame builds one frame. Its buffer starts with room for the length, so
// that the frame goes out in one write without a copy.
type frame struct{ b []byte }

func newFrame(op byte, size int) *frame {
	b := make([]byte, maxHeader, maxHeader+1+size)
	return &frame{b: append(b, op)}
}

func (f *frame) uint(v uint64) *frame {
	f.b = binary.AppendUvarint(f.b, v)
	return f
}

func (f *frame) bytes(p []byte) *frame {
	f.b = binary.AppendUvarint(f.b, uint64(len(p)))
	f.b = append(f.b, p...)
	return f
}

func (f *frame) string(s string) *frame {
	f.b = binary.AppendUvarint(f.b, uint64(len(s)))
	f.b = append(f.b, s...)
	return f
}

// send writes the frame to w.
func (f *frame) send(w io.Writer) error {
	var hdr [maxHeader]byte
	n := binary.PutUvarint(hdr[:], uint64(len(f.b)-maxHeader))
	start := maxHeader - n
	copy(f.b[start:], hdr[:n])
	_, err := w.Write(f.b[start:])
	return err
}

// readFrame reads a frame of at most max bytes.
func readFrame(r *bufio.Reader, max uint64) (*fields, error) {
	n, err := binary.ReadUvarint(r)
	if err != nil {
		return nil, err
	}
	if n == 0 || n > max {
		return nil, fmt.Errorf("frame of %d bytes, more than %d or none", n, max)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, noEOF(err)
	}
	return &fields{op: b[0], b: b[1:]}, nil
}

// noEOF turns an EOF inside a frame into ErrUnexpectedEOF.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// fields reads a frame's fields; past the end, or a malformed field, it
// reads zeros and sets bad.
type fields struct {
	op  byte
	b   []byte
	bad bool
}

func (f *fields) uint() uint64 {
	v, n := binary.Uvarint(f.b)
	if n <= 0 {
		f.bad = true
		return 0
	}
	f.b = f.b[n:]
	return v
}

// bytes aliases the frame's buffer, which is the reader's to keep.
func (f *fields) bytes() []byte {
	n := f.uint()
	if n > uint64(len(f.b)) {
		f.bad = true
		return nil
	}
	p := f.b[:n:n]
	f.b = f.b[n:]
	return p
}

func (f *fields) string() string { return string(f.bytes()) }

// end reports a malformed frame, or one with bytes left over.
func (f *fields) end() error {
	if f.bad || len(f.b) != 0 {
		return fmt.Errorf("malformed frame of op %d", f.op)
	}
	return nil
}

// replyOf encodes the outcome of a worker's run.
func replyOf(out []byte, err error) *frame {
	var exit *ExitError
	var trap *TrapError
	switch {
	case err == nil:
		return newFrame(repOK, 10+len(out)).bytes(out)
	case errors.Is(err, ErrNotLoaded):
		return newFrame(repNotLoaded, 0)
	case errors.Is(err, ErrOutputTooLarge):
		return newFrame(repTooLarge, 100).string(err.Error())
	case errors.As(err, &exit):
		return newFrame(repExit, 20+len(exit.Stderr)).uint(uint64(exit.Code)).string(exit.Stderr)
	case errors.As(err, &trap):
		msg := err.Error()
		return newFrame(repTrap, 2*len(msg)).string(msg).string(trap.Err.Error()).string(trap.Stderr)
	default:
		return failedReply(err)
	}
}

// runResult decodes the reply of a run into what WASM.Run would have
// returned: the same types, sentinels and messages. A notLoaded reply is
// ErrNotLoaded. bad is a reply that makes no sense.
func runResult(f *fields) (out []byte, err, bad error) {
	switch f.op {
	case repOK:
		out = f.bytes()
	case repNotLoaded:
		err = ErrNotLoaded
	case repTooLarge:
		err = &remoteError{msg: f.string(), err: ErrOutputTooLarge}
	case repExit:
		code := f.uint()
		err = &ExitError{Code: uint32(code), Stderr: f.string()}
	case repTrap:
		msg, cause, stderr := f.string(), f.string(), f.string()
		trap := &TrapError{Err: errors.New(cause), Stderr: stderr}
		err = trap
		if msg != trap.Error() {
			// Run wrapped it: "instantiating module: module trapped: ..."
			err = &remoteError{msg: msg, err: trap}
		}
	case repFailed:
		err = errors.New(f.string())
	default:
		return nil, nil, fmt.Errorf("reply of unknown op %d", f.op)
	}
	if bad := f.end(); bad != nil {
		return nil, nil, bad
	}
	return out, err, nil
}

// failure decodes an ok or failed reply, of init or load, into its error.
// bad is a reply that makes no sense.
func failure(f *fields) (err, bad error) {
	switch f.op {
	case repOK:
	case repFailed:
		err = errors.New(f.string())
	default:
		return nil, fmt.Errorf("reply of unexpected op %d", f.op)
	}
	if bad := f.end(); bad != nil {
		return nil, bad
	}
	return err, nil
}

// remoteError is an error that crossed the pipe with its message intact
// and the error it wraps rebuilt, a sentinel or a *TrapError, so that
// errors.Is and errors.As see what they would in the worker.
type remoteError struct {
	msg string
	err error
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() error { return e.err }

// failedReply is the reply to a failed init or load.
func failedReply(err error) *frame {
	msg := err.Error()
	return newFrame(repFailed, len(msg)+10).string(msg)
}
