package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Format is the store file format this package reads and writes. Bump it on
// any change an older binary would misread, and keep reading the old one.
//
//	1: the first format.
//	2: task records may have record format 2 (with the attempt history),
//	   which an Anthill that knows format 1 only would call corrupt.
//	3: payloads over InlinePayload bytes live in a bucket of their own,
//	   apart from record format 3 (see record.go); a file of format 2 is
//	   rewritten so when opened.
//
// Open raises an older file's number (see initialize), so that an older
// Anthill refuses the file by its format instead of by its records.
const format = 3

// Errors returned by the store. Match them with errors.Is.
var (
	// ErrNotFound is returned by Get for an id that is not stored.
	ErrNotFound = errors.New("task not found")
	// ErrClosed is passed to done by a Commit after Close, and returned by
	// reads after Close.
	ErrClosed = errors.New("store closed")
	// ErrNewerFormat is wrapped by Open when the file was written by a newer
	// Anthill; the message says which formats are involved.
	ErrNewerFormat = errors.New("store format is newer than this anthill understands")
)

var (
	bucketMeta   = []byte("meta")
	bucketTasks  = []byte("tasks")
	bucketPushes = []byte("pushes")
	// bucketPayloads holds the payloads of format 3 records, by task key.
	bucketPayloads = []byte("payloads")

	keyFormat = []byte("format")
	keyNextID = []byte("next_id")
)

// tasksFillPercent packs the tasks bucket's pages: ids grow, so inserts
// append at the right edge and a half-empty split page would stay half
// empty. See BenchmarkCommit for the measurement.
const tasksFillPercent = 0.9

// Options configure Open.
type Options struct {
	// NoSync skips fsync (tests/benchmarks only). Default false: every
	// commit is fsynced.
	NoSync bool
	// LockTimeout is how long Open waits for another process holding the
	// file. Zero means 1s.
	LockTimeout time.Duration
	// NoWAL commits the old way, without the write-ahead log (see
	// wal.go): bbolt fsyncs each transaction itself, twice. A log left by
	// an earlier run is still recovered, then removed.
	NoWAL bool
	// walSegment is the size of a log; zero means defaultSegment. For
	// tests, to fill logs quickly.
	walSegment int64
	// MaxBatchOps caps the changes group-committed in one transaction. A
	// single Batch larger than the cap is still committed whole. Zero means
	// 100000.
	MaxBatchOps int
}

// Stats are counters since Open.
type Stats struct {
	Commits      uint64        // transactions committed
	Ops          uint64        // changes in them
	Bytes        uint64        // keys and values they wrote (see Batch.Bytes)
	LastBatchOps int           // changes in the last transaction
	LastCommit   time.Duration // duration of the last transaction, fsync included
	TotalCommit  time.Duration // sum of all transaction durations
}

// Store is an open store file. Its methods are safe for concurrent use.
type Store struct {
	path    string
	db      *bbolt.DB
	maxOps  int
	nextID  atomic.Uint64 // the committed next id
	queue   chan request
	exited  chan struct{} // closed when the committer returns
	scratch []byte        // committer only: AckTask copies
	// committer only: the zone map's changes of the transaction under
	// way, and the names they copy
	moves     []move
	moveNames []byte
	zones     zones
	wal       *wal // nil without the log; committer only once running

	mu     sync.RWMutex // guards closed against the queue being closed
	closed bool

	closeOnce sync.Once
	closeErr  error

	statsMu sync.Mutex
	stats   Stats
}

