package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"hash/fnv"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"go.etcd.io/bbolt"
)

// The write-ahead log. A commit group is appended to the log and fdatasynced
// once, then applied to bbolt without any sync of bbolt's own: one flush per
// group where bbolt alone takes two (its data pages, then its meta page).
// The log lives beside the store file, as path + "-wal", and is rewritten
// at each checkpoint: bbolt is synced, and a fresh log starts whose header
// holds a copy of bbolt's meta page as of that sync.
//
// Power loss is the hard case. bbolt written without syncs may reach the
// disk in any order: a newer meta page can land while the pages it points
// to do not. Two things keep the checkpoint's state recoverable:
//
//   - A read transaction is held open from one checkpoint to the next (the
//     pin). bbolt never reuses a page that an open reader may see, so no
//     page of the checkpoint's tree is overwritten until the next
//     checkpoint is durable.
//   - Recovery writes the header's copy of the meta page over both of
//     bbolt's meta pages before opening the file, so bbolt reads the
//     checkpoint's tree, whatever later meta pages reached the disk, and
//     the log's records are then applied to it again in order.
//
// The pin blocks bbolt from remapping its file (a remap waits for every
// reader), so a transaction that might outgrow the mapping drops the pin
// for its own duration (see mayRemap): the free pages it can reuse were
// fixed when it began, with the pin in place, and the pin taken again
// after it covers what it freed.

const (
	walSuffix   = "-wal"
	spareSuffix = "-wal.next"
	// walHeaderLen is the header block; records start after it.
	walHeaderLen = 4096
	// defaultSegment is the size a log is preallocated to. Overwriting
	// blocks the file already has needs no metadata flush, which makes
	// each fdatasync about a third cheaper than appending; a full log
	// triggers a checkpoint.
	defaultSegment = 128 << 20
	recHeaderLen   = 8 // length, CRC32C
	// maxRecord is the record buffer kept between groups: at the maximum
	// rate groups of several megabytes are usual.
	maxRecord = 16 << 20
	// A record is a kind byte and its body.
	recGroup  = 1 // a commit group's batches
	recCancel = 2 // the group before failed in bbolt: its callers were told so
	// walMmap is what bbolt maps at Open with the log: address space, not
	// memory. The pin stops bbolt from remapping, so the mapping is made
	// big enough that a transaction seldom has to drop the pin to grow it
	// (see mayRemap): past it, on stores of more than 32 GiB, commits near
	// a mapping boundary each take a checkpoint.
	walMmap = 1 << 35
	// metaCopyLen covers bbolt's page header and its meta struct: every
	// byte bbolt reads from a meta page.
	metaCopyLen = 80
	// The offsets in a meta page of what recovery reads (page header of
	// 16 bytes, then the meta struct, little-endian on every platform
	// bbolt writes natively here).
	metaOffPageSize = 16 + 8
	metaOffPgid     = 16 + 40
	metaOffTxid     = 16 + 48
	metaOffSum      = 16 + 56
)

var (
	errStopped = errors.New("store closing")
	walMagic   = []byte("anthill wal v1\x00\x00") // 16 bytes
	crcTable   = crc32.MakeTable(crc32.Castagnoli)
)

type wal struct {
	path     string
	dbf      *os.File // the store file, read-only: meta pages are copied from it
	f        *os.File // the current log
	off      int64    // where the next record goes
	size     int64    // f's preallocated size
	segment  int64    // the size new logs get
	pageSize int
	pin      *bbolt.Tx
	spare    chan spareLog // the next log, being prepared
	hurry    atomic.Bool   // a rotation waits for the next log
	stop     atomic.Bool   // Close waits for it
	fill     atomic.Int64  // how full the current log is, in thousandths
	rec      []byte        // the record being written
	err      error         // sticky: after a failed write the log may end in a partial record
	log      *slog.Logger
}

type spareLog struct {
	f    *os.File
	size int64
	err  error
}

