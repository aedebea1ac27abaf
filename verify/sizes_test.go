package verify

import (
	"errors"
	"strings"
	"testing"

	"github.com/airlockfw/airlock/release"
)

// TestSlotCheckComparesInstalledSizeWithSlotAndPayloadWithTransport: the
// slot bounds the installed (decompressed) image, the transport limit
// bounds the payload, and each refusal says which in a user's terms.
func TestSlotCheckComparesInstalledSizeWithSlotAndPayloadWithTransport(t *testing.T) {
	const mib, gib = int64(1 << 20), int64(1 << 30)
	device := Facts{SlotSize: 64 * mib}
	for _, tc := range []struct {
		name              string
		f                 Facts
		installed, length int64
		wantErr           error
		want              string
	}{
		{name: "image larger than the slot", f: device, installed: 80 * mib, length: 30 * mib, wantErr: ErrSlotTooSmall,
			want: "slot check failed: the image does not fit the slot: the image is 80.0 MiB installed but the slot holds 64.0 MiB (slots.size in device.toml)"},
		{name: "one byte over is told in bytes", f: device, installed: 64*mib + 1, length: mib, wantErr: ErrSlotTooSmall,
			want: "slot check failed: the image does not fit the slot: the image is 67108865 bytes installed but the slot holds 67108864 bytes (slots.size in device.toml)"},
		{name: "payload over the transport limit", f: device, installed: 60 * mib, length: 70 * gib, wantErr: ErrPayloadTooLarge,
			want: "slot check failed: the payload is too large: the payload is 70.0 GiB, more than the 64.0 GiB a bundle may carry"},
		{name: "compressed payload larger than the slot, image fits", f: device, installed: 64 * mib, length: 64*mib + 4096},
		{name: "image fills the slot", f: device, installed: 64 * mib, length: 10 * mib},
		{name: "slot size unstated", f: Facts{}, installed: 80 * gib, length: mib},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Every policy fact unstated: only the slot check can refuse.
			tc.f.Unstated = []string{release.CheckProduct, release.CheckModel, release.CheckHWRev, release.CheckChannel,
				release.CheckDependency, release.CheckDowngrade, release.CheckSecurityVersion}
			m, err := release.ParseCustom([]byte(`{"airlock":{"schema":1,"product":"acme/router-x1","models":["x1"],"version":"1.0.0",` +
				`"security_version":0,"install":{"kind":"raw","compression":"zstd"},"installed":{"length":1,"sha256":"` +
				strings.Repeat("ab", 32) + `"}}}`))
			if err != nil {
				t.Fatal(err)
			}
			m.Installed.Length = tc.installed
			err = tc.f.check(m, tc.length, "")
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var ve *Error
			if !errors.As(err, &ve) || ve.Check != CheckSlot {
				t.Fatalf("got %v, want a refusal by the slot check", err)
			}
			if !errors.Is(err, tc.wantErr) || !errors.Is(err, ErrVerification) {
				t.Errorf("%v does not wrap %v and ErrVerification", err, tc.wantErr)
			}
			if err.Error() != tc.want {
				t.Errorf("message:\n got %s\nwant %s", err, tc.want)
			}
		})
	}
}
