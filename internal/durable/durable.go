// Package durable is the filesystem layer under every persistent write on the
// device: crash-safe whole-file replacement (WriteFile), bounded reads of small
// state files (ReadFile), and an in-memory filesystem with power-cut fault
// injection (Mem) used to test that every write path survives power loss.
//
// Threat model: the device filesystem is trusted to be free of a concurrent
// writer other than this process, but it is NOT trusted to survive power loss
// in any particular state. Data written but not fsync'd may be lost; a create,
// rename or remove is only durable after the parent directory is fsync'd.
// WriteFile therefore writes a temp file, fsyncs it, renames it over the
// target and fsyncs the directory, so after a crash a reader sees either the
// old or the new content, never a mix. Content read back with ReadFile is
// untrusted (it may have been corrupted on flash or by an attacker with file
// access): ReadFile only bounds its size; callers must authenticate or
// checksum what they read.
package durable

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
)

// File is an open file of an FS. *os.File implements it.
type File interface {
	io.Reader
	io.Writer
	io.ReaderAt
	io.WriterAt
	io.Seeker
	io.Closer
	Sync() error
	Truncate(size int64) error
	Stat() (fs.FileInfo, error)
	Name() string
}

// FS is the set of filesystem operations persistent device state needs. OS is
// the real filesystem; *Mem is an in-memory one with power-cut injection.
type FS interface {
	// OpenFile opens name with os.O_* flags, like os.OpenFile.
	OpenFile(name string, flag int, perm fs.FileMode) (File, error)
	// Rename atomically replaces newpath with oldpath (durable only after
	// SyncDir of the directories involved).
	Rename(oldpath, newpath string) error
	// Link creates newname as a hard link to the file oldname, failing
	// (with an error wrapping fs.ErrExist) if newname exists. Durable
	// only after SyncDir.
	Link(oldname, newname string) error
	// Remove removes a file or empty directory.
	Remove(name string) error
	// SyncDir makes creates, renames and removes in dir durable.
	SyncDir(dir string) error
	Stat(name string) (fs.FileInfo, error)
	// Lstat is Stat, except that a symbolic link is described, not
	// followed.
	Lstat(name string) (fs.FileInfo, error)
	MkdirAll(path string, perm fs.FileMode) error
	ReadDir(name string) ([]fs.DirEntry, error)
}

var (
	// ErrTooLarge is returned (wrapped) by ReadFile when a file exceeds the
	// caller's limit.
	ErrTooLarge = errors.New("file too large")
	// ErrPowerCut is returned by Mem operations at and after an injected
	// power cut (see Mem.CutAfter).
	ErrPowerCut = errors.New("power cut")
)

// OS is the real filesystem, a thin wrapper around the os package.
var OS FS = osFS{}

type osFS struct{}

func (osFS) OpenFile(name string, flag int, perm fs.FileMode) (File, error) {
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err // avoid a typed-nil File
	}
	return f, nil
}

func (osFS) Rename(oldpath, newpath string) error   { return os.Rename(oldpath, newpath) }
func (osFS) Remove(name string) error               { return os.Remove(name) }
func (osFS) Link(oldname, newname string) error     { return os.Link(oldname, newname) }
func (osFS) Stat(name string) (fs.FileInfo, error)  { return os.Stat(name) }
func (osFS) Lstat(name string) (fs.FileInfo, error) { return os.Lstat(name) }
func (osFS) MkdirAll(path string, perm fs.FileMode) error {
	return os.MkdirAll(path, perm)
}
func (osFS) ReadDir(name string) ([]fs.DirEntry, error) { return os.ReadDir(name) }

// SyncDir opens dir and fsyncs it, making entry changes in it durable.
func (osFS) SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	if err := d.Sync(); err != nil {
		d.Close()
		return fmt.Errorf("failed to sync directory %q: %w", dir, err)
	}
	return d.Close()
}

// tempSuffixLen is the number of random bytes in a WriteFile temp name.
const tempSuffixLen = 8

// WriteFile writes data to name crash-safely: it creates
// name+".tmp-<random>" with O_CREATE|O_EXCL|O_WRONLY, writes data, fsyncs and
// closes it, renames it over name and fsyncs the parent directory. After a
// crash at any point name holds either its previous content (or is absent if
// it was absent) or data, never a partial write. On error the temp file is
// removed (best effort). A successful return means data is durable.
func WriteFile(fsys FS, name string, data []byte, perm fs.FileMode) (err error) {
	var rnd [tempSuffixLen]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return fmt.Errorf("failed to generate temp name: %w", err)
	}
	tmp := name + ".tmp-" + hex.EncodeToString(rnd[:])
	f, err := fsys.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, perm)
	if err != nil {
		return fmt.Errorf("failed to create temp file for %q: %w", name, err)
	}
	closed, renamed := false, false
	defer func() {
		if err != nil {
			if !closed {
				f.Close()
			}
			if !renamed {
				fsys.Remove(tmp)
			}
		}
	}()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("failed to write %q: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("failed to sync %q: %w", tmp, err)
	}
	closed = true
	if err := f.Close(); err != nil {
		return fmt.Errorf("failed to close %q: %w", tmp, err)
	}
	if err := fsys.Rename(tmp, name); err != nil {
		return fmt.Errorf("failed to rename %q to %q: %w", tmp, name, err)
	}
	renamed = true
	if err := fsys.SyncDir(filepath.Dir(name)); err != nil {
		return fmt.Errorf("failed to sync directory of %q: %w", name, err)
	}
	return nil
}

// ReadFile reads the whole of a small file, reading at most max+1 bytes. If
// the file holds more than max bytes it fails with an error wrapping
// ErrTooLarge. max must be non-negative.
func ReadFile(fsys FS, name string, max int64) ([]byte, error) {
	if max < 0 {
		return nil, fmt.Errorf("failed to read %q: negative limit %d", name, max)
	}
	f, err := fsys.OpenFile(name, os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	limit := max
	if limit < math.MaxInt64 {
		limit++
	}
	data, err := io.ReadAll(io.LimitReader(f, limit))
	if err != nil {
		return nil, fmt.Errorf("failed to read %q: %w", name, err)
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("failed to read %q: more than %d bytes: %w", name, max, ErrTooLarge)
	}
	return data, nil
}
