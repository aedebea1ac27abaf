package devicecmd

import (
	"bytes"
	"crypto"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/airlockfw/airlock/device"
	"github.com/airlockfw/airlock/internal/cli"
	"github.com/airlockfw/airlock/keys"
	"github.com/airlockfw/airlock/repo"
)

// deviceVendor builds a signed repository with the repo package and
// writes release bundles to files.
type deviceVendor struct {
	t        *testing.T
	r        *repo.Repo
	dir      string
	snap, ts crypto.Signer
	product  crypto.Signer
}

func newDeviceVendor(t *testing.T) *deviceVendor {
	gen := func() crypto.Signer {
		k, err := keys.Generate(keys.Ed25519)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	v := &deviceVendor{t: t, dir: filepath.Join(t.TempDir(), "repo")}
	root, targets := gen(), gen()
	v.snap, v.ts, v.product = gen(), gen(), gen()
	r, err := repo.Init(v.dir, repo.InitOptions{RootKeys: []crypto.PublicKey{root.Public()}, RootThreshold: 1,
		RootSigners: []crypto.Signer{root}, Targets: targets, Snapshot: v.snap, Timestamp: v.ts})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Delegate("acme/router-x1", []crypto.PublicKey{v.product.Public()}, 1, targets); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Publish(v.snap, v.ts); err != nil {
		t.Fatal(err)
	}
	v.r = r
	return v
}

func (v *deviceVendor) bundle(version string, seed byte) string {
	img := bytes.Repeat([]byte{seed, 1, 2, 3, 4, 5, 6, seed ^ 0x55}, 32<<10)
	p := filepath.Join(v.t.TempDir(), "img")
	if err := os.WriteFile(p, img, 0o644); err != nil {
		v.t.Fatal(err)
	}
	if _, err := v.r.AddRelease(repo.ReleaseOptions{Product: "acme/router-x1", ImagePath: p, Version: version, SecurityVersion: 1,
		Models: []string{"x1"}, Compress: repo.CompressNone, Signers: []crypto.Signer{v.product}}); err != nil {
		v.t.Fatal(err)
	}
	if _, err := v.r.Publish(v.snap, v.ts); err != nil {
		v.t.Fatal(err)
	}
	var b bytes.Buffer
	if err := v.r.CreateBundle(&b, "acme/router-x1", version); err != nil {
		v.t.Fatal(err)
	}
	out := filepath.Join(v.t.TempDir(), version+".bundle")
	if err := os.WriteFile(out, b.Bytes(), 0o644); err != nil {
		v.t.Fatal(err)
	}
	return out
}

func TestDeviceCommandsEndToEnd(t *testing.T) {
	v := newDeviceVendor(t)
	b10, b11 := v.bundle("1.0.0", 1), v.bundle("1.1.0", 2)
	dir := filepath.Join(t.TempDir(), "dev")
	root := filepath.Join(v.dir, "public", "metadata", "1.root.json")
	must := func(want int, in string, args ...string) string {
		t.Helper()
		code, out, errOut := runCLI(t, args...)
		if code != want || !strings.Contains(out+errOut, in) {
			t.Fatalf("airlock %s: exit %d (want %d), output lacks %q:\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, want, in, out, errOut)
		}
		return out
	}
	must(cli.ExitUsage, "--root is required", "device", "init", "--dir", dir)
	must(cli.ExitUsage, `invalid value "1mib" for flag -slot-size`, "device", "init", "--dir", dir, "--root", root, "--model", "x1", "--hw-rev", "3",
		"--slot-size", "1mib", "--image", b10)
	must(cli.ExitOK, "committed in slot A", "device", "init", "--dir", dir, "--root", root, "--model", "x1", "--hw-rev", "3",
		"--slot-size", "1MiB", "--image", b10, "--health-cmd", "true", "--health-timeout", "5s", "--write-chunk", "64KiB")
	must(cli.ExitOK, "booted slot A (version 1.0.0, committed)", "device", "boot", "--dir", dir)
	must(cli.ExitOK, "into slot B", "device", "install", "--dir", dir, "--bundle", b11)
	must(cli.ExitFailure, "trial boot is pending", "device", "install", "--dir", dir, "--bundle", b11)
	must(cli.ExitOK, "booted slot B (version 1.1.0, trial)", "device", "boot", "--dir", dir)
	must(cli.ExitOK, "committed slot B", "device", "health", "--dir", dir)
	out := must(cli.ExitOK, "", "device", "status", "--dir", dir, "--json")
	var st device.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatal(err)
	}
	if st.Boot.Good != "B" || st.Slots[1].Version != "1.1.0" || st.Slots[1].Status != device.StatusCommitted {
		t.Fatalf("status = %+v", st)
	}
	must(cli.ExitOK, "anti-rollback counter", "device", "status", "--config", filepath.Join(dir, "device.toml"))

	// A byte flipped in the committed slot: boot refuses it and falls back.
	f, err := os.OpenFile(filepath.Join(dir, "slot-b.img"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte{0xff}, 777)
	f.Close()
	must(cli.ExitOK, "booted slot A (version 1.0.0", "device", "boot", "--dir", dir)
	must(cli.ExitOK, "installed image hash mismatch", "device", "status", "--dir", dir)
	// A truncated bundle is refused, naming the check.
	data, _ := os.ReadFile(v.bundle("1.2.0", 3))
	trunc := filepath.Join(t.TempDir(), "trunc.bundle")
	os.WriteFile(trunc, data[:len(data)-100], 0o644)
	must(cli.ExitFailure, "format check failed", "device", "install", "--dir", dir, "--bundle", trunc)

}

func TestDeviceHealthFailureRollsBackFromCLI(t *testing.T) {
	v := newDeviceVendor(t)
	b10, b11 := v.bundle("1.0.0", 1), v.bundle("1.1.0", 2)
	dir := filepath.Join(t.TempDir(), "dev")
	root := filepath.Join(v.dir, "public", "metadata", "1.root.json")
	for _, args := range [][]string{
		{"device", "init", "--dir", dir, "--root", root, "--model", "x1", "--hw-rev", "3", "--slot-size", "1048576",
			"--image", b10, "--health-cmd", "false", "--boot", "grubenv"},
		{"device", "boot", "--dir", dir},
		{"device", "install", "--dir", dir, "--bundle", b11},
		{"device", "boot", "--dir", dir},
	} {
		if code, out, errOut := runCLI(t, args...); code != 0 {
			t.Fatalf("%v: exit %d\n%s%s", args, code, out, errOut)
		}
	}
	code, out, errOut := runCLI(t, "device", "health", "--dir", dir)
	if code != cli.ExitFailure || !strings.Contains(out, "booted slot A (version 1.0.0") || !strings.Contains(errOut, "health check failed") {
		t.Fatalf("health: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
}

// TestVerifyDeviceGivesTheDevicesVerdict: `airlock verify --device DIR`
// refuses what `airlock device install` refuses, with the same check and
// words, and accepts what it accepts — including what plain `verify --root`
// cannot know: the device's components (dependencies), its running version
// and its trusted metadata.
func TestVerifyDeviceGivesTheDevicesVerdict(t *testing.T) {
	v := newDeviceVendor(t)
	b10 := v.bundle("1.0.0", 1)
	dir := filepath.Join(t.TempDir(), "dev")
	root := filepath.Join(v.dir, "public", "metadata", "1.root.json")
	if code, _, errOut := runCLI(t, "device", "init", "--dir", dir, "--root", root, "--model", "x1", "--hw-rev", "3",
		"--slot-size", "1048576", "--image", b10); code != cli.ExitOK {
		t.Fatal(errOut)
	}
	// A release that needs a component the device lacks.
	img := filepath.Join(t.TempDir(), "img")
	os.WriteFile(img, bytes.Repeat([]byte{7}, 4096), 0o644)
	if _, err := v.r.AddRelease(repo.ReleaseOptions{Product: "acme/router-x1", ImagePath: img, Version: "1.1.0", SecurityVersion: 1,
		Models: []string{"x1"}, Depends: []string{"bootloader>=2.0.0"}, Compress: repo.CompressNone, Signers: []crypto.Signer{v.product}}); err != nil {
		t.Fatal(err)
	}
	if _, err := v.r.Publish(v.snap, v.ts); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := v.r.CreateBundle(&b, "acme/router-x1", "1.1.0"); err != nil {
		t.Fatal(err)
	}
	dep := filepath.Join(t.TempDir(), "dep.bundle")
	os.WriteFile(dep, b.Bytes(), 0o644)

	// verify --root without device facts leaves the dependency check out,
	// and says so.
	code, out, errOut := runCLI(t, "verify", "--root", root, "--bundle", dep, "--model", "x1")
	if code != cli.ExitOK || !strings.Contains(out, "skipped") || !strings.Contains(out, "dependency") {
		t.Fatalf("verify --root: exit %d\n%s%s", code, out, errOut)
	}
	vcode, _, verr := runCLI(t, "verify", "--device", dir, "--bundle", dep)
	dcode, _, derr := runCLI(t, "device", "install", "--dir", dir, "--bundle", dep)
	if vcode != cli.ExitFailure || dcode != cli.ExitFailure {
		t.Fatalf("want both refused: verify exit %d %s; install exit %d %s", vcode, verr, dcode, derr)
	}
	const why = `policy check failed: policy check "dependency" failed: release requires "bootloader" >= "2.0.0", device has no such component`
	if !strings.Contains(verr, why) || !strings.Contains(derr, why) {
		t.Fatalf("verdicts differ from %q:\nverify:  %s\ninstall: %s", why, verr, derr)
	}
	// The same bundle, once the device states its bootloader, passes both.
	if code, out, errOut := runCLI(t, "verify", "--root", root, "--bundle", dep, "--model", "x1", "--component", "bootloader=2.1.0"); code != cli.ExitOK || strings.Contains(out, "dependency") {
		t.Fatalf("verify with the component: exit %d\n%s%s", code, out, errOut)
	}
	// verify --device refuses the already-installed release as the device
	// does (not newer than the running version).
	vcode, _, verr = runCLI(t, "verify", "--device", dir, "--bundle", b10)
	dcode, _, derr = runCLI(t, "device", "install", "--dir", dir, "--bundle", b10)
	if vcode != cli.ExitFailure || dcode != cli.ExitFailure || !strings.Contains(verr, `policy check "version" failed`) || !strings.Contains(derr, `policy check "version" failed`) {
		t.Fatalf("reinstall: verify exit %d %s; install exit %d %s", vcode, verr, dcode, derr)
	}
	if code, _, errOut := runCLI(t, "verify", "--device", dir, "--root", root, "--bundle", dep); code != cli.ExitUsage || !strings.Contains(errOut, "--device takes every fact") {
		t.Fatalf("--device with --root: exit %d %s", code, errOut)
	}
}

// TestDeviceInitBootLimit: --boot-limit is validated (the grubenv range is
// what the shipped grub.cfg counts to) and lands in device.toml as
// boot.boot_limit, which the boot control then carries as bootlimit.
func TestDeviceInitBootLimit(t *testing.T) {
	v := newDeviceVendor(t)
	b10 := v.bundle("1.0.0", 1)
	root := filepath.Join(v.dir, "public", "metadata", "1.root.json")
	initArgs := func(dir string, extra ...string) []string {
		return append([]string{"device", "init", "--dir", dir, "--root", root, "--model", "x1", "--hw-rev", "3",
			"--slot-size", "1MiB", "--image", b10}, extra...)
	}
	for _, tc := range []struct {
		extra []string
		want  string
	}{
		{[]string{"--boot-limit", "0"}, "--boot-limit 0 out of range [1, 255]"},
		{[]string{"--boot-limit", "256", "--boot", "uboot-env"}, "--boot-limit 256 out of range [1, 255]"},
		{[]string{"--boot-limit", "6", "--boot", "grubenv"}, "--boot-limit 6 out of range [1, 5] for --boot grubenv"},
	} {
		dir := filepath.Join(t.TempDir(), "dev")
		if code, _, errOut := runCLI(t, initArgs(dir, tc.extra...)...); code != cli.ExitUsage || !strings.Contains(errOut, tc.want) {
			t.Errorf("%q: exit %d, stderr %q; want usage error %q", tc.extra, code, errOut, tc.want)
		}
	}
	dir := filepath.Join(t.TempDir(), "dev")
	if code, out, errOut := runCLI(t, initArgs(dir, "--boot", "uboot-env", "--boot-limit", "3")...); code != cli.ExitOK {
		t.Fatalf("init: exit %d\n%s%s", code, out, errOut)
	}
	toml, err := os.ReadFile(filepath.Join(dir, "device.toml"))
	if err != nil || !strings.Contains(string(toml), "boot_limit = 3") {
		t.Fatalf("device.toml lacks boot_limit = 3 (%v):\n%s", err, toml)
	}
	code, out, errOut := runCLI(t, "device", "status", "--dir", dir, "--json")
	var st device.Status
	if code != cli.ExitOK || json.Unmarshal([]byte(out), &st) != nil || st.Boot.BootLimit != 3 {
		t.Fatalf("status: exit %d, boot %+v\n%s", code, st.Boot, errOut)
	}
}
