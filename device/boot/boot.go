// Package boot is Airlock's boot control: it records which A/B slot the
// bootloader boots, whether a freshly installed slot is on trial, how many
// trial boots were attempted, and which slots are known bad. Three backends
// store that State: "sim" (a small text file, for simulators and tests),
// "uboot-env" (the U-Boot environment, single or redundant copy, as read by
// U-Boot and by fw_printenv/fw_setenv) and "grubenv" (GRUB's 1024-byte
// environment block, as read by GRUB's load_env and grub-editenv).
//
// Threat model. The process using this package (the agent or installer) is
// trusted. The boot environment it reads is NOT: it is written by the
// bootloader, by other tools (fw_setenv, grub-editenv), may be torn by a power
// cut or corrupted on flash, and may be modified by anyone with write access
// to the device or file. Every backend therefore parses strictly, with named
// size limits (MaxEnvSize, MaxNameLen, MaxValueLen, MaxVariables,
// GrubEnvSize, MaxSimStateSize, MaxBootCounter), rejects anything ambiguous
// (duplicate variables, non-canonical numbers, unknown slot names, malformed
// padding) and reports which check failed with errors wrapping ErrCorrupt or
// ErrInvalidState. A CRC only detects accidents: it is not authentication.
// This package does not make the boot environment trustworthy; the boot
// verifier must re-verify the slot it is about to run against signed
// metadata regardless of what the environment says, so an attacker who can
// rewrite the environment can at worst select another verified slot or the
// recovery slot, never run unverified code.
//
// Power safety. All writes go through internal/durable. "sim" and "grubenv"
// replace the whole file (temp file, fsync, rename, fsync directory), so after
// a power cut Load returns the old or the new State. "uboot-env" with a
// redundant copy writes the older copy in place and syncs it; its CRC and
// incremented flag make it current only once completely written, so a power
// cut likewise leaves the old or the new State. A single-copy U-Boot
// environment is written in place and is NOT power-safe: a cut during the
// write leaves a copy with a bad CRC, which U-Boot replaces by its built-in
// default environment. Use a redundant environment on real devices.
package boot

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/airlockfw/airlock/internal/durable"
)

// Slot names a bootable slot.
type Slot string

// The slots a device can boot.
const (
	SlotA        Slot = "A"
	SlotB        Slot = "B"
	SlotRecovery Slot = "R"
)

// Backend names accepted in Config.Backend and returned by Control.Name.
const (
	BackendSim      = "sim"
	BackendUBootEnv = "uboot-env"
	BackendGrubEnv  = "grubenv"
)

// Limits applied to every boot environment and state this package reads.
const (
	// DefaultBootLimit is the number of trial boots allowed when
	// State.BootLimit is zero.
	DefaultBootLimit = 1
	// MaxBootCounter bounds bootcount and bootlimit (they fit an int32, as
	// U-Boot's bootcount does on 32-bit platforms).
	MaxBootCounter = 1<<31 - 1
	// MaxNameLen bounds the length of a variable name.
	MaxNameLen = 256
	// MaxValueLen bounds the length of a variable value.
	MaxValueLen = 64 << 10
	// MaxVariables bounds the number of variables in one environment.
	MaxVariables = 4096
)

var (
	// ErrCorrupt is wrapped by every error about malformed, truncated or
	// otherwise unparseable boot environments or state files.
	ErrCorrupt = errors.New("corrupt boot environment")
	// ErrBadCRC means the U-Boot environment's CRC32 does not match its
	// data (a torn write, flash corruption or tampering).
	ErrBadCRC = fmt.Errorf("crc32 mismatch: %w", ErrCorrupt)
	// ErrMissingVariable means a variable Airlock needs is absent: the
	// environment was never initialized with Init (or was reset to the
	// bootloader's default environment).
	ErrMissingVariable = fmt.Errorf("missing variable: %w", ErrCorrupt)
	// ErrInvalidState means a State breaks an invariant (see
	// State.Validate), whether passed to Store or decoded by Load.
	ErrInvalidState = errors.New("invalid boot state")
	// ErrEnvFull means the encoded environment does not fit its fixed size.
	ErrEnvFull = errors.New("boot environment full")
	// ErrConfig means a Config is unusable.
	ErrConfig = errors.New("invalid boot control config")
)

