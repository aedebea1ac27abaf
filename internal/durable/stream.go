package durable

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Pending is a file being written crash-safely whose final name may not be
// known yet (a payload is named after its digest). It is a temp file in its
// final directory until Commit renames it over its name or CommitNew links
// it to a name that must not exist; until then, and after Abort, no reader
// sees it under any final name.
//
//	p, err := durable.CreateTemp(fsys, dir, 0o644)
//	defer p.Abort() // no-op after a commit
//	io.Copy(p, src)
//	err = p.Commit(filepath.Join(dir, name))
type Pending struct {
	fsys   FS
	f      File
	tmp    string
	closed bool
	done   bool
}

// CreateTemp creates an exclusive temp file (O_CREATE|O_EXCL) named
// .tmp-<random> in dir with perm.
func CreateTemp(fsys FS, dir string, perm fs.FileMode) (*Pending, error) {
	for range 10 {
		var rnd [tempSuffixLen]byte
		if _, err := rand.Read(rnd[:]); err != nil {
			return nil, fmt.Errorf("failed to generate temp name: %w", err)
		}
		tmp := filepath.Join(dir, ".tmp-"+hex.EncodeToString(rnd[:]))
		f, err := fsys.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, perm)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("failed to create temp file in %q: %w", dir, err)
		}
		return &Pending{fsys: fsys, f: f, tmp: tmp}, nil
	}
	return nil, fmt.Errorf("failed to create temp file in %q: too many collisions", dir)
}

// Write writes to the temp file.
func (p *Pending) Write(b []byte) (int, error) { return p.f.Write(b) }

// File returns the temp file, for a caller that fills it by other means
// than Write (a reflink through its descriptor). Commit makes what it holds
// durable; the caller must not close it.
func (p *Pending) File() File { return p.f }

// Name returns the temp file's name.
func (p *Pending) Name() string { return p.tmp }

// finish fsyncs and closes the temp file.
func (p *Pending) finish() error {
	if p.done {
		return errors.New("internal error: pending file used after commit or abort")
	}
	err := p.f.Sync()
	if err != nil {
		err = fmt.Errorf("failed to sync %q: %w", p.tmp, err)
	}
	p.closed = true
	if cerr := p.f.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("failed to close %q: %w", p.tmp, cerr)
	}
	return err
}

// Commit fsyncs the temp file, renames it over name (in the same directory
// or at least on the same filesystem) and fsyncs name's directory. After a
// crash name holds its old content or the new one, never a mix.
func (p *Pending) Commit(name string) error {
	if err := p.finish(); err != nil {
		p.Abort()
		return err
	}
	if err := p.fsys.Rename(p.tmp, name); err != nil {
		p.Abort()
		return fmt.Errorf("failed to rename %q to %q: %w", p.tmp, name, err)
	}
	p.done = true
	if err := p.fsys.SyncDir(filepath.Dir(name)); err != nil {
		return fmt.Errorf("failed to sync directory of %q: %w", name, err)
	}
	return nil
}

// CommitNew is Commit that never replaces: it hard-links the synced temp
// file to name, failing with an error wrapping fs.ErrExist if name exists
// (even if it appeared while the file was written), then removes the temp
// name and fsyncs the directory.
func (p *Pending) CommitNew(name string) error {
	if err := p.finish(); err != nil {
		p.Abort()
		return err
	}
	if err := p.fsys.Link(p.tmp, name); err != nil {
		p.Abort()
		return fmt.Errorf("failed to create %q: %w", name, err)
	}
	p.done = true
	if err := p.fsys.Remove(p.tmp); err != nil {
		return fmt.Errorf("failed to remove %q: %w", p.tmp, err)
	}
	if err := p.fsys.SyncDir(filepath.Dir(name)); err != nil {
		return fmt.Errorf("failed to sync directory of %q: %w", name, err)
	}
	return nil
}

// Abort closes and removes the temp file (best effort). It does nothing
// after a commit, so it can be deferred.
func (p *Pending) Abort() {
	if p.done {
		return
	}
	p.done = true
	if !p.closed {
		p.closed = true
		p.f.Close()
	}
	p.fsys.Remove(p.tmp)
}

// Rename moves oldpath to newpath (same filesystem), creating newpath's
// directory with dirPerm if needed, and fsyncs both directories, so the
// move survives a crash.
func Rename(fsys FS, oldpath, newpath string, dirPerm fs.FileMode) error {
	if err := fsys.MkdirAll(filepath.Dir(newpath), dirPerm); err != nil {
		return fmt.Errorf("failed to create directory of %q: %w", newpath, err)
	}
	if err := fsys.Rename(oldpath, newpath); err != nil {
		return fmt.Errorf("failed to move %q to %q: %w", oldpath, newpath, err)
	}
	if err := fsys.SyncDir(filepath.Dir(newpath)); err != nil {
		return fmt.Errorf("failed to sync directory of %q: %w", newpath, err)
	}
	if filepath.Dir(oldpath) == filepath.Dir(newpath) {
		return nil
	}
	if err := fsys.SyncDir(filepath.Dir(oldpath)); err != nil {
		return fmt.Errorf("failed to sync directory of %q: %w", oldpath, err)
	}
	return nil
}

// Remove removes name if it exists and fsyncs its directory, so the
// removal survives a crash.
func Remove(fsys FS, name string) error {
	if err := fsys.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("failed to remove %q: %w", name, err)
	}
	if err := fsys.SyncDir(filepath.Dir(name)); err != nil {
		return fmt.Errorf("failed to sync directory of %q: %w", name, err)
	}
	return nil
}
