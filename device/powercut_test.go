package device

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/airlockfw/airlock/device/boot"
	"github.com/airlockfw/airlock/internal/durable"
	"github.com/airlockfw/airlock/repo"
	"github.com/airlockfw/airlock/trust"
)

// powerCutFixture holds three releases of a product and their images.
type powerCutFixture struct {
	v                *vendor
	b10, b11, b12    []byte
	d11              []byte // 1.1.0, a delta bundle from 1.0.0
	target11         string
	images           map[string][]byte // version -> installed image
	healthOK, health []string
}

func newPowerCutFixture(t *testing.T) *powerCutFixture {
	f := &powerCutFixture{v: newVendor(t), images: map[string][]byte{}}
	for i, ver := range []string{"1.0.0", "1.1.0", "1.2.0"} {
		f.images[ver] = testImage(uint64(i+1), imgSize)
	}
	// 1.1.0 is 1.0.0 with a few blocks changed, so that a delta install
	// reuses most of the active slot.
	f.images["1.1.0"] = bytes.Clone(f.images["1.0.0"])
	for _, off := range []int{100, imgSize / 3, imgSize - 5} {
		f.images["1.1.0"][off] ^= 0xff
	}
	f.b10 = f.v.release("1.0.0", 1, f.images["1.0.0"], nil)
	f.b11 = f.v.release("1.1.0", 2, f.images["1.1.0"], func(o *repo.ReleaseOptions) { o.DeltaFrom = []string{"1.0.0"} })
	f.d11 = f.v.rt.DeltaBundle("1.1.0", "1.0.0")
	f.b12 = f.v.release("1.2.0", 2, f.images["1.2.0"], nil)
	rels, err := f.v.r.Releases(testProduct)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rels {
		if r.Version == "1.1.0" {
			f.target11 = r.TargetPath
		}
	}
	return f
}

func (f *powerCutFixture) config() *Config {
	cfg := testConfig("/dev", 512<<10)
	cfg.WriteChunk = 4 << 10 // many cut points inside the slot write
	return cfg
}

// device provisions a fresh device on a new Mem with 1.0 committed and booted.
func (f *powerCutFixture) device(t *testing.T) *durable.Mem {
	t.Helper()
	fsys := durable.NewMem()
	d := provision(t, fsys, f.config(), f.v.factoryRoot, f.b10)
	mustBoot(t, d)
	return fsys
}

// cycle runs install 1.1 -> boot -> health, each step as a separate
// process would (reopening the device), stopping at the first error. A
// health failure that rolled back is the expected end of a rollback cycle.
func (f *powerCutFixture) cycle(fsys *durable.Mem, healthCmd string) error {
	return f.cycleWith(fsys, healthCmd, func(d *Device) error {
		_, err := installBundle(d, f.b11, InstallOptions{})
		return err
	})
}

// installOnline installs 1.1 from the repository directory, a source that
// serves byte ranges: a delta install that reuses the active slot's blocks.
func (f *powerCutFixture) installOnline(d *Device) error {
	res, err := d.Install(context.Background(), trust.NewDirSource(f.v.r.PublicDir()), f.target11, InstallOptions{})
	if err == nil && !strings.HasPrefix(res.Delta, "delta:") {
		return fmt.Errorf("the online install was not a delta: %+v", res)
	}
	return err
}

// installDeltaBundle installs 1.1 from its delta bundle from 1.0.
func (f *powerCutFixture) installDeltaBundle(d *Device) error {
	res, err := installBundle(d, f.d11, InstallOptions{})
	if err == nil && res.Delta != "delta bundle from 1.0.0" {
		return fmt.Errorf("not a delta install: %+v", res)
	}
	return err
}

func (f *powerCutFixture) cycleWith(fsys *durable.Mem, healthCmd string, install func(*Device) error) error {
	ctx := context.Background()
	cfg := f.config()
	cfg.Health.Command = []string{healthCmd}
	open := func() (*Device, error) { return Open(fsys, cfg, Options{}) }
	d, err := open()
	if err != nil {
		return err
	}
	if err := install(d); err != nil {
		return err
	}
	if d, err = open(); err != nil {
		return err
	}
	if _, err := d.Boot(ctx); err != nil {
		return err
	}
	if d, err = open(); err != nil {
		return err
	}
	if h, err := d.Health(ctx); err != nil && !(h != nil && h.Rollback && h.Reboot != nil && !errors.Is(err, durable.ErrPowerCut)) {
		return err
	}
	return nil
}

