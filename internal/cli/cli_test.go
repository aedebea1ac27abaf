package cli_test

import (
	"bytes"
	"context"
	"flag"
	"strings"
	"testing"

	. "github.com/airlockfw/airlock/internal/cli"
	"github.com/airlockfw/airlock/internal/cli/vendorcmd"
)

// runCLI runs the command line in-process and returns the exit code and output.
func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	e := &Env{Ctx: context.Background(), Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Getenv: func(string) string { return "" }}
	code = New("airlock", vendorcmd.Commands()).RunEnv(e, args)
	return code, out.String(), errb.String()
}

func TestExitCodes(t *testing.T) {
	tests := []struct {
		args []string
		code int
		in   string // substring of stdout+stderr
	}{
		{nil, ExitUsage, "Usage: airlock"},
		{[]string{"help"}, ExitOK, "key gen"},
		{[]string{"nosuch"}, ExitUsage, `airlock: error: unknown command "nosuch"`},
		{[]string{"key", "gen", "--help"}, ExitOK, "Usage: airlock key gen"},
		{[]string{"help", "key", "gen"}, ExitOK, "Usage: airlock key gen"},
		{[]string{"key"}, ExitUsage, "airlock key gen"},
		{[]string{"key", "gen"}, ExitUsage, "--out is required"},
		{[]string{"key", "gen", "--bogus"}, ExitUsage, "flag provided but not defined"},
		{[]string{"key", "gen", "--type", "dsa", "--out", "x"}, ExitUsage, "unsupported key type"},
		{[]string{"key", "pub", "--key", "/nonexistent/key"}, ExitFailure, "airlock: error:"},
		{[]string{"version"}, ExitOK, "airlock"},
		{[]string{"--version"}, ExitOK, "airlock"},
		{[]string{"version", "extra"}, ExitUsage, "unexpected arguments"},
		{[]string{"version", "--bogus"}, ExitUsage, "flag provided but not defined"},
		{[]string{"version", "--help"}, ExitOK, "Usage: airlock version"},
		{[]string{"help", "version"}, ExitOK, "Usage: airlock version"},
		{[]string{"help", "help"}, ExitOK, "Usage: airlock <command>"},
		{[]string{"help", "nosuch"}, ExitUsage, `airlock: error: unknown command "nosuch"`},
		{[]string{"help", "key", "nosuch"}, ExitUsage, `airlock: error: unknown command "key nosuch"`},
		{[]string{"key", "nosuch"}, ExitUsage, `airlock: error: unknown command "key nosuch"`},
		{[]string{"key", "--bogus"}, ExitUsage, `airlock: error: unknown command "key --bogus"`},
		{[]string{"key", "--help", "extra"}, ExitUsage, `airlock: error: unknown command "key --help"`},
		{[]string{"nosuch", "--help"}, ExitUsage, `airlock: error: unknown command "nosuch"`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, "_"), func(t *testing.T) {
			code, out, errOut := runCLI(t, tt.args...)
			if code != tt.code {
				t.Errorf("exit code = %d, want %d\nstdout: %s\nstderr: %s", code, tt.code, out, errOut)
			}
			if !strings.Contains(out+errOut, tt.in) {
				t.Errorf("output does not contain %q:\nstdout: %s\nstderr: %s", tt.in, out, errOut)
			}
		})
	}
}

// TestProgramRunsOnlyItsCommands: a program knows only the commands it was
// built with, and a name given twice is refused.
func TestProgramRunsOnlyItsCommands(t *testing.T) {
	var ran []string
	cmd := func(name string) *Command {
		return &Command{Name: name, Summary: name, Usage: "Usage: x " + name + "\n", Flags: func(*flag.FlagSet) func(*Env, []string) error {
			return func(*Env, []string) error { ran = append(ran, name); return nil }
		}}
	}
	p := New("x", []*Command{cmd("a b")}, []*Command{cmd("c")})
	var out, errb bytes.Buffer
	e := &Env{Ctx: context.Background(), Stdout: &out, Stderr: &errb}
	if code := p.RunEnv(e, []string{"a", "b"}); code != ExitOK {
		t.Fatalf("a b: exit %d: %s", code, errb.String())
	}
	if code := p.RunEnv(e, []string{"key", "gen"}); code != ExitUsage {
		t.Errorf("a command of another program: exit %d, want %d", code, ExitUsage)
	}
	if len(p.Commands()) != 3 || len(ran) != 1 { // a b, c and the built-in version
		t.Errorf("commands %d, ran %q", len(p.Commands()), ran)
	}
	defer func() {
		if recover() == nil {
			t.Error("a duplicate command did not panic")
		}
	}()
	New("x", []*Command{cmd("c")}, []*Command{cmd("c")})
}

// TestGroupHelp: "<group> --help", "<group> -h" and "help <group>" print the
// group's commands on stdout and exit 0, for every group, nested groups
// ("server user") included; the group alone is a usage error (exit 2) with
// the same list on stderr.
func TestGroupHelp(t *testing.T) {
	cmd := func(name string) *Command {
		return &Command{Name: name, Summary: "does " + name, Usage: "Usage: x " + name + "\n", Flags: func(*flag.FlagSet) func(*Env, []string) error {
			return func(*Env, []string) error { return nil }
		}}
	}
	p := New("x", []*Command{cmd("repo init"), cmd("repo publish"), cmd("server user add"), cmd("server user list"), cmd("server token create"), cmd("verify")})
	run := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := p.RunEnv(&Env{Ctx: context.Background(), Stdout: &out, Stderr: &errb}, args)
		return code, out.String(), errb.String()
	}
	groups := map[string][]string{
		"repo":        {"repo init", "repo publish"},
		"server":      {"server user add", "server user list", "server token create"},
		"server user": {"server user add", "server user list"},
	}
	for g, members := range groups {
		words := strings.Fields(g)
		for _, args := range [][]string{append(words, "--help"), append(words, "-h"), append(words, "-help"), append([]string{"help"}, words...)} {
			code, out, errOut := run(args...)
			if code != ExitOK || errOut != "" || !strings.HasPrefix(out, "Usage: x "+g+" <command>") {
				t.Errorf("x %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errOut)
			}
			for _, m := range members {
				if !strings.Contains(out, "x "+m) {
					t.Errorf("x %s: the list lacks %q:\n%s", strings.Join(args, " "), m, out)
				}
			}
		}
		if code, out, errOut := run(words...); code != ExitUsage || out != "" || !strings.Contains(errOut, "x "+members[0]) {
			t.Errorf("x %s: exit %d (want %d)\nstdout: %s\nstderr: %s", g, code, ExitUsage, out, errOut)
		}
	}
	if code, out, _ := run("verify", "--help"); code != ExitOK || out != "Usage: x verify\n" {
		t.Errorf("x verify --help: exit %d: %q", code, out)
	}
}
