package device

import (
	"context"
	"testing"

	"github.com/airlockfw/airlock/device/boot"
	"github.com/airlockfw/airlock/internal/durable"
)

const imgSize = 256 << 10

func TestInstallBootCommitCycle(t *testing.T) {
	v := newVendor(t)
	b10 := v.release("1.0.0", 1, testImage(1, imgSize), nil)
	b11 := v.release("1.1.0", 2, testImage(2, imgSize), nil)
	fsys := durable.NewMem()
	d := provision(t, fsys, testConfig("/dev", 1<<20), v.factoryRoot, b10)

	r := mustBoot(t, d)
	if r.Slot != boot.SlotA || r.Trial || r.Version != "1.0.0" {
		t.Fatalf("first boot = %+v, want committed A 1.0.0", r)
	}
	res, err := installBundle(d, b11, InstallOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Slot != boot.SlotB || res.Version != "1.1.0" {
		t.Fatalf("install = %+v", res)
	}
	if _, err := installBundle(d, b11, InstallOptions{}); err == nil {
		t.Fatal("second install while a trial is pending succeeded")
	}
	r = mustBoot(t, d)
	if r.Slot != boot.SlotB || !r.Trial {
		t.Fatalf("boot after install = %+v, want trial B", r)
	}
	h, err := d.Health(context.Background())
	if err != nil || !h.Committed {
		t.Fatalf("health = %+v, %v", h, err)
	}
	if c, _ := d.ctr.Read(); c != 2 {
		t.Fatalf("counter = %d after commit of security version 2, want 2", c)
	}
	r = mustBoot(t, d)
	if r.Slot != boot.SlotB || r.Trial || r.Version != "1.1.0" {
		t.Fatalf("boot after commit = %+v", r)
	}
}
