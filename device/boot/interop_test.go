package boot

// Interoperability with the real tools a device or its build system uses on
// the same environments: fw_printenv/fw_setenv (libubootenv, Debian package
// libubootenv-tool) and grub-editenv (Debian package grub-common). The tests
// skip when a tool is missing unless AIRLOCK_REQUIRE_TOOLS is set, in which
// case a missing tool fails them.

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/airlockfw/airlock/internal/durable"
)

func requireTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("AIRLOCK_REQUIRE_TOOLS") == "" {
			t.Skipf("%s not installed (set AIRLOCK_REQUIRE_TOOLS=1 to fail instead)", name)
		}
		t.Fatalf("%s is required (AIRLOCK_REQUIRE_TOOLS is set): %v", name, err)
	}
	return p
}

func runTool(t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(requireTool(t, name), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %q: %v\nstdout:\n%s\nstderr:\n%s", name, args, err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// fwEnvConfig writes a libubootenv fw_env.config for cfg and returns its path.
func fwEnvConfig(t *testing.T, cfg Config) string {
	t.Helper()
	size := cfg.EnvSize
	var b strings.Builder
	fmt.Fprintf(&b, "# device offset size\n%s %#x %#x\n", cfg.Path, cfg.Offset, size)
	if cfg.RedundPath != "" {
		fmt.Fprintf(&b, "%s %#x %#x\n", cfg.RedundPath, cfg.RedundOffset, size)
	}
	p := filepath.Join(t.TempDir(), "fw_env.config")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// parseListing parses "name=value" lines (fw_printenv, grub-editenv list).
func parseListing(t *testing.T, out string) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if l == "" {
			continue
		}
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			t.Fatalf("listing line %q has no '='", l)
		}
		m[k] = v
	}
	return m
}

// wantVars is what a tool must list for st plus extra foreign variables.
func wantVars(st State, extra ...string) map[string]string {
	m := map[string]string{}
	e := newEnv()
	applyState(e, st.normalized())
	for _, v := range e.vars {
		m[v.name] = v.value
	}
	for i := 0; i < len(extra); i += 2 {
		m[extra[i]] = extra[i+1]
	}
	return m
}

func ubootLayouts(dir string) []Config {
	return []Config{
		{Backend: BackendUBootEnv, Path: filepath.Join(dir, "single"), Offset: 0x1000, EnvSize: 0x2000},
		{Backend: BackendUBootEnv, Path: filepath.Join(dir, "env0"), RedundPath: filepath.Join(dir, "env1"), EnvSize: 0x4000},
		{Backend: BackendUBootEnv, Path: filepath.Join(dir, "mmc"), RedundPath: filepath.Join(dir, "mmc"),
			Offset: 0x4000, RedundOffset: 0x8000, EnvSize: 0x4000},
	}
}

