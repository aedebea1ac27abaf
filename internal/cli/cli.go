// Package cli is the core of the Airlock command lines: the Env a command
// runs with, the Command type, a Program (a name and an explicit list of
// commands), argument dispatch, help text and exit codes. It holds no
// commands and no logic a library user would need: the command groups live
// in sub-packages (devicecmd, vendorcmd, servercmd) and each binary lists
// the groups it carries (cmd/airlock: all; cmd/airlock-device: the device
// side only).
//
// Conventions: data goes to stdout, everything else to stderr as
// "airlock: error: …" or "airlock: hint: …". Exit codes: 0 ok, 1 failure,
// 2 usage error.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
)

// Exit codes.
const (
	ExitOK      = 0
	ExitFailure = 1
	ExitUsage   = 2
)

// Env is what a command runs with.
type Env struct {
	Ctx    context.Context
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	// Getenv reads the environment (os.Getenv by default; tests replace it).
	Getenv func(string) string
	// Program is the program running the command (set by RunEnv), for a
	// command that runs others, such as demo.
	Program *Program
}

// Printf writes informational output to stderr.
func (e *Env) Printf(format string, args ...any) { fmt.Fprintf(e.Stderr, format, args...) }

// Command is one leaf command, such as "repo init".
type Command struct {
	Name    string // space-separated words, e.g. "repo init"
	Summary string // one line for `airlock help`
	Usage   string // full help text: synopsis, description, flags, examples
	// Flags defines the command's flags on fs and returns the function that
	// runs it with the remaining positional arguments.
	Flags func(fs *flag.FlagSet) func(e *Env, args []string) error
}

// Program is a command line: a name and its commands.
type Program struct {
	// Name is the binary's name, used in help text.
	Name     string
	commands map[string]*Command
}

// New returns the program name with the commands of groups and the
// built-in version command. A command name given twice is a programming
// error (panic).
func New(name string, groups ...[]*Command) *Program {
	p := &Program{Name: name, commands: map[string]*Command{}}
	for _, g := range append(groups, []*Command{versionCommand(p)}) {
		for _, c := range g {
			if _, dup := p.commands[c.Name]; dup {
				panic("internal error: duplicate command " + c.Name)
			}
			p.commands[c.Name] = c
		}
	}
	return p
}

// Commands returns the program's commands sorted by name.
func (p *Program) Commands() []*Command {
	var cs []*Command
	for _, n := range p.sortedNames() {
		cs = append(cs, p.commands[n])
	}
	return cs
}

// UsageError is an error in how the command was called (exit 2).
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

// Usagef returns a UsageError.
func Usagef(format string, args ...any) error {
	return &UsageError{Msg: fmt.Sprintf(format, args...)}
}

// Run runs the program with the process's signals (SIGINT, SIGTERM cancel
// the context) and environment and returns the exit code.
func (p *Program) Run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	e := &Env{Ctx: ctx, Stdin: stdin, Stdout: stdout, Stderr: stderr, Getenv: os.Getenv}
	return p.RunEnv(e, args)
}

// RunEnv runs the program in e and returns the exit code.
func (p *Program) RunEnv(e *Env, args []string) int {
	if e.Program == nil {
		e.Program = p
	}
	if len(args) == 0 {
		fmt.Fprint(e.Stderr, p.mainUsage())
		return ExitUsage
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		return p.help(e, args[1:])
	case "-version", "--version":
		args = append([]string{"version"}, args[1:]...)
	}
	c, rest := p.lookup(args)
	if c == nil {
		n := p.groupLen(args)
		if n == 0 {
			fmt.Fprintf(e.Stderr, "airlock: error: unknown command %q\nRun '%s help' for the list of commands.\n", args[0], p.Name)
			return ExitUsage
		}
		g := p.groupUsage(strings.Join(args[:n], " "))
		switch {
		case len(args) == n: // a group without its command
			fmt.Fprint(e.Stderr, g)
		case len(args) == n+1 && isHelpFlag(args[n]):
			fmt.Fprint(e.Stdout, g)
			return ExitOK
		default:
			fmt.Fprintf(e.Stderr, "airlock: error: unknown command %q\n%s", strings.Join(args[:n+1], " "), g)
		}
		return ExitUsage
	}
	fs := flag.NewFlagSet("airlock "+c.Name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	runFn := c.Flags(fs)
	if err := fs.Parse(rest); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(e.Stdout, c.Usage)
			return ExitOK
		}
		fmt.Fprintf(e.Stderr, "airlock: error: %v\nRun '%s %s --help' for usage.\n", err, p.Name, c.Name)
		return ExitUsage
	}
	if err := runFn(e, fs.Args()); err != nil {
		if _, ok := errors.AsType[*UsageError](err); ok {
			fmt.Fprintf(e.Stderr, "airlock: error: %v\nRun '%s %s --help' for usage.\n", err, p.Name, c.Name)
			return ExitUsage
		}
		fmt.Fprintf(e.Stderr, "airlock: error: %v\n", err)
		return ExitFailure
	}
	return ExitOK
}

