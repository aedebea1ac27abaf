package release

import (
	"errors"
	"strings"
	"testing"
)

func ptr[T any](v T) *T { return &v }

func policyDevice() Device {
	return Device{
		Model:           "x1",
		HWRev:           3,
		Channel:         "beta",
		Product:         "acme/router-x1",
		Current:         ptr(MustParseVersion("1.0.0")),
		SecurityCounter: 3,
		Components:      map[string]Version{"bootloader": MustParseVersion("2.0.0")},
	}
}

func TestCheck(t *testing.T) {
	tests := []struct {
		name string
		meta func(m *Metadata)
		dev  func(d *Device)
		opt  CheckOptions
		want error  // nil: the release is accepted
		msg  string // substring of the error
	}{
		{name: "matching release is accepted"},
		{name: "factory-fresh device accepts any version", dev: func(d *Device) { d.Current = nil }},
		{name: "second model is accepted", dev: func(d *Device) { d.Model = "x1-pro" }},
		{name: "any hardware revision", meta: func(m *Metadata) { m.HWRev = HWRange{} }, dev: func(d *Device) { d.HWRev = 99 }},
		{name: "default channels match", meta: func(m *Metadata) { m.Channel = "" }, dev: func(d *Device) { d.Channel = "" }},
		{name: "explicit stable matches default device", meta: func(m *Metadata) { m.Channel = "stable" }, dev: func(d *Device) { d.Channel = "" }},
		{name: "newer dependency is accepted", dev: func(d *Device) { d.Components["bootloader"] = MustParseVersion("2.0.1") }},
		{name: "security version equal to counter is accepted"},
		{name: "security version above counter is accepted", dev: func(d *Device) { d.SecurityCounter = 0 }},
		{name: "pre-release to release is an upgrade", dev: func(d *Device) { d.Current = ptr(MustParseVersion("1.1.0-rc.1")) }},

		{name: "other product", dev: func(d *Device) { d.Product = "acme/router-x2" }, want: ErrProduct,
			msg: `policy check "product" failed: release is for product "acme/router-x1", device is "acme/router-x2"`},
		{name: "other model", dev: func(d *Device) { d.Model = "x2" }, want: ErrModel,
			msg: `policy check "model" failed: release is for models ["x1" "x1-pro"], device is "x2"`},
		{name: "model match is case-sensitive", dev: func(d *Device) { d.Model = "X1" }, want: ErrModel},
		{name: "hardware revision too old", dev: func(d *Device) { d.HWRev = 1 }, want: ErrHWRev,
			msg: `release is for hardware revisions ">=2 <4", device is 1`},
		{name: "hardware revision too new", dev: func(d *Device) { d.HWRev = 4 }, want: ErrHWRev},
		{name: "beta release on stable device", dev: func(d *Device) { d.Channel = "" }, want: ErrChannel,
			msg: `release is on channel "beta", device follows "stable"`},
		{name: "stable release on beta device", meta: func(m *Metadata) { m.Channel = "" }, want: ErrChannel},
		{name: "dependency missing", dev: func(d *Device) { d.Components = nil }, want: ErrDependency,
			msg: `release requires "bootloader" >= "2.0.0", device has no such component`},
		{name: "dependency too old", dev: func(d *Device) { d.Components["bootloader"] = MustParseVersion("2.0.0-rc.9") }, want: ErrDependency,
			msg: `device has "2.0.0-rc.9"`},
		{name: "downgrade refused", dev: func(d *Device) { d.Current = ptr(MustParseVersion("1.2.0")) }, want: ErrDowngrade,
			msg: `release version "1.1.0" is not newer than running version "1.2.0"`},
		{name: "reinstall refused", dev: func(d *Device) { d.Current = ptr(MustParseVersion("1.1.0")) }, want: ErrDowngrade},
		{name: "reinstall of other build refused", dev: func(d *Device) { d.Current = ptr(MustParseVersion("1.1.0+other")) }, want: ErrDowngrade},
		{name: "downgrade without signed permission refused even if asked", dev: func(d *Device) { d.Current = ptr(MustParseVersion("1.2.0")) },
			opt: CheckOptions{AllowReinstallOrDowngrade: true}, want: ErrDowngrade, msg: "does not allow downgrade"},
		{name: "signed permission alone does not downgrade", meta: func(m *Metadata) { m.AllowDowngrade = true },
			dev: func(d *Device) { d.Current = ptr(MustParseVersion("1.2.0")) }, want: ErrDowngrade, msg: "did not ask"},
		{name: "signed permission and operator request allow downgrade", meta: func(m *Metadata) { m.AllowDowngrade = true },
			dev: func(d *Device) { d.Current = ptr(MustParseVersion("1.2.0")) }, opt: CheckOptions{AllowReinstallOrDowngrade: true}},
		{name: "signed permission and operator request allow reinstall", meta: func(m *Metadata) { m.AllowDowngrade = true },
			dev: func(d *Device) { d.Current = ptr(MustParseVersion("1.1.0")) }, opt: CheckOptions{AllowReinstallOrDowngrade: true}},
		{name: "security version below counter", dev: func(d *Device) { d.SecurityCounter = 4 }, want: ErrSecurityVersion,
			msg: `release security version 3 is below the device anti-rollback counter 4`},
		{name: "security version is never overridable", meta: func(m *Metadata) { m.AllowDowngrade = true },
			dev: func(d *Device) { d.SecurityCounter = 1 << 40 }, opt: CheckOptions{AllowReinstallOrDowngrade: true}, want: ErrSecurityVersion},
		{name: "invalid metadata", meta: func(m *Metadata) { m.Models = nil }, want: ErrInvalidMetadata},

		// Order: the first failing check is reported.
		{name: "product before model", dev: func(d *Device) { d.Product = "other"; d.Model = "other" }, want: ErrProduct},
		{name: "model before hw_rev", dev: func(d *Device) { d.Model = "other"; d.HWRev = 0 }, want: ErrModel},
		{name: "hw_rev before channel", dev: func(d *Device) { d.HWRev = 0; d.Channel = "dev" }, want: ErrHWRev},
		{name: "channel before dependency", dev: func(d *Device) { d.Channel = "dev"; d.Components = nil }, want: ErrChannel},
		{name: "dependency before version", dev: func(d *Device) { d.Components = nil; d.Current = ptr(MustParseVersion("9.0.0")) }, want: ErrDependency},
		{name: "version before security version", dev: func(d *Device) { d.Current = ptr(MustParseVersion("9.0.0")); d.SecurityCounter = 9 }, want: ErrDowngrade},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := validMetadata()
			m.AllowDowngrade = false
			if tt.meta != nil {
				tt.meta(m)
			}
			d := policyDevice()
			if tt.dev != nil {
				tt.dev(&d)
			}
			err := Check(m, d, tt.opt)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Check = %v, want accepted", err)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("Check = %v, want %v", err, tt.want)
			}
			if tt.want != ErrInvalidMetadata {
				var pe *PolicyError
				if !errors.As(err, &pe) {
					t.Fatalf("error %T is not a *PolicyError", err)
				}
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q does not say %q", err, tt.msg)
			}
		})
	}
}

