package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/airlockfw/airlock/internal/cli"
)

// TestProgressOnlyWhenAsked runs the four long operations (release add,
// bundle create, verify, device install) with stderr a buffer, as in a pipe
// or CI: they print no progress; with AIRLOCK_PROGRESS=1 each ends its
// progress with a final line.
func TestProgressOnlyWhenAsked(t *testing.T) {
	for _, forced := range []bool{false, true} {
		dir := t.TempDir()
		p := func(name string) string { return filepath.Join(dir, name) }
		img := make([]byte, 3<<20)
		rand.Read(img)
		if err := os.WriteFile(p("fw.img"), img, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p("old.img"), img[:1<<20], 0o600); err != nil {
			t.Fatal(err)
		}
		run := func(args ...string) string {
			t.Helper()
			var out, errb bytes.Buffer
			e := &cli.Env{Ctx: context.Background(), Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb,
				Getenv: func(k string) string {
					if k == "AIRLOCK_PROGRESS" && forced {
						return "1"
					}
					return ""
				}}
			if code := program().RunEnv(e, args); code != cli.ExitOK {
				t.Fatalf("%q: exit %d\n%s", args, code, errb.String())
			}
			return errb.String()
		}
		for _, k := range []string{"root", "targets", "snapshot", "timestamp", "product"} {
			run("key", "gen", "--type", "ed25519", "--out", p(k+".pem"))
		}
		run("repo", "init", "--dir", p("repo"), "--root-key", p("root.pem"), "--targets-key", p("targets.pem"),
			"--snapshot-key", p("snapshot.pem"), "--timestamp-key", p("timestamp.pem"))
		run("repo", "delegate", "--dir", p("repo"), "--product", "acme/x1", "--key", p("product.pem"), "--threshold", "1", "--targets-key", p("targets.pem"))
		add := func(image, version string) string {
			return run("release", "add", "--dir", p("repo"), "--product", "acme/x1", "--image", image, "--version", version,
				"--security-version", "1", "--model", "x1", "--compress", "zstd", "--key", p("product.pem"))
		}
		add(p("old.img"), "1.0.0")
		stderr := map[string]string{"release add": add(p("fw.img"), "1.1.0")}
		run("repo", "publish", "--dir", p("repo"), "--snapshot-key", p("snapshot.pem"), "--timestamp-key", p("timestamp.pem"))
		run("bundle", "create", "--dir", p("repo"), "--product", "acme/x1", "--version", "1.0.0", "--out", p("old.airlock"))
		stderr["bundle create"] = run("bundle", "create", "--dir", p("repo"), "--product", "acme/x1", "--version", "1.1.0", "--out", p("new.airlock"))
		root := p("repo/public/metadata/1.root.json")
		stderr["verify"] = run("verify", "--root", root, "--bundle", p("new.airlock"), "--model", "x1")
		run("device", "init", "--dir", p("dev"), "--root", root, "--model", "x1", "--hw-rev", "1", "--product", "acme/x1",
			"--slot-size", "8MiB", "--image", p("old.airlock"))
		stderr["device install"] = run("device", "install", "--dir", p("dev"), "--bundle", p("new.airlock"))
		for op, s := range stderr {
			final := "airlock: " + op + ": "
			switch {
			case !forced && (strings.Contains(s, "\r") || strings.Contains(s, final)):
				t.Errorf("%s printed progress to a non-terminal stderr:\n%q", op, s)
			case forced && !strings.Contains(s, "\r\033[K"+final) || forced && !strings.Contains(s, "MiB/s, done in "):
				t.Errorf("%s with AIRLOCK_PROGRESS=1: no final progress line in\n%q", op, s)
			}
		}
	}
}
