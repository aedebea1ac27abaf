package durable

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// Mem is an in-memory FS that models a disk with a volatile page cache, for
// power-cut tests of everything that persists state.
//
// Model:
//
//   - A file is an inode with data (what the running system sees) and synced
//     (what survives power loss). Writes and truncates change data
//     immediately; File.Sync copies data to synced. A file opened with
//     os.O_SYNC is synced after every write. synced is a full copy of the
//     file, which is fine for the small (≤ 1 MiB) slots and state files of
//     tests; Mem is not meant for large images.
//   - A directory has entries (visible) and syncedEntries. Creating, renaming
//     or removing an entry changes entries only; SyncDir(dir) copies entries
//     to syncedEntries. A newly created file whose directory was not synced
//     disappears on a crash; a rename or remove that was not followed by
//     SyncDir of the directory is undone by a crash. A newly created file
//     whose directory was synced but which was never File.Sync'd comes back
//     empty.
//   - MkdirAll is durable immediately (the new directories are linked into
//     both entries and syncedEntries of their parents); this keeps tests
//     simple, since directories are created at provisioning, not at update.
//
// Power cuts: every op that crosses a "write boundary" is counted: every
// File.Write and File.WriteAt, File.Truncate, File.Sync, Rename, Remove,
// SyncDir, and OpenFile with os.O_CREATE or os.O_TRUNC (whether or not it
// then succeeds). CutAfter(n) makes the n-th such op fail with ErrPowerCut
// without doing anything, and from then on the power is off: EVERY operation
// (reads and writes, on Mem and on its open files) fails with an error
// wrapping ErrPowerCut, until Crash or CrashTorn "reboots" the system. Crash
// reverts everything to its synced state and invalidates all open files.
//
// The test helpers Snapshot and WriteFileRaw bypass power
// state and op counting.
//
// Paths are slash-separated; relative and absolute paths both resolve from
// the root, so "a/b" and "/a/b" are the same file. Mem has regular files and
// directories only: no symbolic links and no devices (tests of those use the
// OS filesystem). Mem is safe for concurrent use.
type Mem struct {
	mu     sync.Mutex
	root   *inode
	inodes map[uint64]*inode // every inode that may be reachable after a crash
	nextID uint64

	ops   int  // write-boundary ops since NewMem or the last CutAfter
	cutAt int  // op number (relative to ops) to cut at; 0 = disarmed
	down  bool // the power is off: everything fails until Crash
	gen   uint64
}

// inode is a file or directory.
type inode struct {
	id      uint64
	dir     bool
	mode    fs.FileMode
	modTime time.Time

	// files
	data    []byte
	synced  []byte
	pending []fileOp // unsynced changes to data, in order, for CrashTorn

	// directories
	entries       map[string]*inode
	syncedEntries map[string]*inode
	pendingDir    []dirOp // unsynced changes to entries, in order, for CrashTorn
}

// fileOp is one unsynced change to a file: a write of data at off, or (when
// data is nil) a truncate to size.
type fileOp struct {
	off  int64
	data []byte
	size int64
}

// dirOp is one unsynced change to a directory: link name to ino, or unlink
// name when ino is nil.
type dirOp struct {
	name string
	ino  *inode
}

var (
	errStale    = fmt.Errorf("file handle invalidated by power loss: %w", fs.ErrClosed)
	errIsDir    = errors.New("is a directory")
	errNotDir   = errors.New("not a directory")
	errNotEmpty = errors.New("directory not empty")
	errBadFD    = errors.New("bad file descriptor")
)

// NewMem returns an empty Mem with only a root directory.
func NewMem() *Mem {
	m := &Mem{inodes: map[uint64]*inode{}}
	m.root = m.newInode(true, fs.ModeDir|0o755)
	return m
}