// Open opens or creates the store file at path; the directory must exist.
//
// An existing file is checked read-only before it is opened for writing, so
// a file that is damaged, was not written by Anthill, or was written by a
// newer Anthill is refused unchanged.
func Open(path string, opts Options) (*Store, error) {
	if opts.LockTimeout < 0 {
		return nil, fmt.Errorf("store: negative LockTimeout %s", opts.LockTimeout)
	}
	if opts.MaxBatchOps < 0 {
		return nil, fmt.Errorf("store: negative MaxBatchOps %d", opts.MaxBatchOps)
	}
	if opts.LockTimeout == 0 {
		opts.LockTimeout = time.Second
	}
	if opts.MaxBatchOps == 0 {
		opts.MaxBatchOps = 100000
	}

	recs, recovered, err := recoverWAL(path, opts.LockTimeout)
	if err != nil {
		return nil, err
	}
	if err := precheck(path, opts.LockTimeout); err != nil {
		return nil, err
	}
	db, err := openWritable(path, opts, recovered)
	if err != nil {
		return nil, err
	}
	next, err := initialize(db, path)
	if err != nil {
		db.Close()
		return nil, err
	}
	s := &Store{
		path:   path,
		db:     db,
		maxOps: opts.MaxBatchOps,
		queue:  make(chan request, queueLen),
		exited: make(chan struct{}),
	}
	s.nextID.Store(next)
	if err := s.startLog(opts, recs, recovered); err != nil {
		db.Close()
		return nil, err
	}
	go s.run()
	return s, nil
}

func corrupt(path string, cause error) error {
	return fmt.Errorf("store %s is corrupt or not a valid Anthill store; nothing was changed: %w", path, cause)
}

func inUse(path string, timeout time.Duration) error {
	return fmt.Errorf("data file %s is in use by another process (waited %s)", path, timeout)
}

type formatError struct {
	path string
	have uint64
}

func (e *formatError) Error() string {
	return fmt.Sprintf("store %s has format %d; this anthill understands format %d: upgrade anthill",
		e.path, e.have, format)
}

func (e *formatError) Unwrap() error { return ErrNewerFormat }

// recoverCorrupt turns a bbolt panic or memory fault (with SetPanicOnFault)
// into an error: bbolt trusts the pages it reads, so a damaged file can make
// it index out of range or read past the mapped file.
func recoverCorrupt(path string, err *error, cleanup func()) {
	if r := recover(); r != nil {
		if cleanup != nil {
			cleanup()
		}
		*err = corrupt(path, fmt.Errorf("bbolt panicked: %v", r))
	}
}

// precheck validates an existing file through a read-only handle. bbolt's
// writable Open rebuilds the freelist by walking every page on a goroutine
// of its own, where a damaged page would crash the process; walking the
// same pages here first, under recover, turns that into an error. One case
// gets past it: garbage separator keys in a branch page. bbolt then panics
// on the caller's goroutine (recovered into an error) but leaves its
// checking goroutine blocked for good; only a per-key Seek would catch it
// here, which would double the cost of opening a large store.
func precheck(path string, timeout time.Duration) (err error) {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("open store: %s is not a regular file", path)
	}
	if fi.Size() == 0 {
		return nil // bbolt initializes empty files; nothing to lose
	}

	var f *os.File
	defer recoverCorrupt(path, &err, func() {
		if f != nil {
			f.Close()
		}
	})
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{
		ReadOnly: true,
		Timeout:  timeout,
		OpenFile: captureFile(&f),
	})
	if errors.Is(err, berrors.ErrTimeout) {
		return inUse(path, timeout)
	}
	if err != nil {
		return corrupt(path, err)
	}
	defer db.Close()
	fi, err = f.Stat()
	if err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	return db.View(func(tx *bbolt.Tx) error {
		if tx.Size() > fi.Size() {
			return corrupt(path, fmt.Errorf("file is truncated: %d bytes, its pages need %d", fi.Size(), tx.Size()))
		}
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			empty := true
			_ = tx.ForEach(func([]byte, *bbolt.Bucket) error {
				empty = false
				return nil
			})
			if empty {
				return nil // a blank bbolt file: Open initializes it
			}
			return corrupt(path, errors.New("no meta bucket"))
		}
		if err := checkFormat(path, meta); err != nil {
			return err
		}
		return tx.ForEach(func(name []byte, b *bbolt.Bucket) error {
			if err := walk(b); err != nil {
				return corrupt(path, fmt.Errorf("bucket %q: %w", name, err))
			}
			return nil
		})
	})
}

