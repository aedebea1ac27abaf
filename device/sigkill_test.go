package device

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/airlockfw/airlock/internal/durable"
)

// TestSIGKILLDuringInstall kills the real `airlock device install` process
// with SIGKILL at random moments (fixed seed) and checks on the real
// filesystem that the device then boots a verified image, old or new, and
// accepts a later install.
func TestSIGKILLDuringInstall(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the airlock binary")
	}
	bin := filepath.Join(t.TempDir(), "airlock")
	build := exec.Command("go", "build", "-o", bin, "github.com/airlockfw/airlock/cmd/airlock")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	const size = 8 << 20
	v := newVendor(t)
	images := map[string][]byte{"1.0.0": testImage(1, size), "1.1.0": testImage(2, size), "1.2.0": testImage(3, size)}
	b10 := v.release("1.0.0", 1, images["1.0.0"], nil)
	b11path := filepath.Join(t.TempDir(), "1.1.0.bundle")
	if err := os.WriteFile(b11path, v.release("1.1.0", 1, images["1.1.0"], nil), 0o644); err != nil {
		t.Fatal(err)
	}
	b12 := v.release("1.2.0", 1, images["1.2.0"], nil)

	newDevice := func() string {
		dir := t.TempDir()
		cfg := testConfig(dir, 16<<20)
		provision(t, durable.OS, cfg, v.factoryRoot, b10)
		data, err := cfg.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, ConfigFileName), data, 0o644); err != nil {
			t.Fatal(err)
		}
		d, err := OpenConfig(durable.OS, filepath.Join(dir, ConfigFileName), Options{})
		if err != nil {
			t.Fatal(err)
		}
		mustBoot(t, d)
		return dir
	}
	install := func(dir string) *exec.Cmd {
		return exec.Command(bin, "device", "install", "--dir", dir, "--bundle", b11path)
	}

	// Calibrate: how long does an uninterrupted install take?
	start := time.Now()
	if out, err := install(newDevice()).CombinedOutput(); err != nil {
		t.Fatalf("uninterrupted install: %v\n%s", err, out)
	}
	full := time.Since(start)
	t.Logf("uninterrupted install: %v", full)

	rng := rand.New(rand.NewPCG(2026, 1))
	outcomes := map[string]int{}
	for i := range 20 {
		dir := newDevice()
		cmd := install(dir)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		delay := time.Duration(rng.Int64N(int64(full) * 12 / 10))
		time.Sleep(delay)
		cmd.Process.Signal(syscall.SIGKILL)
		err := cmd.Wait()
		killed := err != nil

		d, err := OpenConfig(durable.OS, filepath.Join(dir, ConfigFileName), Options{})
		if err != nil {
			t.Fatalf("iteration %d (kill after %v): open: %v", i, delay, err)
		}
		ctx := context.Background()
		r, err := d.Boot(ctx)
		if err != nil {
			t.Fatalf("iteration %d (kill after %v): boot: %v", i, delay, err)
		}
		want, ok := images[r.Version]
		if !ok || r.Version == "1.2.0" || !bytes.Equal(slotImage(t, d, r.Slot, size), want) {
			t.Fatalf("iteration %d: booted %+v, which is not a verified 1.0.0 or 1.1.0 image", i, r)
		}
		outcomes[r.Version]++
		if r.Trial {
			if _, err := d.Health(ctx); err != nil {
				t.Fatalf("iteration %d: health: %v", i, err)
			}
		}
		if _, err := installBundle(d, b12, InstallOptions{}); err != nil {
			t.Fatalf("iteration %d (kill after %v, killed %v): later install: %v", i, delay, killed, err)
		}
		if r, err := d.Boot(ctx); err != nil || r.Version != "1.2.0" {
			t.Fatalf("iteration %d: boot of the later install = %+v, %v", i, r, err)
		}
	}
	t.Logf("booted after SIGKILL: %v", outcomes)
}