// checkAfterCrash reboots a crashed device: it must boot a verified image,
// old or new (checked byte for byte here, independently of Boot), and a
// later install must succeed and boot.
func (f *powerCutFixture) checkAfterCrash(t *testing.T, fsys *durable.Mem, what string) {
	t.Helper()
	ctx := context.Background()
	cfg := f.config()
	d, err := Open(fsys, cfg, Options{})
	if err != nil {
		t.Fatalf("%s: open after crash: %v", what, err)
	}
	r, err := d.Boot(ctx)
	if err != nil {
		t.Fatalf("%s: boot after crash: %v", what, err)
	}
	want, ok := f.images[r.Version]
	if !ok || (r.Version != "1.0.0" && r.Version != "1.1.0") {
		t.Fatalf("%s: booted %+v, want 1.0.0 or 1.1.0", what, r)
	}
	if !bytes.Equal(slotImage(t, d, r.Slot, len(want)), want) {
		t.Fatalf("%s: booted slot %s does not hold image %s", what, r.Slot, r.Version)
	}
	if r.Trial {
		if _, err := d.Health(ctx); err != nil {
			t.Fatalf("%s: health after crash: %v", what, err)
		}
	}
	if _, err := installBundle(d, f.b12, InstallOptions{}); err != nil {
		t.Fatalf("%s: install after crash (booted %s %s): %v", what, r.Slot, r.Version, err)
	}
	r, err = d.Boot(ctx)
	if err != nil || r.Version != "1.2.0" || !r.Trial {
		t.Fatalf("%s: boot of the later install = %+v, %v", what, r, err)
	}
	if !bytes.Equal(slotImage(t, d, r.Slot, imgSize), f.images["1.2.0"]) {
		t.Fatalf("%s: slot %s does not hold 1.2.0", what, r.Slot)
	}
	if _, err := d.Health(ctx); err != nil {
		t.Fatalf("%s: health of the later install: %v", what, err)
	}
}

// TestPowerCutAtEveryWrite cuts the power at every write, fsync, rename and
// directory sync of a full install -> boot -> health -> commit cycle, and of
// a rollback cycle (health check fails), then crashes (unsynced data lost;
// and again with torn writes) and reboots: the device must always boot a
// verified image, old or new, and accept a later install.
func TestPowerCutAtEveryWrite(t *testing.T) {
	if testing.Short() {
		t.Skip("enumerates hundreds of power cuts")
	}
	f := newPowerCutFixture(t)
	counts := map[string]int{}
	for _, tc := range []struct {
		name, health string
		install      func(*Device) error // nil: the whole bundle
	}{
		{"install-commit", "true", nil},
		{"rollback", "false", nil},
		{"delta-install-commit", "true", f.installOnline},
		{"delta-bundle-install-commit", "true", f.installDeltaBundle},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The uninterrupted cycle, to count the cut points and check
			// its outcome.
			cycle := f.cycle
			if tc.install != nil {
				cycle = func(fsys *durable.Mem, health string) error { return f.cycleWith(fsys, health, tc.install) }
			}
			fsys := f.device(t)
			fsys.CutAfter(0)
			if err := cycle(fsys, tc.health); err != nil {
				t.Fatalf("uninterrupted cycle: %v", err)
			}
			n := fsys.Ops()
			d, err := Open(fsys, f.config(), Options{})
			if err != nil {
				t.Fatal(err)
			}
			st, _ := d.ctl.Load()
			wantGood := map[string]boot.Slot{"install-commit": boot.SlotB, "rollback": boot.SlotA, "delta-install-commit": boot.SlotB, "delta-bundle-install-commit": boot.SlotB}[tc.name]
			if st.Good != wantGood || st.Trial != "" {
				t.Fatalf("after the cycle boot state = %+v, want good %s", st, wantGood)
			}
			counts[tc.name] = n
			t.Logf("%s: %d power-cut points", tc.name, n)
			for i := 1; i <= n; i++ {
				for _, torn := range []bool{false, true} {
					fsys := f.device(t)
					fsys.CutAfter(i)
					err := cycle(fsys, tc.health)
					// Best-effort writes (last.json) swallow the cut, so
					// check the power state, not only the error.
					if err != nil && !errors.Is(err, durable.ErrPowerCut) || !fsys.PoweredOff() {
						t.Fatalf("cut %d/%d: cycle returned %v (powered off: %v), want a power cut", i, n, err, fsys.PoweredOff())
					}
					what := fmt.Sprintf("cut %d/%d", i, n)
					if torn {
						fsys.CrashTorn(int64(i))
						what += " (torn)"
					} else {
						fsys.Crash()
					}
					f.checkAfterCrash(t, fsys, what)
				}
			}
		})
	}
	t.Logf("power-cut points: %v", counts)
	fmt.Printf("power-cut points: install-commit=%d rollback=%d delta-install-commit=%d delta-bundle-install-commit=%d\n",
		counts["install-commit"], counts["rollback"], counts["delta-install-commit"], counts["delta-bundle-install-commit"])
}
