package demo_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/airlockfw/airlock/internal/cli"
	"github.com/airlockfw/airlock/internal/cli/devicecmd"
	"github.com/airlockfw/airlock/internal/cli/servercmd"
	"github.com/airlockfw/airlock/internal/cli/vendorcmd"
	"github.com/airlockfw/airlock/internal/demo"
)

// runAirlock runs the commands the demo narrates with the full command line.
func runAirlock(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	p := cli.New("airlock", vendorcmd.Commands(), devicecmd.Commands(), devicecmd.SimCommands(), servercmd.Commands())
	return p.RunEnv(&cli.Env{Ctx: ctx, Stdin: strings.NewReader(""), Stdout: stdout, Stderr: stderr, Getenv: getenv}, args)
}

// recorder runs commands with runAirlock and remembers the ones that
// succeeded, with their environment.
type recorder struct {
	mu  sync.Mutex
	ran [][]string
	env []func(string) string
}

func (r *recorder) run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	code := runAirlock(ctx, args, stdout, stderr, getenv)
	if code == 0 {
		r.mu.Lock()
		r.ran = append(r.ran, slices.Clone(args))
		r.env = append(r.env, getenv)
		r.mu.Unlock()
	}
	return code
}

// printedCommands returns the "$ airlock …" lines of the narration (joined
// across trailing backslashes), split into words as a POSIX shell would
// (the narration quotes with '…' only).
func printedCommands(t *testing.T, out string) [][]string {
	t.Helper()
	var cmds [][]string
	lines := strings.Split(out, "\n")
	for i := 0; i < len(lines); i++ {
		line := strings.TrimSpace(lines[i])
		if !strings.HasPrefix(line, "$ airlock ") {
			continue
		}
		for strings.HasSuffix(line, "\\") && i+1 < len(lines) {
			i++
			line = strings.TrimSuffix(line, "\\") + " " + strings.TrimSpace(lines[i])
		}
		line, _, _ = strings.Cut(line, " #") // a comment
		var words []string
		var w strings.Builder
		inWord, quoted := false, false
		for _, c := range strings.TrimPrefix(line, "$ airlock ") {
			switch {
			case c == '\'':
				quoted, inWord = !quoted, true
			case c == ' ' && !quoted:
				if inWord {
					words = append(words, w.String())
					w.Reset()
					inWord = false
				}
			default:
				w.WriteRune(c)
				inWord = true
			}
		}
		if quoted {
			t.Fatalf("unbalanced quote in %q", line)
		}
		if inWord {
			words = append(words, w.String())
		}
		cmds = append(cmds, words)
	}
	return cmds
}

// TestDemoAdminCommandsRunAsPrinted: every admin command the demo prints
// (login, approval, rollout, logout) is one the demo ran, with exactly the
// printed arguments (relative to the demo directory), and it succeeded
// against the running demo server; the changes after the login carry no
// TOTP code (the session stands in for it) and no --server or credentials.
func TestDemoAdminCommandsRunAsPrinted(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "demo")
	rec := &recorder{}
	var out bytes.Buffer
	userEnv := map[string]string{"AIRLOCK_SERVER": "https://192.0.2.1:8443", "HOME": t.TempDir()}
	err := demo.Run(context.Background(), demo.Config{Dir: dir, Stdout: &out, Run: rec.run, Getenv: func(k string) string { return userEnv[k] }})
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	var ran []string
	for _, args := range rec.ran {
		for i, a := range args {
			args[i] = strings.TrimPrefix(a, dir+string(filepath.Separator))
		}
		ran = append(ran, strings.Join(args, "\x00"))
	}
	admin := map[string]bool{"login": true, "logout": true, "approval": true, "rollout": true, "context": true}
	var seen []string
	for _, words := range printedCommands(t, out.String()) {
		if !admin[words[0]] {
			continue
		}
		seen = append(seen, strings.Join(words[:min(2, len(words))], " "))
		if !slices.Contains(ran, strings.Join(words, "\x00")) {
			t.Errorf("printed but not run (successfully) as printed: airlock %q", words)
		}
		if words[0] != "login" && slices.ContainsFunc(words, func(w string) bool { return w == "--totp" || w == "--server" || w == "--token-file" }) {
			t.Errorf("a command after login takes server or credential flags: %q", words)
		}
	}
	want := []string{"login --server", "approval register", "rollout create", "rollout start", "rollout status", "logout"}
	if !slices.Equal(seen, want) {
		t.Errorf("printed admin commands %q, want %q", seen, want)
	}
	// The narration says how to run them: the demo's own context file,
	// without the caller's AIRLOCK_SERVER.
	for _, line := range []string{"$ unset AIRLOCK_SERVER", `$ export XDG_CONFIG_HOME="$PWD/config"`} {
		if !strings.Contains(out.String(), line) {
			t.Errorf("narration lacks %q", line)
		}
	}
	fi, err := os.Stat(filepath.Join(dir, "config", "airlock", "contexts.json"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the demo's context file: %v, %v", fi, err)
	}
	if _, err := os.Stat(filepath.Join(userEnv["HOME"], ".config")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the demo wrote into the caller's configuration directory: %v", err)
	}
}

// TestDemo runs the README's main-job story and checks that every chapter
// happened: the update, the tampered release, the downgrade, the rollback,
// the staged rollout that a bad release pauses at its canary group, and the
// targeted release signed with stolen keys that the device refuses as not
// in the witnessed log and the log monitor flags once it is logged.
func TestDemo(t *testing.T) {
	start := time.Now()
	var out bytes.Buffer
	err := demo.Run(context.Background(), demo.Config{Stdout: &out, Run: runAirlock})
	// The README promises the demo finishes in under a minute.
	if took := time.Since(start); took > time.Minute {
		t.Errorf("demo took %v, the README promises under a minute", took)
	}
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	for _, want := range []string{
		"dev-1: committed 1.1.0",
		"dev-2: committed 1.1.0",
		"dev-1: failed 1.2.0: payload",
		"payload hash mismatch",
		`policy check "version" failed`,
		"dev-2: rolled_back 1.3.0",
		"A staged rollout stops a bad release at the canary group",
		"paused, stage 1 (canary)",
		"none runs 1.5.0",
		"dev-1: committed 1.6.0",
		"dev-1: failed: transparency: release acme/router-x1@1.6.6 is not in the transparency log",
		"not expected: entry 7: acme/router-x1@1.6.6",
		"All 10 steps did what they said",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q\n%s", want, out.String())
		}
	}
}

func TestDemoRefusesBadConfig(t *testing.T) {
	for _, cfg := range []demo.Config{
		{Devices: demo.MaxDevices + 1, Stdout: io.Discard, Run: runAirlock},
		{Devices: -1, Stdout: io.Discard, Run: runAirlock},
		{Stdout: io.Discard},
	} {
		if err := demo.Run(context.Background(), cfg); err == nil {
			t.Errorf("Run(%+v) succeeded", cfg)
		}
	}
}
