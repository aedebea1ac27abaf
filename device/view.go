package device

import (
	"github.com/airlockfw/airlock/device/boot"
	"github.com/airlockfw/airlock/release"
	"github.com/airlockfw/airlock/trust"
)

// Read-only views of the device's state for the agent, which decides what
// to install: they read through the device's own boot control, counter and
// trusted store, so nothing outside this package knows the state layout.

// BootState returns the boot control state.
func (d *Device) BootState() (boot.State, error) { return d.ctl.Load() }

// Counter returns the anti-rollback counter.
func (d *Device) Counter() (uint64, error) { return d.ctr.Read() }

// PolicyDevice describes the device as release.Check sees it: model,
// hardware revision, channel, product, environment, the running (committed)
// version and the anti-rollback counter — exactly what Install checks.
func (d *Device) PolicyDevice() (release.Device, error) {
	f, err := d.Facts()
	return f.Device, err
}

// PreviewStore returns a trust.Store that reads the device's trusted
// metadata and keeps writes in memory, so a caller can refresh metadata to
// choose a release without changing the device's trusted state (only
// Install persists metadata). Begin uses the same overlay and commits it.
func (d *Device) PreviewStore() trust.Store { return d.trustOverlay() }

// trustOverlay returns an overlay over the device's trusted metadata
// (trust.Overlay): writes stay in memory until Commit.
func (d *Device) trustOverlay() *trust.Overlay {
	return trust.NewOverlay(trust.NewDirStore(d.fsys, d.statePath(trustDir)))
}