// walk visits every page of b and its sub-buckets. bbolt checks each page's
// id and type as the cursor reads it; walk adds key order, so the check
// bbolt repeats when opening for writing finds nothing to panic about.
func walk(b *bbolt.Bucket) error {
	c := b.Cursor()
	var prev []byte
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if prev != nil && bytes.Compare(prev, k) >= 0 {
			return fmt.Errorf("key %x after %x: pages out of order", k, prev)
		}
		prev = k
		if v == nil {
			if sub := b.Bucket(k); sub != nil {
				if err := walk(sub); err != nil {
					return fmt.Errorf("bucket %q: %w", k, err)
				}
			}
		}
	}
	return nil
}

func checkFormat(path string, meta *bbolt.Bucket) error {
	v := meta.Get(keyFormat)
	if len(v) != 8 {
		return corrupt(path, fmt.Errorf("bad format record %x", v))
	}
	switch f := binary.BigEndian.Uint64(v); {
	case f > format:
		return &formatError{path: path, have: f}
	case f < 1:
		return corrupt(path, fmt.Errorf("format %d", f))
	}
	v = meta.Get(keyNextID)
	if len(v) != 8 {
		return corrupt(path, fmt.Errorf("bad next id record %x", v))
	}
	return nil
}

func captureFile(f **os.File) func(string, int, os.FileMode) (*os.File, error) {
	return func(name string, flag int, perm os.FileMode) (*os.File, error) {
		file, err := os.OpenFile(name, flag, perm)
		*f = file
		return file, err
	}
}

func openWritable(path string, opts Options, recovering bool) (db *bbolt.DB, err error) {
	var f *os.File
	defer recoverCorrupt(path, &err, func() {
		// bbolt.Open panicked with the file open and locked.
		if f != nil {
			f.Close()
		}
	})
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	db, err = bbolt.Open(path, 0o600, &bbolt.Options{
		Timeout:        opts.LockTimeout,
		NoSync:         opts.NoSync,
		NoFreelistSync: true, // saves a freelist write per commit; rebuilt at Open
		FreelistType:   bbolt.FreelistMapType,
		// Remapping waits for every reader and growing the file costs an
		// extra sync: both showed up as commit-latency spikes. Reserve
		// address space up front (virtual, not memory) and grow in big steps.
		InitialMmapSize: mmapSize(opts, recovering),
		OpenFile:        captureFile(&f),
	})
	if err == nil {
		db.AllocSize = 64 << 20
	}
	switch {
	case errors.Is(err, berrors.ErrTimeout):
		return nil, inUse(path, opts.LockTimeout)
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrChecksum),
		errors.Is(err, berrors.ErrVersionMismatch):
		return nil, corrupt(path, err)
	case err != nil:
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	return db, nil
}