func (m *Mem) newInode(dir bool, mode fs.FileMode) *inode {
	m.nextID++
	ino := &inode{id: m.nextID, dir: dir, mode: mode, modTime: time.Now()}
	if dir {
		ino.entries = map[string]*inode{}
		ino.syncedEntries = map[string]*inode{}
	}
	m.inodes[ino.id] = ino
	return ino
}

// boundary counts a write-boundary op and reports whether it must fail.
// m.mu must be held.
func (m *Mem) boundary(op, name string) error {
	if m.down {
		return &fs.PathError{Op: op, Path: name, Err: ErrPowerCut}
	}
	m.ops++
	if m.cutAt > 0 && m.ops == m.cutAt {
		m.down = true
		return &fs.PathError{Op: op, Path: name, Err: ErrPowerCut}
	}
	return nil
}

// powered fails if the power is off. m.mu must be held.
func (m *Mem) powered(op, name string) error {
	if m.down {
		return &fs.PathError{Op: op, Path: name, Err: ErrPowerCut}
	}
	return nil
}

// split cleans name into its path components; the root has none.
func split(name string) ([]string, error) {
	if name == "" {
		return nil, fs.ErrInvalid
	}
	p := path.Clean("/" + filepath.ToSlash(name))
	if p == "/" {
		return nil, nil
	}
	return strings.Split(p[1:], "/"), nil
}

// lookup returns the inode at name.
func (m *Mem) lookup(op, name string) (*inode, error) {
	parts, err := split(name)
	if err != nil {
		return nil, &fs.PathError{Op: op, Path: name, Err: err}
	}
	ino := m.root
	for _, p := range parts {
		if !ino.dir {
			return nil, &fs.PathError{Op: op, Path: name, Err: errNotDir}
		}
		c, ok := ino.entries[p]
		if !ok {
			return nil, &fs.PathError{Op: op, Path: name, Err: fs.ErrNotExist}
		}
		ino = c
	}
	return ino, nil
}

// lookupParent returns the directory holding name and name's base.
func (m *Mem) lookupParent(op, name string) (*inode, string, error) {
	parts, err := split(name)
	if err != nil {
		return nil, "", &fs.PathError{Op: op, Path: name, Err: err}
	}
	if len(parts) == 0 {
		return nil, "", &fs.PathError{Op: op, Path: name, Err: fs.ErrInvalid}
	}
	dir, err := m.lookup(op, "/"+strings.Join(parts[:len(parts)-1], "/"))
	if err != nil {
		return nil, "", &fs.PathError{Op: op, Path: name, Err: errors.Unwrap(err)}
	}
	if !dir.dir {
		return nil, "", &fs.PathError{Op: op, Path: name, Err: errNotDir}
	}
	return dir, parts[len(parts)-1], nil
}

func (d *inode) link(name string, ino *inode) {
	d.entries[name] = ino
	d.pendingDir = append(d.pendingDir, dirOp{name: name, ino: ino})
	d.modTime = time.Now()
}

func (d *inode) unlink(name string) {
	delete(d.entries, name)
	d.pendingDir = append(d.pendingDir, dirOp{name: name})
	d.modTime = time.Now()
}

// OpenFile opens name. It supports os.O_RDONLY, os.O_WRONLY, os.O_RDWR,
// os.O_CREATE, os.O_EXCL, os.O_TRUNC, os.O_APPEND, os.O_SYNC and NoFollow
// (which never matters: Mem has no symbolic links). Directories cannot be
// opened (use ReadDir and SyncDir).
func (m *Mem) OpenFile(name string, flag int, perm fs.FileMode) (File, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if flag&(os.O_CREATE|os.O_TRUNC) != 0 {
		if err := m.boundary("open", name); err != nil {
			return nil, err
		}
	} else if err := m.powered("open", name); err != nil {
		return nil, err
	}
	acc := flag & (os.O_RDONLY | os.O_WRONLY | os.O_RDWR)
	dir, base, err := m.lookupParent("open", name)
	if err != nil {
		return nil, err
	}
	ino, ok := dir.entries[base]
	switch {
	case ok && flag&os.O_CREATE != 0 && flag&os.O_EXCL != 0:
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrExist}
	case ok && ino.dir:
		return nil, &fs.PathError{Op: "open", Path: name, Err: errIsDir}
	case !ok && flag&os.O_CREATE == 0:
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	case !ok:
		ino = m.newInode(false, perm.Perm())
		dir.link(base, ino)
	}
	if flag&os.O_TRUNC != 0 && acc != os.O_RDONLY {
		ino.truncate(0)
		if flag&os.O_SYNC != 0 {
			ino.sync()
		}
	}
	return &memFile{m: m, ino: ino, name: name, gen: m.gen, flag: flag}, nil
}

