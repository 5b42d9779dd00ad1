package store

import (
	"fmt"
	"slices"

	"go.etcd.io/bbolt"
)

// Keyed values: small records the scheduler keeps beside tasks, each kind
// in a bucket of its own, their bytes opaque to the store (the package
// that writes them owns their format). Older binaries ignore buckets they
// do not know, so they need no format bump; Open creates them in a file
// from before them.

// Bucket names a kind of keyed value.
type Bucket uint8

// The kinds of keyed values.
const (
	// BucketTrust holds each volunteer's record per app, keyed by
	// volunteer + "\x00" + app (see master/trust).
	BucketTrust Bucket = iota + 1
	// BucketApps holds each app's configuration, keyed by app id.
	BucketApps
	// BucketVolunteers holds each volunteer's settings, keyed by name.
	BucketVolunteers
)

// MaxValueKey bounds a value's key.
const MaxValueKey = 1024

var valueBuckets = map[Bucket][]byte{
	BucketTrust:      []byte("trust"),
	BucketApps:       []byte("apps"),
	BucketVolunteers: []byte("volunteers"),
}

func (bk Bucket) String() string {
	if name, ok := valueBuckets[bk]; ok {
		return string(name)
	}
	return fmt.Sprintf("bucket %d", uint8(bk))
}

func createValueBuckets(tx *bbolt.Tx) error {
	for _, name := range valueBuckets {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return err
		}
	}
	return nil
}

// PutValue stores value under key in bk, replacing what was there. The
// key must be 1 to MaxValueKey bytes, or the commit fails.
func (b *Batch) PutValue(bk Bucket, key string, value []byte) {
	k := len(b.buf)
	b.buf = append(b.buf, key...)
	v := len(b.buf)
	b.buf = append(b.buf, value...)
	b.ops = append(b.ops, op{kind: opPutValue, key: k, val: v, end: len(b.buf), pay: int(bk)})
	b.bytes += len(b.buf) - k
}

// DeleteValue removes key from bk; a missing key is not an error.
func (b *Batch) DeleteValue(bk Bucket, key string) {
	k := len(b.buf)
	b.buf = append(b.buf, key...)
	b.ops = append(b.ops, op{kind: opDeleteValue, key: k, val: len(b.buf), end: len(b.buf), pay: int(bk)})
}

// applyValue carries out an opPutValue or opDeleteValue; pay holds the
// bucket.
func applyValue(tx *bbolt.Tx, b *Batch, o *op) error {
	name, ok := valueBuckets[Bucket(o.pay)]
	if !ok {
		return fmt.Errorf("unknown bucket %d", o.pay)
	}
	k := b.key(o)
	if len(k) == 0 || len(k) > MaxValueKey {
		return fmt.Errorf("a key of %d bytes: want 1 to %d", len(k), MaxValueKey)
	}
	vb := tx.Bucket(name)
	if o.kind == opDeleteValue {
		return vb.Delete(k)
	}
	return vb.Put(k, b.val(o))
}

// LoadValues calls fn with every value of bk, in key order; fn may keep
// value, a copy. An error from fn stops the walk and is returned.
func (s *Store) LoadValues(bk Bucket, fn func(key string, value []byte) error) error {
	name, ok := valueBuckets[bk]
	if !ok {
		return fmt.Errorf("store %s: unknown bucket %d", s.path, uint8(bk))
	}
	return s.view(func(tx *bbolt.Tx) error {
		return tx.Bucket(name).ForEach(func(k, v []byte) error {
			return fn(string(k), slices.Clone(v))
		})
	})
}

// GetValue returns the value of key in bk, nil if there is none.
func (s *Store) GetValue(bk Bucket, key string) ([]byte, error) {
	name, ok := valueBuckets[bk]
	if !ok {
		return nil, fmt.Errorf("store %s: unknown bucket %d", s.path, uint8(bk))
	}
	var out []byte
	err := s.view(func(tx *bbolt.Tx) error {
		out = slices.Clone(tx.Bucket(name).Get([]byte(key)))
		return nil
	})
	return out, err
}
