package vendorcmd

import (
	"github.com/airlockfw/airlock/internal/cli"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRepositoryAuditLog: with --audit-key, every vendor-side operation is
// appended to REPO/audit, which verifies, answers "who added, signed and
// published release X", and detects an edited entry.
func TestRepositoryAuditLog(t *testing.T) {
	env := map[string]string{"AIRLOCK_ACTOR": "alice"}
	runCLI := func(t *testing.T, args ...string) (int, string, string) {
		t.Helper()
		return runCLIEnv(t, env, args...)
	}
	dir := t.TempDir()
	k := func(name string) string {
		p := filepath.Join(dir, name+".pem")
		if code, _, errOut := runCLI(t, "key", "gen", "--out", p); code != 0 {
			t.Fatalf("key gen: %s", errOut)
		}
		return p
	}
	root, targets, snap, ts, prod := k("root"), k("targets"), k("snapshot"), k("timestamp"), k("product")
	repoDir := filepath.Join(dir, "repo")
	auditKey := filepath.Join(dir, "audit.pem")
	steps := [][]string{
		{"repo", "init", "--dir", repoDir, "--root-key", root, "--targets-key", targets, "--snapshot-key", snap, "--timestamp-key", ts, "--audit-key", auditKey},
		{"repo", "delegate", "--dir", repoDir, "--product", "acme/router-x1", "--key", prod + ".pub", "--targets-key", targets},
	}
	img := filepath.Join(dir, "fw.img")
	os.WriteFile(img, []byte(strings.Repeat("firmware", 512)), 0o644)
	steps = append(steps,
		[]string{"release", "add", "--dir", repoDir, "--product", "acme/router-x1", "--image", img, "--version", "1.0.0", "--security-version", "1", "--model", "x1", "--key", prod},
		[]string{"repo", "publish", "--dir", repoDir, "--snapshot-key", snap, "--timestamp-key", ts})
	for _, s := range steps {
		if code, _, errOut := runCLI(t, s...); code != 0 {
			t.Fatalf("%v: %s", s[:2], errOut)
		}
	}
	logDir := filepath.Join(repoDir, "audit")
	if code, _, errOut := runCLI(t, "audit", "verify", "--log", logDir, "--key", auditKey+".pub"); code != 0 {
		t.Fatalf("audit verify: %s", errOut)
	}
	code, out, errOut := runCLI(t, "audit", "show", "--log", logDir, "--release", "acme/router-x1@1.0.0")
	if code != 0 {
		t.Fatalf("audit show: %s", errOut)
	}
	for _, want := range []string{"release.added", "release.published", "alice"} {
		if !strings.Contains(out, want) {
			t.Errorf("audit show lacks %q:\n%s", want, out)
		}
	}
	if _, err := os.Stat(filepath.Join(repoDir, "public", "audit")); err == nil {
		t.Fatal("the audit log is inside the served directory")
	}
	// Edit an entry: verification fails.
	logFile := filepath.Join(logDir, "audit.log")
	data, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(logFile, []byte(strings.Replace(string(data), "alice", "mallory", 1)), 0o600)
	if code, _, errOut := runCLI(t, "audit", "verify", "--log", logDir, "--key", auditKey+".pub"); code != cli.ExitFailure || !strings.Contains(errOut, "edited") {
		t.Fatalf("edited entry: exit %d: %s", code, errOut)
	}
}