// walError reports damage in a log.
func walError(path string, off int64, format string, args ...any) error {
	return fmt.Errorf("write-ahead log %s is corrupt at offset %d: %s; nothing was changed (if the store file is intact, moving the log aside loses the commits it holds)",
		path, off, fmt.Sprintf(format, args...))
}

// badHeader is a log whose header cannot be read; empty tells whether
// nothing but zeros follows it.
type badHeader struct {
	err   error
	empty bool
}

func (e *badHeader) Error() string { return e.err.Error() }
func (e *badHeader) Unwrap() error { return e.err }

// walHeader is what a log's header block holds: the checkpoint its records
// follow.
type walHeader struct {
	txid     uint64
	pageSize int
	meta     []byte // metaCopyLen bytes of bbolt's meta page of txid
}

func encodeHeader(h walHeader) []byte {
	b := make([]byte, walHeaderLen)
	copy(b, walMagic)
	binary.BigEndian.PutUint64(b[16:], h.txid)
	binary.BigEndian.PutUint32(b[24:], uint32(h.pageSize))
	copy(b[28:28+metaCopyLen], h.meta)
	binary.BigEndian.PutUint32(b[28+metaCopyLen:], crc32.Checksum(b[:28+metaCopyLen], crcTable))
	return b
}

func decodeHeader(path string, b []byte) (walHeader, error) {
	if len(b) < walHeaderLen {
		return walHeader{}, walError(path, 0, "header of %d bytes", len(b))
	}
	if !bytes.Equal(b[:16], walMagic) {
		return walHeader{}, walError(path, 0, "not an Anthill write-ahead log")
	}
	if crc32.Checksum(b[:28+metaCopyLen], crcTable) != binary.BigEndian.Uint32(b[28+metaCopyLen:]) {
		return walHeader{}, walError(path, 0, "header checksum mismatch")
	}
	h := walHeader{
		txid:     binary.BigEndian.Uint64(b[16:]),
		pageSize: int(binary.BigEndian.Uint32(b[24:])),
		meta:     bytes.Clone(b[28 : 28+metaCopyLen]),
	}
	if ok, txid := validMeta(h.meta); !ok || txid != h.txid || h.pageSize < 1024 {
		return walHeader{}, walError(path, 0, "header's meta page copy is invalid")
	}
	return h, nil
}

// validMeta checks a meta page copy as bbolt does and returns its txid.
func validMeta(m []byte) (bool, uint64) {
	if len(m) < metaCopyLen {
		return false, 0
	}
	h := fnv.New64a()
	h.Write(m[16:metaOffSum])
	if h.Sum64() != binary.LittleEndian.Uint64(m[metaOffSum:]) {
		return false, 0
	}
	return true, binary.LittleEndian.Uint64(m[metaOffTxid:])
}

