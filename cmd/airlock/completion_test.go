package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/airlockfw/airlock/internal/cli"
)

// completionScript runs `airlock completion SHELL` and returns the script.
func completionScript(t *testing.T, shell string) string {
	t.Helper()
	var out, errb bytes.Buffer
	e := &cli.Env{Ctx: context.Background(), Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Getenv: func(string) string { return "" }}
	if code := program().RunEnv(e, []string{"completion", shell}); code != cli.ExitOK {
		t.Fatalf("completion %s: exit %d: %s", shell, code, errb.String())
	}
	path := filepath.Join(t.TempDir(), "airlock."+shell)
	if err := os.WriteFile(path, out.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// completionDir is a working directory with two files and a directory, for
// path completion.
func completionDir(t *testing.T) string {
	dir := t.TempDir()
	for _, f := range []string{"fw.img", "notes.txt"} {
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	return dir
}

// needShell returns the shell's path, or skips the test when it is not
// installed (fails with AIRLOCK_REQUIRE_TOOLS=1; scripts/test.sh installs it).
func needShell(t *testing.T, name string) string {
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("AIRLOCK_REQUIRE_TOOLS") == "1" {
			t.Fatalf("AIRLOCK_REQUIRE_TOOLS=1: %s is not installed (apt-get install -y %s)", name, name)
		}
		t.Skipf("%s is not installed; skipping its completion test (apt-get install -y %s)", name, name)
	}
	return p
}

// completionCases are command lines (the last word is the one being
// completed) and the candidates every shell must offer, sorted; for path
// completion (in completionDir) the names without a trailing slash.
var completionCases = []struct {
	line string
	want string
}{
	{"airlock rel", "release"},
	{"airlock release ", "add list show sign"},
	{"airlock server user ", "add disable list totp"},
	{"airlock server enroll-token ", "create"},
	{"airlock release add --im", "--image"},
	{"airlock device install --b", "--bundle"},
	{"airlock release add --image ", "fw.img notes.txt sub"},
	{"airlock release add --image n", "notes.txt"},
	{"airlock release add --dir ", "sub"},
	{"airlock verify --repo ", "sub"},
	{"airlock release add --product ", ""},
	{"airlock help rel", "release"},
	{"airlock help server ", "director-root enroll-token token user"},
	{"airlock completion ", ""},
	{"airlock verify --json --js", "--json"},
	{"airlock approval approve --server https://x ID --to", "--token-file --totp"},
	{"airlock version --", "--json"},
}

func sortedWords(s string) string {
	ws := strings.Fields(s)
	for i, w := range ws {
		ws[i] = strings.TrimSuffix(w, "/")
	}
	sort.Strings(ws)
	return strings.Join(ws, " ")
}

// shellWords splits a test line into words, keeping a trailing empty word.
func shellWords(line string) []string {
	ws := strings.Fields(line)
	if strings.HasSuffix(line, " ") {
		ws = append(ws, "")
	}
	return ws
}

func quoteWords(ws []string) string {
	var q []string
	for _, w := range ws {
		q = append(q, "'"+w+"'")
	}
	return strings.Join(q, " ")
}

// TestCompletionBash sources the generated script in bash and calls its
// completion function as bash's programmable completion does (COMP_WORDS,
// COMP_CWORD), then compares COMPREPLY.
func TestCompletionBash(t *testing.T) {
	bash := needShell(t, "bash")
	script := completionScript(t, "bash")
	dir := completionDir(t)
	for _, tc := range append(completionCases, struct{ line, want string }{"airlock device install --bundle = f", "fw.img"}) {
		ws := shellWords(tc.line)
		cmd := exec.Command(bash, "--norc", "--noprofile", "-c", `source "$1"; COMP_WORDS=(`+quoteWords(ws)+`); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); _airlock; printf '%s\n' "${COMPREPLY[@]}"`, "bash", script)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%q: %v\n%s", tc.line, err, out)
		}
		if got := sortedWords(string(out)); got != tc.want {
			t.Errorf("bash %q: got %q, want %q", tc.line, got, tc.want)
		}
	}
	// complete registers the function for the command.
	out, err := exec.Command(bash, "--norc", "--noprofile", "-c", `source "$1"; complete -p airlock`, "bash", script).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "-F _airlock airlock") {
		t.Errorf("complete -p airlock: %v: %s", err, out)
	}
}

