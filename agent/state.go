package agent

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"

	"github.com/airlockfw/airlock/device"
	"github.com/airlockfw/airlock/device/boot"
	"github.com/airlockfw/airlock/device/counter"
	"github.com/airlockfw/airlock/internal/durable"
	"github.com/airlockfw/airlock/release"
	"github.com/airlockfw/airlock/trust"
)

// Names inside the device state directory the agent reads (package device
// does not export them yet: see the workaround note in docs/agent.md).
const (
	deviceTrustDir    = "trust"
	deviceCounterFile = "counter"
)

// Device states sent at check-in (the server's device states).
const (
	StateIdle          = "idle"      // running a committed slot
	StateRebootPending = "installed" // installed, waiting for the reboot
	StateTrial         = "rebooted"  // booted the new slot, health check pending
)

// deviceView is what the agent reads from the device's state: boot
// control, the last boot, the running release and the counter.
type deviceView struct {
	boot    boot.State
	booted  *device.Booted
	current *release.Version // nil: factory-fresh
	// currentPath is the target path of the running release ("" when
	// factory-fresh or unknown).
	currentPath string
	counter     uint64
	rejected    []string // target paths installed and then rolled back
}

func (v *deviceView) state() string {
	switch {
	case v.trialBooted():
		return StateTrial
	case v.boot.Trial != "":
		return StateRebootPending
	}
	return StateIdle
}

// trialBooted is true when the device booted a trial slot that was
// neither committed nor rolled back.
func (v *deviceView) trialBooted() bool {
	return v.booted != nil && v.booted.Trial && v.boot.Trial == v.booted.Slot
}

func (v *deviceView) currentVersion() string {
	if v.current == nil {
		return ""
	}
	return v.current.String()
}

func bootControl(fsys durable.FS, cfg *device.Config) (boot.Control, error) {
	rp := cfg.Boot.RedundPath
	if rp != "" {
		rp = cfg.Path(rp)
	}
	return boot.Open(fsys, boot.Config{
		Backend: cfg.Boot.Backend, Path: cfg.Path(cfg.Boot.Path), RedundPath: rp,
		Offset: cfg.Boot.Offset, RedundOffset: cfg.Boot.RedundOffset, EnvSize: cfg.Boot.EnvSize,
	})
}

// readDevice reads the device state the agent decides on.
func readDevice(fsys durable.FS, d *device.Device) (*deviceView, error) {
	cfg := d.Config()
	ctl, err := bootControl(fsys, cfg)
	if err != nil {
		return nil, err
	}
	v := &deviceView{}
	if v.boot, err = ctl.Load(); err != nil {
		return nil, fmt.Errorf("failed to read boot control: %w", err)
	}
	if v.booted, err = d.Booted(); err != nil {
		return nil, err
	}
	ctr, err := counter.OpenFile(fsys, filepath.Join(cfg.Path(cfg.StateDir), deviceCounterFile))
	if err != nil {
		return nil, fmt.Errorf("failed to open anti-rollback counter: %w", err)
	}
	if v.counter, err = ctr.Read(); err != nil {
		return nil, fmt.Errorf("failed to read anti-rollback counter: %w", err)
	}
	for _, s := range []boot.Slot{boot.SlotA, boot.SlotB} {
		rec, err := d.SlotRecord(s)
		if err != nil {
			return nil, err
		}
		if rec == nil {
			continue
		}
		if s == v.boot.Good && rec.Status != device.StatusInvalid {
			cur, err := release.ParseVersion(rec.Version)
			if err != nil {
				return nil, fmt.Errorf("%w: slot %s version: %v", device.ErrCorruptState, s, err)
			}
			v.current = &cur
			v.currentPath = rec.TargetPath
		}
		// An invalid record that still names its release was installed
		// and then failed its boot verification or health check (a
		// failed download leaves no target path): do not retry it.
		if rec.Status == device.StatusInvalid && rec.TargetPath != "" && s != v.boot.Trial {
			v.rejected = append(v.rejected, rec.TargetPath)
		}
	}
	return v, nil
}

// policyDevice describes the device for release.Check.
func (v *deviceView) policyDevice(cfg *device.Config) release.Device {
	return release.Device{
		Model: cfg.Model, HWRev: cfg.HWRev, Channel: cfg.Channel, Product: cfg.Product,
		Current: v.current, SecurityCounter: v.counter,
	}
}

// overlayStore reads the device's trusted metadata and keeps writes in
// memory: the agent's own refresh (to choose a release) never changes the
// device's trusted state; only device.Install persists metadata.
type overlayStore struct {
	base trust.Store
	puts map[string][]byte
}

func newOverlayStore(fsys durable.FS, cfg *device.Config) *overlayStore {
	return &overlayStore{
		base: trust.NewDirStore(fsys, filepath.Join(cfg.Path(cfg.StateDir), deviceTrustDir)),
		puts: map[string][]byte{},
	}
}

func (o *overlayStore) Get(name string) ([]byte, error) {
	if d, ok := o.puts[name]; ok {
		return slices.Clone(d), nil
	}
	return o.base.Get(name)
}

func (o *overlayStore) Put(name string, data []byte) error {
	// Validate the name as the real stores do.
	if _, err := trust.NewMemStore().Get(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	o.puts[name] = slices.Clone(data)
	return nil
}