// SyntaxError reports where and why a boot environment failed to parse. It
// wraps ErrCorrupt (or a more specific sentinel that wraps it).
type SyntaxError struct {
	Format string // backend format: "sim", "uboot-env", "grubenv"
	Offset int    // byte offset of the problem within the parsed data
	Msg    string // which check failed
	Err    error  // ErrCorrupt or a sentinel wrapping it
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("%s: at byte %d: %s: %v", e.Format, e.Offset, e.Msg, e.Err)
}

func (e *SyntaxError) Unwrap() error { return e.Err }

func syntaxErr(format string, off int, msg string, args ...any) error {
	return &SyntaxError{Format: format, Offset: off, Msg: fmt.Sprintf(msg, args...), Err: ErrCorrupt}
}

// State is the boot-control state shared by Airlock and the bootloader, in
// the style of U-Boot's bootcount: after an install Trial names the new slot,
// the bootloader counts its boot attempts in BootCount and, once BootLimit
// attempts were made without Airlock committing the slot, boots Good again.
type State struct {
	Good      Slot   // last-known-good (committed) slot: SlotA or SlotB
	Trial     Slot   // slot tried after an install (SlotA or SlotB, not Good), "" if none
	BootCount int    // boot attempts of Trial counted so far (the bootloader counts before booting)
	BootLimit int    // attempts allowed for Trial before falling back; 0 means DefaultBootLimit
	Bad       []Slot // slots marked bad (SlotA, SlotB), sorted, no duplicates
}

func (s State) bootLimit() int {
	if s.BootLimit == 0 {
		return DefaultBootLimit
	}
	return s.BootLimit
}

func (s State) isBad(slot Slot) bool { return slices.Contains(s.Bad, slot) }

func other(s Slot) Slot {
	switch s {
	case SlotA:
		return SlotB
	case SlotB:
		return SlotA
	}
	return ""
}

// Next returns the slot the bootloader boots now, decided before it counts
// the attempt: U-Boot increments bootcount and runs altbootcmd once
// bootcount > bootlimit, that is when BootCount >= BootLimit before the
// increment, so BootLimit is the number of trial attempts. A stage running
// after a counting bootloader (uboot-env, grubenv) sees this attempt already
// counted and must decide with BootCount-1. Next is the first of:
//
//  1. Trial, if Trial is set, BootCount < BootLimit (DefaultBootLimit when
//     BootLimit is 0) and Trial is not in Bad;
//  2. Good, if Good is SlotA or SlotB and not in Bad;
//  3. the other of SlotA/SlotB than Good, if Good is SlotA or SlotB and that
//     other slot is not in Bad (this may be an exhausted Trial: a slot that
//     was tried is still better than none);
//  4. SlotRecovery.
//
// Next never fails: an invalid Good leads to SlotRecovery.
func (s State) Next() Slot {
	if s.Trial != "" && s.BootCount < s.bootLimit() && !s.isBad(s.Trial) {
		return s.Trial
	}
	if s.Good != SlotA && s.Good != SlotB {
		return SlotRecovery
	}
	if !s.isBad(s.Good) {
		return s.Good
	}
	if o := other(s.Good); !s.isBad(o) {
		return o
	}
	return SlotRecovery
}

// Validate reports whether s is a State that can be stored: Good is SlotA or
// SlotB; Trial is "" or the other of SlotA/SlotB; 0 <= BootCount <=
// MaxBootCounter; 0 <= BootLimit <= MaxBootCounter; Bad holds only SlotA and
// SlotB, sorted, without duplicates. Errors wrap ErrInvalidState.
func (s State) Validate() error {
	if s.Good != SlotA && s.Good != SlotB {
		return fmt.Errorf("good slot %q is not %q or %q: %w", s.Good, SlotA, SlotB, ErrInvalidState)
	}
	if s.Trial != "" && s.Trial != other(s.Good) {
		return fmt.Errorf("trial slot %q is not the slot other than good slot %q: %w", s.Trial, s.Good, ErrInvalidState)
	}
	if s.BootCount < 0 || s.BootCount > MaxBootCounter {
		return fmt.Errorf("boot count %d out of range [0, %d]: %w", s.BootCount, MaxBootCounter, ErrInvalidState)
	}
	if s.BootLimit < 0 || s.BootLimit > MaxBootCounter {
		return fmt.Errorf("boot limit %d out of range [0, %d]: %w", s.BootLimit, MaxBootCounter, ErrInvalidState)
	}
	for i, b := range s.Bad {
		if b != SlotA && b != SlotB {
			return fmt.Errorf("bad slot %q is not %q or %q: %w", b, SlotA, SlotB, ErrInvalidState)
		}
		if i > 0 && s.Bad[i-1] >= b {
			return fmt.Errorf("bad slots %q are not sorted and unique: %w", s.Bad, ErrInvalidState)
		}
	}
	return nil
}

