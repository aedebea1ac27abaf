package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/airlockfw/airlock/internal/cli"
	"github.com/airlockfw/airlock/internal/cli/devicecmd"
)

var update = flag.Bool("update", false, "rewrite golden files (docs/cli.md)")

// cliReference renders docs/cli.md from the registered commands, so the
// reference can never drift from `airlock <cmd> --help`.
func cliReference() string {
	var b strings.Builder
	b.WriteString("# airlock command reference\n\n")
	b.WriteString("Generated from `airlock help` by `go test ./cmd/airlock -run TestCLIReference -update`; do not edit by hand.\n\n")
	b.WriteString("Exit codes: 0 ok, 1 failure, 2 usage error. Errors go to stderr as `airlock: error: …`.\n\n")
	b.WriteString("Devices run `airlock-device` (cmd/airlock-device), which carries only the commands marked *(device)*, with the same names and flags.\n\n")
	b.WriteString("Progress: `release add`, `bundle create`, `verify` and `device install` show a progress line on stderr (MiB done of total, rate, time left, redrawn in place up to four times a second, then a final line) when stderr is a terminal; never in a pipe or a file, nor when `CI` is set. `AIRLOCK_PROGRESS=0` turns it off, `AIRLOCK_PROGRESS=1` on.\n\n")
	b.WriteString("Shell completion: `airlock completion bash|zsh|fish` prints a script generated from these commands and flags; see [airlock completion](#airlock-completion) for where to install it.\n\n")
	b.WriteString("## Commands\n\n")
	device := map[string]bool{"version": true} // cli.New gives every program version
	for _, c := range devicecmd.Commands() {
		device[c.Name] = true
	}
	for _, c := range program().Commands() {
		mark := ""
		if device[c.Name] {
			mark = " *(device)*"
		}
		fmt.Fprintf(&b, "- [`airlock %s`](#airlock-%s)%s: %s\n", c.Name, strings.ReplaceAll(c.Name, " ", "-"), mark, c.Summary)
	}
	for _, c := range program().Commands() {
		fmt.Fprintf(&b, "\n## airlock %s\n\n```\n%s```\n", c.Name, c.Usage)
	}
	return b.String()
}

func TestCLIReference(t *testing.T) {
	const path = "../../docs/cli.md"
	want := cliReference()
	if *update {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Fatal("docs/cli.md is out of date: run go test ./cmd/airlock -run TestCLIReference -update")
	}
}

// TestEveryFlagDocumented checks that each command's help text names every
// flag it defines.
func TestEveryFlagDocumented(t *testing.T) {
	for _, c := range program().Commands() {
		n := c.Name
		fs := flag.NewFlagSet(n, flag.ContinueOnError)
		c.Flags(fs)
		fs.VisitAll(func(f *flag.Flag) {
			if !strings.Contains(c.Usage, "--"+f.Name) {
				t.Errorf("airlock %s: flag --%s is not in its help text", n, f.Name)
			}
		})
		if !strings.HasPrefix(c.Usage, "Usage: airlock "+n) {
			t.Errorf("airlock %s: help text does not start with its synopsis", n)
		}
	}
}

// TestSizeFlagsTakeUnits: every flag that holds a size in bytes is a
// cli.Size, so that each accepts the same units (64MiB, 100kB) from the one
// parser.
func TestSizeFlagsTakeUnits(t *testing.T) {
	n := 0
	for _, c := range program().Commands() {
		fs := flag.NewFlagSet(c.Name, flag.ContinueOnError)
		c.Flags(fs)
		fs.VisitAll(func(f *flag.Flag) {
			if !strings.Contains(f.Name, "size") && !strings.Contains(f.Name, "chunk") && !strings.HasPrefix(f.Name, "max-bytes") {
				return
			}
			n++
			if _, ok := f.Value.(*cli.Size); !ok {
				t.Errorf("airlock %s --%s is a %T, not a cli.Size", c.Name, f.Name, f.Value)
			}
		})
	}
	if n < 4 {
		t.Errorf("found %d size flags, want at least 4 (device init --slot-size, --write-chunk, verify --slot-size, sim --slot-size)", n)
	}
}

// TestEveryGroupHasHelp: for every group of commands ("repo", "server",
// "server user", ...), "airlock <group> --help", "-h" and "airlock help
// <group>" list the group's commands on stdout with exit 0.
func TestEveryGroupHasHelp(t *testing.T) {
	groups := map[string]bool{}
	for _, c := range program().Commands() {
		w := strings.Fields(c.Name)
		for i := 1; i < len(w); i++ {
			groups[strings.Join(w[:i], " ")] = true
		}
	}
	if !groups["repo"] || !groups["server user"] {
		t.Fatalf("groups %v lack repo or server user", groups)
	}
	for g := range groups {
		words := strings.Fields(g)
		for _, args := range [][]string{append(words, "--help"), append(words, "-h"), append([]string{"help"}, words...)} {
			var out, errb bytes.Buffer
			code := program().RunEnv(&cli.Env{Ctx: context.Background(), Stdout: &out, Stderr: &errb}, args)
			if code != cli.ExitOK || !strings.HasPrefix(out.String(), "Usage: airlock "+g+" <command>") {
				t.Errorf("airlock %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out.String(), errb.String())
			}
		}
	}
}
