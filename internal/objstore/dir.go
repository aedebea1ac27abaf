package objstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"

	"github.com/airlockfw/airlock/internal/durable"
)

// Dir is a Store in a local directory, the default backend. Objects are
// regular files at their names; everything goes through an [os.Root], so
// no name, symlink or listing entry reaches outside the directory. Put
// streams into a temporary file (durable.CreateTemp: ".tmp-*", never listed
// or served: its name has a dot segment), fsyncs it, renames it over the
// name and fsyncs the directory (Pending.Commit), so after a crash the name
// holds the old or the new file (and at worst a stray .tmp-* file, never
// listed or served, safe to delete).
type Dir struct {
	root *os.Root
	dir  string
}

// OpenDir opens the directory dir (which must exist) as a Store.
func OpenDir(dir string) (*Dir, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	return &Dir{root: root, dir: dir}, nil
}

// Close releases the directory.
func (d *Dir) Close() error { return d.root.Close() }

// String returns the directory's path.
func (d *Dir) String() string { return d.dir }

type dirObject struct {
	*os.File
	info Info
}

func (o *dirObject) Info() Info { return o.info }

func fileInfo(name string, fi fs.FileInfo) (Info, error) {
	if !fi.Mode().IsRegular() {
		return Info{}, fmt.Errorf("%w: %q is not a regular file", ErrNotExist, name)
	}
	if fi.Size() > MaxObjectSize {
		return Info{}, fmt.Errorf("%w: %q has %d bytes, more than %d", ErrTooLarge, name, fi.Size(), int64(MaxObjectSize))
	}
	return Info{Name: name, Size: fi.Size(), ModTime: fi.ModTime(),
		ETag: fmt.Sprintf(`"%x-%x"`, fi.Size(), fi.ModTime().UnixNano())}, nil
}

func notExist(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %w", ErrNotExist, err)
	}
	return err
}

// Open implements Store.
func (d *Dir) Open(ctx context.Context, name string) (Object, error) {
	if err := CheckName(name); err != nil {
		return nil, err
	}
	f, err := d.root.Open(name)
	if err != nil {
		return nil, notExist(err)
	}
	fi, err := f.Stat()
	if err == nil {
		var info Info
		if info, err = fileInfo(name, fi); err == nil {
			return &dirObject{File: f, info: info}, nil
		}
	}
	f.Close()
	return nil, err
}

// Stat implements Store.
func (d *Dir) Stat(ctx context.Context, name string) (Info, error) {
	if err := CheckName(name); err != nil {
		return Info{}, err
	}
	fi, err := d.root.Stat(name)
	if err != nil {
		return Info{}, notExist(err)
	}
	return fileInfo(name, fi)
}

// ctxReader fails reads once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// Put implements Store.
func (d *Dir) Put(ctx context.Context, name string, r io.Reader, o PutOptions) (_ Info, err error) {
	if err := CheckName(name); err != nil {
		return Info{}, err
	}
	if err := CheckPutOptions(o); err != nil {
		return Info{}, err
	}
	parent := path.Dir(name)
	if err := d.root.MkdirAll(parent, 0o755); err != nil {
		return Info{}, err
	}
	p, err := durable.CreateTemp(durable.Root(d.root), parent, 0o644)
	if err != nil {
		return Info{}, err
	}
	defer p.Abort() // a no-op after the commit
	if _, err := io.Copy(p, VerifyingReader(ctxReader{ctx, r}, o)); err != nil {
		return Info{}, fmt.Errorf("failed to write %q: %w", name, err)
	}
	if err := ctx.Err(); err != nil {
		return Info{}, err
	}
	if err := p.Commit(name); err != nil {
		return Info{}, err
	}
	info, err := d.Stat(ctx, name)
	info.SHA256 = o.SHA256
	return info, err
}

// List implements Store. Names with a dot segment (Put's temporary files)
// are not listed.
func (d *Dir) List(ctx context.Context, prefix string, max int) ([]Info, error) {
	if err := CheckPrefix(prefix); err != nil {
		return nil, err
	}
	if max <= 0 {
		max = DefaultMaxList
	}
	// Walk from the deepest directory the prefix names.
	start := "."
	if i := strings.LastIndexByte(prefix, '/'); i > 0 {
		start = prefix[:i]
	}
	var out []Info
	err := fs.WalkDir(d.root.FS(), start, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			if p == start && errors.Is(err, fs.ErrNotExist) {
				return fs.SkipAll
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if p != "." && strings.HasPrefix(path.Base(p), ".") {
			if de.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if de.IsDir() {
			if p != "." && p != start && !strings.HasPrefix(p+"/", prefix) && !strings.HasPrefix(prefix, p+"/") {
				return fs.SkipDir
			}
			return nil
		}
		if !de.Type().IsRegular() || !strings.HasPrefix(p, prefix) {
			return nil
		}
		if len(out) == max {
			return fmt.Errorf("%w: more than %d under %q", ErrTooMany, max, prefix)
		}
		fi, err := de.Info()
		if err != nil {
			return err
		}
		info, err := fileInfo(p, fi)
		if err != nil {
			return err
		}
		out = append(out, info)
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b Info) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// Delete implements Store.
func (d *Dir) Delete(ctx context.Context, name string) error {
	if err := CheckName(name); err != nil {
		return err
	}
	if err := d.root.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}
