package vendorcmd

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/airlockfw/airlock/internal/cli"
	"github.com/airlockfw/airlock/repo"
)

func init() {
	commands = append(commands, releaseShowCmd)
}

var releaseShowCmd = &cli.Command{
	Name:    "release show",
	Summary: "show what a release (or a pending approval) contains and what changed",
	Usage: `Usage: airlock release show --dir REPO --product PRODUCT --version V [--json]
       airlock release show --dir REPO --product PRODUCT [--json]
       airlock release show --pending FILE [--json]

The first form shows one release: the pending one when the product's staged
metadata adds or changes that version, the published one otherwise. The
second form shows what signing the product's pending metadata approves: the
releases it adds or changes compared with the published metadata, and the
published releases it drops. The third form reads a carried pending file
(a copy of REPO/staging/<role>.json) without the repository and shows every
release in it; its signatures are listed as claimed, unchecked.

For each release: product, version, trust environment, target path, the
length and hashes of the file devices download, the installed length and
SHA-256, compression, models, hardware revisions, channel, security
version, dependencies, downgrade permission, when it was added, the signed
deltas (the release each applies to, its bytes: tree and data streams, and
its header digests), the key IDs that signed the metadata holding it, and
what changed since the previous
version (security version, models, hardware revisions, channel,
compression, environment, dependencies, sizes). Who added it is recorded in
the repository's audit log ('airlock repo audit'). 'airlock release sign'
prints the same summary before it signs.

Flags:
  --dir REPO          repository directory
  --product PRODUCT   product ID
  --version V         the release to show
  --pending FILE      a carried pending metadata file
  --json              print JSON instead of text

Examples:
  airlock release show --dir /srv/fw-repo --product acme/router-x1 --version 1.1.0
  airlock release show --pending /media/usb/acme.router-x1.json --json
`,
	Flags: func(fs *flag.FlagSet) func(*cli.Env, []string) error {
		dir := fs.String("dir", "", "")
		product := fs.String("product", "", "")
		version := fs.String("version", "", "")
		pending := fs.String("pending", "", "")
		asJSON := fs.Bool("json", false, "")
		return func(e *cli.Env, args []string) error {
			if err := cli.NoArgs(args); err != nil {
				return err
			}
			var v any
			if *pending != "" {
				if *dir != "" || *product != "" || *version != "" {
					return cli.Usagef("--pending cannot be combined with --dir, --product or --version")
				}
				ps, err := repo.DescribePendingFile(*pending)
				if err != nil {
					return err
				}
				if !*asJSON {
					printPending(e.Stdout, ps)
					return nil
				}
				v = ps
			} else {
				if err := cli.NeedFlags("--dir", *dir, "--product", *product); err != nil {
					return err
				}
				r, err := repo.OpenWith(*dir, repoOptions(e, nil))
				if err != nil {
					return err
				}
				if *version != "" {
					s, err := r.DescribeRelease(*product, *version)
					if err != nil {
						return err
					}
					if !*asJSON {
						printRelease(e.Stdout, s)
						return nil
					}
					v = s
				} else {
					ps, err := r.DescribePending(*product)
					if err != nil {
						return err
					}
					if !*asJSON {
						printPending(e.Stdout, ps)
						return nil
					}
					v = ps
				}
			}
			return cli.WriteJSON(e.Stdout, v)
		}
	},
}

// printPending writes what signing ps approves.
func printPending(w io.Writer, ps *repo.PendingSummary) {
	sigs := signatures(ps.Signatures, ps.Threshold)
	role := ps.Role
	if role == "" {
		role = "(no releases)"
	}
	fmt.Fprintf(w, "%s metadata %s, version %d, expires %s, %s\n", ps.Type, role, ps.MetadataVersion, ps.Expires, sigs)
	if len(ps.SignedBy) > 0 {
		fmt.Fprintf(w, "  signed by  %s\n", strings.Join(ps.SignedBy, "\n             "))
	}
	if ps.Type != "targets" {
		fmt.Fprintln(w, "  (root metadata: check its keys and thresholds with 'airlock repo status' on the repository)")
		return
	}
	if ps.Unchanged > 0 {
		fmt.Fprintf(w, "  %d published release(s) unchanged\n", ps.Unchanged)
	}
	for _, tp := range ps.Removed {
		fmt.Fprintf(w, "  WARNING: removes the published target %s\n", tp)
	}
	if len(ps.Releases) == 0 {
		fmt.Fprintln(w, "  no release added or changed")
	}
	for i := range ps.Releases {
		fmt.Fprintln(w)
		printRelease(w, &ps.Releases[i])
	}
}

// signatures says how many signatures metadata has of its threshold; a
// threshold of 0 means a carried file's claimed, unchecked signatures.
func signatures(have, threshold int) string {
	if threshold == 0 {
		return fmt.Sprintf("%d signatures, unchecked", have)
	}
	return fmt.Sprintf("%d/%d signatures", have, threshold)
}