func (ino *inode) truncate(size int64) {
	ino.data = resize(ino.data, size)
	ino.pending = append(ino.pending, fileOp{size: size})
	ino.modTime = time.Now()
}

func (ino *inode) sync() {
	ino.synced = slices.Clone(ino.data)
	ino.pending = nil
}

// Rename moves oldpath to newpath, replacing a file (or empty directory) at
// newpath. It is visible at once and durable after SyncDir of both parents.
func (m *Mem) Rename(oldpath, newpath string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.boundary("rename", oldpath); err != nil {
		return err
	}
	od, ob, err := m.lookupParent("rename", oldpath)
	if err != nil {
		return err
	}
	nd, nb, err := m.lookupParent("rename", newpath)
	if err != nil {
		return err
	}
	src, ok := od.entries[ob]
	if !ok {
		return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: fs.ErrNotExist}
	}
	if src.dir {
		// Refuse moving a directory below itself.
		for p := nd; ; {
			if p == src {
				return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: fs.ErrInvalid}
			}
			parent := m.parentOf(p)
			if parent == nil {
				break
			}
			p = parent
		}
	}
	if dst, ok := nd.entries[nb]; ok {
		if dst == src {
			return nil
		}
		switch {
		case dst.dir && !src.dir:
			return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: errIsDir}
		case !dst.dir && src.dir:
			return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: errNotDir}
		case dst.dir && len(dst.entries) > 0:
			return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: errNotEmpty}
		}
	}
	od.unlink(ob)
	nd.link(nb, src)
	return nil
}

// Link makes newname a second name of the file oldname; it fails with
// fs.ErrExist if newname exists. Visible at once, durable after SyncDir of
// newname's parent.
func (m *Mem) Link(oldname, newname string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.boundary("link", newname); err != nil {
		return err
	}
	src, err := m.lookup("link", oldname)
	if err != nil {
		return err
	}
	if src.dir {
		return &os.LinkError{Op: "link", Old: oldname, New: newname, Err: errIsDir}
	}
	nd, nb, err := m.lookupParent("link", newname)
	if err != nil {
		return err
	}
	if _, ok := nd.entries[nb]; ok {
		return &os.LinkError{Op: "link", Old: oldname, New: newname, Err: fs.ErrExist}
	}
	nd.link(nb, src)
	return nil
}

// parentOf returns the visible parent directory of ino, or nil for the root.
func (m *Mem) parentOf(ino *inode) *inode {
	var find func(d *inode) *inode
	find = func(d *inode) *inode {
		for _, c := range d.entries {
			if c == ino {
				return d
			}
			if c.dir {
				if p := find(c); p != nil {
					return p
				}
			}
		}
		return nil
	}
	if ino == m.root {
		return nil
	}
	return find(m.root)
}

// Remove removes a file or an empty directory; durable after SyncDir of its
// parent.
func (m *Mem) Remove(name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.boundary("remove", name); err != nil {
		return err
	}
	dir, base, err := m.lookupParent("remove", name)
	if err != nil {
		return err
	}
	ino, ok := dir.entries[base]
	if !ok {
		return &fs.PathError{Op: "remove", Path: name, Err: fs.ErrNotExist}
	}
	if ino.dir && len(ino.entries) > 0 {
		return &fs.PathError{Op: "remove", Path: name, Err: errNotEmpty}
	}
	dir.unlink(base)
	return nil
}

