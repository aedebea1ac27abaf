package doctest

import (
	"context"
	"crypto/sha1"
	"encoding/base32"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/airlockfw/airlock/server/auth"
)

// FileTimeout bounds the run of one documentation file's blocks.
const FileTimeout = 150 * time.Second

// root is the checkout's top directory, relative to this package.
const root = "../.."

// helperEnv makes the test binary act as a small tool for hidden setups
// instead of running tests (see TestMain).
const helperEnv = "AIRLOCK_DOCTEST_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "totp" {
		os.Exit(totpHelper(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// totpHelper prints the current TOTP code of an otpauth:// URI, as the
// user's authenticator app would show it. With --fresh it first waits for
// the next 30-second step if the current one has less than 25 s left or
// was used (the server accepts each step once per user): the step it last
// printed for the secret is remembered in a file $DOCTEST_TOTP_STATE-HASH.
func totpHelper(args []string) int {
	fresh := len(args) == 2 && args[0] == "--fresh"
	if fresh {
		args = args[1:]
	}
	if len(args) != 1 {
		fmt.Fprintln(os.Stderr, "usage: doctest_totp [--fresh] otpauth://totp/...?secret=...")
		return 2
	}
	u, err := url.Parse(args[0])
	if err != nil || u.Scheme != "otpauth" {
		fmt.Fprintln(os.Stderr, "doctest_totp: not an otpauth URI")
		return 2
	}
	secret, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(u.Query().Get("secret"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "doctest_totp: bad secret:", err)
		return 2
	}
	now := time.Now()
	step := auth.TOTPStep(now)
	state := os.Getenv("DOCTEST_TOTP_STATE")
	if state != "" {
		sum := sha1.Sum(secret)
		state = fmt.Sprintf("%s-%x", state, sum[:8])
	}
	if fresh && state != "" {
		last, _ := os.ReadFile(state)
		if string(last) == strconv.FormatInt(step, 10) || now.Unix()%30 > 25 {
			time.Sleep(time.Duration(30-now.Unix()%30)*time.Second + 100*time.Millisecond)
			step = auth.TOTPStep(time.Now())
		}
	}
	if state != "" {
		os.WriteFile(state, []byte(strconv.FormatInt(step, 10)), 0o600)
	}
	fmt.Println(auth.TOTPCode(secret, time.Unix(step*int64(auth.TOTPPeriod/time.Second), 0)))
	return 0
}

// docFiles lists the documentation this test runs: README.md, every page
// in docs/ except the generated docs/cli.md, and every runbook.
func docFiles(t *testing.T) []string {
	files := []string{"README.md"}
	for _, pat := range []string{"docs/*.md", "docs/runbooks/*.md"} {
		m, err := filepath.Glob(filepath.Join(root, pat))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range m {
			rel, _ := filepath.Rel(root, f)
			if rel != "docs/cli.md" {
				files = append(files, rel)
			}
		}
	}
	if len(files) < 10 {
		t.Fatalf("found only %d documentation files: %v", len(files), files)
	}
	return files
}

// bashComplete reports whether text is a complete bash command list.
func bashComplete(t *testing.T) func(string) bool {
	return func(text string) bool {
		if strings.HasSuffix(strings.TrimRight(text, " \t"), "\\") {
			return false
		}
		cmd := exec.Command("bash", "-n")
		cmd.Stdin = strings.NewReader(text + "\n")
		out, err := cmd.CombinedOutput()
		return err == nil && len(out) == 0
	}
}

// TestDocs runs every shell block of the documentation (see the package
// comment for the convention) with an airlock built from this checkout
// first on PATH, and fails with the file, line, command and output of the
// first command that fails.
func TestDocs(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Fatal("bash is required")
	}
	bin := buildAirlock(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	// Files are independent (each has its own directories, HOME and
	// processes), so they run in parallel: mostly waits (servers starting,
	// TOTP steps), not CPU.
	t.Run("files", func(t *testing.T) {
		for _, f := range docFiles(t) {
			t.Run(strings.ReplaceAll(f, "/", "_"), func(t *testing.T) {
				t.Parallel()
				src, err := os.ReadFile(filepath.Join(root, f))
				if err != nil {
					t.Fatal(err)
				}
				doc, err := Parse(string(src), bashComplete(t))
				if err != nil {
					t.Fatalf("%s: %v", f, err)
				}
				if err := runDoc(t, f, doc, bin, self); err != nil {
					t.Fatal(err)
				}
			})
		}
	})
	t.Logf("all documentation ran in %v", time.Since(started).Round(time.Millisecond))
}

// buildAirlock builds cmd/airlock with cgo (the PKCS#11 backend needs it)
// into a temp dir and returns that directory.
func buildAirlock(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	dir := t.TempDir()
	cmd := exec.Command(goBin, "build", "-o", filepath.Join(dir, "airlock"), "./cmd/airlock")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/airlock (cgo on, for pkcs11): %v\n%s", err, out)
	}
	return dir
}

// systemPath matches a path a documented command could write to outside
// the test's temp dirs.
var systemPath = regexp.MustCompile(`(^|[\s'"=:])/(etc|srv|var|run|media|mnt|opt|home|root|tmp)/`)

// step is one thing the generated script runs.
type step struct {
	where string // file:line
	what  string // "setup" or "command"
	text  string
}

// runDoc runs the blocks of one file in one bash process.
// It returns the failure of a command or setup (with the file, line,
// command and output); other problems end t.
func runDoc(t *testing.T, file string, doc *Doc, bin, self string) error {
	var missing []string
	for _, tool := range doc.Requires {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	var steps []step
	ran := 0
	for _, b := range doc.Blocks {
		if b.Skip != "" {
			t.Logf("%s:%d: skipped: %s", file, b.Line, b.Skip)
			continue
		}
		ran++
		if b.Setup != "" {
			steps = append(steps, step{fmt.Sprintf("%s:%d", file, b.Line), "hidden setup", b.Setup})
		}
		for i, c := range b.Commands {
			steps = append(steps, step{fmt.Sprintf("%s:%d (block at line %d)", file, b.CmdLines[i], b.Line), "command", c})
		}
		t.Logf("%s:%d: runs (%d commands%s)", file, b.Line, len(b.Commands), map[bool]string{true: ", hidden setup", false: ""}[b.Setup != ""])
	}
	for _, s := range steps {
		if m := systemPath.FindString(s.text); s.what == "command" && m != "" {
			t.Errorf("%s: the command names the system path %q: the test would write outside its temp dir (often as root in CI); name it with a variable the prose defines and a hidden setup sets", s.where, strings.TrimSpace(m))
		}
	}
	if t.Failed() {
		return nil
	}
	if len(steps) == 0 {
		t.Logf("%s: no block to run", file)
		return nil
	}
	if len(missing) > 0 {
		msg := fmt.Sprintf("%s needs %s, not installed (apt-get install -y softhsm2 opensc sqlite3 curl)", file, strings.Join(missing, ", "))
		if os.Getenv("AIRLOCK_REQUIRE_TOOLS") == "1" {
			t.Fatal(msg + " (AIRLOCK_REQUIRE_TOOLS=1)")
		}
		t.Skip(msg)
	}

	work := t.TempDir()
	if os.Getenv("DOCTEST_KEEP") != "" { // debugging: keep the work dir
		var err error
		if work, err = os.MkdirTemp("", "doctest-"); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: work dir kept: %s", file, work)
	}
	home := filepath.Join(work, "home")
	dir := filepath.Join(work, "work")
	for _, d := range []string{home, dir} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	var script strings.Builder
	script.WriteString(`set -euo pipefail
__doctest_cleanup() {
  local pids
  pids=$(jobs -p)
  if [ -n "$pids" ]; then
    kill $pids 2>/dev/null || true
    for _ in $(seq 50); do kill -0 $pids 2>/dev/null || break; sleep 0.1; done
    kill -9 $pids 2>/dev/null || true
  fi
}
trap __doctest_cleanup EXIT
doctest_totp() { ` + helperEnv + `=totp "$DOCTEST_SELF" "$@"; }
`)
	// Each step's output goes to its own file (a redirected group, not a
	// subshell: variables and cd carry over); the number of the step that
	// runs is in the file "current". The explicit status check also stops
	// at a failure that set -e lets pass (the left side of && or !).
	outDir := filepath.Join(work, "out")
	if err := os.Mkdir(outDir, 0o700); err != nil {
		t.Fatal(err)
	}
	for i, s := range steps {
		fmt.Fprintf(&script, "echo %d > \"$DOCTEST_OUTDIR/current\"\n{\n%s\n} >\"$DOCTEST_OUTDIR/%d\" 2>&1\n"+
			"__doctest_s=$?; [ \"$__doctest_s\" = 0 ] || exit \"$__doctest_s\"\nDOCTEST_PREV=$DOCTEST_OUTDIR/%d\n",
			i, s.text, i, i)
	}
	logPath := filepath.Join(work, "log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()

	ctx, cancel := context.WithTimeout(context.Background(), FileTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", script.String())
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// On timeout, end the whole process group this test started (its
	// bash and whatever the blocks started in the background).
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		// The reader's own settings must not leak in.
		if strings.HasPrefix(k, "AIRLOCK_") && k != "AIRLOCK_REQUIRE_TOOLS" || k == "HOME" || k == "PATH" || k == "SOFTHSM2_CONF" || k == "CDPATH" {
			continue
		}
		env = append(env, kv)
	}
	cmd.Env = append(env,
		"HOME="+home,
		"PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"),
		"DOCTEST_SELF="+self,
		"DOCTEST_TOTP_STATE="+filepath.Join(work, "totp-step"),
		"DOCTEST_CHECKOUT="+mustAbs(t, root),
		"DOCTEST_OUTDIR="+outDir,
	)
	start := time.Now()
	runErr := cmd.Run()
	elapsed := time.Since(start).Round(time.Millisecond)
	log, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	if runErr == nil {
		t.Logf("%s: %d blocks ran (%d steps) in %v", file, ran, len(steps), elapsed)
		return nil
	}
	// The step that failed and its output.
	last := -1
	if b, err := os.ReadFile(filepath.Join(outDir, "current")); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			last = n
		}
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		runErr = fmt.Errorf("timed out after %v (FileTimeout): %w", FileTimeout, runErr)
	}
	if last < 0 || last >= len(steps) {
		return fmt.Errorf("%s: bash failed before the first command: %w\n%s", file, runErr, log)
	}
	out, _ := os.ReadFile(filepath.Join(outDir, strconv.Itoa(last)))
	out = append(out, log...) // bash's own complaints, if any
	s := steps[last]
	return fmt.Errorf("%s: %s failed: %w\n%s\n--- output:\n%s", s.where, s.what, runErr, indent(s.text), out)
}