// readWAL reads the log at path: its header and the records after it. A
// record cut short or failing its checksum at the end of the log is the
// write that was under way when the process or the machine stopped; its
// group was never acknowledged, and it is dropped. One followed by more
// data is damage, and an error.
func readWAL(path string) (walHeader, [][]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return walHeader{}, nil, fmt.Errorf("read write-ahead log: %w", err)
	}
	h, err := decodeHeader(path, data)
	if err != nil {
		return walHeader{}, nil, &badHeader{err: err, empty: allZero(data[min(len(data), walHeaderLen):])}
	}
	var recs [][]byte
	off := int64(walHeaderLen)
	for {
		rest := data[off:]
		if len(rest) < recHeaderLen || allZero(rest[:recHeaderLen]) {
			if !allZero(rest) {
				return h, nil, walError(path, off, "data after the end of the log")
			}
			return h, recs, nil
		}
		n := int64(binary.BigEndian.Uint32(rest))
		end := recHeaderLen + n
		if end > int64(len(rest)) {
			return h, recs, nil // the last write, cut short
		}
		sum := crc32.Update(crc32.Checksum(rest[:4], crcTable), crcTable, rest[recHeaderLen:end])
		if sum != binary.BigEndian.Uint32(rest[4:]) {
			if allZero(rest[end:]) {
				return h, recs, nil // the last write, partly on disk
			}
			return h, nil, walError(path, off, "record checksum mismatch")
		}
		recs = append(recs, rest[recHeaderLen:end])
		off += end
	}
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// encodeGroup appends the record of group to dst: each batch's buffer as it
// is, with its ops as offsets into it.
func encodeGroup(dst []byte, group []request) []byte {
	size := recHeaderLen + 1 + binary.MaxVarintLen64
	for _, r := range group {
		if r.b != nil {
			size += 3*binary.MaxVarintLen64 + len(r.b.buf) + len(r.b.ops)*(1+4*binary.MaxVarintLen64)
		}
	}
	dst = room(dst, size)
	dst = append(dst, make([]byte, recHeaderLen)...)
	dst = append(dst, recGroup)
	n := 0
	for _, r := range group {
		if r.b.Len() > 0 {
			n++
		}
	}
	dst = binary.AppendUvarint(dst, uint64(n))
	for _, r := range group {
		b := r.b
		if b.Len() == 0 {
			continue
		}
		dst = binary.AppendUvarint(dst, b.nextID)
		dst = binary.AppendUvarint(dst, uint64(len(b.buf)))
		dst = append(dst, b.buf...)
		dst = binary.AppendUvarint(dst, uint64(len(b.ops)))
		for _, o := range b.ops {
			dst = append(dst, byte(o.kind))
			dst = binary.AppendUvarint(dst, uint64(o.key))
			dst = binary.AppendUvarint(dst, uint64(o.val))
			dst = binary.AppendUvarint(dst, uint64(o.end))
			dst = binary.AppendUvarint(dst, uint64(o.pay))
		}
	}
	return dst
}

// decodeGroup reads a record back into batches. The record passed its
// checksum, so an error here means a writer bug, not a bad disk.
func decodeGroup(rec []byte) ([]request, error) {
	r := bytes.NewReader(rec)
	bad := func(what string) ([]request, error) {
		return nil, fmt.Errorf("bad record: %s at byte %d", what, len(rec)-r.Len())
	}
	if kind, _ := r.ReadByte(); kind != recGroup {
		return bad("record kind")
	}
	n, err := binary.ReadUvarint(r)
	if err != nil || n > uint64(len(rec)) {
		return bad("batch count")
	}
	group := make([]request, 0, n)
	for range n {
		b := &Batch{}
		if b.nextID, err = binary.ReadUvarint(r); err != nil {
			return bad("next id")
		}
		size, err := binary.ReadUvarint(r)
		if err != nil || size > uint64(r.Len()) {
			return bad("buffer size")
		}
		b.buf = make([]byte, size)
		_, _ = io.ReadFull(r, b.buf)
		nops, err := binary.ReadUvarint(r)
		if err != nil || nops > uint64(r.Len()) {
			return bad("op count")
		}
		b.ops = make([]op, nops)
		for i := range b.ops {
			kind, err := r.ReadByte()
			if err != nil || kind < byte(opPutTask) || kind > byte(opDeleteValue) {
				return bad("op kind")
			}
			var f [4]uint64
			for j := range f {
				if f[j], err = binary.ReadUvarint(r); err != nil {
					return bad("op offsets")
				}
			}
			if f[0] > f[1] || f[1] > f[2] || f[2] > size {
				return bad("op offsets")
			}
			o := op{kind: opKind(kind), key: int(f[0]), val: int(f[1]), end: int(f[2]), pay: int(f[3])}
			if o.kind == opPutTask && (o.pay < o.val || o.pay > o.end) {
				return bad("payload offset")
			}
			b.ops[i] = o
		}
		group = append(group, request{b: b})
	}
	if r.Len() != 0 {
		return bad("trailing bytes")
	}
	return group, nil
}

