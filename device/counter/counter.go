// Package counter implements anti-rollback counters: monotonic values that
// record the lowest security version a device may still run. The update
// pipeline raises the counter once a release is committed and refuses any
// release whose security version is below it.
//
// Threat model: the counter value itself is not secret; what matters is that
// it never goes down. File, the backend in this package, stores the counter
// in one small file through durable.FS and protects against:
//
//   - power loss: every change is a crash-safe replace (temp file, fsync,
//     rename, fsync dir), so after a crash the counter holds its old or its
//     new value, never a lower or a partial one;
//   - corruption (flash bit rot, a torn write by other software): the record
//     carries a magic, a version and a CRC-32C, and a record that does not
//     parse exactly is an error wrapping ErrCorrupt. The counter fails
//     closed: it is never silently treated as 0;
//   - a software path that tries to install older firmware: Raise refuses to
//     lower the value (ErrDecrease).
//
// It does NOT protect against an attacker who can write the device's storage
// directly (raw flash access, root on the device, or a reflash): such an
// attacker can delete or rewrite the file, and OpenFile recreates a missing
// file with value 0. The CRC detects accidents, not tampering. Resisting that
// attacker needs a hardware monotonic counter (the TPM NV counter backend,
// to come), behind the same Counter interface.
package counter

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"path/filepath"
	"strings"
	"sync"

	"github.com/airlockfw/airlock/internal/durable"
)

// Counter is a monotonic anti-rollback counter.
type Counter interface {
	// Read returns the current value.
	Read() (uint64, error)
	// Raise sets the counter to v if v > current; v == current is a no-op;
	// v < current returns an error wrapping ErrDecrease and changes nothing.
	Raise(v uint64) error
}

var (
	// ErrDecrease is returned (wrapped) by Raise when asked to lower the
	// counter.
	ErrDecrease = errors.New("anti-rollback counter cannot decrease")
	// ErrCorrupt is returned (wrapped) when the counter file does not parse.
	ErrCorrupt = errors.New("corrupt anti-rollback counter file")
)

// File record layout (all integers big-endian), FileSize bytes in total:
//
//	offset  size  field
//	0       8     magic "AIRLKCTR"
//	8       2     format version, FileVersion
//	10      2     reserved, must be 0
//	12      8     counter value
//	20      4     CRC-32C (Castagnoli) of bytes 0..19
const (
	// FileMagic starts every counter file.
	FileMagic = "AIRLKCTR"
	// FileVersion is the only record format version accepted.
	FileVersion = 1
	// FileSize is the exact size of a counter file, and the read limit.
	FileSize = 24
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// marshal encodes v as a counter file record.
func marshal(v uint64) []byte {
	b := make([]byte, 0, FileSize)
	b = append(b, FileMagic...)
	b = binary.BigEndian.AppendUint16(b, FileVersion)
	b = binary.BigEndian.AppendUint16(b, 0)
	b = binary.BigEndian.AppendUint64(b, v)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// parse decodes a counter file record strictly: exact length, magic,
// version, zero reserved field and checksum. Every failure wraps ErrCorrupt.
func parse(b []byte) (uint64, error) {
	if len(b) != FileSize {
		return 0, fmt.Errorf("%w: length %d, want %d", ErrCorrupt, len(b), FileSize)
	}
	if string(b[:8]) != FileMagic {
		return 0, fmt.Errorf("%w: bad magic %q", ErrCorrupt, b[:8])
	}
	if got := crc32.Checksum(b[:20], castagnoli); got != binary.BigEndian.Uint32(b[20:]) {
		return 0, fmt.Errorf("%w: checksum mismatch (stored %08x, computed %08x)", ErrCorrupt, binary.BigEndian.Uint32(b[20:]), got)
	}
	if v := binary.BigEndian.Uint16(b[8:]); v != FileVersion {
		return 0, fmt.Errorf("%w: unsupported version %d", ErrCorrupt, v)
	}
	if r := binary.BigEndian.Uint16(b[10:]); r != 0 {
		return 0, fmt.Errorf("%w: reserved field is %d, want 0", ErrCorrupt, r)
	}
	return binary.BigEndian.Uint64(b[12:]), nil
}

// File is a crash-safe, monotonic counter stored in one small file through
// durable.FS. It assumes it is the only writer of its file (one agent
// process); concurrent use within the process is safe.
type File struct {
	fsys durable.FS
	path string
	mu   sync.Mutex
}

var _ Counter = (*File)(nil)

// OpenFile opens the counter stored at path, creating it durably with value
// 0 if it is absent (its directory must exist). An existing file that does
// not parse is an error wrapping ErrCorrupt: it is never reset. Temp files
// left by a write interrupted by a crash are removed.
func OpenFile(fsys durable.FS, path string) (*File, error) {
	c := &File{fsys: fsys, path: path}
	if _, err := c.Read(); errors.Is(err, fs.ErrNotExist) {
		if err := durable.WriteFile(fsys, path, marshal(0), 0o600); err != nil {
			return nil, fmt.Errorf("failed to create counter file: %w", err)
		}
	} else if err != nil {
		return nil, err
	}
	if err := c.removeTemps(); err != nil {
		return nil, err
	}
	return c, nil
}

// removeTemps removes path+".tmp-*" files left by an interrupted WriteFile.
func (c *File) removeTemps() error {
	dir, base := filepath.Split(c.path)
	if dir == "" {
		dir = "."
	}
	ents, err := c.fsys.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("failed to list counter directory: %w", err)
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), base+".tmp-") && !e.IsDir() {
			if err := c.fsys.Remove(filepath.Join(dir, e.Name())); err != nil {
				return fmt.Errorf("failed to remove stale counter temp file: %w", err)
			}
		}
	}
	return nil
}

// Read returns the counter value, read from the file every time so that
// corruption is noticed (and fails closed) as soon as it happens. A missing
// file is an error wrapping fs.ErrNotExist.
func (c *File) Read() (uint64, error) {
	b, err := durable.ReadFile(c.fsys, c.path, FileSize)
	if errors.Is(err, durable.ErrTooLarge) {
		return 0, fmt.Errorf("failed to read counter file %q: %w: %w", c.path, ErrCorrupt, err)
	}
	if err != nil {
		return 0, fmt.Errorf("failed to read counter file: %w", err)
	}
	v, err := parse(b)
	if err != nil {
		return 0, fmt.Errorf("failed to read counter file %q: %w", c.path, err)
	}
	return v, nil
}

// Raise sets the counter to v if v is above the current value and returns
// once the new value is durable. v equal to the current value is a no-op;
// v below it returns an error wrapping ErrDecrease and changes nothing. If
// the current value cannot be read (including ErrCorrupt), nothing is
// written.
func (c *File) Raise(v uint64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	cur, err := c.Read()
	if err != nil {
		return err
	}
	switch {
	case v < cur:
		return fmt.Errorf("refusing to lower counter from %d to %d, which would allow a rollback: %w", cur, v, ErrDecrease)
	case v == cur:
		return nil
	}
	if err := durable.WriteFile(c.fsys, c.path, marshal(v), 0o600); err != nil {
		return fmt.Errorf("failed to raise counter to %d: %w", v, err)
	}
	return nil
}
