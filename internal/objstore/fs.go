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
// files through io/fs. Each opened file lives under ctx and at most
// timeout (0: no limit) until it is closed. Directories cannot be opened
// or listed.
func FS(ctx context.Context, s Store, prefix string, timeout time.Duration) fs.FS {
	return storeFS{ctx: ctx, s: s, prefix: prefix, timeout: timeout}
}

type storeFS struct {
	ctx     context.Context
	s       Store
	prefix  string
	timeout time.Duration
}

func (f storeFS) Open(name string) (fs.File, error) {
	if !fs.ValidPath(name) || name == "." {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrInvalid}
	}
	full := name
	if f.prefix != "" {
		full = f.prefix + "/" + name
	}
	ctx, cancel := f.ctx, context.CancelFunc(func() {})
	if f.timeout > 0 {
		ctx, cancel = context.WithTimeout(ctx, f.timeout)
	}
	o, err := f.s.Open(ctx, full)
	if err != nil {
		cancel()
		if errors.Is(err, ErrNotExist) {
			err = fs.ErrNotExist
		}
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	return fsFile{o, cancel}, nil
}

type fsFile struct {
	Object
	cancel context.CancelFunc
}

func (f fsFile) Close() error {
	defer f.cancel()
	return f.Object.Close()
}

func (f fsFile) Stat() (fs.FileInfo, error) { return fileStat{f.Info()}, nil }

type fileStat struct{ i Info }

func (s fileStat) Name() string       { return path.Base(s.i.Name) }
func (s fileStat) Size() int64        { return s.i.Size }
func (s fileStat) Mode() fs.FileMode  { return 0o444 }
func (s fileStat) ModTime() time.Time { return s.i.ModTime }
func (fileStat) IsDir() bool          { return false }
func (fileStat) Sys() any             { return nil }
