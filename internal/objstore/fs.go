package objstore

import (
	"context"
	"errors"
	"io/fs"
	"path"
	"time"
)

// FS returns a read-only fs.FS of the objects under prefix ("" or a
// directory name without the trailing slash), for code that reads a few
// files through io/fs. Each Open uses ctx. Directories cannot be opened
// or listed.
func FS(ctx context.Context, s Store, prefix string) fs.FS {
	return storeFS{ctx: ctx, s: s, prefix: prefix}
}

type storeFS struct {
	ctx    context.Context
	s      Store
	prefix string
}

func (f storeFS) Open(name string) (fs.File, error) {
	if !fs.ValidPath(name) || name == "." {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrInvalid}
	}
	full := name
	if f.prefix != "" {
		full = f.prefix + "/" + name
	}
	o, err := f.s.Open(f.ctx, full)
	if err != nil {
		if errors.Is(err, ErrNotExist) {
			err = fs.ErrNotExist
		}
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	return fsFile{o}, nil
}

type fsFile struct{ Object }

func (f fsFile) Stat() (fs.FileInfo, error) { return fileStat{f.Info()}, nil }

type fileStat struct{ i Info }

func (s fileStat) Name() string       { return path.Base(s.i.Name) }
func (s fileStat) Size() int64        { return s.i.Size }
func (s fileStat) Mode() fs.FileMode  { return 0o444 }
func (s fileStat) ModTime() time.Time { return s.i.ModTime }
func (fileStat) IsDir() bool          { return false }
func (fileStat) Sys() any             { return nil }
