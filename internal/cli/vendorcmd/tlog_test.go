package vendorcmd

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/airlockfw/airlock/internal/cli"
	"github.com/airlockfw/airlock/internal/witnesstest"
	"github.com/airlockfw/airlock/keys"
	"github.com/airlockfw/airlock/repo"
)

// TestLogCLIFlow enables the transparency log on an existing repository
// with two real witnesses (omniwitness on 127.0.0.1), publishes releases,
// and follows the log with 'log monitor', which flags a release missing from
// the expected list with exit 1.
func TestLogCLIFlow(t *testing.T) {
	dir, kp, logVKey := logRepoCLI(t)
	img := filepath.Join(t.TempDir(), "firmware.img")
	os.WriteFile(img, bytes.Repeat([]byte("firmware"), 5_000), 0o644)
	mustCLI(t, "release", "add", "--dir", dir, "--product", "acme/router-x1", "--image", img, "--version", "1.0.0",
		"--security-version", "1", "--model", "x1", "--key", kp("alice"))
	mustCLI(t, "repo", "publish", "--dir", dir)
	r, err := repo.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	w1 := witnesstest.Start(t, "w1.test", logVKey)
	w2 := witnesstest.Start(t, "w2.test", logVKey)

	if code, _, errOut := runCLI(t, "repo", "log", "init", "--dir", dir, "--old-key", kp("root1")); code != cli.ExitUsage || !strings.Contains(errOut, "--log-key is required") {
		t.Fatalf("log init without a key: exit %d: %s", code, errOut)
	}
	mustCLI(t, "repo", "log", "init", "--dir", dir, "--log-key", kp("log"),
		"--witness", w1.Name+"="+w1.VKey+"@"+w1.URL, "--witness", w2.Name+"="+w2.VKey+"@"+w2.URL,
		"--witness-threshold", "2", "--old-key", kp("root1"))
	code, _, errOut := runCLI(t, "repo", "publish", "--dir", dir)
	if code != cli.ExitOK || !strings.Contains(errOut, "release acme/router-x1/1.0.0/firmware.img logged at index 0") {
		t.Fatalf("publish enabling the log: exit %d: %s", code, errOut)
	}
	mustCLI(t, "release", "add", "--dir", dir, "--product", "acme/router-x1", "--image", img, "--version", "1.1.0",
		"--security-version", "1", "--model", "x1", "--key", kp("alice"))
	if code, _, errOut := runCLI(t, "repo", "publish", "--dir", dir); code != cli.ExitOK || !strings.Contains(errOut, "1.1.0/firmware.img logged at index 1") {
		t.Fatalf("publish: exit %d: %s", code, errOut)
	}

	srv := httptest.NewServer(http.FileServer(http.Dir(r.PublicDir())))
	defer srv.Close()
	state := t.TempDir()
	expect := filepath.Join(t.TempDir(), "expected.txt")
	os.WriteFile(expect, []byte("acme/router-x1@1.0.0\n"), 0o644)
	code, out, errOut := runCLI(t, "log", "monitor", "--repo", srv.URL, "--state", state, "--root", filepath.Join(r.PublicDir(), "metadata", "1.root.json"), "--expect", expect)
	if code != cli.ExitFailure || !strings.Contains(errOut, "not expected: entry 1: acme/router-x1@1.1.0") || !strings.Contains(errOut, "cosigned by w1.test, w2.test") {
		t.Fatalf("monitor with 1.1.0 unexpected: exit %d\n%s%s", code, out, errOut)
	}
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 2 || !strings.HasPrefix(lines[1], "1\tacme/router-x1@1.1.0\t") {
		t.Errorf("monitor listed:\n%s", out)
	}
	os.WriteFile(expect, []byte("acme/router-x1@1.0.0\nacme/router-x1@1.1.0\n"), 0o644)
	mustCLI(t, "log", "monitor", "--repo", srv.URL, "--state", state, "--expect", expect)
	if out := mustCLI(t, "log", "monitor", "--repo", srv.URL, "--state", state, "--expect", expect); out != "" {
		t.Errorf("a run with nothing new listed:\n%s", out)
	}

	// What the publish logged is what a device checks: the one pipeline
	// accepts 1.1.0 from the repository and from an offline bundle built
	// from it (bundle create reads the log and its history), each with the
	// release's entry found under a checkpoint cosigned by both witnesses.
	root := filepath.Join(r.PublicDir(), "metadata", "1.root.json")
	for _, args := range [][]string{
		{"--repo", dir, "--version", "1.1.0"},
		{"--bundle", filepath.Join(t.TempDir(), "fw.airlock")},
	} {
		if args[0] == "--bundle" {
			mustCLI(t, "bundle", "create", "--dir", dir, "--product", "acme/router-x1", "--version", "1.1.0", "--out", args[1])
		}
		out := mustCLI(t, append([]string{"verify", "--root", root, "--product", "acme/router-x1", "--model", "x1"}, args...)...)
		if !strings.Contains(out, "transparency") || !strings.Contains(out, "1.1.0") {
			t.Errorf("verify %s:\n%s", args[0], out)
		}
	}
}

// logRepoCLI makes a repository with the CLI (root, targets and online
// keys; acme/router-x1 delegated to alice) and a log key, publishes it, and
// returns its directory, the path of each key by name, and the log's note
// verifier key: witnesses must know it before 'repo log init' names them
// (the default origin comes from root version 1).
func logRepoCLI(t *testing.T) (dir string, kp func(string) string, logVKey string) {
	t.Helper()
	k := t.TempDir()
	dir = filepath.Join(t.TempDir(), "repo")
	genKeys(t, k, "root1", "targets", "snap", "ts", "alice", "log")
	kp = func(n string) string { return filepath.Join(k, n+".pem") }
	mustCLI(t, "repo", "init", "--dir", dir, "--root-key", kp("root1"), "--targets-key", kp("targets"),
		"--online-snapshot-key", kp("snap"), "--online-timestamp-key", kp("ts"))
	mustCLI(t, "repo", "delegate", "--dir", dir, "--product", "acme/router-x1", "--key", kp("alice")+".pub", "--targets-key", kp("targets"))
	mustCLI(t, "repo", "publish", "--dir", dir)
	root1, err := os.ReadFile(filepath.Join(dir, "public", "metadata", "1.root.json"))
	if err != nil {
		t.Fatal(err)
	}
	origin, err := repo.DefaultLogOrigin(root1)
	if err != nil {
		t.Fatal(err)
	}
	logKey, err := keys.LoadPrivate(kp("log"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, logVKey, err = repo.LogNoteSigner(origin, logKey); err != nil {
		t.Fatal(err)
	}
	return dir, kp, logVKey
}