// restoreMeta makes the store file f read as of the log's checkpoint: both
// of bbolt's meta pages become the header's copy. After a process crash
// the file's newest meta page is fine too, but the records are applied to
// the checkpoint either way, so recovery has one path.
func restoreMeta(f *os.File, h walHeader) error {
	var newest uint64
	same := true
	for slot := range 2 {
		m := make([]byte, metaCopyLen)
		if _, err := f.ReadAt(m, int64(slot*h.pageSize)); err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("open store: %w", err)
		}
		if ok, txid := validMeta(m); ok {
			newest = max(newest, txid)
		}
		if !bytes.Equal(m[16:], h.meta[16:]) {
			same = false
		}
	}
	if newest < h.txid {
		return fmt.Errorf("store %s is older (transaction %d) than the checkpoint of its write-ahead log (transaction %d): it is not the file the log belongs to; nothing was changed",
			f.Name(), newest, h.txid)
	}
	if same {
		return nil
	}
	for slot := range 2 {
		m := bytes.Clone(h.meta)
		binary.LittleEndian.PutUint64(m, uint64(slot)) // the page id
		if _, err := f.WriteAt(m, int64(slot*h.pageSize)); err != nil {
			return fmt.Errorf("restore store %s to its checkpoint: %w", f.Name(), err)
		}
	}
	if err := fdatasync(f); err != nil {
		return fmt.Errorf("restore store %s to its checkpoint: %w", f.Name(), err)
	}
	return nil
}

