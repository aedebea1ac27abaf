package device

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"

	"github.com/airlockfw/airlock/device/boot"
	"github.com/airlockfw/airlock/internal/proc"
)

// ErrHealth is wrapped when the health check fails or times out.
var ErrHealth = errors.New("health check failed")

// HealthResult is the outcome of Health.
type HealthResult struct {
	Slot      boot.Slot
	Version   string
	Committed bool        // the trial slot was committed
	Rollback  bool        // the trial slot failed and was rolled back
	Check     error       // the health check's failure, nil if it passed
	Reboot    *BootResult // after a rollback: the boot into the previous slot
}

// Health runs the health check (the configured command, within its
// deadline) after a boot. After a trial boot, success commits the slot (boot
// control first: good = slot, no trial; then the anti-rollback counter is
// raised to the release's security version; then the slot record says
// committed) and failure or timeout marks the slot bad and reboots into the
// previous one (Boot). Without a pending trial it only runs the check.
//
// The returned error is nil when the check passed; it wraps ErrHealth when
// the check failed (res.Rollback says whether a trial was rolled back).
func (d *Device) Health(ctx context.Context) (*HealthResult, error) {
	res, err := d.health(ctx)
	slot, version, msg := boot.Slot(""), "", ""
	if res != nil {
		slot, version = res.Slot, res.Version
		switch {
		case res.Committed:
			msg = fmt.Sprintf("health check passed; committed slot %s", slot)
		case res.Check == nil:
			msg = "health check passed; no trial to commit"
		}
	}
	d.recordResult("health", slot, version, err, msg)
	return res, err
}

func (d *Device) health(ctx context.Context) (*HealthResult, error) {
	b, err := d.Booted()
	if err != nil {
		return nil, err
	}
	if b == nil {
		return nil, errors.New("the device has not booted: run `airlock device boot` first")
	}
	if b.Failed {
		return nil, fmt.Errorf("the last boot failed (%s): boot a slot first", b.Reason)
	}
	st, err := d.ctl.Load()
	if err != nil {
		return nil, fmt.Errorf("failed to read boot control: %w", err)
	}
	res := &HealthResult{Slot: b.Slot, Version: b.Version}
	checkErr := d.runHealthCheck(ctx, b)
	res.Check = checkErr
	pending := b.Trial && st.Trial == b.Slot
	if !pending {
		if checkErr != nil {
			return res, fmt.Errorf("%w: %w (no trial pending: nothing rolled back)", ErrHealth, checkErr)
		}
		return res, nil
	}
	if checkErr != nil {
		if err := d.markBad(&st, b.Slot, fmt.Sprintf("health check failed: %v", checkErr)); err != nil {
			return res, err
		}
		res.Rollback = true
		rb, err := d.Boot(ctx)
		res.Reboot = rb
		if err != nil {
			return res, fmt.Errorf("%w: %w; rolled back, but the reboot failed: %w", ErrHealth, checkErr, err)
		}
		return res, fmt.Errorf("%w: %w; slot %s marked bad, rolled back to slot %s (%s)", ErrHealth, checkErr, b.Slot, rb.Slot, rb.Version)
	}
	if err := d.commit(&st, b); err != nil {
		return res, err
	}
	res.Committed = true
	return res, nil
}

// commit makes the trial slot the good one. Order matters for power cuts:
// boot control, then counter, then records; Boot repairs the last two.
func (d *Device) commit(st *boot.State, b *Booted) error {
	m, err := d.verifyRelease(b.Slot)
	if err != nil {
		return fmt.Errorf("refusing to commit slot %s: %w", b.Slot, err)
	}
	st.Good, st.Trial, st.BootCount = b.Slot, "", 0
	st.Bad = slices.DeleteFunc(st.Bad, func(s boot.Slot) bool { return s == b.Slot })
	if err := d.ctl.Store(*st); err != nil {
		return fmt.Errorf("failed to commit slot %s in boot control: %w", b.Slot, err)
	}
	if err := d.repairCommit(b.Slot, m); err != nil {
		return err
	}
	b.Trial = false
	b.Reason = "committed after a passed health check"
	return d.writeBooted(b)
}

// runHealthCheck runs the configured command (no shell) with the deadline.
// No command means the check passes.
// The command's environment has AIRLOCK_SLOT (A or B), AIRLOCK_SLOT_PATH
// (the slot's file or block device), AIRLOCK_VERSION (the booted release)
// and AIRLOCK_TRIAL (1 while the slot is on trial) added.
func (d *Device) runHealthCheck(ctx context.Context, b *Booted) error {
	hc := d.cfg.Health
	if len(hc.Command) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, hc.Timeout)
	defer cancel()
	trial := "0"
	if b.Trial {
		trial = "1"
	}
	slotPath, _ := d.slotPath(b.Slot)
	env := append(os.Environ(), "AIRLOCK_SLOT="+string(b.Slot), "AIRLOCK_SLOT_PATH="+slotPath,
		"AIRLOCK_VERSION="+b.Version, "AIRLOCK_TRIAL="+trial)
	err := proc.Run(ctx, hc.Command, d.cfg.Dir, env, d.opts.HealthOutput)
	if ctx.Err() == context.DeadlineExceeded {
		return fmt.Errorf("%q did not finish within the %v deadline", hc.Command[0], hc.Timeout)
	}
	if err != nil {
		return fmt.Errorf("%q: %w", hc.Command[0], err)
	}
	return nil
}
