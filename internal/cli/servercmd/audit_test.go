package servercmd

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/airlockfw/airlock/audit"
	"github.com/airlockfw/airlock/internal/cli"
)

// auditFixture writes the history of one release to a real audit log and
// returns its directory and the checkpoint key path.
func auditFixture(t *testing.T) (dir, keyPath string) {
	t.Helper()
	tmp := t.TempDir()
	keyPath = filepath.Join(tmp, "audit-key.pem")
	signer, err := audit.GenerateKey(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	dir = filepath.Join(tmp, "audit")
	l, err := audit.Open(dir, signer, audit.Options{CheckpointEvery: 3})
	if err != nil {
		t.Fatal(err)
	}
	const rel = "acme/router-x1@2.0.0"
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for i, e := range []audit.Entry{
		{Actor: "ci", Action: audit.ReleaseAdded, Release: rel},
		{Actor: "key:1a2b3c", Action: audit.ReleaseSigned, Release: rel},
		{Actor: "alice", Action: audit.ReleaseApproved, Release: rel},
		{Actor: "bob", Action: audit.ReleasePublished, Release: rel},
		{Actor: "mallory", Action: audit.AuthLoginFailed, Details: map[string]string{"remote_addr": "203.0.113.9"}},
		{Actor: "bob", Action: audit.RolloutStarted, Release: rel, Details: map[string]string{"cohort": "canary"}},
		{Actor: "dev-1", Action: audit.DeviceUpdated, Release: rel, Device: "dev-1"},
		{Actor: "dev-2", Action: audit.DeviceRolledBack, Release: rel, Device: "dev-2"},
	} {
		e.Time = t0.Add(time.Duration(i) * time.Minute)
		if _, err := l.Append(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return dir, keyPath + ".pub"
}

func TestAuditVerifyCommand(t *testing.T) {
	dir, pub := auditFixture(t)
	code, out, errOut := runCLI(t, "audit", "verify", "--log", dir, "--key", pub)
	if code != cli.ExitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"entries checked:      8", "checkpoints checked:  3", "tree size:            8", "root hash:"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	var js struct {
		Entries, Checkpoints int
		Root                 string
		Last                 *struct{ Size int } `json:"last_checkpoint"`
		KeyPinned            bool                `json:"key_pinned"`
	}
	code, out, errOut = runCLI(t, "audit", "verify", "--log", dir, "--key", pub, "--json")
	if err := json.Unmarshal([]byte(out), &js); code != cli.ExitOK || err != nil || js.Entries != 8 || js.Checkpoints != 3 ||
		len(js.Root) != 64 || js.Last == nil || !js.KeyPinned {
		t.Fatalf("audit verify --json: exit %d %v %+v\n%s%s", code, err, js, out, errOut)
	}
	// Without --key the directory's copy is used, with a hint.
	if code, _, errOut := runCLI(t, "audit", "verify", "--log", dir); code != cli.ExitOK || !strings.Contains(errOut, "hint: verified with") {
		t.Fatalf("default key: exit %d: %s", code, errOut)
	}
	// An off-box copy of the checkpoints catches truncation of both files.
	offBox := filepath.Join(t.TempDir(), "checkpoints")
	cps, _ := os.ReadFile(filepath.Join(dir, audit.CheckpointFile))
	os.WriteFile(offBox, cps, 0o644)
	if code, _, errOut := runCLI(t, "audit", "verify", "--log", dir, "--key", pub, "--checkpoints", offBox); code != cli.ExitOK {
		t.Fatalf("--checkpoints: exit %d: %s", code, errOut)
	}

	// Tampering: edit one actor in the middle.
	path := filepath.Join(dir, audit.LogFile)
	data, _ := os.ReadFile(path)
	os.WriteFile(path, bytes.Replace(data, []byte(`"alice"`), []byte(`"eve"`), 1), 0o600)
	code, _, errOut = runCLI(t, "audit", "verify", "--log", dir, "--key", pub)
	if code != cli.ExitFailure || !strings.Contains(errOut, "does not verify: entry 2 (line 3): entry edited") {
		t.Fatalf("tampered log: exit %d: %s", code, errOut)
	}
}

func TestAuditShowCommand(t *testing.T) {
	dir, _ := auditFixture(t)
	const rel = "acme/router-x1@2.0.0"

	code, out, errOut := runCLI(t, "audit", "show", "--log", dir, "--release", rel)
	if code != cli.ExitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{
		"Release " + rel,
		"added:        ci at 2026-03-01T12:00:00Z",
		"signed:       key:1a2b3c at",
		"approved:     release.approved by alice at",
		"published:    release.published by bob at",
		"distributed:  rollout.started by bob at 2026-03-01T12:05:00Z cohort=canary",
		"installed:    1 device(s): dev-1",
		"rolled back:  1 device(s): dev-2",
		"failed:       none",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "mallory") {
		t.Errorf("--release shows another release's entry:\n%s", out)
	}

	tests := []struct {
		name  string
		args  []string
		lines int // JSON lines expected
	}{
		{"actor", []string{"--actor", "bob"}, 2},
		{"action", []string{"--action", "auth.login_failed"}, 1},
		{"device", []string{"--device", "dev-2"}, 1},
		{"since RFC 3339", []string{"--since", "2026-03-01T12:06:00Z"}, 2},
		{"until", []string{"--until", "2026-03-01T12:01:00Z"}, 1},
		{"since duration", []string{"--since", "1h"}, 0},
		{"everything", nil, 8},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"audit", "show", "--log", dir, "--json"}, tt.args...)
			code, out, errOut := runCLI(t, args...)
			if code != cli.ExitOK {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			lines := strings.Count(out, "\n")
			if lines != tt.lines {
				t.Fatalf("%d lines, want %d:\n%s", lines, tt.lines, out)
			}
			for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
				if l == "" {
					continue
				}
				if _, err := audit.ParseEntry([]byte(l)); err != nil {
					t.Fatalf("--json line is not a canonical entry: %v", err)
				}
			}
		})
	}
}

func TestAuditUsageErrors(t *testing.T) {
	tests := []struct {
		args []string
		in   string
	}{
		{[]string{"audit", "verify"}, "--log is required"},
		{[]string{"audit", "show"}, "--log is required"},
		{[]string{"audit", "show", "--log", "x", "--since", "yesterday"}, "--since"},
		{[]string{"audit", "show", "--log", "x", "--action", "release.stolen"}, "unknown action"},
		{[]string{"audit", "show", "--log", "x", "--release", "acme/x1"}, "PRODUCT@VERSION"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, "_"), func(t *testing.T) {
			code, _, errOut := runCLI(t, tt.args...)
			if code != cli.ExitUsage || !strings.Contains(errOut, tt.in) {
				t.Fatalf("exit %d, want %d with %q: %s", code, cli.ExitUsage, tt.in, errOut)
			}
		})
	}
	if code, _, errOut := runCLI(t, "audit", "verify", "--log", t.TempDir(), "--key", "/nonexistent.pub"); code != cli.ExitFailure {
		t.Fatalf("missing key: exit %d: %s", code, errOut)
	}
}
