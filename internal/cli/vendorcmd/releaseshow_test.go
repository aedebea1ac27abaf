package vendorcmd

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/airlockfw/airlock/internal/cli"
	"github.com/airlockfw/airlock/repo"
)

// showRepo makes a repository with acme/router-x1 1.0.0 published (2-of-3)
// and 1.1.0 pending with one signature; it returns the directory and the
// key path function.
func showRepo(t *testing.T) (string, func(string) string) {
	t.Helper()
	k := t.TempDir()
	dir := filepath.Join(t.TempDir(), "repo")
	genKeys(t, k, "root1", "targets", "snap", "ts", "alice", "bob")
	kp := func(n string) string { return filepath.Join(k, n+".pem") }
	mustCLI(t, "repo", "init", "--dir", dir, "--root-key", kp("root1"), "--root-threshold", "1", "--targets-key", kp("targets"),
		"--online-snapshot-key", kp("snap"), "--online-timestamp-key", kp("ts"))
	mustCLI(t, "repo", "delegate", "--dir", dir, "--product", "acme/router-x1", "--key", kp("alice")+".pub", "--key", kp("bob")+".pub",
		"--threshold", "2", "--targets-key", kp("targets"))
	img := filepath.Join(t.TempDir(), "firmware.img")
	os.WriteFile(img, bytes.Repeat([]byte("firmware"), 10_000), 0o644)
	mustCLI(t, "release", "add", "--dir", dir, "--product", "acme/router-x1", "--image", img, "--version", "1.0.0",
		"--security-version", "1", "--model", "x1", "--key", kp("alice"))
	mustCLI(t, "release", "sign", "--dir", dir, "--product", "acme/router-x1", "--version", "1.0.0", "--key", kp("bob"))
	mustCLI(t, "repo", "publish", "--dir", dir)
	os.WriteFile(img, bytes.Repeat([]byte("firmware2"), 20_000), 0o644)
	mustCLI(t, "release", "add", "--dir", dir, "--product", "acme/router-x1", "--image", img, "--version", "1.1.0",
		"--security-version", "3", "--model", "x1", "--model", "x1-pro", "--hw-rev", ">=2", "--depends", "bootloader>=2.0.0",
		"--compress", "zstd", "--key", kp("alice"))
	return dir, kp
}

