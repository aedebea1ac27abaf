package device

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/airlockfw/airlock/device/boot"
	"github.com/airlockfw/airlock/internal/durable"
	"github.com/airlockfw/airlock/verify"
	"github.com/google/go-cmp/cmp"
)

func TestLayoutConfigNamesEveryFileInsideDir(t *testing.T) {
	for _, tt := range []struct {
		backend string
		boot    []string
	}{
		{boot.BackendSim, []string{"bootstate"}},
		{boot.BackendGrubEnv, []string{"grubenv"}},
		{boot.BackendUBootEnv, []string{"uboot.env", "uboot-redund.env"}},
	} {
		t.Run(tt.backend, func(t *testing.T) {
			l := Layout{Dir: "/dev1"}
			cfg, err := l.Config(tt.backend, 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			got := []string{cfg.Path(cfg.Root), cfg.Path(cfg.StateDir), cfg.Path(cfg.Slots.A), cfg.Path(cfg.Slots.B), cfg.Path(cfg.Boot.Path)}
			if cfg.Boot.RedundPath != "" {
				got = append(got, cfg.Path(cfg.Boot.RedundPath))
			}
			want := []string{"/dev1/root.json", "/dev1/state", "/dev1/slot-a.img", "/dev1/slot-b.img"}
			for _, b := range tt.boot {
				want = append(want, "/dev1/"+b)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("layout paths (-want +got):\n%s", diff)
			}
			if l.ConfigPath() != "/dev1/device.toml" {
				t.Errorf("ConfigPath = %q", l.ConfigPath())
			}
		})
	}
	if _, err := (Layout{Dir: "/d"}).Config("efi", 1); !errors.Is(err, ErrConfig) {
		t.Errorf("unknown backend: err = %v, want ErrConfig", err)
	}
}

func TestLayoutCreateWritesConfigLastAndRefusesANonEmptyDir(t *testing.T) {
	v := newVendor(t)
	initial := v.release("1.0.0", 1, testImage(1, 100_000), nil)
	dir := filepath.Join(t.TempDir(), "dev1")
	l := Layout{Dir: dir}
	cfg, err := l.Config(boot.BackendSim, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Model, cfg.HWRev, cfg.Product = testModel, 3, testProduct
	src := openBundle(t, initial)
	if _, err := l.Create(context.Background(), durable.OS, cfg, ProvisionOptions{FactoryRoot: v.factoryRoot, Initial: src, InitialTarget: src.TargetPath()}, Options{}); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(dir)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	if diff := cmp.Diff([]string{"bootstate", "device.toml", "root.json", "slot-a.img", "slot-b.img", "state"}, names); diff != "" {
		t.Errorf("device directory (-want +got):\n%s", diff)
	}
	d, err := OpenConfig(durable.OS, l.ConfigPath(), Options{})
	if err != nil {
		t.Fatalf("open the created device: %v", err)
	}
	if rec, err := d.SlotRecord(boot.SlotA); err != nil || rec == nil || rec.Version != "1.0.0" {
		t.Errorf("slot A record = %+v, %v; want 1.0.0 committed", rec, err)
	}
	cfg2, _ := l.Config(boot.BackendSim, 1<<20)
	cfg2.Model, cfg2.HWRev, cfg2.Product = testModel, 3, testProduct
	if _, err := l.Create(context.Background(), durable.OS, cfg2, ProvisionOptions{FactoryRoot: v.factoryRoot}, Options{}); !errors.Is(err, ErrNotEmpty) {
		t.Errorf("Create over an existing device = %v, want ErrNotEmpty", err)
	}
}

func openBundle(t *testing.T, b []byte) *verify.BundleSource {
	t.Helper()
	src, err := verify.OpenBundle(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return src
}