// recoverWAL brings back a log left by a run that did not close the store:
// before bbolt reads the file, its meta pages are set to the checkpoint. It
// returns the records to apply once the file is open, and whether there
// was a log. It holds the file's lock meanwhile, so a store another
// process has open is not touched.
func recoverWAL(dbPath string, timeout time.Duration) ([][]byte, bool, error) {
	logPath := dbPath + walSuffix
	f, err := os.OpenFile(dbPath, os.O_RDWR, 0)
	if errors.Is(err, fs.ErrNotExist) {
		if _, err := os.Stat(logPath); err == nil {
			return nil, false, fmt.Errorf("store %s is missing but its write-ahead log %s is there: restore the store file", dbPath, logPath)
		}
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("open store: %w", err)
	}
	defer f.Close()
	if ok, err := lockFile(f, timeout); err != nil {
		return nil, false, fmt.Errorf("open store: %w", err)
	} else if !ok {
		return nil, false, inUse(dbPath, timeout)
	}
	_ = os.Remove(dbPath + spareSuffix) // a log being prepared: never in use
	h, recs, err := readWAL(logPath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	var bad *badHeader
	if errors.As(err, &bad) && bad.empty {
		// A checkpoint rewrites the header of a log with no records in
		// place, right after syncing bbolt: torn by a power loss, it
		// leaves the store file synced and nothing after it.
		slog.Warn("store: the write-ahead log's header is damaged and the log holds no record; the store file, synced before the header was written, is used as it is",
			"log", logPath, "err", err)
		if err := os.Remove(logPath); err != nil {
			return nil, false, fmt.Errorf("open store: %w", err)
		}
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	if err := restoreMeta(f, h); err != nil {
		return nil, false, err
	}
	return recs, true, nil
}

// replay applies recovered records in order, each group in a transaction
// of its own, as when they were first committed. A group followed by a
// cancel record failed then, and its callers were told so: it is skipped.
// Any other failure is an error: dropping the group would lose a commit
// that was acknowledged.
//
// A record that could make bbolt remap its file runs with *pin dropped,
// which would otherwise wait for it forever: the one case a power loss
// during recovery is not covered, on stores past the 32 GiB mapping.
func (s *Store) replay(recs [][]byte, pin **bbolt.Tx) error {
	ps := s.db.Info().PageSize
	for i, rec := range recs {
		if len(rec) > 0 && rec[0] == recCancel {
			continue
		}
		if i+1 < len(recs) && len(recs[i+1]) > 0 && recs[i+1][0] == recCancel {
			continue
		}
		group, err := decodeGroup(rec)
		if err == nil && *pin != nil {
			var remap bool
			ops := 0
			for _, r := range group {
				ops += r.b.Len()
			}
			if remap, err = mayRemap(s.db, ps, ops, len(rec)); remap {
				_ = (*pin).Rollback()
				*pin = nil
			}
		}
		if err == nil {
			var next uint64
			if next, err = s.update(group); err == nil && next > s.nextID.Load() {
				s.nextID.Store(next)
			}
		}
		if err != nil {
			return fmt.Errorf("write-ahead log %s: replay record %d: %w", s.path+walSuffix, i, err)
		}
		s.scratch = s.scratch[:0]
	}
	return nil
}

// startLog finishes Open: it applies the records of a recovered log,
// then starts a log, or without one removes the recovered log.
func (s *Store) startLog(opts Options, recs [][]byte, recovered bool) error {
	if recovered {
		// The replay is pinned like any run with the log: until a new
		// checkpoint is durable, a power loss recovers from the old one
		// again, and its pages must still be there.
		pin, err := s.db.Begin(false)
		if err != nil {
			return fmt.Errorf("open store: %w", err)
		}
		defer func() {
			if pin != nil {
				_ = pin.Rollback()
			}
		}()
		// One sync for the lot: the log keeps them until it is replaced.
		s.db.NoSync = true
		err = s.replay(recs, &pin)
		s.db.NoSync = opts.NoSync
		if err == nil {
			err = s.db.Sync()
		}
		if err != nil {
			return err
		}
		slog.Info("store: recovered commits from the write-ahead log", "path", s.path, "records", len(recs))
	}
	if !opts.NoWAL && !opts.NoSync {
		return s.startWAL(opts.walSegment)
	}
	if recovered {
		if err := os.Remove(s.path + walSuffix); err != nil {
			return fmt.Errorf("open store: %w", err)
		}
		return syncDir(filepath.Dir(s.path))
	}
	return nil
}

// mmapSize is what bbolt maps at Open: with the log, and while replaying
// one (which is pinned too), room enough to seldom remap.
func mmapSize(opts Options, recovering bool) int {
	if recovering || !opts.NoWAL && !opts.NoSync {
		return walMmap
	}
	return 1 << 30
}

// startWAL begins logging on an open, synced store: the first checkpoint.
func (s *Store) startWAL(segment int64) error {
	if segment == 0 {
		// Two logs (the current and the next) take a quarter of the
		// room left at most: on a small disk the log must not be what
		// fills it.
		segment = defaultSegment
		if free, ok := freeSpace(filepath.Dir(s.path)); ok {
			segment = max(min(segment, free/8), 256<<10)
		}
	}
	dbf, err := os.Open(s.path)
	if err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	s.wal = &wal{
		path:     s.path + walSuffix,
		dbf:      dbf,
		segment:  segment,
		pageSize: s.db.Info().PageSize,
		spare:    make(chan spareLog, 1),
		log:      slog.Default().With("path", s.path),
	}
	// The first log is small, for a quick Open; the next are prepared in
	// the background at full size.
	sp := spareLog{size: min(segment, 8<<20)}
	sp.f, sp.err = preallocate(s.path+spareSuffix, sp.size, nil)
	s.wal.spare <- sp
	if err := s.checkpoint(0); err != nil {
		s.stopWAL()
		return err
	}
	s.db.NoSync = true // only now: every commit from here on is logged first
	return nil
}

// prepare fills the next log with zeros in the background, a little at a
// time: a burst of megabytes queued on the disk would stall the fdatasync
// of every commit behind it. A rotation that finds it unfinished hurries
// it.
func (w *wal) prepare(size int64) {
	w.hurry.Store(false)
	go func() {
		sp := spareLog{size: size}
		sp.f, sp.err = preallocate(w.path[:len(w.path)-len(walSuffix)]+spareSuffix, size, w)
		w.spare <- sp
	}()
}

// prepareChunk and preparePause pace prepare: about 12 MB/s, each piece
// synced on its own, so no more than one piece is ever queued.
const (
	prepareChunk = 64 << 10
	preparePause = 5 * time.Millisecond
)

// preallocate writes a file of size zero bytes. For w it paces itself
// while w.hurry is unset, and gives up once w.stop is set.
func preallocate(path string, size int64, w *wal) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("prepare write-ahead log: %w", err)
	}
	zero := make([]byte, prepareChunk)
	for off := int64(0); off < size && err == nil; off += int64(len(zero)) {
		if _, err = f.WriteAt(zero[:min(int64(len(zero)), size-off)], off); err != nil {
			break
		}
		if w == nil {
			continue
		}
		if w.hurry.Load() {
			// A rotation waits: allocate the rest without writing it.
			// Those blocks read as zeros but flush a little slower
			// (their first write changes the file's extents), for this
			// one log.
			if rest := off + int64(len(zero)); rest < size && fallocate(f, rest, size-rest) == nil {
				break
			}
			continue
		}
		if w.stop.Load() {
			err = errStopped
			break
		}
		// Behind the current log's filling (at high rates it fills in
		// seconds), go at full speed: throughput matters more then
		// than a flush's wait behind the zeros.
		if (off+int64(len(zero)))*1000/size < w.fill.Load()+20 {
			continue
		}
		if err = fdatasync(f); err == nil {
			time.Sleep(preparePause)
		}
	}
	if err == nil {
		err = f.Sync() // the size too
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("prepare write-ahead log: %w", err)
	}
	return f, nil
}

