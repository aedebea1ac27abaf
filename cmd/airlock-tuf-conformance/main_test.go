package main

import (
	"bytes"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/airlockfw/airlock/trust/trusttest"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "airlock-tuf-conformance")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "client")
	if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
		panic("go build: " + err.Error() + "\n" + string(out))
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type env struct {
	repo           *trusttest.Repo
	mdURL, tURL    string
	mdDir, tDir    string
	rootFile       string
	faketimePrefix []string
}

func setup(t *testing.T) *env {
	t.Helper()
	r := trusttest.New(time.Now().UTC().Truncate(time.Second).AddDate(0, 0, 30))
	md, tg := r.Serve(t)
	dir := t.TempDir()
	e := &env{repo: r, mdURL: md, tURL: tg, mdDir: filepath.Join(dir, "metadata"), tDir: filepath.Join(dir, "targets"),
		rootFile: filepath.Join(dir, "initial_root.json")}
	for _, d := range []string{e.mdDir, e.tDir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(e.rootFile, r.RootBytes(1), 0o644); err != nil {
		t.Fatal(err)
	}
	return e
}

// client runs the binary and returns its exit code.
func (e *env) client(t *testing.T, prefix []string, args ...string) int {
	t.Helper()
	argv := append(append(append([]string{}, prefix...), binary), args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		t.Logf("%s: exit %d: %s", strings.Join(args, " "), ee.ExitCode(), stderr.String())
		return ee.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0
}

func (e *env) init(t *testing.T) int {
	return e.client(t, nil, "--metadata-dir", e.mdDir, "init", e.rootFile)
}

func (e *env) refresh(t *testing.T, prefix ...string) int {
	return e.client(t, prefix, "--metadata-url", e.mdURL, "--metadata-dir", e.mdDir, "refresh")
}

func (e *env) download(t *testing.T, targets ...string) int {
	args := []string{"--metadata-url", e.mdURL, "--metadata-dir", e.mdDir}
	for _, tg := range targets {
		args = append(args, "--target-name", tg)
	}
	args = append(args, "--target-dir", e.tDir, "--target-base-url", e.tURL, "download")
	return e.client(t, nil, args...)
}

func (e *env) targetRequests(path string) int {
	n := 0
	for _, p := range e.repo.Requests() {
		if strings.HasPrefix(p, "/targets/") && strings.HasSuffix(p, filepath.Base(path)) {
			n++
		}
	}
	return n
}

func TestInitRefreshDownload(t *testing.T) {
	e := setup(t)
	if code := e.init(t); code != 0 {
		t.Fatalf("init exit %d", code)
	}
	if n := len(e.repo.Requests()); n != 0 {
		t.Fatalf("init made %d requests", n)
	}
	if code := e.refresh(t); code != 0 {
		t.Fatalf("refresh exit %d", code)
	}
	for _, f := range []string{"root.json", "timestamp.json", "snapshot.json", "targets.json"} {
		if _, err := os.Stat(filepath.Join(e.mdDir, f)); err != nil {
			t.Fatalf("refresh did not store %s: %v", f, err)
		}
	}
	// A delegated role with a name that needs escaping, several targets.
	k := trusttest.NewKey()
	role := "../deleg?#"
	e.repo.Delegate("targets", metadata.DelegatedRole{Name: role, Paths: []string{"path/*/*"}}, time.Now().AddDate(0, 0, 30), k)
	want := map[string][]byte{"file.txt": []byte("top"), "path/to/fw.bin": []byte("delegated firmware")}
	e.repo.AddTarget("targets", "file.txt", want["file.txt"])
	e.repo.AddTarget(role, "path/to/fw.bin", want["path/to/fw.bin"])
	e.repo.SignRole(role)
	e.repo.BumpTargets("targets")
	e.repo.UpdateSnapshot()
	if code := e.download(t, "file.txt", "path/to/fw.bin"); code != 0 {
		t.Fatalf("download exit %d", code)
	}
	for p, content := range want {
		got, err := os.ReadFile(filepath.Join(e.tDir, url.PathEscape(p)))
		if err != nil || !bytes.Equal(got, content) {
			t.Fatalf("target %s: %q, %v; want %q", p, got, err, content)
		}
	}
	if _, err := os.Stat(filepath.Join(e.mdDir, "..%2Fdeleg%3F%23.json")); err != nil {
		t.Fatalf("delegated role not stored under its escaped name: %v", err)
	}
	entries, _ := os.ReadDir(e.tDir)
	if len(entries) != 2 {
		t.Fatalf("target dir has %d entries, want 2 (no temp files left)", len(entries))
	}
}

func TestDownloadCachedTargetNotRefetched(t *testing.T) {
	e := setup(t)
	e.repo.AddTarget("targets", "fw.bin", []byte("firmware"))
	e.repo.BumpTargets("targets")
	e.repo.UpdateSnapshot()
	if e.init(t) != 0 || e.download(t, "fw.bin") != 0 || e.download(t, "fw.bin") != 0 {
		t.Fatal("download failed")
	}
	if n := e.targetRequests("fw.bin"); n != 1 {
		t.Fatalf("target fetched %d times, want 1 (second download must use the verified cached file)", n)
	}
	// A cached file that no longer matches is replaced.
	if err := os.WriteFile(filepath.Join(e.tDir, "fw.bin"), []byte("tampered"), 0o644); err != nil {
		t.Fatal(err)
	}
	if e.download(t, "fw.bin") != 0 || e.targetRequests("fw.bin") != 2 {
		t.Fatal("mismatching cached file was not downloaded again")
	}
}

func TestDownloadStopsAtFirstFailure(t *testing.T) {
	e := setup(t)
	e.repo.AddTarget("targets", "good.bin", []byte("good"))
	e.repo.AddTarget("targets", "bad.bin", []byte("bad"))
	e.repo.BumpTargets("targets")
	e.repo.UpdateSnapshot()
	e.repo.SetTarget("bad.bin", []byte("malicious"))
	if e.init(t) != 0 {
		t.Fatal("init failed")
	}
	if code := e.download(t, "missing", "good.bin"); code != 1 {
		t.Fatalf("download of a missing target: exit %d, want 1", code)
	}
	if code := e.download(t, "bad.bin", "good.bin"); code != 1 {
		t.Fatalf("download of a tampered target: exit %d, want 1", code)
	}
	entries, _ := os.ReadDir(e.tDir)
	if len(entries) != 0 {
		t.Fatalf("target dir has %v after failures, want nothing", entries)
	}
}

func TestRefreshUsesFaketime(t *testing.T) {
	path, err := exec.LookPath("faketime")
	if err != nil {
		if os.Getenv("AIRLOCK_REQUIRE_TOOLS") != "" {
			t.Fatal("faketime not installed (apt-get install faketime)")
		}
		t.Skip("faketime not installed")
	}
	e := setup(t)
	e.repo.Timestamp.Signed.Expires = time.Now().UTC().Truncate(time.Second).AddDate(0, 0, 7)
	e.repo.UpdateTimestamp()
	if e.init(t) != 0 {
		t.Fatal("init failed")
	}
	if code := e.refresh(t, path, "-f", "+10d"); code != 1 {
		t.Fatalf("refresh 10 days later (timestamp expired): exit %d, want 1", code)
	}
	if code := e.refresh(t, path, "-f", "+1d"); code != 0 {
		t.Fatalf("refresh 1 day later: exit %d, want 0", code)
	}
	if code := e.refresh(t); code != 0 {
		t.Fatalf("refresh now: exit %d, want 0", code)
	}
}

func TestUsageErrorsExitOne(t *testing.T) {
	e := setup(t)
	for _, args := range [][]string{{}, {"init"}, {"--metadata-dir", e.mdDir, "bogus"}, {"--metadata-dir", e.mdDir, "refresh"}} {
		if code := e.client(t, nil, args...); code != 1 {
			t.Errorf("%v: exit %d, want 1", args, code)
		}
	}
}

// TestMetadataDirHoldsOnlyRoleFilesAsJSON: the suite reads every "*.json"
// file of the metadata directory as a trusted role (client_runner.py,
// trusted_roles); the client's other files, the root history copies and
// the rollback floor record, have no ".json" suffix.
func TestMetadataDirHoldsOnlyRoleFilesAsJSON(t *testing.T) {
	e := setup(t)
	e.repo.Root.Signed.Version = 2
	e.repo.PublishRoot()
	k := trusttest.NewKey()
	e.repo.Delegate("targets", metadata.DelegatedRole{Name: "deleg", Paths: []string{"d/*"}}, time.Now().AddDate(0, 0, 30), k)
	e.repo.AddTarget("deleg", "d/fw.bin", []byte("fw"))
	e.repo.SignRole("deleg")
	e.repo.BumpTargets("targets")
	e.repo.UpdateSnapshot()
	if e.init(t) != 0 || e.download(t, "d/fw.bin") != 0 {
		t.Fatal("init or download failed")
	}
	entries, err := os.ReadDir(e.mdDir)
	if err != nil {
		t.Fatal(err)
	}
	var roles, others []string
	for _, ent := range entries {
		if n := ent.Name(); strings.HasSuffix(n, ".json") {
			roles = append(roles, n)
		} else {
			others = append(others, n)
		}
	}
	if want := []string{"deleg.json", "root.json", "snapshot.json", "targets.json", "timestamp.json"}; strings.Join(roles, " ") != strings.Join(want, " ") {
		t.Errorf("*.json files %v, want %v", roles, want)
	}
	if want := []string{"floors", "root.2"}; strings.Join(others, " ") != strings.Join(want, " ") {
		t.Errorf("other files %v, want %v", others, want)
	}
}

// TestRollbackAfterLocalTimestampDeleted: deleting the trusted
// timestamp.json does not let a replayed older timestamp and snapshot in
// (the floor record keeps the floors), while the current ones still are.
func TestRollbackAfterLocalTimestampDeleted(t *testing.T) {
	e := setup(t)
	if e.init(t) != 0 || e.refresh(t) != 0 {
		t.Fatal("init or refresh failed")
	}
	old := e.repo.File("timestamp.json")
	e.repo.UpdateSnapshot() // snapshot and timestamp v2
	if e.refresh(t) != 0 {
		t.Fatal("refresh to v2 failed")
	}
	if err := os.Remove(filepath.Join(e.mdDir, "timestamp.json")); err != nil {
		t.Fatal(err)
	}
	current := e.repo.File("timestamp.json")
	e.repo.SetFile("timestamp.json", old)
	if code := e.refresh(t); code != 1 {
		t.Fatalf("refresh with a replayed older timestamp: exit %d, want 1", code)
	}
	e.repo.SetFile("timestamp.json", current)
	if code := e.refresh(t); code != 0 {
		t.Fatalf("refresh with the current timestamp: exit %d, want 0", code)
	}
}