func TestReleaseShow(t *testing.T) {
	dir, _ := showRepo(t)
	out := mustCLI(t, "release", "show", "--dir", dir, "--product", "acme/router-x1", "--version", "1.1.0")
	for _, want := range []string{
		"acme/router-x1 1.1.0 (pending, metadata version 2, 1/2 signatures)",
		"environment        dev", "target             acme/router-x1/1.1.0/firmware.img.zst",
		"installed length   180000 bytes", "compression        zstd", "models             x1, x1-pro",
		"hw-rev             >=2", "channel            stable", "security version   3", "depends            bootloader>=2.0.0",
		"changes since 1.0.0:", "security version 1 -> 3 (+2)", "models           +x1-pro", "hw-rev           * -> >=2",
		"compression      none -> zstd", "depends          +bootloader>=2.0.0", "installed length +100000 bytes",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("release show lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(out, "sha256             ") || !strings.Contains(out, "installed sha256   ") {
		t.Errorf("release show lacks the hashes:\n%s", out)
	}

	out = mustCLI(t, "release", "show", "--dir", dir, "--product", "acme/router-x1", "--version", "1.1.0", "--json")
	var s repo.ReleaseSummary
	if err := json.Unmarshal([]byte(out), &s); err != nil || s.Version != "1.1.0" || s.Changes == nil || s.Changes.SecurityVersionDelta != 2 {
		t.Fatalf("release show --json: %v\n%s", err, out)
	}

	out = mustCLI(t, "release", "show", "--dir", dir, "--product", "acme/router-x1")
	if !strings.Contains(out, "1 published release(s) unchanged") || !strings.Contains(out, "acme/router-x1 1.1.0 (pending") || strings.Contains(out, "acme/router-x1 1.0.0 (") {
		t.Errorf("release show of the pending metadata:\n%s", out)
	}

	carried := filepath.Join(t.TempDir(), "acme.router-x1.json")
	data, _ := os.ReadFile(filepath.Join(dir, "staging", "acme.router-x1.json"))
	os.WriteFile(carried, data, 0o644)
	out = mustCLI(t, "release", "show", "--pending", carried)
	if !strings.Contains(out, "acme/router-x1 1.0.0 (carried") || !strings.Contains(out, "acme/router-x1 1.1.0 (carried, metadata version 2, 1 signatures, unchecked)") {
		t.Errorf("release show --pending:\n%s", out)
	}

	if code, _, errOut := runCLI(t, "release", "show", "--dir", dir, "--product", "acme/router-x1", "--version", "9.0.0"); code != cli.ExitFailure || !strings.Contains(errOut, "not found") {
		t.Errorf("unknown version: exit %d %s", code, errOut)
	}
	if code, _, _ := runCLI(t, "release", "show", "--pending", carried, "--dir", dir); code != cli.ExitUsage {
		t.Errorf("--pending with --dir: exit %d, want %d", code, cli.ExitUsage)
	}
}

// signCLI runs release sign with stdin given and stdinIsTerminal
// returning tty.
func signCLI(t *testing.T, tty bool, stdin string, args ...string) (int, string, string) {
	t.Helper()
	old := stdinIsTerminal
	stdinIsTerminal = func(io.Reader) bool { return tty }
	defer func() { stdinIsTerminal = old }()
	var out, errb bytes.Buffer
	e := &cli.Env{Ctx: context.Background(), Stdin: strings.NewReader(stdin), Stdout: &out, Stderr: &errb, Getenv: func(string) string { return "" }}
	return run(e, append([]string{"release", "sign"}, args...)), out.String(), errb.String()
}

// TestReleaseSignShowsWhatItSigns: release sign prints the summary before
// signing, asks on a terminal (a refusal signs nothing) and does not ask
// in a script.
func TestReleaseSignShowsWhatItSigns(t *testing.T) {
	dir, kp := showRepo(t)
	staged := filepath.Join(dir, "staging", "acme.router-x1.json")
	before, _ := os.ReadFile(staged)
	args := []string{"--dir", dir, "--product", "acme/router-x1", "--version", "1.1.0", "--key", kp("bob")}

	code, _, errOut := signCLI(t, true, "n\n", args...)
	if code != cli.ExitFailure || !strings.Contains(errOut, "acme/router-x1 1.1.0 (pending") ||
		!strings.Contains(errOut, "changes since 1.0.0:") || !strings.Contains(errOut, "[y/N]") || !strings.Contains(errOut, "not signed") {
		t.Fatalf("answer n: exit %d\n%s", code, errOut)
	}
	if after, _ := os.ReadFile(staged); !bytes.Equal(before, after) {
		t.Fatal("a refused confirmation changed the staged metadata")
	}

	carried := filepath.Join(t.TempDir(), "acme.router-x1.json")
	os.WriteFile(carried, before, 0o644)
	code, _, errOut = signCLI(t, true, "", "--pending", carried, "--key", kp("bob"))
	if code != cli.ExitFailure || !strings.Contains(errOut, "acme/router-x1 1.1.0 (carried") {
		t.Fatalf("carried file, no answer: exit %d\n%s", code, errOut)
	}
	if after, _ := os.ReadFile(carried); !bytes.Equal(before, after) {
		t.Fatal("a refused confirmation signed the carried file")
	}
	code, _, errOut = signCLI(t, true, "y\n", "--pending", carried, "--key", kp("bob"))
	if code != cli.ExitOK || !strings.Contains(errOut, "signed "+carried) {
		t.Fatalf("carried file, answer y: exit %d\n%s", code, errOut)
	}

	// A script (stdin not a terminal) sees the summary and is not asked.
	code, out, errOut := signCLI(t, false, "", args...)
	if code != cli.ExitOK || strings.TrimSpace(out) != "2/2" || !strings.Contains(errOut, "acme/router-x1 1.1.0 (pending") || strings.Contains(errOut, "[y/N]") {
		t.Fatalf("non-interactive sign: exit %d\n%s%s", code, out, errOut)
	}
	// --yes on a terminal does not ask either.
	code, _, errOut = signCLI(t, true, "", append(args[:len(args)-1], kp("alice"), "--yes")...)
	if code != cli.ExitOK || strings.Contains(errOut, "[y/N]") {
		t.Fatalf("--yes: exit %d\n%s", code, errOut)
	}
}
