// Package completion is the `airlock completion` command: it prints a bash,
// zsh or fish completion script generated from a program's registered
// commands and flags (cli.Program), so the script never lags the command
// line. It completes command words (multi-word commands such as
// `release add`), each command's flags, and file or directory paths after a
// flag that takes one. Whether a flag takes a path is read from its
// metavariable in the command's Usage text ("--image FILE", "--dir REPO"):
// FILE, F, PATH, PUB, *KEY and *.json are files, *DIR* and REPO are
// directories, anything else is a value the script does not guess. Only
// cmd/airlock links this package; the device binary has no completion.
package completion

import (
	"flag"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"

	"github.com/airlockfw/airlock/internal/cli"
)

// Flag kinds in the generated tables.
const (
	kindBool  = 'b' // takes no value
	kindFile  = 'f' // takes a file path
	kindDir   = 'd' // takes a directory path
	kindValue = 'v' // takes some other value (not completed)
)

type flagSpec struct {
	name string // without dashes
	kind byte
}

// tables is what every script is generated from.
type tables struct {
	prog  string
	next  map[string][]string   // a command prefix ("" for none) -> the words that can follow it
	flags map[string][]flagSpec // a command -> its flags
}

func build(p *cli.Program) *tables {
	t := &tables{prog: p.Name, next: map[string][]string{}, flags: map[string][]flagSpec{}}
	seen := map[string]bool{}
	add := func(prefix, w string) {
		if !seen[prefix+"\x00"+w] {
			seen[prefix+"\x00"+w] = true
			t.next[prefix] = append(t.next[prefix], w)
		}
	}
	add("", "help")
	for _, c := range p.Commands() {
		ws := strings.Fields(c.Name)
		for i, w := range ws {
			add(strings.Join(ws[:i], " "), w)
		}
		fs := flag.NewFlagSet(c.Name, flag.ContinueOnError)
		c.Flags(fs)
		var specs []flagSpec
		fs.VisitAll(func(f *flag.Flag) {
			specs = append(specs, flagSpec{f.Name, flagKind(f, c.Usage)})
		})
		t.flags[c.Name] = specs
	}
	for _, ws := range t.next {
		sort.Strings(ws)
	}
	return t
}

// flagKind tells what f takes, from its type and its metavariable in usage.
func flagKind(f *flag.Flag, usage string) byte {
	if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
		return kindBool
	}
	for _, line := range strings.Split(usage, "\n") {
		fields := strings.Fields(line)
		if len(fields) < 2 || fields[0] != "--"+f.Name {
			continue
		}
		m := fields[1]
		switch {
		case strings.Contains(m, "DIR") || m == "REPO":
			return kindDir
		case m == "FILE" || m == "F" || m == "PATH" || m == "PUB" || strings.HasSuffix(m, "KEY") || strings.HasSuffix(m, ".json"):
			return kindFile
		}
		break
	}
	return kindValue
}

// Shells are the shells Write can generate a script for.
var Shells = []string{"bash", "zsh", "fish"}

// Write writes the completion script for shell of p to w.
func Write(w io.Writer, p *cli.Program, shell string) error {
	t := build(p)
	switch shell {
	case "bash":
		return t.bash(w)
	case "zsh":
		return t.zsh(w)
	case "fish":
		return t.fish(w)
	}
	return fmt.Errorf("unknown shell %q (want one of %s)", shell, strings.Join(Shells, ", "))
}

func (t *tables) sortedKeys(m map[string][]string) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func (t *tables) commands() []string {
	var cs []string
	for c := range t.flags {
		cs = append(cs, c)
	}
	sort.Strings(cs)
	return cs
}

// flagWords is a command's flags as "--name:kind" words.
func (t *tables) flagWords(c string) string {
	var ws []string
	for _, f := range t.flags[c] {
		ws = append(ws, "--"+f.name+":"+string(f.kind))
	}
	return strings.Join(ws, " ")
}

// Command is the completion command; it prints the script for the program
// it runs in (Env.Program).
func Command() *cli.Command {
	return &cli.Command{
		Name:    "completion",
		Summary: "print a shell completion script (bash, zsh or fish)",
		Usage: `Usage: airlock completion bash|zsh|fish

Prints a completion script for the shell on stdout, generated from the
commands and flags of this binary: it completes command names (also
multi-word ones such as 'release add'), each command's flags, and file or
directory paths after a flag that takes one (--image FILE, --dir REPO).

Install it:
  bash  airlock completion bash > ~/.local/share/bash-completion/completions/airlock
        (or /etc/bash_completion.d/airlock; or 'source <(airlock completion bash)'
        in ~/.bashrc)
  zsh   airlock completion zsh > "${fpath[1]}/_airlock"   (then start a new shell;
        or 'source <(airlock completion zsh)' in ~/.zshrc after compinit)
  fish  airlock completion fish > ~/.config/fish/completions/airlock.fish

Regenerate it after upgrading airlock.

Examples:
  airlock completion bash > ~/.local/share/bash-completion/completions/airlock
  source <(airlock completion zsh)
`,
		Flags: func(fs *flag.FlagSet) func(*cli.Env, []string) error {
			return func(e *cli.Env, args []string) error {
				if len(args) != 1 || !slices.Contains(Shells, args[0]) {
					return cli.Usagef("name one shell: %s", strings.Join(Shells, ", "))
				}
				return Write(e.Stdout, e.Program, args[0])
			}
		},
	}
}
