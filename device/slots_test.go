package device

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/airlockfw/airlock/device/boot"
	"github.com/airlockfw/airlock/internal/durable"
)

// osDevice provisions a device with 1.0.0 on the real filesystem in a new
// temp dir and returns it with the 1.1.0 bundle and the temp dir (the
// device directory is dir/dev, so dir holds "outside" files).
func osDevice(t *testing.T) (d *Device, b11 []byte, dir string) {
	t.Helper()
	v := newVendor(t)
	b10 := v.release("1.0.0", 1, testImage(1, imgSize), nil)
	b11 = v.release("1.1.0", 2, testImage(2, imgSize), nil)
	dir = t.TempDir()
	d = provision(t, durable.OS, testConfig(filepath.Join(dir, "dev"), 1<<20), v.factoryRoot, b10)
	mustBoot(t, d)
	return d, b11, dir
}

func writeOutside(t *testing.T, name string, size int) []byte {
	t.Helper()
	data := bytes.Repeat([]byte("outside!"), size/8)
	if err := os.WriteFile(name, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return data
}

func TestInstallRefusesSymlinkedInactiveSlotOutsideTheDevice(t *testing.T) {
	d, b11, dir := osDevice(t)
	outside := filepath.Join(dir, "outside.img")
	want := writeOutside(t, outside, 1<<20) // even the right size
	slotB, _ := d.slotPath(boot.SlotB)
	if err := os.Remove(slotB); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, slotB); err != nil {
		t.Fatal(err)
	}
	before := fingerprint(t, d)
	_, err := installBundle(d, b11, InstallOptions{})
	var ie *InstallError
	if !errors.As(err, &ie) || ie.Check != CheckSlot || !errors.Is(err, ErrSlot) || !strings.Contains(err.Error(), "symbolic link to a regular file") {
		t.Fatalf("install through a symlinked slot: err = %v, want the slot check to refuse the link", err)
	}
	if got, _ := os.ReadFile(outside); !bytes.Equal(got, want) {
		t.Error("the file outside the device was written through the slot link")
	}
	if diff := diffMaps(before, fingerprint(t, d)); diff != "" {
		t.Errorf("refused install changed the device:\n%s", diff)
	}
}

func diffMaps(a, b map[string]string) string {
	var out []string
	for k, v := range a {
		if b[k] != v {
			out = append(out, k)
		}
	}
	return strings.Join(out, ", ")
}

