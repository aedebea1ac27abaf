package boot

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/airlockfw/airlock/internal/durable"
)

// U-Boot environment sizes.
const (
	// DefaultEnvSize is used when Config.EnvSize is 0 (U-Boot's common
	// CONFIG_ENV_SIZE of 0x4000).
	DefaultEnvSize = 0x4000
	// MinEnvSize is the smallest accepted Config.EnvSize.
	MinEnvSize = 0x100
	// MaxEnvSize is the largest accepted Config.EnvSize. The environment is
	// read into memory whole, so this also bounds memory use.
	MaxEnvSize = 1 << 20
)

// U-Boot environment header layout (include/env_internal.h, env_t): a
// little-endian CRC32 (IEEE) of the data area, then, in the redundant scheme
// only, one flags byte, then the data area.
const (
	ubootCRCSize   = 4
	ubootFlagsSize = 1
)

// ubootCopy locates one copy of the environment.
type ubootCopy struct {
	path string
	off  int64
}

// ubootControl is the "uboot-env" backend.
//
// The data area holds "name=value\0" entries and an empty entry ("\0") that
// ends the list; the rest is padding, ignored on Load (as by U-Boot) and
// written as zeros by Airlock. With a redundant copy, the flags
// byte is an incrementing 8-bit serial number, as U-Boot (env_import_redund)
// and libubootenv use for files and block devices: of two copies with valid
// CRCs, the one with the greater flags is current, except that 0x00 is newer
// than 0xFF (wrap-around); equal flags select the primary copy. A copy with a
// bad CRC is ignored if the other is valid. Store writes the non-current copy
// in place with flags = current+1 and syncs it.
type ubootControl struct {
	fsys   durable.FS
	copies []ubootCopy // one or two
	size   int64
}

func newUBootControl(fsys durable.FS, cfg Config) (*ubootControl, error) {
	size := cfg.EnvSize
	if size == 0 {
		size = DefaultEnvSize
	}
	if size < MinEnvSize || size > MaxEnvSize {
		return nil, fmt.Errorf("uboot-env: env size %#x out of range [%#x, %#x]: %w", size, MinEnvSize, MaxEnvSize, ErrConfig)
	}
	if cfg.Offset < 0 || cfg.RedundOffset < 0 {
		return nil, fmt.Errorf("uboot-env: negative offset: %w", ErrConfig)
	}
	c := &ubootControl{fsys: fsys, size: size, copies: []ubootCopy{{cfg.Path, cfg.Offset}}}
	if cfg.RedundPath == "" {
		if cfg.RedundOffset != 0 {
			return nil, fmt.Errorf("uboot-env: redundant offset without a redundant path: %w", ErrConfig)
		}
		return c, nil
	}
	if filepath.Clean(cfg.RedundPath) == filepath.Clean(cfg.Path) &&
		cfg.Offset < cfg.RedundOffset+size && cfg.RedundOffset < cfg.Offset+size {
		return nil, fmt.Errorf("uboot-env: copies at %#x and %#x of %q overlap (size %#x): %w",
			cfg.Offset, cfg.RedundOffset, cfg.Path, size, ErrConfig)
	}
	c.copies = append(c.copies, ubootCopy{cfg.RedundPath, cfg.RedundOffset})
	return c, nil
}

func (c *ubootControl) Name() string { return BackendUBootEnv }

func (c *ubootControl) redundant() bool { return len(c.copies) == 2 }

func (c *ubootControl) headerSize() int {
	if c.redundant() {
		return ubootCRCSize + ubootFlagsSize
	}
	return ubootCRCSize
}

// ubootImage is one copy as read from storage.
type ubootImage struct {
	crcOK bool
	flags byte
	data  []byte // data area (after CRC and flags)
}