// help prints the help for the command or group args names, or the list of
// commands for no args.
func (p *Program) help(e *Env, args []string) int {
	if len(args) == 0 || len(args) == 1 && args[0] == "help" {
		fmt.Fprint(e.Stdout, p.mainUsage())
		return ExitOK
	}
	if c, rest := p.lookup(args); c != nil && len(rest) == 0 {
		fmt.Fprint(e.Stdout, c.Usage)
		return ExitOK
	}
	if n := p.groupLen(args); n == len(args) {
		fmt.Fprint(e.Stdout, p.groupUsage(strings.Join(args, " ")))
		return ExitOK
	}
	fmt.Fprintf(e.Stderr, "airlock: error: unknown command %q\nRun '%s help' for the list of commands.\n", strings.Join(args, " "), p.Name)
	return ExitUsage
}

func isHelpFlag(s string) bool { return s == "-h" || s == "-help" || s == "--help" }

// groupLen returns the number of leading words of args that name a group of
// commands (such as "repo" or "server user"), the longest such, or 0.
func (p *Program) groupLen(args []string) int {
	n := 0
	for i := 1; i <= len(args) && !strings.HasPrefix(args[i-1], "-"); i++ {
		if p.groupUsage(strings.Join(args[:i], " ")) != "" {
			n = i
		}
	}
	return n
}

// lookup finds the longest registered command name that prefixes args.
func (p *Program) lookup(args []string) (*Command, []string) {
	for n := min(len(args), 3); n > 0; n-- {
		if c, ok := p.commands[strings.Join(args[:n], " ")]; ok {
			return c, args[n:]
		}
	}
	return nil, nil
}

func (p *Program) sortedNames() []string {
	var names []string
	for n := range p.commands {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func (p *Program) groupUsage(group string) string {
	var b strings.Builder
	for _, n := range p.sortedNames() {
		if strings.HasPrefix(n, group+" ") {
			fmt.Fprintf(&b, "  %s %-28s %s\n", p.Name, n, p.commands[n].Summary)
		}
	}
	if b.Len() == 0 {
		return ""
	}
	return fmt.Sprintf("Usage: %s %s <command> [flags]\n\nCommands:\n%s\nRun '%s %s <command> --help' for details.\n", p.Name, group, b.String(), p.Name, group)
}

func (p *Program) mainUsage() string {
	var b strings.Builder
	fmt.Fprintf(&b, `Airlock: secure firmware updates. Vendors sign releases with offline or HSM
keys (TUF), devices install only authentic, authorized, fresh firmware for
their model into an inactive A/B slot, verify it at boot and fall back.

Usage: %s <command> [flags]

Commands:
`, p.Name)
	w := 0
	for _, n := range p.sortedNames() {
		w = max(w, len(n))
	}
	for _, n := range p.sortedNames() {
		fmt.Fprintf(&b, "  %-*s  %s\n", w, n, p.commands[n].Summary)
	}
	fmt.Fprintf(&b, "  %-*s  %s\n", w, "help [command]", "show help for a command or group")
	fmt.Fprintf(&b, `
Exit codes: 0 ok, 1 failure, 2 usage error. Errors go to stderr as
"airlock: error: ...". Run '%s <command> --help' for details.
Documentation: docs/cli.md and the other files in docs/.
`, p.Name)
	return b.String()
}

// StringList is a repeatable string flag.
type StringList []string

func (s *StringList) String() string     { return strings.Join(*s, ",") }
func (s *StringList) Set(v string) error { *s = append(*s, v); return nil }

// NeedFlags returns a usage error naming the first flag, of (name, value)
// pairs, whose value is empty.
func NeedFlags(pairs ...string) error {
	for i := 0; i+1 < len(pairs); i += 2 {
		if pairs[i+1] == "" {
			return Usagef("%s is required", pairs[i])
		}
	}
	return nil
}

// NoArgs returns a usage error if a command got positional arguments.
func NoArgs(args []string) error {
	if len(args) != 0 {
		return Usagef("unexpected arguments %q", args)
	}
	return nil
}
