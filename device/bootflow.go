package device

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/airlockfw/airlock/device/boot"
	"github.com/airlockfw/airlock/internal/payload"
	"github.com/airlockfw/airlock/release"
	"github.com/airlockfw/airlock/trust"
	"github.com/airlockfw/airlock/verify"
)

var (
	// ErrNoBootableSlot means no slot (A, B, recovery) verified: the
	// device cannot boot.
	ErrNoBootableSlot = errors.New("no bootable slot")
	// ErrVerify is wrapped by every boot verification failure of a slot.
	ErrVerify = errors.New("slot verification failed")
)

// BootResult says which slot booted and why.
type BootResult struct {
	Slot    boot.Slot
	Trial   bool   // the slot is on trial: run Health to commit it
	Version string // release version of the booted slot
	Reason  string // why this slot
	// Fallbacks lists, in order, the slots that were skipped and why.
	Fallbacks []string
}

// Boot plays the bootloader's verified-boot stage: it reads the boot
// control, picks the slot (Trial while attempts remain, else Good, else the
// other slot, else recovery), counts a trial attempt before verifying it,
// re-verifies the slot's image against its stored signed metadata, the
// factory root and the anti-rollback counter (never against expiry), and
// falls back when verification fails or the trial attempts are exhausted,
// marking the failed slot bad. Booting the committed slot also repairs an
// interrupted commit (raises the counter to its security version,
// idempotently). It records what booted in booted.json, and a failed boot
// there too (Booted.Failed), so status never shows an earlier boot as the
// last one.
func (d *Device) Boot(ctx context.Context) (*BootResult, error) {
	res, err := d.boot(ctx)
	if err != nil {
		b := &Booted{Failed: true, Reason: err.Error()}
		if res != nil {
			b.Fallbacks = res.Fallbacks
		}
		_ = d.writeBooted(b) // best effort, as recordResult: the boot failed either way
		d.recordResult("boot", "", "", err, "")
		return res, err
	}
	d.recordResult("boot", res.Slot, res.Version, nil, fmt.Sprintf("booted slot %s: %s", res.Slot, res.Reason))
	return res, nil
}

func (d *Device) boot(ctx context.Context) (*BootResult, error) {
	st, err := d.ctl.Load()
	if err != nil {
		return nil, fmt.Errorf("failed to read boot control: %w", err)
	}
	res := &BootResult{}
	// U-Boot's bootcount and the shipped grub.cfg count each trial attempt
	// before booting it, so this boot's attempt is already in BootCount and
	// the trial is still on while BootCount <= BootLimit (U-Boot: altbootcmd
	// once bootcount > bootlimit). Without a bootloader (sim) this stage
	// plays the bootloader: it decides, then counts.
	counted := d.ctl.Name() != boot.BackendSim
	// Each iteration either boots or removes one candidate (A, B), so three
	// rounds reach recovery.
	for range 4 {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		pick := st
		if counted && pick.BootCount > 0 {
			pick.BootCount-- // Next decides before the count
		}
		slot := pick.Next()
		if st.Trial != "" && slot != st.Trial {
			// The trial slot was not committed within its attempts (or
			// is bad): roll it back.
			why := fmt.Sprintf("trial slot %s was not committed after %d boot attempt(s)", st.Trial, st.BootCount)
			res.Fallbacks = append(res.Fallbacks, why)
			if err := d.markBad(&st, st.Trial, why); err != nil {
				return nil, err
			}
			continue
		}
		if slot == boot.SlotRecovery {
			if d.cfg.Slots.Recovery == "" {
				return res, fmt.Errorf("%w: %s", ErrNoBootableSlot, strings.Join(res.Fallbacks, "; "))
			}
			m, err := d.verifySlot(boot.SlotRecovery)
			if err != nil {
				res.Fallbacks = append(res.Fallbacks, fmt.Sprintf("recovery slot: %v", err))
				return res, fmt.Errorf("%w: %s", ErrNoBootableSlot, strings.Join(res.Fallbacks, "; "))
			}
			res.Slot, res.Version, res.Reason = slot, m.Version.String(), "both A and B failed; booting recovery"
			return res, d.writeBooted(&Booted{Slot: slot, Version: res.Version, Reason: res.Reason, Fallbacks: res.Fallbacks})
		}
		trial := slot == st.Trial
		if trial && !counted {
			// Count the attempt before running it, as a bootloader does.
			st.BootCount++
			if err := d.ctl.Store(st); err != nil {
				return nil, fmt.Errorf("failed to count trial boot attempt: %w", err)
			}
		}
		m, err := d.verifySlot(slot)
		if err != nil {
			why := fmt.Sprintf("slot %s: %v", slot, err)
			res.Fallbacks = append(res.Fallbacks, why)
			if err := d.markBad(&st, slot, why); err != nil {
				return nil, err
			}
			continue
		}
		res.Slot, res.Trial, res.Version = slot, trial, m.Version.String()
		switch {
		case trial:
			res.Reason = fmt.Sprintf("trial boot of newly installed slot (attempt %d of %d); run health to commit", st.BootCount, st.BootLimit)
		case slot == st.Good:
			res.Reason = "committed slot verified"
		default:
			// Good failed and this slot verified: it becomes the good one.
			res.Reason = fmt.Sprintf("fallback: slot %s failed, slot %s verified", st.Good, slot)
			st.Good = slot
			st.Bad = slices.DeleteFunc(st.Bad, func(s boot.Slot) bool { return s == slot })
			if err := d.ctl.Store(st); err != nil {
				return nil, fmt.Errorf("failed to record fallback: %w", err)
			}
		}
		if len(res.Fallbacks) > 0 && slot == st.Good {
			res.Reason = "fallback: " + strings.Join(res.Fallbacks, "; ") + "; booted verified slot " + string(slot)
		}
		if !trial {
			if err := d.repairCommit(slot, m); err != nil {
				return nil, err
			}
		}
		if err := d.writeBooted(&Booted{Slot: slot, Trial: trial, Version: res.Version, Reason: res.Reason, Fallbacks: res.Fallbacks}); err != nil {
			return nil, err
		}
		return res, nil
	}
	return res, fmt.Errorf("%w: %s", ErrNoBootableSlot, strings.Join(res.Fallbacks, "; "))
}

