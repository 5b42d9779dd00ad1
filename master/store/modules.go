package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.etcd.io/bbolt"

	"github.com/anthill-project/anthill/internal/modsig"
)

// WASM modules live in two buckets of their own, keyed by the module's
// hash: their metadata in one and their bytes in the other, so listing
// modules never reads a module's code. Older binaries ignore buckets they
// do not know, so they need no format bump; Open creates the buckets in a
// file from before them. An upload is rare, large and
// must be durable before the uploader is told its hash, so each is its
// own synchronous transaction rather than a group commit.
var (
	bucketModules    = []byte("modules")
	bucketModuleCode = []byte("module_code")
)

// moduleFormat is the first byte of a module's metadata value; the rest is
// JSON, which new fields can join without a new format.
const moduleFormat = 1

// ErrModuleNotFound is returned by Module, ModuleCode and DeleteModule for
// a hash that is not stored.
var ErrModuleNotFound = errors.New("module not found")

// Module is a stored module's metadata.
type Module struct {
	Hash    string    `json:"-"` // the key: modsig.Hash of the code
	Name    string    `json:"name"`
	Size    int64     `json:"size"`
	Created time.Time `json:"created"`
	By      string    `json:"by"` // who uploaded it first
	// Signatures are kept as given; the store does not verify them.
	Signatures []modsig.Signature `json:"signatures,omitempty"`
}

// PutModule durably stores code under meta.Hash, which must be the code's
// hash, and returns the metadata now stored. Storing a module that is
// already there keeps its name, creation time and uploader, and adds the
// signatures of meta it did not have; created reports whether the module
// is new.
func (s *Store) PutModule(meta Module, code []byte) (stored Module, created bool, err error) {
	if meta.Hash == "" || meta.Hash != modsig.Hash(code) {
		return Module{}, false, fmt.Errorf("store %s: module hash %q is not the hash of its %d bytes", s.path, meta.Hash, len(code))
	}
	meta.Size = int64(len(code))
	err = s.updateModules(func(metas, codes *bbolt.Bucket) error {
		key := []byte(meta.Hash)
		if v := metas.Get(key); v != nil {
			old, err := decodeModule(key, v)
			if err != nil {
				return err
			}
			stored = old
			for _, sig := range meta.Signatures {
				if !slices.Contains(stored.Signatures, sig) {
					stored.Signatures = append(stored.Signatures, sig)
				}
			}
			if len(stored.Signatures) == len(old.Signatures) {
				return nil // nothing new: no write
			}
		} else {
			stored, created = meta, true
			if err := codes.Put(key, code); err != nil {
				return err
			}
		}
		v, err := encodeModule(stored)
		if err != nil {
			return err
		}
		return metas.Put(key, v)
	})
	if err != nil {
		return Module{}, false, err
	}
	return stored, created, nil
}

// Module returns the metadata of the module hash, or ErrModuleNotFound.
func (s *Store) Module(hash string) (Module, error) {
	var m Module
	err := s.viewModules(func(metas, _ *bbolt.Bucket) error {
		v := metas.Get([]byte(hash))
		if v == nil {
			return ErrModuleNotFound
		}
		var err error
		m, err = decodeModule([]byte(hash), v)
		return err
	})
	return m, err
}

// ModuleCode returns a copy of the bytes of the module hash, or
// ErrModuleNotFound.
func (s *Store) ModuleCode(hash string) ([]byte, error) {
	var code []byte
	err := s.viewModules(func(_, codes *bbolt.Bucket) error {
		v := codes.Get([]byte(hash))
		if v == nil {
			return ErrModuleNotFound
		}
		code = bytes.Clone(v)
		return nil
	})
	return code, err
}

// Modules returns the metadata of every stored module, in hash order.
func (s *Store) Modules() ([]Module, error) {
	var ms []Module
	err := s.viewModules(func(metas, _ *bbolt.Bucket) error {
		return metas.ForEach(func(k, v []byte) error {
			m, err := decodeModule(k, v)
			if err != nil {
				return err
			}
			ms = append(ms, m)
			return nil
		})
	})
	return ms, err
}

// DeleteModule durably removes the module hash, metadata and code, or
// returns ErrModuleNotFound. Whether a task still needs it is the
// caller's business.
func (s *Store) DeleteModule(hash string) error {
	return s.updateModules(func(metas, codes *bbolt.Bucket) error {
		key := []byte(hash)
		if metas.Get(key) == nil {
			return ErrModuleNotFound
		}
		if err := metas.Delete(key); err != nil {
			return err
		}
		return codes.Delete(key)
	})
}

func encodeModule(m Module) ([]byte, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	return append([]byte{moduleFormat}, b...), nil
}

func decodeModule(key, v []byte) (Module, error) {
	var m Module
	if len(v) < 1 || v[0] != moduleFormat {
		return m, fmt.Errorf("module %s: metadata of unknown format %.8x", key, v)
	}
	if err := json.Unmarshal(v[1:], &m); err != nil {
		return m, fmt.Errorf("module %s: metadata: %w", key, err)
	}
	m.Hash = string(key)
	return m, nil
}

// viewModules runs fn on the module buckets in a read transaction.
func (s *Store) viewModules(fn func(metas, codes *bbolt.Bucket) error) error {
	err := s.view(func(tx *bbolt.Tx) error {
		return fn(tx.Bucket(bucketModules), tx.Bucket(bucketModuleCode))
	})
	if err != nil && !errors.Is(err, ErrModuleNotFound) && !errors.Is(err, ErrClosed) {
		return fmt.Errorf("store %s: modules: %w", s.path, err)
	}
	return err
}

func (s *Store) updateModules(fn func(metas, codes *bbolt.Bucket) error) error {
	// The read lock keeps Close from closing the file under the write.
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return ErrClosed
	}
	err := s.syncUpdate(func(tx *bbolt.Tx) error {
		return fn(tx.Bucket(bucketModules), tx.Bucket(bucketModuleCode))
	})
	if err != nil && !errors.Is(err, ErrModuleNotFound) {
		return fmt.Errorf("store %s: modules: %w", s.path, err)
	}
	return err
}

func createModuleBuckets(tx *bbolt.Tx) error {
	for _, b := range [][]byte{bucketModules, bucketModuleCode} {
		if _, err := tx.CreateBucketIfNotExists(b); err != nil {
			return err
		}
	}
	return nil
}
