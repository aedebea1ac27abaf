package device

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/airlockfw/airlock/device/boot"
	"github.com/airlockfw/airlock/internal/durable"
	"github.com/airlockfw/airlock/internal/payload"
	"github.com/airlockfw/airlock/release"
	"github.com/airlockfw/airlock/trust"
	"github.com/airlockfw/airlock/verify"
)

// Delta installs. The active slot is opened read-only and only the
// inactive slot is written; every block written is verified against the
// new release's signed tree whatever its origin, so a damaged active slot
// can fail a delta install but never make it accept wrong bytes. A power
// cut leaves the inactive slot invalid (its record was invalidated before
// the first write), as for a whole install.

// base opens the running release in slot good as the base of a delta: nil
// when that slot holds no verified schema 2 release. The caller closes the
// returned file.
func (d *Device) base(good boot.Slot) (*payload.Base, *SlotRecord, durable.File, error) {
	rec, err := d.SlotRecord(good)
	if err != nil || rec == nil || rec.Status == StatusInvalid || len(rec.Custom) == 0 {
		return nil, rec, nil, err
	}
	m, err := release.ParseCustom(rec.Custom)
	if err != nil || m.Index == nil || m.Installed.Length != rec.InstalledLength {
		return nil, rec, nil, nil
	}
	f, err := openSlot(d.fsys, d.cfg, good, os.O_RDONLY)
	if err != nil {
		return nil, rec, nil, err
	}
	return &payload.Base{Slot: f, Length: m.Installed.Length, Salt: m.Index.Salt, Root: m.Index.Root[:], TreeLength: m.Index.TreeLength}, rec, f, nil
}

// writePayload writes t's payload into slot s (the inactive slot): a delta
// bundle applied to the running release, else, from an online source that
// serves byte ranges, the blocks the running release lacks (falling back to
// the whole payload when it cannot serve as a base or the server does not
// serve ranges), else the whole payload. how describes what was done.
func (u *Update) writePayload(ctx context.Context, t *verify.Target, s boot.Slot, slotFile string) (res payload.Result, how string, err error) {
	d := u.d
	good := otherSlot(s)
	if bs, ok := t.Session().Source().(*verify.BundleSource); ok && bs.DeltaFrom() != "" {
		// OpenPayload checks the delta against the release and the running
		// version against its base (the policy stage, as airlock verify).
		p, err := verify.OpenPayload(ctx, t)
		if err != nil {
			return res, "", refused(err, s)
		}
		defer p.Close()
		base, _, bf, err := d.base(good)
		if err != nil {
			return res, "", &InstallError{Check: CheckState, Err: err}
		}
		if base == nil {
			return res, "", &InstallError{Check: CheckPolicy, Err: fmt.Errorf("%w: slot %s holds no block index of the running release: install the whole release's bundle", verify.ErrDeltaBase, good)}
		}
		defer bf.Close()
		res, err = d.writeSlotWith(slotFile, func(slot payload.Slot, o payload.CopyOptions) (payload.Result, error) {
			return verify.InstallDelta(slot, p, *base, o)
		})
		return res, "delta bundle from " + bs.DeltaFrom(), err
	}
	if verify.CanReuse(t) && !u.full {
		base, _, bf, err := d.base(good)
		if err == nil && base != nil {
			var rr payload.ReuseResult
			res, err = d.writeSlotWith(slotFile, func(slot payload.Slot, o payload.CopyOptions) (payload.Result, error) {
				var err error
				rr, err = verify.InstallReuse(ctx, slot, t, *base, o)
				return rr.Result, err
			})
			bf.Close()
			switch {
			case err == nil:
				return res, fmt.Sprintf("delta: %d blocks reused from slot %s, %d bytes downloaded in %d range requests", rr.ReusedBlocks, good, rr.TransportBytes, rr.Requests), nil
			case !errors.Is(err, payload.ErrNoBase) && !errors.Is(err, trust.ErrRange):
				return res, "", err
			}
			// The running release cannot serve, or the server does not
			// serve ranges: the whole payload, from the start.
		} else if bf != nil {
			bf.Close()
		}
	}
	p, err := verify.OpenPayload(ctx, t)
	if err != nil {
		return res, "", refused(err, s)
	}
	defer p.Close()
	res, err = d.writeSlot(slotFile, p)
	return res, "", err
}