func indent(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = "    " + l
	}
	return strings.Join(lines, "\n")
}

func mustAbs(t *testing.T, p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestParse checks the convention on small documents: which lines are
// commands, where a command ends, and that malformed directives are
// errors rather than silently skipped blocks.
func TestParse(t *testing.T) {
	complete := bashComplete(t)
	doc, err := Parse("intro\n\n```\n$ echo a \\\n    b\nshown output\n$ for x in 1; do\n  echo $x; done\n```\n\n<!-- doctest: skip — needs a phone -->\n```sh\nscan\n```\n<!-- doctest setup:\nexport X=1\n-->\n```console\necho $X\nif true; then\n  echo y\nfi\n```\n```text\nnot run\n```\n", complete)
	if err != nil {
		t.Fatal(err)
	}
	if len(doc.Blocks) != 3 {
		t.Fatalf("blocks: %#v", doc.Blocks)
	}
	if b := doc.Blocks[0]; b.Line != 3 || !slices.Equal(b.Commands, []string{"echo a \\\n    b", "for x in 1; do\n  echo $x; done"}) || !slices.Equal(b.CmdLines, []int{4, 7}) {
		t.Errorf("prompt block: %#v", b)
	}
	if b := doc.Blocks[1]; b.Skip != "needs a phone" || b.Line != 12 {
		t.Errorf("skip block: %#v", b)
	}
	if b := doc.Blocks[2]; b.Setup != "export X=1" || !slices.Equal(b.Commands, []string{"echo $X", "if true; then\n  echo y\nfi"}) || !slices.Equal(b.CmdLines, []int{19, 20}) {
		t.Errorf("setup block: %#v", b)
	}
	for _, bad := range []string{
		"<!-- doctest: skip -->\n```\necho\n```\n",           // no reason
		"<!-- doctest: skipp — x -->\n```\necho\n```\n",      // typo
		"<!-- doctest: skip — x -->\ntext\n```\necho\n```\n", // not before the block
		"<!-- doctest: skip — x -->\n```text\necho\n```\n",   // not a shell block
		"<!-- doctest setup: x -->\n",                        // no block
		"<!-- doctest setup x -->\n```\necho\n```\n",         // no colon
		"```\necho\n",           // unclosed
		"```\n$ echo \\\n```\n", // incomplete command
		"```\n$ \n```\n",        // no command
	} {
		if _, err := Parse(bad, complete); err == nil {
			t.Errorf("Parse(%q) accepted a malformed document", bad)
		}
	}
}

// FuzzParse: Parse never panics, and every command it returns is complete.
func FuzzParse(f *testing.F) {
	f.Add("```\n$ echo a \\\n b\nout\n```\n<!-- doctest: skip — r -->\n```sh\nx\n```\n")
	f.Add("<!-- doctest setup:\na\n-->\n```\nif x; then\ny\nfi\n```\n")
	// A cheap stand-in for bash -n: balanced if/fi and no trailing backslash.
	complete := func(s string) bool {
		return !strings.HasSuffix(s, "\\") && strings.Count(s, "if ") <= strings.Count(s, "fi")
	}
	f.Fuzz(func(t *testing.T, src string) {
		doc, err := Parse(src, complete)
		if err != nil {
			return
		}
		for _, b := range doc.Blocks {
			if len(b.Commands) != len(b.CmdLines) {
				t.Fatalf("%d commands, %d line numbers", len(b.Commands), len(b.CmdLines))
			}
			for _, c := range b.Commands {
				if !complete(c) {
					t.Fatalf("incomplete command %q", c)
				}
			}
		}
	})
}

// TestRunDocFailures: a failing command stops the run and is reported with
// its file, line, text and output, also where set -e alone would go on (the
// left side of &&, a negated command), and variables carry across blocks.
func TestRunDocFailures(t *testing.T) {
	self, _ := os.Executable()
	for _, tc := range []struct {
		name, src, want string // want: "" for success, else the failing line
	}{
		{"passes", "```\nX=1\n```\ntext\n```\n$ test \"$X\" = 1 && echo ok\nok\n```\n", ""},
		{"plain", "```\necho before\nfalse\necho never\n```\n", "doc.md:3 (block at line 1)"},
		{"and-list", "```\n$ echo a\na\n$ false && true\n$ echo never\n```\n", "doc.md:4 (block at line 1)"},
		{"negated", "```\n! true\n```\n", "doc.md:2 (block at line 1)"},
		{"setup", "<!-- doctest setup: exit 3 -->\n```\ntrue\n```\n", "doc.md:2: hidden setup failed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc, err := Parse(tc.src, bashComplete(t))
			if err != nil {
				t.Fatal(err)
			}
			err = runDoc(t, "doc.md", doc, t.TempDir(), self)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("unexpected failure: %v", err)
			case tc.want != "" && err == nil:
				t.Fatalf("the failure was not caught")
			case tc.want != "" && !strings.Contains(err.Error(), tc.want):
				t.Fatalf("error does not name %q:\n%v", tc.want, err)
			case tc.want != "" && strings.Contains(err.Error(), "never"):
				t.Fatalf("ran past the failure:\n%v", err)
			}
		})
	}
}
