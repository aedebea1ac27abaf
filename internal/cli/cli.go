// Package cli implements the airlock command line: argument parsing, help
// text and output. It holds no logic a library user would need; every
// command is a thin layer over the library packages.
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
	"runtime/debug"
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
}

// Printf writes informational output to stderr.
func (e *Env) Printf(format string, args ...any) { fmt.Fprintf(e.Stderr, format, args...) }

// command is one leaf command, such as "repo init".
type command struct {
	Name    string // space-separated words, e.g. "repo init"
	Summary string // one line for `airlock help`
	Usage   string // full help text: synopsis, description, flags, examples
	// Flags defines the command's flags on fs and returns the function that
	// runs it with the remaining positional arguments.
	Flags func(fs *flag.FlagSet) func(e *Env, args []string) error
}

var commands = map[string]*command{}

// register adds commands; it is called from init functions, one file per
// command group.
func register(cmds ...*command) {
	for _, c := range cmds {
		if _, dup := commands[c.Name]; dup {
			panic("internal error: duplicate command " + c.Name)
		}
		commands[c.Name] = c
	}
}

// UsageError is an error in how the command was called (exit 2).
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

func usagef(format string, args ...any) error {
	return &UsageError{Msg: fmt.Sprintf(format, args...)}
}

// Run runs the airlock command line and returns the exit code.
func Run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	e := &Env{Ctx: ctx, Stdin: stdin, Stdout: stdout, Stderr: stderr, Getenv: os.Getenv}
	return run(e, args)
}

func run(e *Env, args []string) int {
	if len(args) == 0 {
		fmt.Fprint(e.Stderr, mainUsage())
		return ExitUsage
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		if len(args) > 1 {
			if c, _ := lookup(args[1:]); c != nil {
				fmt.Fprint(e.Stdout, c.Usage)
				return ExitOK
			}
			if g := groupUsage(args[1]); g != "" {
				fmt.Fprint(e.Stdout, g)
				return ExitOK
			}
			fmt.Fprintf(e.Stderr, "airlock: error: unknown command %q\n", strings.Join(args[1:], " "))
			return ExitUsage
		}
		fmt.Fprint(e.Stdout, mainUsage())
		return ExitOK
	case "version", "-version", "--version":
		fmt.Fprintln(e.Stdout, "airlock", Version())
		return ExitOK
	}
	c, rest := lookup(args)
	if c == nil {
		if g := groupUsage(args[0]); g != "" {
			if len(args) == 1 {
				fmt.Fprint(e.Stderr, g)
			} else {
				fmt.Fprintf(e.Stderr, "airlock: error: unknown command %q\n%s", strings.Join(args[:2], " "), g)
			}
			return ExitUsage
		}
		fmt.Fprintf(e.Stderr, "airlock: error: unknown command %q\nRun 'airlock help' for the list of commands.\n", args[0])
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
		fmt.Fprintf(e.Stderr, "airlock: error: %v\nRun 'airlock %s --help' for usage.\n", err, c.Name)
		return ExitUsage
	}
	if err := runFn(e, fs.Args()); err != nil {
		var ue *UsageError
		if errors.As(err, &ue) {
			fmt.Fprintf(e.Stderr, "airlock: error: %v\nRun 'airlock %s --help' for usage.\n", err, c.Name)
			return ExitUsage
		}
		fmt.Fprintf(e.Stderr, "airlock: error: %v\n", err)
		return ExitFailure
	}
	return ExitOK
}

// lookup finds the longest registered command name that prefixes args.
func lookup(args []string) (*command, []string) {
	for n := min(len(args), 3); n > 0; n-- {
		if c, ok := commands[strings.Join(args[:n], " ")]; ok {
			return c, args[n:]
		}
	}
	return nil, nil
}

func sortedNames() []string {
	var names []string
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func groupUsage(group string) string {
	var b strings.Builder
	for _, n := range sortedNames() {
		if strings.HasPrefix(n, group+" ") {
			fmt.Fprintf(&b, "  airlock %-28s %s\n", n, commands[n].Summary)
		}
	}
	if b.Len() == 0 {
		return ""
	}
	return fmt.Sprintf("Usage: airlock %s <command> [flags]\n\nCommands:\n%s\nRun 'airlock %s <command> --help' for details.\n", group, b.String(), group)
}

func mainUsage() string {
	var b strings.Builder
	b.WriteString(`Airlock: secure firmware updates. Vendors sign releases with offline or HSM
keys (TUF), devices install only authentic, authorized, fresh firmware for
their model into an inactive A/B slot, verify it at boot and fall back.

Usage: airlock <command> [flags]

Commands:
`)
	w := 0
	for _, n := range sortedNames() {
		w = max(w, len(n))
	}
	for _, n := range sortedNames() {
		fmt.Fprintf(&b, "  %-*s  %s\n", w, n, commands[n].Summary)
	}
	fmt.Fprintf(&b, "  %-*s  %s\n  %-*s  %s\n", w, "help [command]", "show help for a command", w, "version", "print the version")
	b.WriteString(`
Exit codes: 0 ok, 1 failure, 2 usage error. Errors go to stderr as
"airlock: error: ...". Run 'airlock <command> --help' for details.
Documentation: docs/cli.md and the other files in docs/.
`)
	return b.String()
}

// Version returns the module version from the build info.
func Version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }
