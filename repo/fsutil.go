package repo

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// File and directory modes of everything the repository writes. Nothing is
// secret in a repository (private keys never live in it), but nothing is
// group- or world-writable either.
const (
	FileMode fs.FileMode = 0o644
	DirMode  fs.FileMode = 0o755
)

// writeFileAtomic replaces path with data: it writes a temp file in the same
// directory, fsyncs it, renames it over path and fsyncs the directory, so a
// reader (or a crash) sees the old or the new content, never a mix.
func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, DirMode); err != nil {
		return fmt.Errorf("failed to create directory: %w", err)
	}
	f, tmp, err := createTemp(dir)
	if err != nil {
		return err
	}
	defer os.Remove(tmp) // no-op after the rename
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("failed to write %s: %w", path, err)
	}
	return commitTemp(f, tmp, path)
}

// createTemp creates an exclusive temp file in dir with FileMode.
func createTemp(dir string) (*os.File, string, error) {
	for range 10 {
		var b [8]byte
		rand.Read(b[:])
		name := filepath.Join(dir, ".tmp-"+hex.EncodeToString(b[:]))
		f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, FileMode)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return nil, "", fmt.Errorf("failed to create temp file: %w", err)
		}
		return f, name, nil
	}
	return nil, "", errors.New("failed to create temp file: too many collisions")
}

// commitTemp fsyncs and closes f (named tmp) and renames it to path, then
// fsyncs the directory of path.
func commitTemp(f *os.File, tmp, path string) error {
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("failed to sync %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("failed to close %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("failed to rename into %s: %w", path, err)
	}
	return syncDir(filepath.Dir(path))
}

// renameDurable moves oldpath to newpath (same filesystem) and fsyncs both
// directories.
func renameDurable(oldpath, newpath string) error {
	if err := os.MkdirAll(filepath.Dir(newpath), DirMode); err != nil {
		return fmt.Errorf("failed to create directory: %w", err)
	}
	if err := os.Rename(oldpath, newpath); err != nil {
		return fmt.Errorf("failed to move %s: %w", oldpath, err)
	}
	if err := syncDir(filepath.Dir(newpath)); err != nil {
		return err
	}
	return syncDir(filepath.Dir(oldpath))
}

// removeDurable removes path (if present) and fsyncs its directory.
func removeDurable(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("failed to remove %s: %w", path, err)
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("failed to open directory for sync: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("failed to sync directory %s: %w", dir, err)
	}
	return nil
}

// readLimited reads a small file, refusing one larger than max bytes.
func readLimited(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fmt.Errorf("failed to read %s: %w", path, err)
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("%s is larger than %d bytes: %w", path, max, ErrTooLarge)
	}
	return data, nil
}
