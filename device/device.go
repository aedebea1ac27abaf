package device

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"time"

	"github.com/airlockfw/airlock/device/boot"
	"github.com/airlockfw/airlock/device/counter"
	"github.com/airlockfw/airlock/internal/durable"
	"github.com/airlockfw/airlock/trust"
)

// Options are the knobs of a Device that are not part of its config. The
// zero value is the production default.
type Options struct {
	// Now is the clock used for metadata expiry when installing (nil:
	// time.Now). Booting never checks expiry.
	Now func() time.Time
	// HealthOutput receives the health command's stdout and stderr (nil:
	// discarded).
	HealthOutput io.Writer
}

// Device is one device: its config, its state directory, slots, boot
// control and anti-rollback counter, all accessed through one durable.FS.
// A Device is not safe for concurrent use, and only one process may operate
// a device at a time.
type Device struct {
	fsys        durable.FS
	cfg         *Config
	opts        Options
	ctl         boot.Control
	ctr         *counter.File
	factoryRoot []byte
}

// ErrNotProvisioned means the device state directory is missing pieces
// (run Provision / `airlock device init`).
var ErrNotProvisioned = errors.New("device is not provisioned")

// Open opens a provisioned device. It reads the factory root, opens the boot
// control and the counter, and removes temp files an interrupted write left
// in the state directory.
func Open(fsys durable.FS, cfg *Config, opts Options) (*Device, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	// State files are never reached through a symbolic link planted in
	// the state directory (durable.Confine).
	fsys = durable.Confine(fsys, cfg.Path(cfg.StateDir))
	d := &Device{fsys: fsys, cfg: cfg, opts: opts}
	root, err := durable.ReadFile(fsys, cfg.Path(cfg.Root), trust.MaxRootSize)
	if err != nil {
		return nil, fmt.Errorf("failed to read factory root: %w", err)
	}
	d.factoryRoot = root
	if _, err := fsys.Stat(d.statePath(trustDir, "root.json")); err != nil {
		return nil, fmt.Errorf("%w: no trusted metadata in %s: %w", ErrNotProvisioned, d.statePath(trustDir), err)
	}
	if d.ctl, err = boot.Open(fsys, cfg.bootConfig()); err != nil {
		return nil, err
	}
	if d.ctr, err = counter.OpenFile(fsys, d.statePath(counterFile)); err != nil {
		return nil, fmt.Errorf("failed to open anti-rollback counter: %w", err)
	}
	for _, dir := range []string{d.statePath(), d.statePath(trustDir)} {
		if err := removeTemps(fsys, dir); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// OpenConfig loads the config at path and opens the device.
func OpenConfig(fsys durable.FS, path string, opts Options) (*Device, error) {
	cfg, err := LoadConfig(fsys, path)
	if err != nil {
		return nil, err
	}
	return Open(fsys, cfg, opts)
}

// removeTemps removes "*.tmp-*" files left by durable.WriteFile calls that a
// crash interrupted. The counter's temps are left to the counter.
func removeTemps(fsys durable.FS, dir string) error {
	ents, err := fsys.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("failed to list %s: %w", dir, err)
	}
	removed := false
	for _, e := range ents {
		if !e.IsDir() && strings.Contains(e.Name(), ".tmp-") && !strings.HasPrefix(e.Name(), counterFile+".tmp-") {
			if err := fsys.Remove(path.Join(dir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("failed to remove stale temp file: %w", err)
			}
			removed = true
		}
	}
	if removed {
		return fsys.SyncDir(dir)
	}
	return nil
}

// Config returns the device config.
func (d *Device) Config() *Config { return d.cfg }

func (d *Device) now() time.Time {
	if d.opts.Now != nil {
		return d.opts.Now().UTC()
	}
	return time.Now().UTC()
}

func (d *Device) slotPath(s boot.Slot) (string, error) { return d.cfg.slotPath(s) }

// slotPath returns the path of slot s, resolved against Dir.
func (c *Config) slotPath(s boot.Slot) (string, error) {
	switch s {
	case boot.SlotA:
		return c.Path(c.Slots.A), nil
	case boot.SlotB:
		return c.Path(c.Slots.B), nil
	case boot.SlotRecovery:
		if c.Slots.Recovery != "" {
			return c.Path(c.Slots.Recovery), nil
		}
	}
	return "", fmt.Errorf("no slot %q on this device", s)
}

func otherSlot(s boot.Slot) boot.Slot {
	if s == boot.SlotA {
		return boot.SlotB
	}
	return boot.SlotA
}

// ProvisionOptions describe a new device.
type ProvisionOptions struct {
	// FactoryRoot is the trusted root metadata (written to cfg.Root unless a
	// file is already there with the same content).
	FactoryRoot []byte
	// CreateSlots creates missing A/B (and recovery) slots as files of
	// cfg.Slots.Size bytes (simulated devices).
	CreateSlots bool
	// Initial, if not nil, is the initial release installed into slot A and
	// committed (with its TargetPath).
	Initial trust.Source
	// InitialTarget is the target path of Initial.
	InitialTarget string
}

// Provision creates the state of a new device described by cfg: the factory
// root, the trusted metadata store seeded with it, the anti-rollback counter
// (0), the boot control (slot A good) and, optionally, file-backed slots and
// an initial release installed into slot A and committed. It refuses to
// provision over existing trusted metadata.
func Provision(ctx context.Context, fsys durable.FS, cfg *Config, po ProvisionOptions, opts Options) (*Device, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if len(po.FactoryRoot) == 0 || len(po.FactoryRoot) > trust.MaxRootSize {
		return nil, fmt.Errorf("factory root must be 1 to %d bytes", trust.MaxRootSize)
	}
	// The factory root must verify against itself before anything is written.
	ms := trust.NewMemStore()
	if err := ms.Put("root.json", po.FactoryRoot); err != nil {
		return nil, err
	}
	if _, err := trust.New(ms, &trust.MapSource{}, trust.Config{}); err != nil {
		return nil, fmt.Errorf("factory root: %w", err)
	}
	stateDir := cfg.Path(cfg.StateDir)
	fsys = durable.Confine(fsys, stateDir)
	trustStore := path.Join(stateDir, trustDir)
	if _, err := fsys.Stat(path.Join(trustStore, "root.json")); err == nil {
		return nil, fmt.Errorf("device state %s already holds trusted metadata; refusing to provision over it", stateDir)
	}
	if err := fsys.MkdirAll(trustStore, 0o755); err != nil {
		return nil, fmt.Errorf("failed to create state directory: %w", err)
	}
	rootPath := cfg.Path(cfg.Root)
	if err := fsys.MkdirAll(path.Dir(rootPath), 0o755); err != nil {
		return nil, err
	}
	if err := durable.WriteFile(fsys, rootPath, po.FactoryRoot, 0o444); err != nil {
		return nil, fmt.Errorf("failed to write factory root: %w", err)
	}
	if po.CreateSlots {
		for _, p := range []string{cfg.Slots.A, cfg.Slots.B, cfg.Slots.Recovery} {
			if p == "" {
				continue
			}
			if err := createSlotFile(fsys, cfg.Path(p), cfg.Slots.Size); err != nil {
				return nil, err
			}
		}
	}
	for _, s := range []boot.Slot{boot.SlotA, boot.SlotB, boot.SlotRecovery} {
		if s == boot.SlotRecovery && cfg.Slots.Recovery == "" {
			continue
		}
		if err := checkSlot(fsys, cfg, s); err != nil {
			return nil, err
		}
	}
	if err := boot.Init(fsys, cfg.bootConfig(), boot.State{Good: boot.SlotA, BootLimit: cfg.Boot.BootLimit}); err != nil {
		return nil, fmt.Errorf("failed to initialize boot control: %w", err)
	}
	if err := durable.WriteFile(fsys, path.Join(trustStore, "root.json"), po.FactoryRoot, 0o644); err != nil {
		return nil, fmt.Errorf("failed to seed trusted metadata: %w", err)
	}
	d, err := Open(fsys, cfg, opts)
	if err != nil {
		return nil, err
	}
	if po.Initial == nil {
		d.recordResult("init", "", "", nil, "provisioned without an image")
		return d, nil
	}
	u, err := d.Begin(ctx, po.Initial, InstallOptions{})
	if err != nil {
		return nil, fmt.Errorf("failed to install the initial image: %w", err)
	}
	in, err := u.Check(ctx, po.InitialTarget)
	if err != nil {
		return nil, fmt.Errorf("failed to install the initial image: %w", err)
	}
	if _, err := u.installInto(ctx, in, boot.SlotA); err != nil {
		return nil, fmt.Errorf("failed to install the initial image: %w", err)
	}
	if err := d.ctr.Raise(uint64(in.Release.SecurityVersion)); err != nil {
		return nil, err
	}
	rec, err := d.SlotRecord(boot.SlotA)
	if err != nil {
		return nil, err
	}
	rec.Status = StatusCommitted
	if err := d.writeSlotRecord(rec); err != nil {
		return nil, err
	}
	d.recordResult("init", boot.SlotA, in.Release.Version.String(), nil, "provisioned with "+in.Path)
	return d, nil
}

func createSlotFile(fsys durable.FS, name string, size int64) error {
	if _, err := fsys.Stat(name); err == nil {
		return nil
	}
	if err := fsys.MkdirAll(path.Dir(name), 0o755); err != nil {
		return err
	}
	f, err := fsys.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("failed to create slot: %w", err)
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return fmt.Errorf("failed to size slot: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return fsys.SyncDir(path.Dir(name))
}
