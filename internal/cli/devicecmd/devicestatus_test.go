package devicecmd

import (
	"github.com/airlockfw/airlock/internal/cli"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDeviceStatusAfterFailedBootIsNotTheEarlierBoot: after a boot in
// which no slot verified, `device status` shows that failed boot, not the
// earlier successful one as if it were the last.
func TestDeviceStatusAfterFailedBootIsNotTheEarlierBoot(t *testing.T) {
	v := newDeviceVendor(t)
	b10 := v.bundle("1.0.0", 1)
	dir := filepath.Join(t.TempDir(), "dev")
	root := filepath.Join(v.dir, "public", "metadata", "1.root.json")
	for _, args := range [][]string{
		{"device", "init", "--dir", dir, "--root", root, "--model", "x1", "--hw-rev", "3", "--slot-size", "1048576", "--image", b10},
		{"device", "boot", "--dir", dir},
	} {
		if code, out, errOut := runCLI(t, args...); code != cli.ExitOK {
			t.Fatalf("%v: exit %d\n%s%s", args, code, out, errOut)
		}
	}
	f, err := os.OpenFile(filepath.Join(dir, "slot-a.img"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte{0xff}, 777) // the only image is corrupted; B is empty
	f.Close()
	if code, out, errOut := runCLI(t, "device", "boot", "--dir", dir); code != cli.ExitFailure {
		t.Fatalf("boot of a corrupted device: exit %d, want %d\n%s%s", code, cli.ExitFailure, out, errOut)
	}
	code, out, errOut := runCLI(t, "device", "status", "--dir", dir)
	if code != cli.ExitOK || !strings.Contains(out, "last boot: FAILED") || !strings.Contains(out, "no bootable slot") || strings.Contains(out, "last boot: slot A") {
		t.Fatalf("status after a failed boot: exit %d\nstdout: %s\nstderr: %s\nwant the failed boot as the last boot", code, out, errOut)
	}
}

func TestDeviceInitComponentFlag(t *testing.T) {
	v := newDeviceVendor(t)
	root := filepath.Join(v.dir, "public", "metadata", "1.root.json")
	initArgs := func(dir string, extra ...string) []string {
		return append([]string{"device", "init", "--dir", dir, "--root", root, "--model", "x1", "--hw-rev", "3",
			"--slot-size", "1048576", "--product", "acme/router-x1"}, extra...)
	}
	dir := filepath.Join(t.TempDir(), "dev")
	if code, out, errOut := runCLI(t, initArgs(dir, "--component", "bootloader=2.1.0", "--component", "acme/modem-m2=1.4.0")...); code != cli.ExitOK {
		t.Fatalf("init: exit %d\n%s%s", code, out, errOut)
	}
	cfg, err := os.ReadFile(filepath.Join(dir, "device.toml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"[components]", `bootloader = "2.1.0"`, `"acme/modem-m2" = "1.4.0"`} {
		if !strings.Contains(string(cfg), want) {
			t.Errorf("device.toml lacks %q:\n%s", want, cfg)
		}
	}
	for _, tt := range []struct{ flag, want string }{
		{"bootloader=2.1", "invalid version"},
		{"bootloader", "want NAME=VERSION"},
		{"boot loader=1.0.0", "not a component name"},
		{"acme/router-x1=1.0.0", "the device's own product"},
	} {
		code, out, errOut := runCLI(t, initArgs(filepath.Join(t.TempDir(), "dev"), "--component", tt.flag)...)
		if code != cli.ExitUsage || !strings.Contains(out+errOut, tt.want) {
			t.Errorf("--component %s: exit %d (want %d), output lacks %q:\n%s%s", tt.flag, code, cli.ExitUsage, tt.want, out, errOut)
		}
	}
	code, out, errOut := runCLI(t, initArgs(filepath.Join(t.TempDir(), "dev"), "--component", "bootloader=1.0.0", "--component", "bootloader=2.0.0")...)
	if code != cli.ExitUsage || !strings.Contains(errOut, "given twice") {
		t.Errorf("--component twice: exit %d\n%s%s", code, out, errOut)
	}
}
