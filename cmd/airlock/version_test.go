package main

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/airlockfw/airlock/internal/cli"
)

// TestVersionOfBuiltBinary builds airlock with 'go build' (a test binary
// carries no VCS information) and checks that 'airlock version' and
// 'airlock version --json' report the checkout's commit, its time, whether
// the tree is modified, and the Go version.
//
// The go command stamps VCS information only where the module root has a
// .git directory, not the .git file of a git worktree, so the test builds
// in a copy: a shared clone at the same commit with the working tree's
// files (tracked and untracked, not ignored) copied over it, whose 'git
// status' is the checkout's.
func TestVersionOfBuiltBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the airlock binary")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command")
	}
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("no git command")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	run := func(dir, name string, args ...string) string {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Dir = dir
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.Bytes())
		}
		return string(out)
	}
	if _, err := exec.Command("git", "-C", root, "rev-parse", "HEAD").Output(); err != nil {
		t.Skip("not a git checkout")
	}
	commit := strings.TrimSpace(run(root, "git", "rev-parse", "HEAD"))
	modified := run(root, "git", "status", "--porcelain") != ""

	tmp := t.TempDir()
	src := filepath.Join(tmp, "src")
	run(root, "git", "clone", "--quiet", "--shared", "--no-checkout", root, src)
	run(src, "git", "reset", "--quiet", commit)
	for _, f := range strings.Split(run(root, "git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"), "\x00") {
		if f != "" {
			copyFile(t, filepath.Join(root, f), filepath.Join(src, f))
		}
	}
	if got := run(src, "git", "status", "--porcelain") != ""; got != modified {
		t.Fatalf("the copy's modified state is %v, the checkout's %v", got, modified)
	}

	check := func(modified bool) {
		t.Helper()
		bin := filepath.Join(tmp, "airlock")
		run(src, goTool, "build", "-buildvcs=true", "-o", bin, "./cmd/airlock")
		var v cli.BuildInfo
		out := run(tmp, bin, "version", "--json")
		if err := json.Unmarshal([]byte(out), &v); err != nil {
			t.Fatalf("airlock version --json: %v\n%s", err, out)
		}
		if v.Program != "airlock" || v.Commit != commit || v.Modified != modified || v.CommitTime == "" ||
			v.Go != runtime.Version() || v.Platform != runtime.GOOS+"/"+runtime.GOARCH ||
			!strings.Contains(v.Version, commit[:12]) || strings.HasSuffix(v.Version, "+dirty") != modified {
			t.Errorf("airlock version --json = %+v\nwant commit %s, modified %v, go %s", v, commit, modified, runtime.Version())
		}
		want := "airlock " + v.Version + "\ncommit " + commit
		if modified {
			want += " (modified)"
		}
		want += "\ncommit time " + v.CommitTime + "\ngo " + runtime.Version() + " " + v.Platform + "\n"
		if out := run(tmp, bin, "version"); out != want {
			t.Errorf("airlock version =\n%s\nwant\n%s", out, want)
		}
	}
	check(modified)
	if !modified {
		if err := os.WriteFile(filepath.Join(src, "untracked.txt"), []byte("x\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		check(true)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	fi, err := os.Lstat(from)
	if os.IsNotExist(err) {
		return // deleted in the working tree: absent in the copy too
	} else if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSymlink != 0 {
		target, err := os.Readlink(from)
		if err == nil {
			err = os.Symlink(target, to)
		}
		if err != nil {
			t.Fatal(err)
		}
		return
	}
	r, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	w, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fi.Mode().Perm())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(w, r); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestHelpVersion: 'airlock help version' and 'airlock version --help'
// print the version command's usage on stdout and exit 0.
func TestHelpVersion(t *testing.T) {
	for _, args := range [][]string{{"help", "version"}, {"version", "--help"}} {
		var out, errb bytes.Buffer
		e := &cli.Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Getenv: func(string) string { return "" }}
		if code := program().RunEnv(e, args); code != cli.ExitOK || !strings.HasPrefix(out.String(), "Usage: airlock version [--json]") || errb.Len() != 0 {
			t.Errorf("%q: exit %d, stdout %q, stderr %q", args, code, out.String(), errb.String())
		}
	}
}
