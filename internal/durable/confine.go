package durable

import (
	"errors"
	"io/fs"
	"path/filepath"
	"strings"
)

// ErrSymlink is wrapped by every operation of a Confine'd FS that met a
// symbolic link below its directory.
var ErrSymlink = errors.New("refusing to follow a symbolic link in a confined directory (a planted link could redirect a read or write)")

// Confine returns an FS that acts like fsys, except that no name inside dir
// may be reached through a symbolic link below dir: every element of the
// name below dir, the last one included, must not be a symbolic link, or
// the operation fails with an error wrapping ErrSymlink before it touches
// anything. Each element is checked with Lstat, and OpenFile also sets
// NoFollow, so the last element cannot be swapped for a link between the
// check and the open. Remove and Lstat act on a link itself (they never
// follow the last element), so they only check the elements above it.
//
// Names outside dir (after filepath.Clean, compared lexically: build
// names from the same dir) are passed to fsys unchanged. dir itself may be
// a symbolic link: the operator chose it; what must not redirect a write is
// a link planted inside it. Hard links are not detected; the crash-safe
// writes of WriteFile replace a name with a new file rather than write
// through it, so a planted hard link is never written.
//
// It is what the device wraps its state directory in.
func Confine(fsys FS, dir string) FS {
	dir = filepath.Clean(dir)
	if c, ok := fsys.(*confined); ok && c.dir == dir {
		return c
	}
	return &confined{fsys: fsys, dir: dir}
}

type confined struct {
	fsys FS
	dir  string
}

// check Lstat's every element of name below c.dir (the last one only if
// last), and fails with ErrSymlink at the first symbolic link. It stops at
// the first element that does not exist: the operation creates it, or fails.
func (c *confined) check(op, name string, last bool) error {
	rel, err := filepath.Rel(c.dir, filepath.Clean(name))
	if err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return nil // not below dir
	}
	parts := strings.Split(rel, string(filepath.Separator))
	if !last {
		parts = parts[:len(parts)-1]
	}
	p := c.dir
	for _, part := range parts {
		p = filepath.Join(p, part)
		fi, err := c.fsys.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			return &fs.PathError{Op: op, Path: p, Err: ErrSymlink}
		}
	}
	return nil
}

func (c *confined) inside(name string) bool {
	rel, err := filepath.Rel(c.dir, filepath.Clean(name))
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

func (c *confined) OpenFile(name string, flag int, perm fs.FileMode) (File, error) {
	if err := c.check("open", name, true); err != nil {
		return nil, err
	}
	if c.inside(name) {
		flag |= NoFollow
	}
	return c.fsys.OpenFile(name, flag, perm)
}

func (c *confined) Rename(oldpath, newpath string) error {
	if err := c.check("rename", oldpath, true); err != nil {
		return err
	}
	if err := c.check("rename", newpath, true); err != nil {
		return err
	}
	return c.fsys.Rename(oldpath, newpath)
}

func (c *confined) Link(oldname, newname string) error {
	if err := c.check("link", oldname, true); err != nil {
		return err
	}
	if err := c.check("link", newname, true); err != nil {
		return err
	}
	return c.fsys.Link(oldname, newname)
}

func (c *confined) Remove(name string) error {
	if err := c.check("remove", name, false); err != nil {
		return err
	}
	return c.fsys.Remove(name)
}

func (c *confined) SyncDir(dir string) error {
	if err := c.check("sync", dir, true); err != nil {
		return err
	}
	return c.fsys.SyncDir(dir)
}

func (c *confined) Stat(name string) (fs.FileInfo, error) {
	if err := c.check("stat", name, true); err != nil {
		return nil, err
	}
	return c.fsys.Stat(name)
}

func (c *confined) Lstat(name string) (fs.FileInfo, error) {
	if err := c.check("lstat", name, false); err != nil {
		return nil, err
	}
	return c.fsys.Lstat(name)
}

func (c *confined) MkdirAll(path string, perm fs.FileMode) error {
	if err := c.check("mkdir", path, true); err != nil {
		return err
	}
	return c.fsys.MkdirAll(path, perm)
}

func (c *confined) ReadDir(name string) ([]fs.DirEntry, error) {
	if err := c.check("readdir", name, true); err != nil {
		return nil, err
	}
	return c.fsys.ReadDir(name)
}