// SyncDir makes the current entries of dir durable.
func (m *Mem) SyncDir(dir string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.boundary("sync", dir); err != nil {
		return err
	}
	d, err := m.lookup("sync", dir)
	if err != nil {
		return err
	}
	if !d.dir {
		return &fs.PathError{Op: "sync", Path: dir, Err: errNotDir}
	}
	d.syncedEntries = cloneEntries(d.entries)
	d.pendingDir = nil
	return nil
}

// Stat returns a FileInfo for name.
func (m *Mem) Stat(name string) (fs.FileInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.powered("stat", name); err != nil {
		return nil, err
	}
	ino, err := m.lookup("stat", name)
	if err != nil {
		return nil, err
	}
	return ino.info(name), nil
}

// Lstat returns a FileInfo for name. Mem has no symbolic links, so it is
// Stat.
func (m *Mem) Lstat(name string) (fs.FileInfo, error) { return m.Stat(name) }

// MkdirAll creates path and any missing parents. Unlike every other change,
// it is durable immediately (see Mem) and is not a write-boundary op.
func (m *Mem) MkdirAll(p string, perm fs.FileMode) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.powered("mkdir", p); err != nil {
		return err
	}
	parts, err := split(p)
	if err != nil {
		return &fs.PathError{Op: "mkdir", Path: p, Err: err}
	}
	d := m.root
	for _, part := range parts {
		c, ok := d.entries[part]
		if !ok {
			c = m.newInode(true, fs.ModeDir|perm.Perm())
			d.entries[part] = c
			d.syncedEntries[part] = c
		} else if !c.dir {
			return &fs.PathError{Op: "mkdir", Path: p, Err: errNotDir}
		}
		d = c
	}
	return nil
}

// ReadDir returns the visible entries of name sorted by file name.
func (m *Mem) ReadDir(name string) ([]fs.DirEntry, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.powered("readdir", name); err != nil {
		return nil, err
	}
	d, err := m.lookup("readdir", name)
	if err != nil {
		return nil, err
	}
	if !d.dir {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: errNotDir}
	}
	out := make([]fs.DirEntry, 0, len(d.entries))
	for n, c := range d.entries {
		out = append(out, fs.FileInfoToDirEntry(c.info(n)))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name() < out[j].Name() })
	return out, nil
}

// Snapshot returns a copy of the visible content of the file name, ignoring
// power state. It is a test helper.
func (m *Mem) Snapshot(name string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ino, err := m.lookup("snapshot", name)
	if err != nil {
		return nil, err
	}
	if ino.dir {
		return nil, &fs.PathError{Op: "snapshot", Path: name, Err: errIsDir}
	}
	return slices.Clone(ino.data), nil
}

// WriteFileRaw sets the content of the file name to data, creating it if
// needed (its parent must exist), durably and at once: no op is counted, the
// power state is ignored, and data and the directory entry are both synced.
// It is a test helper to provision or corrupt state (e.g. flip a byte in a
// slot).
func (m *Mem) WriteFileRaw(name string, data []byte, perm fs.FileMode) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	dir, base, err := m.lookupParent("writeraw", name)
	if err != nil {
		return err
	}
	ino, ok := dir.entries[base]
	if ok && ino.dir {
		return &fs.PathError{Op: "writeraw", Path: name, Err: errIsDir}
	}
	if !ok {
		ino = m.newInode(false, perm.Perm())
		dir.entries[base] = ino
	}
	dir.syncedEntries[base] = ino
	ino.data = slices.Clone(data)
	ino.modTime = time.Now()
	ino.sync()
	return nil
}