// TestCompletionZsh checks the zsh script's syntax (zsh -n) and runs its
// candidate function with words and CURRENT set as the completion system
// sets them; path candidates are left to zsh's _files, so for those the
// test checks the kind (f: files, d: directories).
func TestCompletionZsh(t *testing.T) {
	zsh := needShell(t, "zsh")
	script := completionScript(t, "zsh")
	if out, err := exec.Command(zsh, "-n", script).CombinedOutput(); err != nil {
		t.Fatalf("zsh -n: %v\n%s", err, out)
	}
	kinds := map[string]string{
		"airlock release add --image ": "f", "airlock release add --image n": "f",
		"airlock release add --dir ": "d", "airlock verify --repo ": "d",
		"airlock release add --product ": "",
	}
	for _, tc := range completionCases {
		ws := shellWords(tc.line)
		cmd := exec.Command(zsh, "-f", "-c", `compdef() { :; }; source "$1"; words=(`+quoteWords(ws)+`); CURRENT=${#words}; _airlock_reply; print -r -- "$REPLY:${reply[*]}"`, "zsh", script)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%q: %v\n%s", tc.line, err, out)
		}
		kind, words, _ := strings.Cut(strings.TrimSpace(string(out)), ":")
		want, ok := kinds[tc.line]
		if !ok {
			want = "w"
		}
		if kind != want {
			t.Errorf("zsh %q: kind %q, want %q", tc.line, kind, want)
			continue
		}
		if kind != "w" {
			continue
		}
		// zsh filters the candidates by the typed prefix itself.
		cur := ws[len(ws)-1]
		var got []string
		for _, w := range strings.Fields(words) {
			if strings.HasPrefix(w, cur) {
				got = append(got, w)
			}
		}
		if g := sortedWords(strings.Join(got, " ")); g != tc.want {
			t.Errorf("zsh %q: got %q, want %q", tc.line, g, tc.want)
		}
	}
}

// TestCompletionFish checks the fish script's syntax (fish -n) and asks
// fish itself for the completions of each line (complete -C).
func TestCompletionFish(t *testing.T) {
	fish := needShell(t, "fish")
	script := completionScript(t, "fish")
	if out, err := exec.Command(fish, "-n", script).CombinedOutput(); err != nil {
		t.Fatalf("fish -n: %v\n%s", err, out)
	}
	dir, home := completionDir(t), t.TempDir()
	for _, tc := range completionCases {
		if tc.line == "airlock release add --product " {
			continue // fish offers options only after a dash; nothing to compare
		}
		cmd := exec.Command(fish, "--no-config", "-c", `source $argv[1]; complete -C $argv[2]`, script, tc.line)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "HOME="+home, "XDG_CONFIG_HOME="+home, "XDG_DATA_HOME="+home)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%q: %v\n%s", tc.line, err, out)
		}
		var names []string
		for _, l := range strings.Split(string(out), "\n") {
			name, _, _ := strings.Cut(l, "\t")
			names = append(names, name)
		}
		if got := sortedWords(strings.Join(names, " ")); got != tc.want {
			t.Errorf("fish %q: got %q, want %q", tc.line, got, tc.want)
		}
	}
}

func TestCompletionUsage(t *testing.T) {
	for _, args := range [][]string{{"completion"}, {"completion", "tcsh"}, {"completion", "bash", "zsh"}} {
		var out, errb bytes.Buffer
		e := &cli.Env{Ctx: context.Background(), Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Getenv: func(string) string { return "" }}
		if code := program().RunEnv(e, args); code != cli.ExitUsage || out.Len() != 0 || !strings.Contains(errb.String(), "bash, zsh, fish") {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want exit 2 naming the shells", args, code, out.String(), errb.String())
		}
	}
}