// readCopy reads copy i. A file too short to hold the copy yields an image
// with crcOK false (as a torn or erased copy would), other I/O errors fail.
func (c *ubootControl) readCopy(i int) (ubootImage, error) {
	cp := c.copies[i]
	f, err := c.fsys.OpenFile(cp.path, os.O_RDONLY, 0)
	if err != nil {
		return ubootImage{}, fmt.Errorf("uboot-env: failed to open copy %d: %w", i, err)
	}
	defer f.Close()
	buf := make([]byte, c.size)
	n, err := f.ReadAt(buf, cp.off)
	if n < len(buf) {
		if err == nil || errors.Is(err, io.EOF) {
			return ubootImage{}, nil
		}
		return ubootImage{}, fmt.Errorf("uboot-env: failed to read copy %d: %w", i, err)
	}
	return decodeUBootImage(buf, c.redundant()), nil
}

func decodeUBootImage(buf []byte, redundant bool) ubootImage {
	hdr := ubootCRCSize
	var img ubootImage
	if redundant {
		img.flags = buf[ubootCRCSize]
		hdr += ubootFlagsSize
	}
	img.data = buf[hdr:]
	img.crcOK = binary.LittleEndian.Uint32(buf) == crc32.ChecksumIEEE(img.data)
	return img
}

// newerFlags reports whether flags a is newer than b in U-Boot's incremental
// scheme.
func newerFlags(a, b byte) bool {
	switch {
	case a == 0x00 && b == 0xFF:
		return true
	case a == 0xFF && b == 0x00:
		return false
	}
	return a > b
}

// current reads the copies and returns the index and image of the current
// one.
func (c *ubootControl) current() (int, ubootImage, error) {
	imgs := make([]ubootImage, len(c.copies))
	for i := range c.copies {
		img, err := c.readCopy(i)
		if err != nil {
			return 0, ubootImage{}, err
		}
		imgs[i] = img
	}
	if !c.redundant() {
		if !imgs[0].crcOK {
			return 0, ubootImage{}, fmt.Errorf("uboot-env: %w", ErrBadCRC)
		}
		return 0, imgs[0], nil
	}
	switch {
	case imgs[0].crcOK && imgs[1].crcOK:
		if newerFlags(imgs[1].flags, imgs[0].flags) {
			return 1, imgs[1], nil
		}
		return 0, imgs[0], nil
	case imgs[0].crcOK:
		return 0, imgs[0], nil
	case imgs[1].crcOK:
		return 1, imgs[1], nil
	}
	return 0, ubootImage{}, fmt.Errorf("uboot-env: both copies: %w", ErrBadCRC)
}

func (c *ubootControl) Load() (State, error) {
	_, img, err := c.current()
	if err != nil {
		return State{}, err
	}
	e, err := parseUBootData(img.data)
	if err != nil {
		return State{}, err
	}
	return stateFromEnv(BackendUBootEnv, e)
}

func (c *ubootControl) Store(st State) error {
	if err := st.Validate(); err != nil {
		return err
	}
	cur, img, err := c.current()
	if err != nil {
		return err
	}
	e, err := parseUBootData(img.data)
	if err != nil {
		return err
	}
	applyState(e, st.normalized())
	target := cur
	if c.redundant() {
		target = 1 - cur
	}
	return c.writeCopy(target, e, img.flags+1, false)
}

// init writes st into every copy: in the redundant scheme the redundant copy
// gets flags 0 and then the primary flags 1, so the primary is current.
func (c *ubootControl) init(st State) error {
	e := newEnv()
	applyState(e, st.normalized())
	for i := len(c.copies) - 1; i >= 0; i-- {
		if err := c.writeCopy(i, e, byte(i^1), true); err != nil {
			return err
		}
	}
	return nil
}

