package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/airlockfw/airlock/internal/cli"
)

// MaxUnitExposure is the highest `systemd-analyze security` exposure a
// shipped unit may have (0 safest, 10 unprotected).
const MaxUnitExposure = 3.0

const examples = "../../docs/examples"

// units are the shipped systemd units and what each must say.
var units = []struct {
	name   string
	binary string   // ExecStart's program
	want   []string // lines the unit must contain
}{
	{"airlock-server.service", "/usr/bin/airlock", []string{"Type=notify", "WatchdogSec=60s", "StateDirectory=airlock", "User=airlock"}},
	{"airlock-agent.service", "/usr/bin/airlock-device", []string{"Type=notify", "WatchdogSec=10min", "Requires=airlock-boot.service", "StateDirectory=airlock", "ReadWritePaths=-/boot"}},
	{"airlock-boot.service", "/usr/bin/airlock-device", []string{"Type=oneshot", "RemainAfterExit=yes", "DefaultDependencies=no"}},
	{"airlock-timestamp.service", "/usr/bin/airlock", []string{"Type=oneshot", "ReadWritePaths=/srv/airlock/repo"}},
	{"airlock-timestamp.timer", "", []string{"Persistent=true"}},
}

// systemdAnalyze returns the path of systemd-analyze, skipping the test
// when it is missing (failing with AIRLOCK_REQUIRE_TOOLS=1).
func systemdAnalyze(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if os.Getenv("AIRLOCK_REQUIRE_TOOLS") == "1" {
			t.Fatalf("AIRLOCK_REQUIRE_TOOLS=1: %v (apt-get install -y systemd)", err)
		}
		t.Skip("systemd-analyze not installed")
	}
	return p
}

// unitRoot builds a root directory for `systemd-analyze --root`: the
// host's unit files (targets the units refer to), stand-in executables at
// the units' binary paths and the units in /etc/systemd/system.
func unitRoot(t *testing.T, extra map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for _, d := range []string{"usr/bin", "etc/systemd/system", "usr/lib/systemd/system"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, b := range []string{"airlock", "airlock-device"} {
		if err := os.WriteFile(filepath.Join(root, "usr/bin", b), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	var hostUnits string
	for _, d := range []string{"/usr/lib/systemd/system", "/lib/systemd/system"} {
		if _, err := os.Stat(filepath.Join(d, "multi-user.target")); err == nil {
			hostUnits = d
			break
		}
	}
	if hostUnits == "" {
		t.Fatal("no systemd unit directory with multi-user.target on this machine")
	}
	if out, err := exec.Command("cp", "-r", hostUnits+"/.", filepath.Join(root, "usr/lib/systemd/system")).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v\n%s", err, out)
	}
	for _, u := range units {
		data, err := os.ReadFile(filepath.Join(examples, u.name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, "etc/systemd/system", u.name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for name, text := range extra {
		if err := os.WriteFile(filepath.Join(root, "etc/systemd/system", name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// verify runs `systemd-analyze verify` on names in root and returns its
// output; any output is a finding (unknown keys are only warned about).
func verify(t *testing.T, sa, root string, names ...string) (string, error) {
	t.Helper()
	args := []string{"verify", "--root=" + root, "--man=no"}
	for _, n := range names {
		args = append(args, filepath.Join(root, "etc/systemd/system", n))
	}
	cmd := exec.Command(sa, args...)
	cmd.Env = append(os.Environ(), "SYSTEMD_LOG_COLOR=0")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestSystemdUnitsVerify(t *testing.T) {
	sa := systemdAnalyze(t)
	broken, err := os.ReadFile(filepath.Join(examples, "airlock-agent.service"))
	if err != nil {
		t.Fatal(err)
	}
	// The check must see a typo: a misspelt hardening key is only a warning
	// to systemd, and a unit running without its sandbox.
	root := unitRoot(t, map[string]string{"typo.service": strings.Replace(string(broken), "ProtectSystem=", "ProtectSystm=", 1)})
	var names []string
	for _, u := range units {
		names = append(names, u.name)
	}
	if out, err := verify(t, sa, root, names...); err != nil || out != "" {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	if out, _ := verify(t, sa, root, "typo.service"); !strings.Contains(out, "ProtectSystm") {
		t.Errorf("systemd-analyze verify did not report the misspelt key:\n%s", out)
	}
}

var exposureRE = regexp.MustCompile(`Overall exposure level for (\S+): ([0-9]+\.[0-9])`)

func TestSystemdUnitsExposure(t *testing.T) {
	sa := systemdAnalyze(t)
	root := unitRoot(t, nil)
	for _, u := range units {
		if !strings.HasSuffix(u.name, ".service") {
			continue
		}
		t.Run(u.name, func(t *testing.T) {
			cmd := exec.Command(sa, "security", "--offline=true", "--root="+root, "--no-pager", u.name)
			cmd.Env = append(os.Environ(), "SYSTEMD_LOG_COLOR=0", "SYSTEMD_COLORS=0")
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if err != nil && !errors.As(err, &ee) {
				t.Fatal(err)
			}
			m := exposureRE.FindStringSubmatch(string(out))
			if m == nil || m[1] != u.name {
				t.Fatalf("no exposure level in:\n%s", out)
			}
			v, err := strconv.ParseFloat(m[2], 64)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: exposure %.1f", u.name, v)
			if v > MaxUnitExposure {
				t.Errorf("exposure %.1f > %.1f:\n%s", v, MaxUnitExposure, out)
			}
		})
	}
}

// TestSystemdUnitsAgreeWithTheCLI checks each unit's fixed lines and that
// its ExecStart names the right binary and a command line that parses:
// the same arguments with --help appended must print the usage (an
// unknown flag or a bad value fails first).
func TestSystemdUnitsAgreeWithTheCLI(t *testing.T) {
	for _, u := range units {
		t.Run(u.name, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join(examples, u.name))
			if err != nil {
				t.Fatal(err)
			}
			text := strings.ReplaceAll(string(data), "\\\n", " ")
			lines := strings.Split(text, "\n")
			for _, w := range u.want {
				if !containsLine(lines, w) {
					t.Errorf("no line %q", w)
				}
			}
			if u.binary == "" {
				return
			}
			var exec []string
			for _, l := range lines {
				if rest, ok := strings.CutPrefix(l, "ExecStart="); ok {
					exec = strings.Fields(rest)
				}
			}
			if len(exec) < 2 || exec[0] != u.binary {
				t.Fatalf("ExecStart = %q, want %s ...", exec, u.binary)
			}
			var stdout, stderr bytes.Buffer
			e := &cli.Env{Ctx: context.Background(), Stdin: strings.NewReader(""), Stdout: &stdout, Stderr: &stderr, Getenv: func(string) string { return "" }}
			if code := program().RunEnv(e, append(exec[1:], "--help")); code != cli.ExitOK || !strings.HasPrefix(stdout.String(), "Usage:") {
				t.Fatalf("%q does not parse: exit %d\n%s", exec, code, stderr.String())
			}
		})
	}
}

func containsLine(lines []string, want string) bool {
	for _, l := range lines {
		if strings.TrimSpace(l) == want {
			return true
		}
	}
	return false
}
