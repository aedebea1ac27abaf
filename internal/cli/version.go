package cli

import (
	"flag"
	"fmt"
	"runtime"
	"runtime/debug"
)

// BuildInfo is what `airlock version` prints: the module version and the
// VCS state the binary was built from, as `go build` records them.
type BuildInfo struct {
	Program string `json:"program"`
	// Version is the main module's version: a tag, a pseudo-version
	// (with "+dirty" for a modified tree) or "(devel)".
	Version string `json:"version"`
	// Commit, CommitTime and Modified are vcs.revision, vcs.time and
	// vcs.modified; empty or false when the binary carries no VCS
	// information (go run, test binaries, -buildvcs=false).
	Commit     string `json:"commit,omitempty"`
	CommitTime string `json:"commit_time,omitempty"`
	Modified   bool   `json:"modified"`
	Go         string `json:"go"`       // the Go version that built the binary
	Platform   string `json:"platform"` // GOOS/GOARCH
}

// ReadBuildInfo returns the running binary's BuildInfo for program.
func ReadBuildInfo(program string) BuildInfo {
	v := BuildInfo{Program: program, Version: "(devel)", Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return v
	}
	if bi.Main.Version != "" {
		v.Version = bi.Main.Version
	}
	if bi.GoVersion != "" {
		v.Go = bi.GoVersion
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Commit = s.Value
		case "vcs.time":
			v.CommitTime = s.Value
		case "vcs.modified":
			v.Modified = s.Value == "true"
		}
	}
	return v
}

// versionCommand is the built-in version command every Program has.
func versionCommand(p *Program) *Command {
	return &Command{
		Name:    "version",
		Summary: "print the version, commit and Go version",
		Usage: `Usage: airlock version [--json]

Prints the module version, the VCS commit and its time ("modified" if the
tree had uncommitted changes), the Go version and the platform, as 'go
build' recorded them. A binary from 'go run', a test binary or one built
with -buildvcs=false has no commit. 'airlock --version' is the same.

Flags:
  --json   print the same as a JSON object on stdout (keys program, version,
           commit, commit_time, modified, go, platform)

Examples:
  airlock version
  airlock version --json
`,
		Flags: func(fs *flag.FlagSet) func(*Env, []string) error {
			asJSON := fs.Bool("json", false, "")
			return func(e *Env, args []string) error {
				if err := NoArgs(args); err != nil {
					return err
				}
				v := ReadBuildInfo(p.Name)
				if *asJSON {
					return WriteJSON(e.Stdout, v)
				}
				fmt.Fprintf(e.Stdout, "%s %s\n", v.Program, v.Version)
				switch {
				case v.Commit == "":
					fmt.Fprintln(e.Stdout, "commit unknown (no VCS information in this build)")
				case v.Modified:
					fmt.Fprintf(e.Stdout, "commit %s (modified)\n", v.Commit)
				default:
					fmt.Fprintf(e.Stdout, "commit %s\n", v.Commit)
				}
				if v.CommitTime != "" {
					fmt.Fprintf(e.Stdout, "commit time %s\n", v.CommitTime)
				}
				fmt.Fprintf(e.Stdout, "go %s %s\n", v.Go, v.Platform)
				return nil
			}
		},
	}
}