// normalized returns s with BootLimit defaulted, the form Store writes and
// Load returns.
func (s State) normalized() State {
	s.BootLimit = s.bootLimit()
	s.Bad = slices.Clone(s.Bad)
	return s
}

// Control reads and writes the boot-control State in one backend.
type Control interface {
	// Name returns the backend name: "sim", "uboot-env" or "grubenv".
	Name() string
	// Load parses the stored State strictly. A corrupt environment is an
	// error wrapping ErrCorrupt, except where a redundant U-Boot copy
	// recovers it. BootLimit is always returned explicitly (never 0).
	Load() (State, error)
	// Store validates and writes st power-safely (see the package doc for
	// the single-copy U-Boot exception), preserving every variable it does
	// not own. A BootLimit of 0 is stored as DefaultBootLimit.
	Store(st State) error
}

// Config selects and locates a boot-control backend.
type Config struct {
	// Backend is "sim", "uboot-env" or "grubenv".
	Backend string
	// Path is the sim state file, the grubenv file, or the primary U-Boot
	// environment file or device.
	Path string
	// RedundPath is the U-Boot redundant copy (file or device; may equal
	// Path with a different RedundOffset). "" means a single copy.
	RedundPath string
	// Offset and RedundOffset locate each U-Boot copy inside its file or
	// device. Zero means the start.
	Offset, RedundOffset int64
	// EnvSize is the size of each U-Boot copy including the CRC (and flags
	// byte); 0 means DefaultEnvSize. Must match U-Boot's CONFIG_ENV_SIZE.
	EnvSize int64
}

// Open returns the Control described by cfg. It checks cfg but does not read
// the environment; Load and Store do.
func Open(fsys durable.FS, cfg Config) (Control, error) {
	if cfg.Path == "" {
		return nil, fmt.Errorf("empty path: %w", ErrConfig)
	}
	switch cfg.Backend {
	case BackendSim:
		if err := noUBootFields(cfg); err != nil {
			return nil, err
		}
		return &simControl{fsys: fsys, path: cfg.Path}, nil
	case BackendGrubEnv:
		if err := noUBootFields(cfg); err != nil {
			return nil, err
		}
		return &grubControl{fsys: fsys, path: cfg.Path}, nil
	case BackendUBootEnv:
		return newUBootControl(fsys, cfg)
	}
	return nil, fmt.Errorf("unknown backend %q (want %q, %q or %q): %w",
		cfg.Backend, BackendSim, BackendUBootEnv, BackendGrubEnv, ErrConfig)
}

func noUBootFields(cfg Config) error {
	if cfg.RedundPath != "" || cfg.Offset != 0 || cfg.RedundOffset != 0 || cfg.EnvSize != 0 {
		return fmt.Errorf("backend %q takes only a path, not U-Boot offsets, sizes or a redundant copy: %w", cfg.Backend, ErrConfig)
	}
	return nil
}

// Init creates a fresh boot environment holding only st (device
// provisioning), replacing whatever was there: a sim state file or grubenv
// file is created or replaced; a U-Boot environment file is created if
// missing and every copy is overwritten, so variables of a previous
// environment are NOT kept (add them afterwards with fw_setenv, or build the
// environment with mkenvimage and use Store instead of Init).
func Init(fsys durable.FS, cfg Config, st State) error {
	if err := st.Validate(); err != nil {
		return err
	}
	c, err := Open(fsys, cfg)
	if err != nil {
		return err
	}
	switch c := c.(type) {
	case *simControl:
		return c.write(st)
	case *grubControl:
		return c.write(&grubBlock{warning: true, env: newEnv()}, st)
	case *ubootControl:
		return c.init(st)
	}
	panic("internal error: unhandled backend")
}

// slotList formats slots as "A,B".
func slotList(slots []Slot) string {
	var b strings.Builder
	for i, s := range slots {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(string(s))
	}
	return b.String()
}
