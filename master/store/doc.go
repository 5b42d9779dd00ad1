// Package store keeps the master's durable state in one bbolt file: task
// records, push-dedupe records, metadata (format version, next task id),
// the credentials of master/identity, uploaded WASM modules, and keyed
// values the scheduler owns the format of (trust records, app
// configurations, volunteers' settings; see Bucket).
// It is the only package that imports bbolt, so the file format has one
// owner.
//
// Writes go through group commit: a single committer goroutine folds every
// Batch queued while the previous transaction was being fsynced into the
// next transaction, so one fsync covers many changes from many callers
// without a timer adding latency. By default a group is made durable by
// one fdatasync of a write-ahead log beside the file (wal.go) and then
// applied to bbolt unsynced, bbolt being checkpointed behind the log;
// Options.NoWAL keeps bbolt's own two syncs per transaction. The store holds no locks of the master's
// and does no network I/O; callers learn that a batch is durable from its
// done callback. Credentials and modules, rare and needed durable before
// their caller answers, are written in synchronous transactions of their
// own instead.
//
// Listings by state, app and kind read through a zone map kept in memory
// beside the file (zones.go): counts per 4,096 ids, kept by the commit
// path and built by LoadIndex, so a listing skips what cannot match.
//
// Caveats: the file is locked for one process at a time; a file written by a
// newer Anthill is refused (ErrNewerFormat), and a damaged one is refused
// without being modified rather than reset. Opening a file of an older
// format marks it with the current one, so the older Anthill refuses it
// afterwards.
package store
