package durable

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// CreateFile creates name with O_CREATE|O_EXCL (never replacing an existing
// file: the error then wraps fs.ErrExist), writes data, fsyncs and closes it
// and fsyncs the parent directory. It is how secret keys are written: once,
// with perm (0600), never overwritten. On error the partly written file is
// removed.
func CreateFile(fsys FS, name string, data []byte, perm fs.FileMode) (err error) {
	f, err := fsys.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return fmt.Errorf("failed to create %s: %w", name, err)
	}
	defer func() {
		if err != nil {
			fsys.Remove(name)
		}
	}()
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("failed to write %s: %w", name, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("failed to sync %s: %w", name, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("failed to close %s: %w", name, err)
	}
	return fsys.SyncDir(filepath.Dir(name))
}