// printRelease writes one release summary as aligned text.
func printRelease(w io.Writer, s *repo.ReleaseSummary) {
	sigs := signatures(s.Signatures, s.Threshold)
	fmt.Fprintf(w, "%s %s (%s, metadata version %d, %s)\n", s.Product, s.Version, s.State, s.MetadataVersion, sigs)
	line := func(k, format string, a ...any) { fmt.Fprintf(w, "  %-18s %s\n", k, fmt.Sprintf(format, a...)) }
	if s.ReplacesPublished {
		fmt.Fprintln(w, "  WARNING: this version is already published with different content; signing replaces it")
	}
	if len(s.DeltasAdded) > 0 {
		fmt.Fprintf(w, "  adds deltas from %s to the published release (its payload and image are unchanged)\n", strings.Join(s.DeltasAdded, ", "))
	}
	if s.Invalid != "" {
		fmt.Fprintf(w, "  WARNING: invalid airlock metadata: %s\n", s.Invalid)
	}
	line("environment", "%s", orDash(s.Environment))
	line("target", "%s", s.TargetPath)
	if s.Provenance != "" {
		line("provenance", "%s (the build's provenance envelope; see 'airlock verify --show-provenance')", s.Provenance)
	}
	line("length", "%d bytes", s.Length)
	for _, alg := range []string{"sha256", "sha512"} {
		if h, ok := s.Hashes[alg]; ok {
			line(alg, "%s", h)
		}
	}
	for alg, h := range s.Hashes {
		if alg != "sha256" && alg != "sha512" {
			line(alg, "%s", h)
		}
	}
	line("installed length", "%d bytes", s.InstalledLength)
	line("installed sha256", "%s", orDash(s.InstalledSHA256))
	line("compression", "%s", orDash(s.Compression))
	line("models", "%s", orDash(strings.Join(s.Models, ", ")))
	line("hw-rev", "%s", orDash(s.HWRev))
	line("channel", "%s", orDash(s.Channel))
	line("security version", "%d", s.SecurityVersion)
	line("depends", "%s", orDash(strings.Join(s.Depends, ", ")))
	if s.AllowDowngrade {
		line("allow downgrade", "yes (devices may install it over a newer version)")
	}
	if !s.Created.IsZero() {
		line("added", "%s", s.Created.UTC().Format(time.RFC3339))
	}
	for _, d := range s.Deltas {
		line("delta from "+d.From, "%d bytes (tree %d, data %d), header sha256 %s, %s", d.Length, d.TreeLength, d.DataLength, d.TreeHeaderSHA256, d.DataHeaderSHA256)
	}
	line("signed by", "%s", orDash(strings.Join(s.SignedBy, ", ")))
	if s.Notes != "" {
		line("notes", "%q", s.Notes)
	}
	c := s.Changes
	if c == nil {
		fmt.Fprintln(w, "  first release of the product in this metadata")
		return
	}
	fmt.Fprintf(w, "  changes since %s:\n", c.PreviousVersion)
	cline := func(k, format string, a ...any) { fmt.Fprintf(w, "    %-16s %s\n", k, fmt.Sprintf(format, a...)) }
	sv := fmt.Sprintf("%d -> %d (%+d)", c.PreviousSecurityVersion, s.SecurityVersion, c.SecurityVersionDelta)
	if c.SecurityVersionDelta == 0 {
		sv = fmt.Sprintf("%d (unchanged)", s.SecurityVersion)
	}
	cline("security version", "%s", sv)
	if c.SecurityVersionDelta < 0 {
		fmt.Fprintln(w, "    WARNING: the security version goes down")
	}
	if len(c.ModelsAdded)+len(c.ModelsRemoved) > 0 {
		cline("models", "%s", plusMinus(c.ModelsAdded, c.ModelsRemoved))
	}
	if c.PreviousHWRev != s.HWRev {
		cline("hw-rev", "%s -> %s", c.PreviousHWRev, s.HWRev)
	}
	if c.PreviousChannel != s.Channel {
		cline("channel", "%s -> %s", c.PreviousChannel, s.Channel)
	}
	if c.PreviousCompression != s.Compression {
		cline("compression", "%s -> %s", c.PreviousCompression, s.Compression)
	}
	if c.PreviousEnvironment != s.Environment {
		cline("environment", "%s -> %s", orDash(c.PreviousEnvironment), orDash(s.Environment))
		fmt.Fprintln(w, "    WARNING: the trust environment differs from the previous release")
	}
	if len(c.DependsAdded)+len(c.DependsRemoved) > 0 {
		cline("depends", "%s", plusMinus(c.DependsAdded, c.DependsRemoved))
	}
	cline("length", "%+d bytes", c.LengthDelta)
	cline("installed length", "%+d bytes", c.InstalledLengthDelta)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func plusMinus(added, removed []string) string {
	var parts []string
	for _, a := range added {
		parts = append(parts, "+"+a)
	}
	for _, r := range removed {
		parts = append(parts, "-"+r)
	}
	return strings.Join(parts, " ")
}

// stdinIsTerminal reports whether r is a terminal; tests replace it.
var stdinIsTerminal = func(r io.Reader) bool {
	f, ok := r.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// errNotConfirmed is returned when the approver answers no.
var errNotConfirmed = errors.New("not signed: the approver did not confirm")

// maxConfirmInput bounds the answer confirm reads.
const maxConfirmInput = 64

// confirm asks on stderr for y/N when stdin is a terminal and yes is
// false; otherwise (scripts, pipes) it returns nil without asking.
func confirm(e *cli.Env, yes bool, question string) error {
	if yes || !stdinIsTerminal(e.Stdin) {
		return nil
	}
	fmt.Fprintf(e.Stderr, "%s [y/N] ", question)
	line, err := bufio.NewReader(io.LimitReader(e.Stdin, maxConfirmInput)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return nil
	}
	return errNotConfirmed
}