// zeroFiles creates the env files of cfg, zero filled (an erased, invalid
// environment) and large enough for every copy.
func zeroFiles(t *testing.T, cfg Config) {
	t.Helper()
	size := max(cfg.Offset, cfg.RedundOffset) + cfg.EnvSize
	for _, p := range []string{cfg.Path, cfg.RedundPath} {
		if p != "" {
			if err := os.WriteFile(p, make([]byte, size), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func TestFwPrintenvReadsAirlockEnvironment(t *testing.T) {
	for _, cfg := range ubootLayouts(t.TempDir()) {
		t.Run(layoutName(cfg), func(t *testing.T) {
			fwcfg := fwEnvConfig(t, cfg)
			if err := Init(durable.OS, cfg, State{Good: SlotA}); err != nil {
				t.Fatal(err)
			}
			// A foreign variable set by the tool must survive Airlock's
			// Stores, and fw_printenv must see each Store.
			runTool(t, "fw_setenv", "-c", fwcfg, "bootcmd", "run airlock_boot")
			c, _ := Open(durable.OS, cfg)
			for i, st := range storeSequence {
				if err := c.Store(st); err != nil {
					t.Fatal(err)
				}
				got := parseListing(t, runTool(t, "fw_printenv", "-c", fwcfg))
				if diff := cmp.Diff(wantVars(st, "bootcmd", "run airlock_boot"), got); diff != "" {
					t.Fatalf("fw_printenv after Store #%d (-want +got):\n%s", i, diff)
				}
			}
		})
	}
}

func TestAirlockReadsFwSetenvEnvironment(t *testing.T) {
	for _, cfg := range ubootLayouts(t.TempDir()) {
		t.Run(layoutName(cfg), func(t *testing.T) {
			zeroFiles(t, cfg)
			fwcfg := fwEnvConfig(t, cfg)
			dir := t.TempDir()
			// Provision from scratch with the tool alone (the factory
			// path of a device maker who does not use Airlock's Init).
			defenv := filepath.Join(dir, "default.env")
			os.WriteFile(defenv, []byte("bootdelay=2\n"), 0o644)
			script := filepath.Join(dir, "script")
			os.WriteFile(script, []byte(strings.Join([]string{
				"boot_slot=B", "upgrade_available=1", "bootcount=0", "bootlimit=3",
				"airlock_good=A", "airlock_trial=B", "airlock_bad=A", "",
			}, "\n")), 0o644)
			runTool(t, "fw_setenv", "-c", fwcfg, "-f", defenv, "-s", script)
			c, err := Open(durable.OS, cfg)
			if err != nil {
				t.Fatal(err)
			}
			want := State{Good: SlotA, Trial: SlotB, BootLimit: 3, Bad: []Slot{SlotA}}
			got, err := c.Load()
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Fatalf("Load of fw_setenv environment (-want +got):\n%s", diff)
			}
			// The bootloader counts boot attempts (U-Boot's
			// bootcount_env does a saveenv): Airlock must see the newest
			// copy each time, interleaved with its own Stores.
			for n := 1; n <= 5; n++ {
				runTool(t, "fw_setenv", "-c", fwcfg, "bootcount", fmt.Sprint(n))
				want.BootCount = n
				got, err := c.Load()
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Fatalf("Load after fw_setenv bootcount=%d (-want +got):\n%s", n, diff)
				}
				want.BootLimit = 3 + n
				if err := c.Store(want); err != nil {
					t.Fatal(err)
				}
				if v := runTool(t, "fw_printenv", "-c", fwcfg, "-n", "bootlimit"); v != fmt.Sprintf("%d\n", want.BootLimit) {
					t.Fatalf("fw_printenv bootlimit after Store = %q, want %d", v, want.BootLimit)
				}
			}
			// fw_setenv deleting airlock_trial (what "setenv airlock_trial"
			// does) without clearing upgrade_available is inconsistent.
			runTool(t, "fw_setenv", "-c", fwcfg, "airlock_trial")
			if _, err := c.Load(); err == nil {
				t.Fatal("Load accepted upgrade_available=1 without airlock_trial")
			}
		})
	}
}

// TestRedundantFlagsAgreeWithLibubootenv writes two valid copies with chosen
// flags and checks that fw_printenv and Airlock pick the same one, including
// across the 8-bit wrap-around.
func TestRedundantFlagsAgreeWithLibubootenv(t *testing.T) {
	const size = 0x1000
	tests := []struct {
		flags0, flags1 byte
		want           string // "0" or "1": which copy is current
	}{
		{1, 2, "1"}, {2, 1, "0"}, {0xff, 0x00, "1"}, {0x00, 0xff, "0"}, {0x7f, 0x80, "1"}, {0xfe, 0xff, "1"}, {4, 4, "0"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("flags=%d,%d", tt.flags0, tt.flags1), func(t *testing.T) {
			dir := t.TempDir()
			cfg := Config{Backend: BackendUBootEnv, Path: filepath.Join(dir, "env0"), RedundPath: filepath.Join(dir, "env1"), EnvSize: size}
			st0 := State{Good: SlotA, BootLimit: 1}
			st1 := State{Good: SlotB, BootLimit: 1}
			e0, e1 := stateEnv(st0), stateEnv(st1)
			e0.set("copy", "0")
			e1.set("copy", "1")
			os.WriteFile(cfg.Path, rawUBootCopy(t, size, &tt.flags0, e0), 0o600)
			os.WriteFile(cfg.RedundPath, rawUBootCopy(t, size, &tt.flags1, e1), 0o600)
			if got := runTool(t, "fw_printenv", "-c", fwEnvConfig(t, cfg), "-n", "copy"); got != tt.want+"\n" {
				t.Errorf("fw_printenv picked copy %q, want %q", strings.TrimSpace(got), tt.want)
			}
			c, _ := Open(durable.OS, cfg)
			got, err := c.Load()
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]State{"0": st0, "1": st1}[tt.want]
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Airlock picked a different copy than libubootenv (-want +got):\n%s", diff)
			}
		})
	}
}

