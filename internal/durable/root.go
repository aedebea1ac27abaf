package durable

import (
	"fmt"
	"io/fs"
	"os"
)

// Root returns the FS of the directory r: names are relative to it and, as
// os.Root guarantees, no name, symbolic link or ".." reaches outside it. It
// lets a server-side store stream crash-safe writes (CreateTemp, Commit)
// into a directory it confines with os.Root.
func Root(r *os.Root) FS { return rootFS{r} }

type rootFS struct{ r *os.Root }

func (f rootFS) OpenFile(name string, flag int, perm fs.FileMode) (File, error) {
	fl, err := f.r.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err // avoid a typed-nil File
	}
	return fl, nil
}

func (f rootFS) Rename(oldpath, newpath string) error   { return f.r.Rename(oldpath, newpath) }
func (f rootFS) Link(oldname, newname string) error     { return f.r.Link(oldname, newname) }
func (f rootFS) Remove(name string) error               { return f.r.Remove(name) }
func (f rootFS) Stat(name string) (fs.FileInfo, error)  { return f.r.Stat(name) }
func (f rootFS) Lstat(name string) (fs.FileInfo, error) { return f.r.Lstat(name) }
func (f rootFS) MkdirAll(path string, perm fs.FileMode) error {
	return f.r.MkdirAll(path, perm)
}
func (f rootFS) ReadDir(name string) ([]fs.DirEntry, error) { return fs.ReadDir(f.r.FS(), name) }

// SyncDir fsyncs the directory name inside the root.
func (f rootFS) SyncDir(name string) error {
	d, err := f.r.Open(name)
	if err != nil {
		return err
	}
	if err := d.Sync(); err != nil {
		d.Close()
		return fmt.Errorf("failed to sync directory %q: %w", name, err)
	}
	return d.Close()
}
