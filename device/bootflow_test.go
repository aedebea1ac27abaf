package device

import (
	"bytes"
	"context"
	"crypto"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/airlockfw/airlock/device/boot"
	"github.com/airlockfw/airlock/internal/durable"
	"github.com/airlockfw/airlock/keys"
	"github.com/airlockfw/airlock/repo"
	"github.com/airlockfw/airlock/verify"
)

// flipSlotByte flips one byte of a slot file, as flash corruption or an
// attacker with storage access would.
func flipSlotByte(t *testing.T, d *Device, s boot.Slot, off int64) {
	t.Helper()
	name, _ := d.slotPath(s)
	f, err := d.fsys.OpenFile(name, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x80
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
}

func TestFailedHealthCheckRollsBack(t *testing.T) {
	v := newVendor(t)
	b10 := v.release("1.0.0", 1, testImage(1, imgSize), nil)
	b11 := v.release("1.1.0", 2, testImage(2, imgSize), nil)
	cfg := testConfig("/dev", 1<<20)
	d := provision(t, durable.NewMem(), cfg, v.factoryRoot, b10)
	mustBoot(t, d)
	if _, err := installBundle(d, b11, InstallOptions{}); err != nil {
		t.Fatal(err)
	}
	if r := mustBoot(t, d); r.Slot != boot.SlotB || !r.Trial {
		t.Fatalf("boot = %+v, want trial of B", r)
	}
	cfg.Health.Command = []string{"false"}
	h, err := d.Health(context.Background())
	if !errors.Is(err, ErrHealth) || !h.Rollback || h.Reboot == nil || h.Reboot.Slot != boot.SlotA {
		t.Fatalf("health = %+v, %v; want rollback to A", h, err)
	}
	if c, _ := d.ctr.Read(); c != 1 {
		t.Errorf("counter = %d after a rolled back release, want 1 (unchanged)", c)
	}
	if r := mustBoot(t, d); r.Slot != boot.SlotA || r.Version != "1.0.0" {
		t.Fatalf("boot after rollback = %+v, want A 1.0.0", r)
	}
	// The device can install again.
	cfg.Health.Command = []string{"true"}
	if _, err := installBundle(d, v.bundle("1.1.0"), InstallOptions{}); err != nil {
		t.Fatalf("install after rollback: %v", err)
	}
}

func TestHealthCheckTimeoutRollsBack(t *testing.T) {
	v := newVendor(t)
	b10 := v.release("1.0.0", 1, testImage(1, imgSize), nil)
	b11 := v.release("1.1.0", 1, testImage(2, imgSize), nil)
	cfg := testConfig("/dev", 1<<20)
	d := provision(t, durable.NewMem(), cfg, v.factoryRoot, b10)
	mustBoot(t, d)
	if _, err := installBundle(d, b11, InstallOptions{}); err != nil {
		t.Fatal(err)
	}
	mustBoot(t, d)
	cfg.Health.Command, cfg.Health.Timeout = []string{"sleep", "10"}, 200*time.Millisecond
	start := time.Now()
	h, err := d.Health(context.Background())
	if !errors.Is(err, ErrHealth) || !h.Rollback {
		t.Fatalf("health = %+v, %v; want a rollback", h, err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("health check took %v, deadline was 200ms", el)
	}
}

func TestUncommittedTrialFallsBackOnNextBoot(t *testing.T) {
	v := newVendor(t)
	b10 := v.release("1.0.0", 1, testImage(1, imgSize), nil)
	b11 := v.release("1.1.0", 1, testImage(2, imgSize), nil)
	d := provision(t, durable.NewMem(), testConfig("/dev", 1<<20), v.factoryRoot, b10)
	mustBoot(t, d)
	if _, err := installBundle(d, b11, InstallOptions{}); err != nil {
		t.Fatal(err)
	}
	mustBoot(t, d) // trial of B, never committed (crash, hang, watchdog)
	r := mustBoot(t, d)
	if r.Slot != boot.SlotA || len(r.Fallbacks) == 0 {
		t.Fatalf("second boot = %+v, want fallback to A", r)
	}
}

func TestCorruptedSlotIsRefusedAtBoot(t *testing.T) {
	v := newVendor(t)
	b10 := v.release("1.0.0", 1, testImage(1, imgSize), nil)
	b11 := v.release("1.1.0", 1, testImage(2, imgSize), nil)
	for _, tt := range []struct {
		name   string
		commit bool
	}{{"trial slot", false}, {"committed slot", true}} {
		t.Run(tt.name, func(t *testing.T) {
			d := provision(t, durable.NewMem(), testConfig("/dev", 1<<20), v.factoryRoot, b10)
			mustBoot(t, d)
			if _, err := installBundle(d, b11, InstallOptions{}); err != nil {
				t.Fatal(err)
			}
			if tt.commit {
				mustBoot(t, d)
				if _, err := d.Health(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
			flipSlotByte(t, d, boot.SlotB, 12345)
			r := mustBoot(t, d)
			if r.Slot != boot.SlotA || r.Version != "1.0.0" || len(r.Fallbacks) == 0 {
				t.Fatalf("boot = %+v, want fallback to A 1.0.0", r)
			}
			t.Logf("boot: %s", r.Reason)
		})
	}
}

// TestBootSurvivesRotationAndExpiry proves boot verification never bricks a
// device over time: after 1.1 is committed, the vendor rotates the root and
// the product keys, the device learns the rotation (a later install), every
// metadata file expires, and the device still boots 1.1, and falls back to
// 1.0 when 1.1's slot is corrupted.
func TestBootSurvivesRotationAndExpiry(t *testing.T) {
	v := newVendor(t)
	b10 := v.release("1.0.0", 1, testImage(1, imgSize), nil)
	b11 := v.release("1.1.0", 1, testImage(2, imgSize), nil)
	cfg := testConfig("/dev", 1<<20)
	d := provision(t, durable.NewMem(), cfg, v.factoryRoot, b10)
	mustBoot(t, d)
	if _, err := installBundle(d, b11, InstallOptions{}); err != nil {
		t.Fatal(err)
	}
	mustBoot(t, d)
	if _, err := d.Health(context.Background()); err != nil {
		t.Fatal(err)
	}

	// Rotate root and product keys, publish 1.2 signed with the new key.
	newRoot, newProduct := genKey(t), genKey(t)
	oldRootID, _ := keys.KeyID(v.root[0].Public())
	if _, err := v.r.Rotate(repo.RotateOptions{Role: "root", Add: []crypto.PublicKey{newRoot.Public()}, Remove: []string{oldRootID},
		Threshold: 1, OldSigners: v.root, NewSigners: []crypto.Signer{newRoot}}); err != nil {
		t.Fatal(err)
	}
	var oldProductIDs []string
	for _, k := range v.product {
		id, _ := keys.KeyID(k.Public())
		oldProductIDs = append(oldProductIDs, id)
	}
	if _, err := v.r.Rotate(repo.RotateOptions{Role: testProduct, Add: []crypto.PublicKey{newProduct.Public()}, Remove: oldProductIDs,
		Threshold: 1, OldSigners: []crypto.Signer{v.targets}, NewSigners: []crypto.Signer{newProduct}}); err != nil {
		t.Fatal(err)
	}
	v.publish()
	v.product = []crypto.Signer{newProduct}
	b12 := v.release("1.2.0", 1, testImage(3, imgSize), nil)

	// The device learns the rotation (a refresh, as a polling agent does).
	src, err := verify.OpenBundle(bytes.NewReader(b12))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Refresh(context.Background(), src); err != nil {
		t.Fatalf("refresh after rotation: %v", err)
	}
	trusted, err := durable.ReadFile(d.fsys, d.statePath(trustDir, "root.2"), 1<<20)
	if err != nil || len(trusted) == 0 {
		t.Fatalf("device did not learn root version 2: %v", err)
	}

	// Ten years later every metadata file has expired.
	d.opts.Now = func() time.Time { return time.Now().AddDate(10, 0, 0) }
	if r := mustBoot(t, d); r.Slot != boot.SlotB || r.Version != "1.1.0" {
		t.Fatalf("boot after rotation and expiry = %+v, want B 1.1.0", r)
	}
	flipSlotByte(t, d, boot.SlotB, 100)
	if r := mustBoot(t, d); r.Slot != boot.SlotA || r.Version != "1.0.0" {
		t.Fatalf("boot with 1.1 corrupted = %+v, want A 1.0.0", r)
	}
}

// TestHealthCheckSeesBootedRelease: the health command learns which slot and
// release it checks from its environment, so a release-specific health
// check can fail only that release.
func TestHealthCheckSeesBootedRelease(t *testing.T) {
	v := newVendor(t)
	b10 := v.release("1.0.0", 1, testImage(1, imgSize), nil)
	b11 := v.release("1.1.0", 1, testImage(2, imgSize), nil)
	cfg := testConfig("/dev", 1<<20)
	d := provision(t, durable.NewMem(), cfg, v.factoryRoot, b10)
	mustBoot(t, d)
	if _, err := installBundle(d, b11, InstallOptions{}); err != nil {
		t.Fatal(err)
	}
	mustBoot(t, d)
	cfg.Health.Command = []string{"sh", "-c", `test "$AIRLOCK_VERSION" = 1.1.0 && test "$AIRLOCK_SLOT" = B && test "$AIRLOCK_TRIAL" = 1 && test -n "$AIRLOCK_SLOT_PATH"`}
	h, err := d.Health(context.Background())
	if err != nil || !h.Committed {
		t.Fatalf("health = %+v, %v; want the environment to name trial B 1.1.0 and commit", h, err)
	}
}