// checkpoint syncs bbolt and starts a new log from its state, big enough
// for need bytes of records. Every logged group has been applied when it
// runs, so the new log starts empty.
func (s *Store) checkpoint(need int64) error {
	w := s.wal

	if err := s.db.Sync(); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	// The new pin is taken before the new log can be used and the old one
	// dropped after: at every moment the checkpoint a crash would recover
	// from is pinned.
	pin, err := s.db.Begin(false)
	if err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	h, err := w.readMeta(uint64(pin.ID()))
	if err == nil {
		err = w.rotate(h, need)
	}
	if err != nil {
		_ = pin.Rollback()
		return fmt.Errorf("checkpoint: %w", err)
	}
	if w.pin != nil {
		_ = w.pin.Rollback()
	}
	w.pin = pin
	return nil
}

// readMeta copies bbolt's meta page of txid from the synced file.
func (w *wal) readMeta(txid uint64) (walHeader, error) {
	for slot := range 2 {
		m := make([]byte, metaCopyLen)
		if _, err := w.dbf.ReadAt(m, int64(slot*w.pageSize)); err != nil {
			return walHeader{}, err
		}
		if ok, id := validMeta(m); ok && id == txid {
			return walHeader{txid: txid, pageSize: w.pageSize, meta: m}, nil
		}
	}
	return walHeader{}, fmt.Errorf("no meta page of transaction %d in %s", txid, w.dbf.Name())
}

