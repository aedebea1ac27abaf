package device

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/airlockfw/airlock/device/boot"
	"github.com/airlockfw/airlock/internal/durable"
)

// ErrSlot is wrapped by every refusal of a slot by the slot rule.
var ErrSlot = errors.New("unusable slot")

// The slot rule (docs/device.md, [slots]): a slot is
//
//   - a block device, named by any path: symbolic links are followed, as
//     /dev/disk/by-partlabel/… names are links. Its size (seek to its end)
//     must be at least slots.size for A and B; or
//   - a regular file inside the device directory (the config's directory),
//     reached without any symbolic link below that directory. Its size must
//     be exactly slots.size for A and B (init creates it so): a slot file
//     never grows or shrinks.
//
// Anything else is refused: a link to a regular file (it could point
// anywhere, e.g. at the trusted metadata or a system file), a regular file
// outside the device directory, a character device (/dev/null, /dev/zero
// would "accept" any image), a FIFO, a socket or a directory. The recovery
// slot follows the same rule, without the size comparison (its size is the
// factory's choice). The rule is checked at `device init` (Provision), before
// an install writes a slot, and before boot reads one.

// checkSlot checks the slot rule for slot s of cfg without writing
// anything.
func checkSlot(fsys durable.FS, cfg *Config, s boot.Slot) error {
	f, err := openSlot(fsys, cfg, s, os.O_RDONLY)
	if err != nil {
		return err
	}
	return f.Close()
}

// slotAt returns the slot whose configured path is name.
func (d *Device) slotAt(name string) (boot.Slot, error) {
	for _, s := range []boot.Slot{boot.SlotA, boot.SlotB, boot.SlotRecovery} {
		if p, err := d.slotPath(s); err == nil && p == name {
			return s, nil
		}
	}
	return "", fmt.Errorf("%w: %q is not a slot of this device", ErrSlot, name)
}

// openSlot opens slot s of cfg with flag (os.O_RDONLY or os.O_WRONLY) if it
// follows the slot rule, positioned at offset 0. Nothing is opened that is
// not a block device or a regular file (opening a FIFO or a character
// device can block or have side effects). The last element of a file slot
// is opened with NoFollow, so it cannot be swapped for a link between the
// check and the open; the type and size are checked on the open file.
func openSlot(fsys durable.FS, cfg *Config, s boot.Slot, flag int) (durable.File, error) {
	name, err := cfg.slotPath(s)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSlot, err)
	}
	refuse := func(format string, args ...any) error {
		return fmt.Errorf("%w: slot %s (%q) %s", ErrSlot, s, name, fmt.Sprintf(format, args...))
	}
	lfi, err := fsys.Lstat(name)
	if err != nil {
		return nil, fmt.Errorf("%w: slot %s: %w", ErrSlot, s, err)
	}
	link := lfi.Mode()&fs.ModeSymlink != 0
	fi, err := fsys.Stat(name)
	if err != nil {
		return nil, fmt.Errorf("%w: slot %s: %w", ErrSlot, s, err)
	}
	switch {
	case isBlockDevice(fi.Mode()):
	case fi.Mode().IsRegular():
		if link {
			return nil, refuse("is a symbolic link to a regular file: a file slot must be a regular file inside the device directory %q, not a link (a link could point anywhere)", cfg.Dir)
		}
		if err := fileSlotInside(fsys, cfg.Dir, name); err != nil {
			return nil, refuse("%v", err)
		}
		flag |= durable.NoFollow
	default:
		return nil, refuse("is a %s: a slot must be a block device or a regular file", describeMode(fi.Mode()))
	}
	f, err := fsys.OpenFile(name, flag, 0)
	if err != nil {
		return nil, fmt.Errorf("%w: failed to open slot %s: %w", ErrSlot, s, err)
	}
	ok := false
	defer func() {
		if !ok {
			f.Close()
		}
	}()
	ofi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("%w: failed to stat slot %s: %w", ErrSlot, s, err)
	}
	if ofi.Mode().Type() != fi.Mode().Type() {
		return nil, refuse("changed from a %s to a %s while it was opened", describeMode(fi.Mode()), describeMode(ofi.Mode()))
	}
	size := ofi.Size()
	if isBlockDevice(ofi.Mode()) {
		// A block device's stat size is 0: its size is where it ends.
		if size, err = f.Seek(0, io.SeekEnd); err != nil {
			return nil, fmt.Errorf("%w: failed to find the size of slot %s: %w", ErrSlot, s, err)
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return nil, fmt.Errorf("%w: failed to seek slot %s: %w", ErrSlot, s, err)
		}
	}
	if s != boot.SlotRecovery {
		switch {
		case isBlockDevice(ofi.Mode()) && size < cfg.Slots.Size:
			return nil, refuse("is a block device of %d bytes, smaller than slots.size %d", size, cfg.Slots.Size)
		case ofi.Mode().IsRegular() && size != cfg.Slots.Size:
			return nil, refuse("is a file of %d bytes, but slots.size is %d (a slot file has exactly slots.size bytes)", size, cfg.Slots.Size)
		}
	}
	ok = true
	return f, nil
}

// fileSlotInside checks that name is below dir and that no element of it
// below dir is a symbolic link.
func fileSlotInside(fsys durable.FS, dir, name string) error {
	absDir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	absName, err := filepath.Abs(name)
	if err != nil {
		return err
	}
	rel, err := filepath.Rel(absDir, absName)
	if err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return fmt.Errorf("is a regular file outside the device directory %q: a file slot must be inside it (use a block device otherwise)", dir)
	}
	p := dir
	for _, part := range strings.Split(rel, string(filepath.Separator)) {
		p = filepath.Join(p, part)
		fi, err := fsys.Lstat(p)
		if err != nil {
			return err
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			return fmt.Errorf("is reached through the symbolic link %q: a file slot must be inside the device directory %q without a link", p, dir)
		}
	}
	return nil
}

// isBlockDevice reports whether m is a block device (not a character
// device).
func isBlockDevice(m fs.FileMode) bool {
	return m&fs.ModeDevice != 0 && m&fs.ModeCharDevice == 0
}

func describeMode(m fs.FileMode) string {
	switch {
	case m&fs.ModeCharDevice != 0:
		return "character device"
	case m&fs.ModeDevice != 0:
		return "block device"
	case m.IsDir():
		return "directory"
	case m&fs.ModeNamedPipe != 0:
		return "named pipe"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeSymlink != 0:
		return "symbolic link"
	case m.IsRegular():
		return "regular file"
	}
	return "file of mode " + m.String()
}