func TestPolicyErrorUnwrapsItsSentinel(t *testing.T) {
	tests := map[string]error{
		CheckProduct: ErrProduct, CheckModel: ErrModel, CheckHWRev: ErrHWRev, CheckChannel: ErrChannel,
		CheckDependency: ErrDependency, CheckDowngrade: ErrDowngrade, CheckSecurityVersion: ErrSecurityVersion,
	}
	for check, want := range tests {
		t.Run(check, func(t *testing.T) {
			err := error(&PolicyError{Check: check})
			if !errors.Is(err, want) {
				t.Errorf("PolicyError{%q} does not wrap %v", check, want)
			}
			for _, other := range tests {
				if other != want && errors.Is(err, other) {
					t.Errorf("PolicyError{%q} also wraps %v", check, other)
				}
			}
		})
	}
	if (&PolicyError{Check: "bogus"}).Unwrap() != nil {
		t.Error("unknown check unwraps to a sentinel")
	}
}

func TestCheckPrintsUntrustedValuesQuoted(t *testing.T) {
	m := validMetadata()
	m.Models = []string{"x1"}
	d := policyDevice()
	d.Model = "evil\n\x1b[2J"
	err := Check(m, d, CheckOptions{})
	if err == nil || strings.ContainsAny(err.Error(), "\n\x1b") {
		t.Fatalf("error %q carries raw control characters", err)
	}
}
