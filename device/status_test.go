package device

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/airlockfw/airlock/device/boot"
	"github.com/airlockfw/airlock/internal/durable"
)

// TestStatusAfterFailedBootIsNotTheEarlierBoot: after a boot in which no
// slot verified, status must report that failed boot, not the earlier
// successful one as if it were the last.
func TestStatusAfterFailedBootIsNotTheEarlierBoot(t *testing.T) {
	v := newVendor(t)
	b10 := v.release("1.0.0", 1, testImage(1, imgSize), nil)
	d := provision(t, durable.NewMem(), testConfig("/dev", 1<<20), v.factoryRoot, b10)
	mustBoot(t, d)
	flipSlotByte(t, d, boot.SlotA, 100) // the only image is corrupted; B is empty
	_, err := d.Boot(context.Background())
	if !errors.Is(err, ErrNoBootableSlot) {
		t.Fatalf("boot = %v, want ErrNoBootableSlot", err)
	}
	b := d.Status().Booted
	if b == nil || !b.Failed || b.Slot != "" || b.Version != "" || !strings.Contains(b.Reason, "no bootable slot") || len(b.Fallbacks) != 2 {
		t.Fatalf("status last boot = %+v, want the failed boot (no slot, its reason and both fallbacks)", b)
	}
}

// TestStatusAfterFallbackBootNamesTheFallback: a trial that failed
// verification falls back; status names the slot that booted and why.
func TestStatusAfterFallbackBootNamesTheFallback(t *testing.T) {
	v := newVendor(t)
	b10 := v.release("1.0.0", 1, testImage(1, imgSize), nil)
	b11 := v.release("1.1.0", 2, testImage(2, imgSize), nil)
	d := provision(t, durable.NewMem(), testConfig("/dev", 1<<20), v.factoryRoot, b10)
	mustBoot(t, d)
	if _, err := installBundle(d, b11, InstallOptions{}); err != nil {
		t.Fatal(err)
	}
	flipSlotByte(t, d, boot.SlotB, 100)
	mustBoot(t, d)
	b := d.Status().Booted
	if b == nil || b.Failed || b.Slot != boot.SlotA || b.Version != "1.0.0" || len(b.Fallbacks) != 1 || !strings.Contains(b.Fallbacks[0], "slot B") {
		t.Fatalf("status last boot = %+v, want slot A 1.0.0 after the fallback from B", b)
	}
}
