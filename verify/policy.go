package verify

import (
	"fmt"
	"slices"

	"github.com/airlockfw/airlock/bundle"
	"github.com/airlockfw/airlock/internal/bytesize"
	"github.com/airlockfw/airlock/release"
)

// Facts are what the policy stage knows about the device. A device states
// every fact (device.Device.Facts); `airlock verify` states those it was
// given (or all of a device directory's with --device) and the checks of the
// others are left out and reported as such.
type Facts struct {
	// Device is the device as release.Check sees it. Its Environment, when
	// empty, is the session anchor's.
	Device release.Device
	// Unstated names the facts the caller did not state, as release check
	// names: release.CheckProduct, CheckModel, CheckHWRev, CheckChannel,
	// CheckDependency, CheckDowngrade (no running version known) and
	// CheckSecurityVersion (no counter known). Their checks are left out.
	Unstated []string
	// SlotSize is the usable size of the slot the image would land in; 0
	// means unstated. It bounds the installed (decompressed) image, never
	// the payload a device is sent.
	SlotSize int64
	// AllowDowngrade is the operator's request to install a version that is
	// not newer than the running one (honoured only when the signed release
	// metadata also allows it; never past the security version).
	AllowDowngrade bool
}

// States reports whether the fact named by a release check name is stated.
func (f Facts) States(check string) bool { return !slices.Contains(f.Unstated, check) }

// Skipped returns the checks left out for unstated facts, in check order.
func (f Facts) Skipped() []string {
	var out []string
	for _, c := range []string{release.CheckProduct, release.CheckModel, release.CheckHWRev, release.CheckChannel,
		release.CheckDependency, release.CheckDowngrade, release.CheckSecurityVersion} {
		if !f.States(c) {
			out = append(out, c)
		}
	}
	if f.SlotSize == 0 {
		out = append(out, CheckSlot)
	}
	return out
}

// check runs the policy stage for release m (verified; its payload is
// length bytes) on these facts: release.Check with the checks of unstated
// facts left out (on copies), then the sizes (the slot check).
func (f Facts) check(m *release.Metadata, length int64, env string) error {
	r, d := *m, f.Device
	if d.Environment == "" {
		d.Environment = env
	}
	if !f.States(release.CheckProduct) {
		d.Product = r.Product.String()
	}
	if !f.States(release.CheckModel) && len(r.Models) > 0 {
		d.Model = r.Models[0]
	}
	if !f.States(release.CheckHWRev) {
		r.HWRev = release.HWRange{}
	}
	if !f.States(release.CheckChannel) {
		d.Channel = r.ChannelOrDefault()
	}
	if !f.States(release.CheckDependency) {
		d.Components = map[string]release.Version{}
		for _, dep := range r.Depends {
			d.Components[dep.Component] = dep.MinVersion
		}
	}
	if !f.States(release.CheckDowngrade) {
		d.Current = nil
	}
	if !f.States(release.CheckSecurityVersion) {
		d.SecurityCounter = 0
	}
	if err := release.Check(&r, d, release.CheckOptions{AllowReinstallOrDowngrade: f.AllowDowngrade}); err != nil {
		return fail(CheckPolicy, err)
	}
	// The slot check compares each size with its own limit: the installed
	// (decompressed) image with the slot, the payload with the transport
	// limit. A compressed payload may be larger than the slot (an
	// incompressible image grows a little) as long as what it installs fits.
	if length > MaxPayloadSize {
		got, lim := bytesize.Pair(length, MaxPayloadSize)
		return fail(CheckSlot, fmt.Errorf("%w: the payload is %s, more than the %s a bundle may carry", ErrPayloadTooLarge, got, lim))
	}
	if f.SlotSize > 0 && m.SlotLength() > f.SlotSize {
		got, lim := bytesize.Pair(m.SlotLength(), f.SlotSize)
		what := "the image is"
		if m.Index != nil {
			what = "the image and its hash tree are"
		}
		return fail(CheckSlot, fmt.Errorf("%w: %s %s installed but the slot holds %s (slots.size in device.toml)", ErrSlotTooSmall, what, got, lim))
	}
	return nil
}

// MaxPayloadSize is the transport limit: the largest payload (the bytes a
// device is sent, compressed or not) the pipeline accepts, online or in a
// bundle. It is the bundle format's limit, so both transports agree.
const MaxPayloadSize = bundle.MaxPayloadSize
