package vendorcmd

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/airlockfw/airlock/bundle"
	"github.com/airlockfw/airlock/internal/cli"
	"github.com/airlockfw/airlock/repo"
)

func mustCLI(t *testing.T, args ...string) string {
	t.Helper()
	code, out, errOut := runCLI(t, args...)
	if code != cli.ExitOK {
		t.Fatalf("airlock %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

func genKeys(t *testing.T, dir string, names ...string) {
	t.Helper()
	for _, n := range names {
		mustCLI(t, "key", "gen", "--type", "ed25519", "--out", filepath.Join(dir, n+".pem"))
	}
}

// TestRepoCLIReleaseFlow drives a repository through the CLI: 2-of-3 root
// with one holder enrolled by public key, a 2-of-3 product, a release
// approved on another machine, publish, list, status, timestamp, bundle,
// revoke and rotate.
func TestRepoCLIReleaseFlow(t *testing.T) {
	k := t.TempDir()
	dir := filepath.Join(t.TempDir(), "repo")
	genKeys(t, k, "root1", "root2", "root3", "targets", "snap", "ts", "alice", "bob", "carol", "ts2")
	kp := func(n string) string { return filepath.Join(k, n+".pem") }

	mustCLI(t, "repo", "init", "--dir", dir, "--root-key", kp("root1"), "--root-key", kp("root2"), "--root-key", kp("root3")+".pub",
		"--root-threshold", "2", "--targets-key", kp("targets"), "--online-snapshot-key", kp("snap"), "--online-timestamp-key", kp("ts"),
		"--timestamp-expires", "2d")
	mustCLI(t, "repo", "delegate", "--dir", dir, "--product", "acme/router-x1", "--key", kp("alice")+".pub", "--key", kp("bob")+".pub",
		"--key", kp("carol")+".pub", "--threshold", "2", "--targets-key", kp("targets"))
	mustCLI(t, "repo", "publish", "--dir", dir)

	img := filepath.Join(t.TempDir(), "firmware.img")
	os.WriteFile(img, bytes.Repeat([]byte("firmware"), 50_000), 0o644)
	out := mustCLI(t, "release", "add", "--dir", dir, "--product", "acme/router-x1", "--image", img, "--version", "1.1.0",
		"--security-version", "2", "--model", "x1", "--compress", "zstd", "--depends", "bootloader>=2.0.0", "--key", kp("alice"))
	if strings.TrimSpace(out) != "acme/router-x1/1.1.0/firmware.img.zst" {
		t.Fatalf("release add printed %q", out)
	}
	code, _, errOut := runCLI(t, "repo", "publish", "--dir", dir)
	if code != cli.ExitFailure || !strings.Contains(errOut, "release acme/router-x1 1.1.0 needs 2 signatures, has 1 (1 missing)") {
		t.Fatalf("publish below threshold: exit %d: %s", code, errOut)
	}
	carried := filepath.Join(t.TempDir(), "acme.router-x1.json")
	data, _ := os.ReadFile(filepath.Join(dir, "staging", "acme.router-x1.json"))
	os.WriteFile(carried, data, 0o644)
	mustCLI(t, "release", "sign", "--pending", carried, "--key", kp("bob"))
	if out := mustCLI(t, "repo", "import", "--dir", dir, "--pending", carried); strings.TrimSpace(out) != "acme.router-x1 2/2" {
		t.Fatalf("import printed %q", out)
	}
	if out := mustCLI(t, "repo", "publish", "--dir", dir); !strings.Contains(out, "acme/router-x1/1.1.0/firmware.img.zst") {
		t.Fatalf("publish printed %q", out)
	}
	if out := mustCLI(t, "release", "list", "--dir", dir); !strings.Contains(out, "1.1.0") || !strings.Contains(out, "published") || !strings.Contains(out, "zstd") {
		t.Fatalf("release list:\n%s", out)
	}
	var listed []struct {
		Product, Version, State, Compression, SHA256 string
		Signatures, Threshold                        int
		SecurityVersion                              *int64 `json:"security_version"`
		TargetPath                                   string `json:"target_path"`
	}
	if out := mustCLI(t, "release", "list", "--dir", dir, "--json"); json.Unmarshal([]byte(out), &listed) != nil || len(listed) == 0 {
		t.Fatalf("release list --json:\n%s", out)
	}
	if l := listed[len(listed)-1]; l.Version != "1.1.0" || l.State != "published" || l.Compression != "zstd" || l.Signatures != 2 ||
		l.Threshold != 2 || l.SecurityVersion == nil || len(l.SHA256) != 64 || l.TargetPath != "acme/router-x1/1.1.0/firmware.img.zst" {
		t.Fatalf("release list --json: %+v", l)
	}
	mustCLI(t, "repo", "timestamp", "--dir", dir)
	if out := mustCLI(t, "repo", "status", "--dir", dir); !strings.Contains(out, "acme.router-x1") || !strings.Contains(out, "2/2") {
		t.Fatalf("status:\n%s", out)
	}
	var st repo.Status
	if out := mustCLI(t, "repo", "status", "--dir", dir, "--json"); json.Unmarshal([]byte(out), &st) != nil || len(st.Roles) < 5 {
		t.Fatalf("repo status --json:\n%s", out)
	}

	bundlePath := filepath.Join(t.TempDir(), "fw.airlock")
	mustCLI(t, "bundle", "create", "--dir", dir, "--product", "acme/router-x1", "--version", "1.1.0", "--out", bundlePath)
	f, err := os.Open(bundlePath)
	if err != nil {
		t.Fatal(err)
	}
	m, err := bundle.Inspect(f)
	f.Close()
	if err != nil || m.TargetPath != "acme/router-x1/1.1.0/firmware.img.zst" {
		t.Fatalf("bundle: %v %+v", err, m)
	}
	if code, _, errOut := runCLI(t, "bundle", "create", "--dir", dir, "--product", "acme/router-x1", "--version", "1.1.0", "--out", bundlePath); code != cli.ExitFailure || !strings.Contains(errOut, "refusing to overwrite") {
		t.Fatalf("bundle overwrite: exit %d %s", code, errOut)
	}

	// Revoke alice: 1.1.0 (alice+bob) drops to 1/2 until carol re-signs.
	mustCLI(t, "repo", "revoke", "--dir", dir, "--product", "acme/router-x1", "--key", kp("alice")+".pub", "--targets-key", kp("targets"))
	_, _, errOut = runCLI(t, "repo", "publish", "--dir", dir)
	if !strings.Contains(errOut, "warning: role acme.router-x1") {
		t.Fatalf("publish after revoke: %s", errOut)
	}
	if code, _, _ := runCLI(t, "repo", "status", "--dir", dir); code != cli.ExitFailure {
		t.Fatal("status does not fail for a role below threshold")
	}
	if code, out, _ := runCLI(t, "repo", "status", "--dir", dir, "--json"); code != cli.ExitFailure || !strings.HasPrefix(out, "{") {
		t.Fatalf("status --json below threshold: exit %d, %q", code, out)
	}
	mustCLI(t, "release", "sign", "--dir", dir, "--product", "acme/router-x1", "--version", "1.1.0", "--key", kp("bob"))
	mustCLI(t, "release", "sign", "--dir", dir, "--product", "acme/router-x1", "--version", "1.1.0", "--key", kp("carol"))
	mustCLI(t, "repo", "publish", "--dir", dir)
	mustCLI(t, "repo", "status", "--dir", dir)

	// Rotate the online timestamp key.
	mustCLI(t, "repo", "rotate", "--dir", dir, "--role", "timestamp", "--add", kp("ts2")+".pub", "--remove", kp("ts"),
		"--old-key", kp("root1"), "--old-key", kp("root2"))
	mustCLI(t, "repo", "publish", "--dir", dir, "--timestamp-key", kp("ts2"))
	if _, err := os.Stat(filepath.Join(dir, "public", "metadata", "2.root.json")); err != nil {
		t.Fatal(err)
	}
}

func TestRepoCLIRefuses(t *testing.T) {
	k := t.TempDir()
	dir := filepath.Join(t.TempDir(), "repo")
	genKeys(t, k, "root", "targets", "snap", "ts")
	kp := func(n string) string { return filepath.Join(k, n+".pem") }
	os.MkdirAll(filepath.Join(dir, "keys"), 0o700)
	inside := filepath.Join(dir, "keys", "ts.pem")
	data, _ := os.ReadFile(kp("ts"))
	os.WriteFile(inside, data, 0o600)
	tests := []struct {
		name string
		args []string
		code int
		in   string
	}{
		{"key inside repo", []string{"repo", "init", "--dir", dir, "--root-key", kp("root"), "--targets-key", kp("targets"), "--snapshot-key", kp("snap"), "--timestamp-key", inside}, cli.ExitFailure, "inside the repository"},
		{"missing targets key", []string{"repo", "init", "--dir", dir, "--root-key", kp("root")}, cli.ExitUsage, "--targets-key is required"},
		{"threshold above n", []string{"repo", "init", "--dir", dir, "--root-key", kp("root"), "--root-threshold", "2", "--targets-key", kp("targets"), "--snapshot-key", kp("snap"), "--timestamp-key", kp("ts")}, cli.ExitUsage, "--root-threshold 2 with 1 root keys"},
		{"bad duration", []string{"repo", "init", "--dir", dir, "--root-expires", "soon"}, cli.ExitUsage, "duration"},
		{"not a repo", []string{"repo", "status", "--dir", t.TempDir()}, cli.ExitFailure, "not an airlock repository"},
		{"pending with dir", []string{"release", "sign", "--pending", "x", "--dir", dir, "--key", kp("root")}, cli.ExitUsage, "cannot be combined"},
		{"revoke both ids", []string{"repo", "revoke", "--dir", dir, "--product", "a/b", "--targets-key", "t", "--key-id", "a", "--key", "b"}, cli.ExitUsage, "exactly one"},
		{"bad security version", []string{"release", "add", "--dir", dir, "--product", "a/b", "--image", "i", "--version", "1.0.0", "--security-version", "-1"}, cli.ExitUsage, "--security-version"},
		{"help", []string{"release", "add", "--help"}, cli.ExitOK, "Usage: airlock release add"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runCLI(t, tt.args...)
			if code != tt.code || !strings.Contains(out+errOut, tt.in) {
				t.Fatalf("exit %d (want %d), output lacks %q:\n%s%s", code, tt.code, tt.in, out, errOut)
			}
		})
	}
}
