package vendorcmd

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/airlockfw/airlock/internal/cli"
	"github.com/airlockfw/airlock/repo"
)

// TestBundleLifetimeCLI: bundle create says until when the bundle installs
// and which role ends it; repo renew extends that role (then the next one
// is the limit); --force re-creates a bundle in place.
func TestBundleLifetimeCLI(t *testing.T) {
	k := t.TempDir()
	dir := filepath.Join(t.TempDir(), "repo")
	genKeys(t, k, "root", "targets", "snap", "ts", "product")
	kp := func(n string) string { return filepath.Join(k, n+".pem") }
	mustCLI(t, "repo", "init", "--dir", dir, "--root-key", kp("root"), "--targets-key", kp("targets"),
		"--online-snapshot-key", kp("snap"), "--online-timestamp-key", kp("ts"), "--product-expires", "90d")
	mustCLI(t, "repo", "delegate", "--dir", dir, "--product", "acme/router-x1", "--key", kp("product")+".pub", "--targets-key", kp("targets"))
	img := filepath.Join(t.TempDir(), "firmware.img")
	os.WriteFile(img, []byte(strings.Repeat("firmware", 4096)), 0o644)
	mustCLI(t, "release", "add", "--dir", dir, "--product", "acme/router-x1", "--image", img, "--version", "1.0.0",
		"--model", "x1", "--security-version", "1", "--key", kp("product"))
	mustCLI(t, "repo", "publish", "--dir", dir)

	out := filepath.Join(t.TempDir(), "fw.airlock")
	text := mustCLIAll(t, "bundle", "create", "--dir", dir, "--product", "acme/router-x1", "--version", "1.0.0", "--out", out)
	for _, want := range []string{"installs until ", "in 89 days", "acme/router-x1 role expires", "airlock repo renew", `bundle_freshness = "timestamp"`} {
		if !strings.Contains(text, want) {
			t.Errorf("bundle create printed\n%s\nwithout %q", text, want)
		}
	}
	code, _, errOut := runCLI(t, "bundle", "create", "--dir", dir, "--product", "acme/router-x1", "--version", "1.0.0", "--out", out)
	if code != cli.ExitFailure || !strings.Contains(errOut, "--force") {
		t.Fatalf("bundle create over an existing file: exit %d: %s", code, errOut)
	}

	info := func() repo.BundleInfo {
		t.Helper()
		var bi repo.BundleInfo
		js := mustCLI(t, "bundle", "create", "--dir", dir, "--product", "acme/router-x1", "--version", "1.0.0", "--out", out, "--force", "--json")
		if err := json.Unmarshal([]byte(js), &bi); err != nil {
			t.Fatalf("bundle create --json: %v\n%s", err, js)
		}
		if fi, err := os.Stat(out); err != nil || fi.Size() != bi.Size {
			t.Fatalf("bundle file %v, %v; reported %d bytes", fi, err, bi.Size)
		}
		return bi
	}
	days := func(t2 time.Time) int { return int(time.Until(t2).Hours()/24 + 0.5) }
	if bi := info(); bi.ExpiringRole != "acme/router-x1" || days(bi.InstallsUntil) != 90 || days(bi.TimestampExpires) != 1 {
		t.Fatalf("bundle info %+v", bi)
	}

	// Renew the product role for 300 days: targets (180 days) is next.
	text = mustCLIAll(t, "repo", "renew", "--dir", dir, "--role", "acme/router-x1", "--key", kp("product"), "--expires", "300d")
	if !strings.Contains(text, "staged acme/router-x1 version 2") || !strings.Contains(text, "repo publish") {
		t.Fatalf("repo renew printed %q", text)
	}
	if bi := info(); bi.ExpiringRole != "acme/router-x1" || days(bi.InstallsUntil) != 90 {
		t.Fatalf("before publish: %+v", bi)
	}
	mustCLI(t, "repo", "publish", "--dir", dir)
	if bi := info(); bi.ExpiringRole != "targets" || days(bi.InstallsUntil) != 180 {
		t.Fatalf("after renewing the product role: %+v", bi)
	}
	mustCLI(t, "repo", "renew", "--dir", dir, "--role", "targets", "--key", kp("targets"), "--expires", "400d")
	mustCLI(t, "repo", "publish", "--dir", dir)
	if bi := info(); bi.ExpiringRole != "acme/router-x1" || days(bi.InstallsUntil) != 300 {
		t.Fatalf("after renewing targets: %+v", bi)
	}
	mustCLI(t, "repo", "renew", "--dir", dir, "--role", "acme/router-x1", "--key", kp("product"), "--expires", "500d")
	mustCLI(t, "repo", "publish", "--dir", dir)
	if bi := info(); bi.ExpiringRole != "root" || days(bi.InstallsUntil) != 365 {
		t.Fatalf("after renewing both: %+v", bi)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--role", "root", "--key", kp("root")}, "repo rotate --role root"},
		{[]string{"--role", "timestamp", "--key", kp("ts")}, "repo timestamp"},
		{[]string{"--role", "acme/router-x1", "--key", kp("targets")}, "not a key"},
		{[]string{"--role", "acme/other", "--key", kp("product")}, "no delegation"},
		{[]string{"--role", "acme/router-x1"}, "--key is required"},
	} {
		code, _, errOut := runCLI(t, append([]string{"repo", "renew", "--dir", dir}, tc.args...)...)
		if code == cli.ExitOK || !strings.Contains(errOut, tc.want) {
			t.Errorf("repo renew %v: exit %d: %s (want %q)", tc.args, code, errOut, tc.want)
		}
	}
	// A role with staged changes is not renewed behind them.
	mustCLI(t, "release", "add", "--dir", dir, "--product", "acme/router-x1", "--image", img, "--version", "1.1.0",
		"--model", "x1", "--security-version", "1", "--key", kp("product"))
	code, _, errOut = runCLI(t, "repo", "renew", "--dir", dir, "--role", "acme/router-x1", "--key", kp("product"))
	if code == cli.ExitOK || !strings.Contains(errOut, "staged changes") {
		t.Errorf("renew over staged changes: exit %d: %s", code, errOut)
	}
}

// mustCLIAll is mustCLI returning stdout and stderr (where the status
// lines go).
func mustCLIAll(t *testing.T, args ...string) string {
	t.Helper()
	code, out, errOut := runCLI(t, args...)
	if code != cli.ExitOK {
		t.Fatalf("airlock %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
	}
	return out + errOut
}
