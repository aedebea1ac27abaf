package device

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"

	"github.com/airlockfw/airlock/device/boot"
	"github.com/airlockfw/airlock/internal/durable"
)

// Names of the files of a device directory (see Layout), relative to it.
const (
	LayoutRoot       = "root.json"
	LayoutStateDir   = "state"
	LayoutSlotA      = "slot-a.img"
	LayoutSlotB      = "slot-b.img"
	LayoutSimBoot    = "bootstate"
	LayoutGrubEnv    = "grubenv"
	LayoutUBootEnv   = "uboot.env"
	LayoutUBootRedun = "uboot-redund.env"
)

// ErrNotEmpty is returned by Layout.Create for a directory that already
// holds files.
var ErrNotEmpty = errors.New("device directory is not empty")

// Layout is a self-contained device directory: DIR/device.toml, the
// factory root DIR/root.json, the state directory DIR/state, slots
// DIR/slot-a.img and DIR/slot-b.img (files), and the boot control file(s)
// of the backend. It is what `airlock device init --dir DIR` creates and
// every `--dir DIR` command opens; a real device instead keeps its config at
// DefaultConfigPath and names block devices in it.
type Layout struct {
	// Dir is the device directory; Create makes it absolute.
	Dir string
}

// ConfigPath returns DIR/device.toml.
func (l Layout) ConfigPath() string { return filepath.Join(l.Dir, ConfigFileName) }

// Config returns a config whose paths follow the layout, for the given
// boot backend (boot.BackendSim, BackendGrubEnv or BackendUBootEnv) and
// slot size; the caller fills in the device facts (model, hardware
// revision, product, …).
func (l Layout) Config(backend string, slotSize int64) (*Config, error) {
	cfg := &Config{
		Dir: l.Dir, Root: LayoutRoot, StateDir: LayoutStateDir,
		Slots: SlotsConfig{A: LayoutSlotA, B: LayoutSlotB, Size: slotSize},
		Boot:  BootConfig{Backend: backend},
	}
	switch backend {
	case boot.BackendSim:
		cfg.Boot.Path = LayoutSimBoot
	case boot.BackendGrubEnv:
		cfg.Boot.Path = LayoutGrubEnv
	case boot.BackendUBootEnv:
		cfg.Boot.Path, cfg.Boot.RedundPath = LayoutUBootEnv, LayoutUBootRedun
	default:
		return nil, fmt.Errorf("%w: boot backend %q: want %s, %s or %s", ErrConfig, backend, boot.BackendSim, boot.BackendUBootEnv, boot.BackendGrubEnv)
	}
	return cfg, nil
}

// Create provisions a device in the layout's directory, which must be
// empty or absent (else ErrNotEmpty): it creates the directory, provisions
// cfg (whose Dir it sets to the absolute directory) with file slots, and
// writes DIR/device.toml last, so a directory without device.toml is an
// unfinished init.
func (l Layout) Create(ctx context.Context, fsys durable.FS, cfg *Config, po ProvisionOptions, opts Options) (*Device, error) {
	abs, err := filepath.Abs(l.Dir)
	if err != nil {
		return nil, err
	}
	if ents, err := fsys.ReadDir(abs); err == nil && len(ents) > 0 {
		return nil, fmt.Errorf("%w: %s; refusing to create a device over it", ErrNotEmpty, l.Dir)
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	cfg.Dir = abs
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := fsys.MkdirAll(abs, 0o755); err != nil {
		return nil, err
	}
	po.CreateSlots = true
	d, err := Provision(ctx, fsys, cfg, po, opts)
	if err != nil {
		return nil, err
	}
	data, err := cfg.Marshal()
	if err != nil {
		return nil, err
	}
	if err := durable.WriteFile(fsys, Layout{Dir: abs}.ConfigPath(), data, 0o644); err != nil {
		return nil, err
	}
	return d, nil
}
