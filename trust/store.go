package trust

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/airlockfw/airlock/internal/durable"
)

// MaxStoreFileSize bounds one file read back from a DirStore. Files the client
// wrote are within the role limits; a larger file was not written by it.
const MaxStoreFileSize = 16 << 20

// Store persists verified metadata under unversioned names: root.json,
// timestamp.json, snapshot.json, targets.json and "<role>.json" for delegated
// roles (every byte of the role name except ASCII letters, digits and "_.-~"
// escaped as %XX, like Python's urllib.parse.quote(name, safe="")), plus
// "root.<version>" copies of every root version the client rotated through
// (for Client.Chain), and "floors", the rollback floor record (floors.go)
// that keeps every rollback floor when one of the other files is lost.
type Store interface {
	// Get returns the stored bytes; an error wrapping fs.ErrNotExist if absent.
	Get(name string) ([]byte, error)
	// Put stores data atomically and durably under name.
	Put(name string, data []byte) error
}

// checkStoreName accepts only plain file names: no separators, NUL, "." or "..".
func checkStoreName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\\\x00") {
		return fmt.Errorf("%w: store name %q", ErrInvalidName, name)
	}
	return nil
}

type dirStore struct {
	fsys durable.FS
	dir  string
}

// NewDirStore returns a Store keeping one file per name in dir, written with
// durable.WriteFile (temp file, fsync, rename, directory fsync) and read with
// durable.ReadFile bounded by MaxStoreFileSize. The directory is created on
// the first Put if missing.
func NewDirStore(fsys durable.FS, dir string) Store {
	return &dirStore{fsys: fsys, dir: dir}
}

func (s *dirStore) Get(name string) ([]byte, error) {
	if err := checkStoreName(name); err != nil {
		return nil, err
	}
	data, err := durable.ReadFile(s.fsys, filepath.Join(s.dir, name), MaxStoreFileSize)
	if err != nil {
		return nil, fmt.Errorf("failed to read stored %q: %w", name, err)
	}
	return data, nil
}

func (s *dirStore) Put(name string, data []byte) error {
	if err := checkStoreName(name); err != nil {
		return err
	}
	if err := s.fsys.MkdirAll(s.dir, 0o755); err != nil {
		return fmt.Errorf("failed to create metadata directory: %w", err)
	}
	if err := durable.WriteFile(s.fsys, filepath.Join(s.dir, name), data, 0o644); err != nil {
		return fmt.Errorf("failed to store %q: %w", name, err)
	}
	return nil
}

type memStore struct {
	mu    sync.Mutex
	files map[string][]byte
}

// NewMemStore returns an in-memory Store (tests, offline verification).
func NewMemStore() Store { return &memStore{files: map[string][]byte{}} }

func (s *memStore) Get(name string) ([]byte, error) {
	if err := checkStoreName(name); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.files[name]
	if !ok {
		return nil, &fs.PathError{Op: "get", Path: name, Err: fs.ErrNotExist}
	}
	return append([]byte(nil), d...), nil
}

func (s *memStore) Put(name string, data []byte) error {
	if err := checkStoreName(name); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.files[name] = append([]byte(nil), data...)
	return nil
}

// getOptional returns (nil, nil) when name is absent from the store.
func getOptional(s Store, name string) ([]byte, error) {
	data, err := s.Get(name)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	return data, err
}
