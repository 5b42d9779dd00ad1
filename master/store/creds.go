package store

import (
	"fmt"

	"go.etcd.io/bbolt"
)

// Credentials live in a bucket of their own, opaque to the store: the
// caller (master/identity) owns their encoding and never stores a token,
// only its hash. Older binaries ignore a bucket they do not know, so the
// bucket needs no format bump. Enrolling is rare and must be durable
// before the token is shown, so these writes are their own synchronous
// transactions rather than group commits.
var bucketCreds = []byte("creds")

// PutCred durably stores val under key in the credentials bucket.
func (s *Store) PutCred(key, val []byte) error {
	return s.updateCreds(func(b *bbolt.Bucket) error { return b.Put(key, val) })
}

// DeleteCred durably removes key from the credentials bucket; a missing key
// is not an error.
func (s *Store) DeleteCred(key []byte) error {
	return s.updateCreds(func(b *bbolt.Bucket) error { return b.Delete(key) })
}

// LoadCreds calls fn for every credential in key order. fn must copy what
// it keeps: the slices are only valid during the call.
func (s *Store) LoadCreds(fn func(key, val []byte) error) error {
	return s.view(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketCreds)
		if b == nil {
			return nil // a store from before credentials
		}
		return b.ForEach(fn)
	})
}

func (s *Store) updateCreds(fn func(*bbolt.Bucket) error) error {
	// The read lock keeps Close from closing the file under the write.
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return ErrClosed
	}
	err := s.syncUpdate(func(tx *bbolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketCreds)
		if err != nil {
			return err
		}
		return fn(b)
	})
	if err != nil {
		return fmt.Errorf("store %s: credentials: %w", s.path, err)
	}
	return nil
}
