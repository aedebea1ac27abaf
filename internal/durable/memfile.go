package durable

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"time"
)

func (ino *inode) info(name string) fs.FileInfo {
	fi := memInfo{name: path.Base(filepath.ToSlash(name)), mode: ino.mode, modTime: ino.modTime}
	if !ino.dir {
		fi.size = int64(len(ino.data))
	}
	return fi
}

type memInfo struct {
	name    string
	size    int64
	mode    fs.FileMode
	modTime time.Time
}

func (fi memInfo) Name() string       { return fi.name }
func (fi memInfo) Size() int64        { return fi.size }
func (fi memInfo) Mode() fs.FileMode  { return fi.mode }
func (fi memInfo) ModTime() time.Time { return fi.modTime }
func (fi memInfo) IsDir() bool        { return fi.mode.IsDir() }
func (fi memInfo) Sys() any           { return nil }

// memFile is an open file of a Mem.
type memFile struct {
	m      *Mem
	ino    *inode
	name   string
	gen    uint64
	flag   int
	off    int64
	closed bool
}

var _ File = (*memFile)(nil)

// check validates the handle for op; m.mu must be held.
func (f *memFile) check(op string, write bool) error {
	switch {
	case f.closed:
		return &fs.PathError{Op: op, Path: f.name, Err: fs.ErrClosed}
	case f.gen != f.m.gen:
		return &fs.PathError{Op: op, Path: f.name, Err: errStale}
	}
	acc := f.flag & (os.O_RDONLY | os.O_WRONLY | os.O_RDWR)
	if write && acc == os.O_RDONLY || !write && acc == os.O_WRONLY {
		return &fs.PathError{Op: op, Path: f.name, Err: errBadFD}
	}
	return nil
}

func (f *memFile) Name() string { return f.name }

func (f *memFile) Read(p []byte) (int, error) {
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	n, err := f.readAt("read", p, f.off)
	f.off += int64(n)
	return n, err
}

func (f *memFile) ReadAt(p []byte, off int64) (int, error) {
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	if off < 0 {
		return 0, &fs.PathError{Op: "readat", Path: f.name, Err: fs.ErrInvalid}
	}
	n, err := f.readAt("readat", p, off)
	if err == nil && n < len(p) {
		err = io.EOF
	}
	return n, err
}

// readAt reads like Read (short reads only at EOF, io.EOF when none left).
func (f *memFile) readAt(op string, p []byte, off int64) (int, error) {
	if err := f.m.powered(op, f.name); err != nil {
		return 0, err
	}
	if err := f.check(op, false); err != nil {
		return 0, err
	}
	if off >= int64(len(f.ino.data)) {
		if len(p) == 0 {
			return 0, nil
		}
		return 0, io.EOF
	}
	return copy(p, f.ino.data[off:]), nil
}

func (f *memFile) Write(p []byte) (int, error) {
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	off := f.off
	if f.flag&os.O_APPEND != 0 {
		off = int64(len(f.ino.data))
	}
	n, err := f.writeAt("write", p, off)
	f.off = off + int64(n)
	return n, err
}

func (f *memFile) WriteAt(p []byte, off int64) (int, error) {
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	if f.flag&os.O_APPEND != 0 {
		return 0, &fs.PathError{Op: "writeat", Path: f.name, Err: errors.New("invalid use of WriteAt on file opened with O_APPEND")}
	}
	if off < 0 {
		return 0, &fs.PathError{Op: "writeat", Path: f.name, Err: fs.ErrInvalid}
	}
	return f.writeAt("writeat", p, off)
}

func (f *memFile) writeAt(op string, p []byte, off int64) (int, error) {
	if err := f.m.boundary(op, f.name); err != nil {
		return 0, err
	}
	if err := f.check(op, true); err != nil {
		return 0, err
	}
	if len(p) == 0 {
		return 0, nil
	}
	wop := fileOp{off: off, data: slices.Clone(p)}
	f.ino.data = applyFileOp(f.ino.data, wop)
	f.ino.pending = append(f.ino.pending, wop)
	f.ino.modTime = time.Now()
	if f.flag&os.O_SYNC != 0 {
		f.ino.sync()
	}
	return len(p), nil
}

func (f *memFile) Seek(offset int64, whence int) (int64, error) {
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	if err := f.m.powered("seek", f.name); err != nil {
		return 0, err
	}
	if f.closed || f.gen != f.m.gen {
		return 0, f.check("seek", false)
	}
	var abs int64
	switch whence {
	case io.SeekStart:
		abs = offset
	case io.SeekCurrent:
		abs = f.off + offset
	case io.SeekEnd:
		abs = int64(len(f.ino.data)) + offset
	default:
		return 0, &fs.PathError{Op: "seek", Path: f.name, Err: fs.ErrInvalid}
	}
	if abs < 0 {
		return 0, &fs.PathError{Op: "seek", Path: f.name, Err: fs.ErrInvalid}
	}
	f.off = abs
	return abs, nil
}

func (f *memFile) Sync() error {
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	if err := f.m.boundary("sync", f.name); err != nil {
		return err
	}
	if f.closed || f.gen != f.m.gen {
		return f.check("sync", false)
	}
	f.ino.sync()
	return nil
}

func (f *memFile) Truncate(size int64) error {
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	if err := f.m.boundary("truncate", f.name); err != nil {
		return err
	}
	if err := f.check("truncate", true); err != nil {
		return err
	}
	if size < 0 {
		return &fs.PathError{Op: "truncate", Path: f.name, Err: fs.ErrInvalid}
	}
	f.ino.truncate(size)
	if f.flag&os.O_SYNC != 0 {
		f.ino.sync()
	}
	return nil
}

func (f *memFile) Stat() (fs.FileInfo, error) {
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	if err := f.m.powered("stat", f.name); err != nil {
		return nil, err
	}
	if f.closed || f.gen != f.m.gen {
		return nil, f.check("stat", false)
	}
	return f.ino.info(f.name), nil
}

// Close releases the handle. It is not a write-boundary op and does not
// sync. After a power cut or a crash it fails, but the handle is released.
func (f *memFile) Close() error {
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	if f.closed {
		return &fs.PathError{Op: "close", Path: f.name, Err: fs.ErrClosed}
	}
	f.closed = true
	if err := f.m.powered("close", f.name); err != nil {
		return err
	}
	if f.gen != f.m.gen {
		return &fs.PathError{Op: "close", Path: f.name, Err: errStale}
	}
	return nil
}
