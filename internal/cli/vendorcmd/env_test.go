package vendorcmd

import (
	"github.com/airlockfw/airlock/internal/cli"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestProductionRefusesKeysOfOtherEnvironments: a key registered for dev
// cannot be delegated in, nor sign a release of, a prod repository.
func TestProductionRefusesKeysOfOtherEnvironments(t *testing.T) {
	dir := t.TempDir()
	kr := filepath.Join(dir, "keyring.json")
	k := func(name, env string) string {
		p := filepath.Join(dir, name+".pem")
		args := []string{"key", "gen", "--out", p}
		if env != "" {
			args = append(args, "--env", env, "--keyring", kr)
		}
		if code, _, errOut := runCLI(t, args...); code != 0 {
			t.Fatalf("key gen %s: %s", name, errOut)
		}
		return p
	}
	root, targets, snap, ts := k("root", "prod"), k("targets", "prod"), k("snapshot", "prod"), k("timestamp", "prod")
	devKey := k("dev-product", "dev")
	prodKey := k("prod-product", "")
	repoDir := filepath.Join(dir, "repo")
	if code, _, errOut := runCLI(t, "repo", "init", "--dir", repoDir, "--env", "prod", "--keyring", kr,
		"--root-key", root, "--targets-key", targets, "--snapshot-key", snap, "--timestamp-key", ts); code != 0 {
		t.Fatalf("repo init: %s", errOut)
	}
	rootJSON, _ := os.ReadFile(filepath.Join(repoDir, "public", "metadata", "1.root.json"))
	if !strings.Contains(string(rootJSON), `"x-airlock-environment": "prod"`) && !strings.Contains(string(rootJSON), `"x-airlock-environment":"prod"`) {
		t.Fatalf("root metadata does not record the environment:\n%s", rootJSON)
	}
	// A dev key cannot be delegated in prod.
	code, _, errOut := runCLI(t, "repo", "delegate", "--dir", repoDir, "--product", "acme/router-x1", "--key", devKey+".pub",
		"--targets-key", targets, "--keyring", kr)
	if code != cli.ExitFailure || !strings.Contains(errOut, "registered for the dev environment") {
		t.Fatalf("delegating a dev key to prod: exit %d: %s", code, errOut)
	}
	// Delegate both keys with an empty keyring (as on another machine), then
	// release add with the real keyring refuses the dev key.
	empty := filepath.Join(dir, "empty.json")
	if code, _, errOut := runCLI(t, "repo", "delegate", "--dir", repoDir, "--product", "acme/router-x1", "--key", devKey+".pub",
		"--key", prodKey+".pub", "--targets-key", targets, "--keyring", empty); code != 0 {
		t.Fatalf("delegate: %s", errOut)
	}
	img := filepath.Join(dir, "fw.img")
	os.WriteFile(img, []byte(strings.Repeat("firmware", 1000)), 0o644)
	code, _, errOut = runCLI(t, "release", "add", "--dir", repoDir, "--product", "acme/router-x1", "--image", img,
		"--version", "1.0.0", "--security-version", "1", "--model", "x1", "--key", devKey, "--keyring", kr)
	if code != cli.ExitFailure || !strings.Contains(errOut, "registered for the dev environment, refusing to use it for prod") {
		t.Fatalf("release add with a dev key in prod: exit %d: %s", code, errOut)
	}
	if code, _, errOut := runCLI(t, "release", "add", "--dir", repoDir, "--product", "acme/router-x1", "--image", img,
		"--version", "1.0.0", "--security-version", "1", "--model", "x1", "--key", prodKey, "--keyring", kr); code != 0 {
		t.Fatalf("release add with the prod key: %s", errOut)
	}
}
