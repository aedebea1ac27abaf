package agent

import (
	"fmt"

	"github.com/airlockfw/airlock/device"
	"github.com/airlockfw/airlock/device/boot"
	"github.com/airlockfw/airlock/deviceapi"
	"github.com/airlockfw/airlock/release"
)

// deviceView is what the agent reads from the device's state: boot
// control, the last boot, the running release and the counter.
type deviceView struct {
	boot   boot.State
	booted *device.Booted
	// policy is the device as release.Check sees it (its Current is nil
	// when factory-fresh).
	policy release.Device
	// currentPath is the target path of the running release ("" when
	// factory-fresh or unknown).
	currentPath string
	rejected    []string // target paths installed and then rolled back
}

// state is the device state the agent reports at check-in:
// deviceapi.StateRebooted (booted the new slot on trial, health check
// pending), deviceapi.StateInstalled (installed, waiting for the reboot) or
// deviceapi.StateIdle (running its committed slot).
func (v *deviceView) state() string {
	switch {
	case v.trialBooted():
		return deviceapi.StateRebooted
	case v.boot.Trial != "":
		return deviceapi.StateInstalled
	}
	return deviceapi.StateIdle
}

// slot is the committed slot the agent reports at check-in
// (deviceapi.SlotA or SlotB), "" if boot control names neither.
func (v *deviceView) slot() string {
	switch v.boot.Good {
	case boot.SlotA:
		return deviceapi.SlotA
	case boot.SlotB:
		return deviceapi.SlotB
	}
	return ""
}

// trialBooted is true when the device booted a trial slot that was
// neither committed nor rolled back.
func (v *deviceView) trialBooted() bool {
	return v.booted != nil && v.booted.Trial && v.boot.Trial == v.booted.Slot
}

func (v *deviceView) currentVersion() string {
	if v.policy.Current == nil {
		return ""
	}
	return v.policy.Current.String()
}

// readDevice reads the device state the agent decides on.
func readDevice(d *device.Device) (*deviceView, error) {
	v := &deviceView{}
	var err error
	if v.boot, err = d.BootState(); err != nil {
		return nil, fmt.Errorf("failed to read boot control: %w", err)
	}
	if v.booted, err = d.Booted(); err != nil {
		return nil, err
	}
	if v.policy, err = d.PolicyDevice(); err != nil {
		return nil, err
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
