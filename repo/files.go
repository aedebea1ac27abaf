package repo

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"

	"github.com/airlockfw/airlock/internal/durable"
)

// File and directory modes of everything the repository writes. Nothing is
// secret in a repository (private keys never live in it), but nothing is
// group- or world-writable either.
const (
	FileMode fs.FileMode = 0o644
	DirMode  fs.FileMode = 0o755
)

// Every write goes through internal/durable (temp file, fsync, rename,
// fsync of the directory), so a reader or a crash sees the old or the new
// content of a file, never a mix.
var fsys = durable.OS

// writeFile replaces path with data crash-safely, creating its directory.
func writeFile(path string, data []byte) error {
	if err := fsys.MkdirAll(filepath.Dir(path), DirMode); err != nil {
		return fmt.Errorf("failed to create directory: %w", err)
	}
	return durable.WriteFile(fsys, path, data, FileMode)
}

// readLimited reads a small file, refusing one larger than max bytes.
func readLimited(path string, max int64) ([]byte, error) {
	data, err := durable.ReadFile(fsys, path, max)
	if errors.Is(err, durable.ErrTooLarge) {
		return nil, fmt.Errorf("%s is larger than %d bytes: %w", path, max, ErrTooLarge)
	}
	return data, err
}