// markBad durably takes slot out of service: its record becomes invalid
// (kept for diagnosis), it joins st.Bad, and a trial of it ends.
func (d *Device) markBad(st *boot.State, slot boot.Slot, why string) error {
	if rec, err := d.SlotRecord(slot); err == nil && rec != nil && rec.Status != StatusInvalid {
		rec.Status, rec.Reason = StatusInvalid, why
		if err := d.writeSlotRecord(rec); err != nil {
			return err
		}
	}
	if st.Trial == slot {
		st.Trial, st.BootCount = "", 0
	}
	if !slices.Contains(st.Bad, slot) {
		st.Bad = append(st.Bad, slot)
		slices.Sort(st.Bad)
	}
	if err := d.ctl.Store(*st); err != nil {
		return fmt.Errorf("failed to mark slot %s bad: %w", slot, err)
	}
	return nil
}

// repairCommit finishes a commit a power cut interrupted: the committed
// slot's security version is raised into the counter (Raise is idempotent)
// and its record says committed.
func (d *Device) repairCommit(slot boot.Slot, m *release.Metadata) error {
	if err := d.ctr.Raise(uint64(m.SecurityVersion)); err != nil {
		return fmt.Errorf("failed to raise anti-rollback counter: %w", err)
	}
	rec, err := d.SlotRecord(slot)
	if err != nil {
		return err
	}
	if rec != nil && rec.Status == StatusInstalled {
		rec.Status, rec.Reason = StatusCommitted, ""
		return d.writeSlotRecord(rec)
	}
	return nil
}

// verifyRelease verifies the stored metadata of slot from the factory root
// (no expiry check) and the anti-rollback counter, and returns the release.
func (d *Device) verifyRelease(slot boot.Slot) (*release.Metadata, error) {
	rec, err := d.SlotRecord(slot)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrVerify, err)
	}
	if rec == nil {
		return nil, fmt.Errorf("%w: no slot record (empty slot)", ErrVerify)
	}
	if rec.Status == StatusInvalid {
		return nil, fmt.Errorf("%w: slot is marked invalid: %s", ErrVerify, rec.Reason)
	}
	delegated := make([]trust.DelegatedRole, len(rec.Delegated))
	for i, r := range rec.Delegated {
		delegated[i] = trust.DelegatedRole{Name: r.Name, Data: r.Data}
	}
	tf, err := trust.VerifyBootChain(d.factoryRoot, rec.RootChain, rec.Targets, delegated, rec.TargetPath)
	if err != nil {
		return nil, fmt.Errorf("%w: stored metadata does not verify from the factory root: %w", ErrVerify, err)
	}
	if tf.Custom == nil {
		return nil, fmt.Errorf("%w: %w", ErrVerify, release.ErrNoMetadata)
	}
	m, err := release.ParseCustom([]byte(*tf.Custom))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrVerify, err)
	}
	if err := release.CheckTargetPath(m, rec.TargetPath); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrVerify, err)
	}
	if m.Product.String() != d.cfg.Product || !slices.Contains(m.Models, d.cfg.Model) || !m.HWRev.Contains(d.cfg.HWRev) {
		return nil, fmt.Errorf("%w: release %s is not for this device (product %q, model %q, hw_rev %d)", ErrVerify, rec.TargetPath, d.cfg.Product, d.cfg.Model, d.cfg.HWRev)
	}
	ctr, err := d.ctr.Read()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrVerify, err)
	}
	if uint64(m.SecurityVersion) < ctr {
		return nil, fmt.Errorf("%w: %w: security version %d is below the anti-rollback counter %d", ErrVerify, release.ErrSecurityVersion, m.SecurityVersion, ctr)
	}
	return m, nil
}

// verifySlot is verifyRelease plus the SHA-256 of the installed image read
// back from the slot.
func (d *Device) verifySlot(slot boot.Slot) (*release.Metadata, error) {
	m, err := d.verifyRelease(slot)
	if err != nil {
		return nil, err
	}
	f, err := openSlot(d.fsys, d.cfg, slot, os.O_RDONLY) // the slot rule (slots.go)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrVerify, err)
	}
	defer f.Close()
	if e, ok := verify.IndexedOf(m, 0); ok {
		// Schema 2: the tree against the signed root, then every block
		// against the tree on every core; with boot.verify = "tree" only
		// the tree (dm-verity checks each block when it is read).
		if err := payload.CheckSlot(f, e, d.cfg.Boot.Verify == VerifyTree); err != nil {
			return nil, fmt.Errorf("%w: image of %s: %w (corrupted or tampered slot)", ErrVerify, m.Version, err)
		}
		return m, nil
	}
	if err := payload.HashInstalled(f, m.Installed.Length, m.Installed.SHA256[:]); err != nil {
		return nil, fmt.Errorf("%w: image of %s: %w (corrupted or tampered slot)", ErrVerify, m.Version, err)
	}
	return m, nil
}