// writeCopy encodes e into copy i in place and syncs it. With create, a
// missing regular file is created (and its directory synced).
func (c *ubootControl) writeCopy(i int, e *env, flags byte, create bool) error {
	buf := make([]byte, c.size)
	hdr := c.headerSize()
	if err := marshalUBootData(buf[hdr:], e); err != nil {
		return err
	}
	binary.LittleEndian.PutUint32(buf, crc32.ChecksumIEEE(buf[hdr:]))
	if c.redundant() {
		buf[ubootCRCSize] = flags
	}
	cp := c.copies[i]
	flag := os.O_RDWR
	created := false
	if create {
		if _, err := c.fsys.Stat(cp.path); errors.Is(err, fs.ErrNotExist) {
			flag |= os.O_CREATE
			created = true
		}
	}
	f, err := c.fsys.OpenFile(cp.path, flag, 0o600)
	if err != nil {
		return fmt.Errorf("uboot-env: failed to open copy %d for writing: %w", i, err)
	}
	if _, err := f.WriteAt(buf, cp.off); err != nil {
		f.Close()
		return fmt.Errorf("uboot-env: failed to write copy %d: %w", i, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("uboot-env: failed to sync copy %d: %w", i, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("uboot-env: failed to close copy %d: %w", i, err)
	}
	if created {
		if err := c.fsys.SyncDir(filepath.Dir(cp.path)); err != nil {
			return fmt.Errorf("uboot-env: failed to sync directory of copy %d: %w", i, err)
		}
	}
	return nil
}

// parseUBootData parses a U-Boot environment data area strictly: entries
// "name=value\0" (checkName, checkValue, no duplicates, at most
// MaxVariables), then an empty entry ending the list.
func parseUBootData(data []byte) (*env, error) {
	const f = BackendUBootEnv
	e := newEnv()
	p := 0
	for {
		if p >= len(data) {
			return nil, syntaxErr(f, p, "no end-of-environment marker (empty entry)")
		}
		if data[p] == 0 {
			p++
			break
		}
		n := 0
		for p+n < len(data) && data[p+n] != 0 {
			n++
		}
		if p+n == len(data) {
			return nil, syntaxErr(f, p, "entry not NUL-terminated")
		}
		entry := string(data[p : p+n])
		eq := 0
		for eq < len(entry) && entry[eq] != '=' {
			eq++
		}
		if eq == len(entry) {
			return nil, syntaxErr(f, p, "entry without '='")
		}
		name, value := entry[:eq], entry[eq+1:]
		if msg := checkName(name); msg != "" {
			return nil, syntaxErr(f, p, "%s", msg)
		}
		if msg := checkValue(name, value); msg != "" {
			return nil, syntaxErr(f, p, "%s", msg)
		}
		if _, dup := e.get(name); dup {
			return nil, syntaxErr(f, p, "duplicate variable %q", name)
		}
		if len(e.vars) >= MaxVariables {
			return nil, syntaxErr(f, p, "more than %d variables", MaxVariables)
		}
		e.vars = append(e.vars, envVar{name, value})
		p += n + 1
	}
	// Bytes after the end marker are ignored, as U-Boot's himport_r does:
	// they are covered by the CRC but carry no meaning, and real writers
	// leave anything there (mkenvimage pads with 0xff; libubootenv 0.3.2
	// leaves uninitialized heap bytes). Store rewrites them as zeros.
	return e, nil
}

// marshalUBootData encodes e into dst (the whole data area, zero padded), or
// fails with ErrEnvFull.
func marshalUBootData(dst []byte, e *env) error {
	p := 0
	for _, v := range e.vars {
		if msg := checkName(v.name); msg != "" {
			return fmt.Errorf("uboot-env: %s: %w", msg, ErrInvalidState)
		}
		if msg := checkValue(v.name, v.value); msg != "" {
			return fmt.Errorf("uboot-env: %s: %w", msg, ErrInvalidState)
		}
		need := len(v.name) + 1 + len(v.value) + 1
		if p+need+1 > len(dst) {
			return fmt.Errorf("uboot-env: variables do not fit the %d-byte data area: %w", len(dst), ErrEnvFull)
		}
		p += copy(dst[p:], v.name)
		dst[p] = '='
		p++
		p += copy(dst[p:], v.value)
		dst[p] = 0
		p++
	}
	clear(dst[p:])
	return nil
}