// initialize creates the buckets of a new store, or checks an existing
// one again (the file may have changed since precheck) and raises its
// format number to the current one, and returns the next id. Nothing else
// needs upgrading: old records are read as they are.
func initialize(db *bbolt.DB, path string) (next uint64, err error) {
	defer recoverCorrupt(path, &err, nil)
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	err = db.Update(func(tx *bbolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			if k, _ := tx.Cursor().First(); k != nil {
				return corrupt(path, errors.New("no meta bucket"))
			}
			return create(tx)
		}
		if err := checkFormat(path, meta); err != nil {
			return err
		}
		if tx.Bucket(bucketTasks) == nil || tx.Bucket(bucketPushes) == nil {
			return corrupt(path, errors.New("missing tasks or pushes bucket"))
		}
		if _, err := tx.CreateBucketIfNotExists(bucketPayloads); err != nil {
			return fmt.Errorf("upgrade store %s to format %d: %w", path, format, err)
		}
		if err := createModuleBuckets(tx); err != nil {
			return fmt.Errorf("open store %s: %w", path, err)
		}
		if err := createValueBuckets(tx); err != nil {
			return fmt.Errorf("open store %s: %w", path, err)
		}
		if binary.BigEndian.Uint64(meta.Get(keyFormat)) < format {
			if err := migratePayloads(tx); err != nil {
				return fmt.Errorf("upgrade store %s to format %d: %w", path, format, err)
			}
			if err := meta.Put(keyFormat, binary.BigEndian.AppendUint64(nil, format)); err != nil {
				return fmt.Errorf("upgrade store %s to format %d: %w", path, format, err)
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	err = db.View(func(tx *bbolt.Tx) error {
		next = binary.BigEndian.Uint64(tx.Bucket(bucketMeta).Get(keyNextID))
		return nil
	})
	return next, err
}

// migratePayloads rewrites every record of format 1 or 2 as a format 3
// record, its inline payload moved to the payloads bucket, in the
// transaction that raises the file's format: once a file says format 3,
// every record in it is one, and no write has to look at what it
// replaces. A crash before the commit leaves the old file as it was.
func migratePayloads(tx *bbolt.Tx) error {
	tasks, payloads := tx.Bucket(bucketTasks), tx.Bucket(bucketPayloads)
	var old [][]byte
	err := tasks.ForEach(func(k, v []byte) error {
		if len(v) >= headerLen && v[offFormat] < recordFormat {
			old = append(old, slices.Clone(k))
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, k := range old {
		r, err := decodeRecord(binary.BigEndian.Uint64(k), tasks.Get(k))
		if err != nil {
			return err
		}
		// A batch of its own per record: bbolt keeps the slices it is given
		// until the transaction commits.
		var b Batch
		b.PutTask(r)
		o := &b.ops[0]
		if err := tasks.Put(k, b.record(o)); err != nil {
			return err
		}
		if p := b.payload(o); len(p) > 0 {
			if err := payloads.Put(k, p); err != nil {
				return err
			}
		}
	}
	return nil
}

func create(tx *bbolt.Tx) error {
	meta, err := tx.CreateBucket(bucketMeta)
	if err != nil {
		return fmt.Errorf("create store: %w", err)
	}
	if err := meta.Put(keyFormat, binary.BigEndian.AppendUint64(nil, format)); err != nil {
		return fmt.Errorf("create store: %w", err)
	}
	if err := meta.Put(keyNextID, binary.BigEndian.AppendUint64(nil, 1)); err != nil {
		return fmt.Errorf("create store: %w", err)
	}
	if _, err := tx.CreateBucket(bucketTasks); err != nil {
		return fmt.Errorf("create store: %w", err)
	}
	if _, err := tx.CreateBucket(bucketPushes); err != nil {
		return fmt.Errorf("create store: %w", err)
	}
	if _, err := tx.CreateBucket(bucketPayloads); err != nil {
		return fmt.Errorf("create store: %w", err)
	}
	if err := createModuleBuckets(tx); err != nil {
		return fmt.Errorf("create store: %w", err)
	}
	if err := createValueBuckets(tx); err != nil {
		return fmt.Errorf("create store: %w", err)
	}
	return nil
}

// Close stops accepting commits, waits for the queued ones to finish (their
// done callbacks included), and closes the file. Commits after Close get
// ErrClosed. Close is idempotent; every call returns the first one's error.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		// Taking the write lock waits out Commits that are sending, so none
		// sends on the closed queue.
		s.mu.Lock()
		s.closed = true
		close(s.queue)
		s.mu.Unlock()
		<-s.exited
		if s.wal != nil {
			if err := s.stopWAL(); err != nil {
				s.closeErr = fmt.Errorf("close store %s: %w", s.path, err)
			}
		}
		if err := s.db.Close(); err != nil && s.closeErr == nil {
			s.closeErr = fmt.Errorf("close store %s: %w", s.path, err)
		}
	})
	return s.closeErr
}

// Path is the store file's path as given to Open.
func (s *Store) Path() string { return s.path }

// NextID is the largest id given to SetNextID in a committed batch, or 1 on
// a new store.
func (s *Store) NextID() uint64 { return s.nextID.Load() }

// Stats returns counters since Open.
func (s *Store) Stats() Stats {
	s.statsMu.Lock()
	defer s.statsMu.Unlock()
	return s.stats
}

// view runs fn in a read transaction, turning bbolt's panics on damaged
// pages into errors.
func (s *Store) view(fn func(*bbolt.Tx) error) (err error) {
	defer recoverCorrupt(s.path, &err, nil)
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	err = s.db.View(fn)
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return ErrClosed
	}
	return err
}

// Load calls fn for every task in id order; fn may keep the Record. It
// stops at and returns fn's first error. Commits wait while it runs only if
// they need to grow the file, so Load belongs at startup.
func (s *Store) Load(fn func(*Record) error) error {
	return s.Scan(0, func(r *Record) (bool, error) { return true, fn(r) })
}

// Scan calls fn for each task record with an id above after (every record
// when after is 0), in id order, until fn returns false or an error. It
// reads one consistent snapshot; fn may keep the records.
func (s *Store) Scan(after uint64, fn func(*Record) (bool, error)) error {
	return s.view(func(tx *bbolt.Tx) error {
		c := tx.Bucket(bucketTasks).Cursor()
		k, v := c.First()
		if after > 0 {
			if after == math.MaxUint64 {
				return nil
			}
			k, v = c.Seek(taskKey(make([]byte, 0, 8), after+1))
		}
		return s.walk(tx, k, v, c.Next, fn)
	})
}

// ScanDesc is Scan newest first: the records with an id below before
// (every record when before is 0), in descending id order.
func (s *Store) ScanDesc(before uint64, fn func(*Record) (bool, error)) error {
	return s.view(func(tx *bbolt.Tx) error {
		c := tx.Bucket(bucketTasks).Cursor()
		k, v := c.Last()
		if before > 0 {
			// Seek lands on the first key >= before, or past the end.
			if k, _ = c.Seek(taskKey(make([]byte, 0, 8), before)); k == nil {
				k, v = c.Last()
			} else {
				k, v = c.Prev()
			}
		}
		return s.walk(tx, k, v, c.Prev, fn)
	})
}

// walk decodes records from k, v on, stepping with next.
func (s *Store) walk(tx *bbolt.Tx, k, v []byte, next func() ([]byte, []byte), fn func(*Record) (bool, error)) error {
	for ; k != nil; k, v = next() {
		if len(k) != 8 {
			return corrupt(s.path, fmt.Errorf("task key %x", k))
		}
		r, err := s.decode(tx, k, v)
		if err != nil {
			return err
		}
		more, err := fn(r)
		if err != nil || !more {
			return err
		}
	}
	return nil
}

// LoadPushes calls fn for every push record, ordered by app then seq.
func (s *Store) LoadPushes(fn func(Push) error) error {
	return s.view(func(tx *bbolt.Tx) error {
		c := tx.Bucket(bucketPushes).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			p, err := decodePush(k, v)
			if err != nil {
				return fmt.Errorf("store %s: %w", s.path, err)
			}
			if err := fn(p); err != nil {
				return err
			}
		}
		return nil
	})
}

// Get returns the committed record of task id, or ErrNotFound.
func (s *Store) Get(id uint64) (*Record, error) {
	var r *Record
	err := s.view(func(tx *bbolt.Tx) error {
		v := tx.Bucket(bucketTasks).Get(taskKey(make([]byte, 0, 8), id))
		if v == nil {
			return ErrNotFound
		}
		var err error
		r, err = s.decode(tx, taskKey(make([]byte, 0, 8), id), v)
		return err
	})
	return r, err
}

// decode reads the record v of key k and, for format 3, its payload.
func (s *Store) decode(tx *bbolt.Tx, k, v []byte) (*Record, error) {
	id := binary.BigEndian.Uint64(k)
	r, err := decodeRecord(id, v)
	if err != nil {
		return nil, fmt.Errorf("store %s: %w", s.path, err)
	}
	if v[offFormat] != recordFormat || r.Payload != nil {
		return r, nil // the payload was inline
	}
	p := tx.Bucket(bucketPayloads).Get(k)
	switch {
	case p == nil:
	case len(p) < 1 || p[0] != payloadFormat:
		return nil, fmt.Errorf("store %s: %w", s.path, corruptRecord(id, fmt.Sprintf("payload value %.8x", p)))
	default:
		r.Payload = append(make([]byte, 0, len(p)-1), p[1:]...)
	}
	return r, nil
}