// TestFwPrintenvAndAirlockAgreeOnCorruptCopy checks the recovery path the tools
// share: with the current copy corrupt, both read the other copy.
func TestFwPrintenvAndAirlockAgreeOnCorruptCopy(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{Backend: BackendUBootEnv, Path: filepath.Join(dir, "env0"), RedundPath: filepath.Join(dir, "env1"), EnvSize: 0x2000}
	fwcfg := fwEnvConfig(t, cfg)
	old := State{Good: SlotA, BootLimit: 1}
	if err := Init(durable.OS, cfg, old); err != nil {
		t.Fatal(err)
	}
	c, _ := Open(durable.OS, cfg)
	next := State{Good: SlotA, Trial: SlotB, BootLimit: 1}
	if err := c.Store(next); err != nil { // writes env1, now current
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(cfg.RedundPath)
	raw[0x100] ^= 0xff // torn write of env1
	os.WriteFile(cfg.RedundPath, raw, 0o600)
	got, err := c.Load()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(old, got); diff != "" {
		t.Fatalf("Airlock Load (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(wantVars(old), parseListing(t, runTool(t, "fw_printenv", "-c", fwcfg))); diff != "" {
		t.Fatalf("fw_printenv (-want +got):\n%s", diff)
	}
}

func TestGrubEditenvListsAirlockEnvironment(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{Backend: BackendGrubEnv, Path: filepath.Join(dir, "grubenv")}
	if err := Init(durable.OS, cfg, State{Good: SlotB}); err != nil {
		t.Fatal(err)
	}
	note := "back\\slash\nand newline"
	runTool(t, "grub-editenv", cfg.Path, "set", "saved_entry=airlock", "note="+note)
	c, _ := Open(durable.OS, cfg)
	for i, st := range storeSequence {
		if err := c.Store(st); err != nil {
			t.Fatal(err)
		}
		// The escaped newline makes "note" span two listing lines; check
		// the raw listing.
		out := runTool(t, "grub-editenv", cfg.Path, "list")
		var want strings.Builder
		blk, err := parseGrubEnv(mustReadFile(t, cfg.Path))
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range blk.env.vars {
			fmt.Fprintf(&want, "%s=%s\n", v.name, v.value)
		}
		if out != want.String() {
			t.Fatalf("grub-editenv list after Store #%d:\n got %q\nwant %q", i, out, want.String())
		}
		wantMap := wantVars(st, "saved_entry", "airlock", "note", note)
		gotMap := map[string]string{}
		for _, v := range blk.env.vars {
			gotMap[v.name] = v.value
		}
		if diff := cmp.Diff(wantMap, gotMap); diff != "" {
			t.Fatalf("variables after Store #%d (-want +got):\n%s", i, diff)
		}
		// grub-editenv re-encodes the whole block on every set: setting a
		// variable to its current value must reproduce Airlock's bytes
		// exactly (one encoding).
		before := mustReadFile(t, cfg.Path)
		runTool(t, "grub-editenv", cfg.Path, "set", fmt.Sprintf("bootcount=%d", st.BootCount))
		if after := mustReadFile(t, cfg.Path); !bytes.Equal(before, after) {
			t.Fatalf("grub-editenv re-encoded Airlock's block differently:\nairlock %q\ngrub    %q", before, after)
		}
	}
}

func mustReadFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestAirlockReadsGrubEditenvEnvironment(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{Backend: BackendGrubEnv, Path: filepath.Join(dir, "grubenv")}
	runTool(t, "grub-editenv", cfg.Path, "create")
	runTool(t, "grub-editenv", cfg.Path, "set", "saved_entry=1",
		"boot_slot=A", "upgrade_available=0", "bootcount=0", "bootlimit=1",
		"airlock_good=A", "airlock_trial=", "airlock_bad=", "odd=a\\b\nc")
	c, _ := Open(durable.OS, cfg)
	want := State{Good: SlotA, BootLimit: 1}
	got, err := c.Load()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("Load of grub-editenv block (-want +got):\n%s", diff)
	}
	// An install (Airlock), then GRUB's boot script counting attempts
	// (simulated with grub-editenv, which writes the same block format as
	// GRUB's save_env).
	want = State{Good: SlotA, Trial: SlotB, BootLimit: 2}
	if err := c.Store(want); err != nil {
		t.Fatal(err)
	}
	for n := 1; n <= 3; n++ {
		runTool(t, "grub-editenv", cfg.Path, "set", fmt.Sprintf("bootcount=%d", n))
		want.BootCount = n
		got, err := c.Load()
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("Load after grub-editenv bootcount=%d (-want +got):\n%s", n, diff)
		}
	}
	if got.Next() != SlotA {
		t.Errorf("after %d attempts with bootlimit %d Next() = %q, want fallback to A", got.BootCount, got.BootLimit, got.Next())
	}
	out := runTool(t, "grub-editenv", cfg.Path, "list")
	for _, line := range []string{"saved_entry=1\n", "airlock_trial=B\n", "odd=a\\b\nc\n", "bootcount=3\n"} {
		if !strings.Contains(out, line) {
			t.Errorf("grub-editenv list lacks %q:\n%s", line, out)
		}
	}
	raw := mustReadFile(t, cfg.Path)
	if !bytes.Contains(raw, []byte("odd=a\\\\b\\\nc\n")) {
		t.Errorf("escaped value not preserved in GRUB's encoding: %q", raw)
	}
	runTool(t, "grub-editenv", cfg.Path, "unset", "airlock_good")
	if _, err := c.Load(); err == nil {
		t.Error("Load accepted a block without airlock_good")
	}
}