// rotate makes the prepared log, headed by h, the log. A log that holds no
// record yet only has its header rewritten in place.
func (w *wal) rotate(h walHeader, need int64) error {
	if w.f != nil && w.off == walHeaderLen && walHeaderLen+need <= w.size {
		if _, err := w.f.WriteAt(encodeHeader(h), 0); err != nil {
			w.err = err
			return err
		}
		if err := fdatasync(w.f); err != nil {
			w.err = err
			return err
		}
		return nil
	}
	w.hurry.Store(true)
	sp := <-w.spare
	if sp.err != nil {
		w.prepare(w.segment) // try again next time
		return sp.err
	}
	if want := walHeaderLen + need; sp.size < want {
		// A group bigger than a log: grow this one to fit it.
		sp.f.Close()
		if sp.f, sp.err = preallocate(sp.f.Name(), want, nil); sp.err != nil {
			w.prepare(w.segment)
			return sp.err
		}
		sp.size = want
	}
	fail := func(err error) error {
		sp.f.Close()
		w.prepare(w.segment)
		return err
	}
	if _, err := sp.f.WriteAt(encodeHeader(h), 0); err != nil {
		return fail(err)
	}
	if err := fdatasync(sp.f); err != nil {
		return fail(err)
	}
	if err := os.Rename(sp.f.Name(), w.path); err != nil {
		return fail(err)
	}
	if err := syncDir(filepath.Dir(w.path)); err != nil {
		// The rename may not be durable: the old log must stay pinned,
		// and it is. Writing on would log into a file that may vanish.
		sp.f.Close()
		w.err = err
		return err
	}
	if w.f != nil {
		w.f.Close()
	}
	w.f, w.off, w.size = sp.f, walHeaderLen, sp.size
	w.fill.Store(0)
	w.prepare(w.segment)
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// walCommit logs group, then applies it to bbolt unsynced.
func (s *Store) walCommit(group []request, ops int) (uint64, error) {
	w := s.wal
	if w.err != nil {
		return 0, fmt.Errorf("write-ahead log %s failed earlier: %w", w.path, w.err)
	}
	w.rec = seal(encodeGroup(w.rec[:0], group))
	bytes := 0
	for _, r := range group {
		bytes += r.b.Bytes()
	}
	remap, err := w.mayRemap(s.db, ops, bytes)
	if err != nil {
		return 0, err
	}
	if remap || w.off+int64(len(w.rec)) > w.size {
		if err := s.checkpoint(int64(len(w.rec))); err != nil {
			return 0, err
		}
	}
	if remap {
		// Right after a checkpoint of transaction N the pin may go for
		// one transaction: it began with N's pages taken, and the pin taken
		// after it keeps the pages it freed, so N's tree stays whole.
		_ = w.pin.Rollback()
		w.pin = nil
	}
	// The record's fdatasync and bbolt's writes overlap: nothing is
	// acknowledged before both are done, and bbolt's pages are not what
	// recovery trusts (it starts from the pinned checkpoint and the log).
	// A read may see the group up to one fdatasync before it is durable.
	logged := make(chan error, 1)
	go func() { logged <- w.append(w.rec) }()
	next, err := s.update(group)
	if lerr := <-logged; lerr != nil {
		// bbolt holds the group in memory only; the log takes no more
		// records (w.err), and recovery, from the checkpoint, drops it.
		return 0, lerr
	}
	if err != nil {
		// The record is in the log: mark it failed, as its callers are
		// told, or replay would apply it.
		if cerr := w.append(w.frame([]byte{recCancel})); cerr != nil {
			err = fmt.Errorf("%w (and logging the failure: %w)", err, cerr)
		}
	}
	if w.pin == nil {
		pin, perr := s.db.Begin(false)
		if perr != nil {
			w.err = perr
			return 0, fmt.Errorf("write-ahead log: pin the checkpoint: %w", perr)
		}
		w.pin = pin
	}
	if cap(w.rec) > maxRecord {
		w.rec = nil
	}
	return next, err
}

// frame prepends a record's header to body, which has recHeaderLen bytes
// reserved in front (or is a bare body, copied).
func (w *wal) frame(body []byte) []byte {
	rec := append(make([]byte, recHeaderLen, recHeaderLen+len(body)), body...)
	return seal(rec)
}

// seal fills in the header of rec, whose body follows recHeaderLen bytes.
func seal(rec []byte) []byte {
	binary.BigEndian.PutUint32(rec, uint32(len(rec)-recHeaderLen))
	sum := crc32.Update(crc32.Checksum(rec[:4], crcTable), crcTable, rec[recHeaderLen:])
	binary.BigEndian.PutUint32(rec[4:], sum)
	return rec
}

// append writes rec at the end of the log and waits for it to be on disk.
func (w *wal) append(rec []byte) error {
	if w.off+int64(len(rec)) > w.size {
		w.err = errors.New("log full") // walCommit checkpoints first: a bug
		return fmt.Errorf("write-ahead log %s: %w", w.path, w.err)
	}
	if _, err := w.f.WriteAt(rec, w.off); err != nil {
		w.err = err
		return fmt.Errorf("write-ahead log %s: %w", w.path, err)
	}
	if err := fdatasync(w.f); err != nil {
		// What reached the disk is unknown: nothing more may follow it.
		w.err = err
		return fmt.Errorf("write-ahead log %s: %w", w.path, err)
	}
	w.off += int64(len(rec))
	w.fill.Store(w.off * 1000 / w.size)
	return nil
}

// walUpdate runs fn, a transaction of the store's own that no record
// describes (credentials, modules), and makes it durable with a
// checkpoint. The log holds nothing after the checkpoint that follows, so
// a crash before that checkpoint loses fn's transaction, which was not
// acknowledged, and nothing else. fn may write much: when it could make
// bbolt remap, it runs unpinned right after a checkpoint, as walCommit
// does.
func (s *Store) walUpdate(fn func(*bbolt.Tx) error) error {
	w := s.wal
	if w.err != nil {
		return fmt.Errorf("write-ahead log %s failed earlier: %w", w.path, w.err)
	}
	remap, err := w.mayRemap(s.db, 0, 1<<30)
	if err != nil {
		return err
	}
	if remap {
		if err := s.checkpoint(0); err != nil {
			return err
		}
		_ = w.pin.Rollback()
		w.pin = nil
	}
	if err := s.db.Update(fn); err != nil {
		if w.pin == nil {
			if w.pin, _ = s.db.Begin(false); w.pin == nil {
				w.err = errors.New("cannot pin the checkpoint")
			}
		}
		return err
	}
	return s.checkpoint(0)
}

// syncUpdate is db.Update for the store's own transactions, made durable
// before it returns. The caller holds s.mu for reading and has checked
// that the store is open.
func (s *Store) syncUpdate(fn func(*bbolt.Tx) error) error {
	if s.wal == nil {
		return s.db.Update(fn)
	}
	ch := make(chan error, 1)
	s.queue <- request{fn: fn, done: func(err error) { ch <- err }}
	return <-ch
}

// mayRemap tells whether a transaction of ops changes and bytes bytes
// could outgrow bbolt's mapping, which would wait for the pin forever. It
// overestimates: a change rewrites a few pages per tree level of its
// bucket and of the root, and the mapping is at least what bbolt maps for
// the pages in use (see bbolt's mmapSize).
func (w *wal) mayRemap(db *bbolt.DB, ops, bytes int) (bool, error) {
	return mayRemap(db, w.pageSize, ops, bytes)
}

func mayRemap(db *bbolt.DB, pageSize, ops, bytes int) (bool, error) {
	tx, err := db.Begin(false)
	if err != nil {
		return false, err
	}
	hwm := tx.Size()
	_ = tx.Rollback()
	ps := int64(pageSize)
	grow := int64(ops)*16*ps + 2*int64(bytes) + 64*ps
	return hwm+grow+ps >= mapLowerBound(max(hwm, walMmap)), nil
}

// mapLowerBound is the least bbolt maps for size bytes: a power of two up
// to 1 GiB, whole GiBs beyond.
func mapLowerBound(size int64) int64 {
	for i := 15; i <= 30; i++ {
		if size <= 1<<i {
			return 1 << i
		}
	}
	const step = 1 << 30
	if r := size % step; r > 0 {
		size += step - r
	}
	return size
}

// stopWAL closes the log after a clean stop: once bbolt is synced it holds
// every acknowledged group (each was applied before it was acknowledged),
// so the log is removed and an Anthill without the log can open the file
// as it is. After a failed log write bbolt may hold a group that is not
// durable and was reported failed: then nothing is synced, and the log
// stays for the next Open to recover from.
func (s *Store) stopWAL() error {
	w := s.wal
	if w.pin != nil {
		_ = w.pin.Rollback()
		w.pin = nil
	}
	w.stop.Store(true)
	if sp := <-w.spare; sp.f != nil {
		sp.f.Close()
	}
	_ = os.Remove(s.path + spareSuffix)
	var err error
	if w.err == nil {
		if err = s.db.Sync(); err == nil {
			if err = os.Remove(w.path); err == nil || errors.Is(err, fs.ErrNotExist) {
				err = syncDir(filepath.Dir(w.path))
			}
		}
	}
	if w.f != nil {
		w.f.Close()
	}
	w.dbf.Close()
	return err
}