func TestInstallRefusesSlotFileSmallerThanSlotsSize(t *testing.T) {
	for _, tc := range []struct {
		name string
		fsys func(t *testing.T) (durable.FS, string)
	}{
		{"OS", func(t *testing.T) (durable.FS, string) { return durable.OS, filepath.Join(t.TempDir(), "dev") }},
		{"Mem", func(t *testing.T) (durable.FS, string) { return durable.NewMem(), "/dev" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := newVendor(t)
			b10 := v.release("1.0.0", 1, testImage(1, imgSize), nil)
			b11 := v.release("1.1.0", 2, testImage(2, imgSize), nil)
			fsys, dir := tc.fsys(t)
			d := provision(t, fsys, testConfig(dir, 1<<20), v.factoryRoot, b10)
			mustBoot(t, d)
			slotB, _ := d.slotPath(boot.SlotB)
			f, err := fsys.OpenFile(slotB, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			if err := f.Truncate(4096); err != nil { // the "partition" is smaller than slots.size
				t.Fatal(err)
			}
			f.Close()
			_, err = installBundle(d, b11, InstallOptions{})
			var ie *InstallError
			if !errors.As(err, &ie) || ie.Check != CheckSlot || !errors.Is(err, ErrSlot) || !strings.Contains(err.Error(), "is a file of 4096 bytes, but slots.size is 1048576") {
				t.Fatalf("install into a short slot: err = %v, want the slot check to refuse its size", err)
			}
			if fi, err := fsys.Stat(slotB); err != nil || fi.Size() != 4096 {
				t.Errorf("slot B after the refused install: %v, %v; want 4096 bytes, unwritten", fi, err)
			}
		})
	}
}

// TestSlotRuleRefusesWhatIsNotABlockDeviceOrAFileInside checks every branch
// of the slot rule on what an attacker or a misconfiguration could name.
func TestSlotRuleRefusesWhatIsNotABlockDeviceOrAFileInside(t *testing.T) {
	dir := t.TempDir()
	dev := filepath.Join(dir, "dev")
	elsewhere := filepath.Join(dir, "elsewhere")
	for _, d := range []string{dev, elsewhere, filepath.Join(dev, "a-directory")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	const size = 1 << 16
	writeOutside(t, filepath.Join(dev, "inside.img"), size)
	writeOutside(t, filepath.Join(dev, "big.img"), 2*size)
	writeOutside(t, filepath.Join(elsewhere, "b.img"), size)
	if err := os.Symlink(elsewhere, filepath.Join(dev, "slots")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(elsewhere, "b.img"), filepath.Join(dev, "link.img")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("inside.img", filepath.Join(dev, "link-inside.img")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/dev/null", filepath.Join(dev, "null.img")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(dev, "fifo.img"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		slot, want string
	}{
		{"inside.img", ""},
		{"link.img", "is a symbolic link to a regular file"},
		{"link-inside.img", "is a symbolic link to a regular file"},
		{filepath.Join(elsewhere, "b.img"), "is a regular file outside the device directory"},
		{"../elsewhere/b.img", "is a regular file outside the device directory"},
		{"slots/b.img", `is reached through the symbolic link`},
		{"null.img", "is a character device"},
		{"/dev/zero", "is a character device"},
		{"fifo.img", "is a named pipe"},
		{"a-directory", "is a directory"},
		{"big.img", "is a file of 131072 bytes, but slots.size is 65536"},
		{"missing.img", "no such file"},
	} {
		cfg := testConfig(dev, size)
		cfg.Slots.B = tc.slot
		for _, flag := range []int{os.O_RDONLY, os.O_WRONLY} {
			f, err := openSlot(durable.OS, cfg, boot.SlotB, flag)
			if tc.want == "" {
				if err != nil {
					t.Errorf("slot %q: %v, want it accepted", tc.slot, err)
				} else {
					f.Close()
				}
				continue
			}
			if err == nil {
				f.Close()
			}
			if !errors.Is(err, ErrSlot) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("slot %q (flag %#x): err = %v, want ErrSlot %q", tc.slot, flag, err, tc.want)
			}
		}
	}
}

func TestProvisionRefusesSymlinkedSlot(t *testing.T) {
	v := newVendor(t)
	dir := t.TempDir()
	dev := filepath.Join(dir, "dev")
	if err := os.MkdirAll(dev, 0o755); err != nil {
		t.Fatal(err)
	}
	outside := filepath.Join(dir, "outside.img")
	want := writeOutside(t, outside, 1<<20)
	if err := os.Symlink(outside, filepath.Join(dev, "slot-b.img")); err != nil {
		t.Fatal(err)
	}
	_, err := Provision(context.Background(), durable.OS, testConfig(dev, 1<<20),
		ProvisionOptions{FactoryRoot: v.factoryRoot, CreateSlots: true}, Options{})
	if !errors.Is(err, ErrSlot) {
		t.Fatalf("provision with a symlinked slot: err = %v, want ErrSlot", err)
	}
	if got, _ := os.ReadFile(outside); !bytes.Equal(got, want) {
		t.Error("the file outside the device was changed")
	}
}

// TestBootRefusesCommittedSlotSymlinkedToACopyOutside: an attacker moves
// the committed image out of the device and links the slot to it; even
// with the right content the link is refused at boot.
func TestBootRefusesCommittedSlotSymlinkedToACopyOutside(t *testing.T) {
	d, _, dir := osDevice(t)
	slotA, _ := d.slotPath(boot.SlotA)
	outside := filepath.Join(dir, "copy.img")
	if err := os.Rename(slotA, outside); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, slotA); err != nil {
		t.Fatal(err)
	}
	_, err := d.Boot(context.Background())
	if !errors.Is(err, ErrNoBootableSlot) || !strings.Contains(err.Error(), "symbolic link to a regular file") {
		t.Fatalf("boot of a symlinked slot: err = %v, want no bootable slot naming the link", err)
	}
}

// loopDevice attaches a loop device of size bytes, or skips the test when
// that is not possible (not root, no losetup).
func loopDevice(t *testing.T, size int64) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("attaching a loop device needs root")
	}
	if _, err := exec.LookPath("losetup"); err != nil {
		t.Skip("no losetup")
	}
	backing := filepath.Join(t.TempDir(), "backing.img")
	if err := os.WriteFile(backing, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(backing, size); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("losetup", "--find", "--show", backing).Output()
	if err != nil {
		t.Skipf("losetup: %v", err)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })
	return dev
}

// TestBlockDeviceSlotThroughALinkIsAccepted: a block device named through
// a link, as /dev/disk/by-partlabel/… is, is a legitimate slot; it may be
// larger than slots.size, never smaller.
func TestBlockDeviceSlotThroughALinkIsAccepted(t *testing.T) {
	d, b11, dir := osDevice(t)
	loop := loopDevice(t, 2<<20)
	byLabel := filepath.Join(dir, "by-partlabel")
	if err := os.Mkdir(byLabel, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(loop, filepath.Join(byLabel, "slot-b")); err != nil {
		t.Fatal(err)
	}
	d.cfg.Slots.B = filepath.Join(byLabel, "slot-b")
	if _, err := installBundle(d, b11, InstallOptions{}); err != nil {
		t.Fatalf("install into a block device slot: %v", err)
	}
	if r := mustBoot(t, d); r.Slot != boot.SlotB || r.Version != "1.1.0" {
		t.Fatalf("boot = %+v, want the trial of 1.1.0 in the block device slot B", r)
	}

	small := loopDevice(t, 512<<10)
	cfg := *d.cfg
	cfg.Slots.A = small
	_, err := openSlot(durable.OS, &cfg, boot.SlotA, os.O_WRONLY)
	if !errors.Is(err, ErrSlot) || !strings.Contains(err.Error(), "block device of 524288 bytes, smaller than slots.size 1048576") {
		t.Fatalf("block device smaller than slots.size: err = %v, want ErrSlot", err)
	}
}
