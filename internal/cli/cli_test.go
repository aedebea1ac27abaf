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
	if len(p.Commands()) != 2 || len(ran) != 1 {
		t.Errorf("commands %d, ran %q", len(p.Commands()), ran)
	}
	defer func() {
		if recover() == nil {
			t.Error("a duplicate command did not panic")
		}
	}()
	New("x", []*Command{cmd("c")}, []*Command{cmd("c")})
}
