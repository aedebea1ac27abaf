package cli

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/airlockfw/airlock/internal/durable"
	"github.com/airlockfw/airlock/trust"
	"github.com/airlockfw/airlock/verify"
)

func init() {
	register(&command{
		Name:    "verify",
		Summary: "verify a bundle or repository release exactly as a device would",
		Usage: `Usage: airlock verify --root ROOT.json (--bundle FILE | --repo DIR_OR_URL --product P [--version V])
                      [--model M] [--hw-rev R] [--channel C] [--json]

Runs the checks a device runs before installing, with the device's own TUF
client and limits: signatures and thresholds of every role, expiry, version
rollback, snapshot/targets consistency, delegation paths (a product key can
only sign its own product), target hashes and lengths, the installed
(decompressed) image digest and length, and, with --model/--hw-rev, the
firmware policy. Nothing is written. The payload is streamed, never held in
memory.

On success it prints a summary (or JSON with --json) and exits 0. On failure it
exits 1 and names the failed check, e.g.
  airlock: error: check "payload hashes and lengths" failed: payload hash mismatch: ...

Flags:
  --root FILE        trusted root metadata (e.g. the factory root, public/metadata/1.root.json)
  --bundle FILE      offline bundle to verify
  --repo DIR_OR_URL  repository directory (its public/ is read) or https URL of the served public/
  --product P        product ID, e.g. acme/router-x1 (required with --repo)
  --version V        release version to verify (default: newest that fits --model/--hw-rev)
  --model M          device model to check the release against
  --hw-rev R         device hardware revision (non-negative integer)
  --channel C        device channel for repository selection (default: the release's)
  --json             print the report as JSON on stdout

Examples:
  airlock verify --root 1.root.json --bundle router-x1-1.1.0.airlock --model x1 --hw-rev 3
  airlock verify --root 1.root.json --repo ./repo --product acme/router-x1 --model x1
`,
		Flags: func(fs *flag.FlagSet) func(*Env, []string) error {
			root := fs.String("root", "", "")
			bundleFile := fs.String("bundle", "", "")
			repoLoc := fs.String("repo", "", "")
			product := fs.String("product", "", "")
			version := fs.String("version", "", "")
			model := fs.String("model", "", "")
			hwRev := fs.String("hw-rev", "", "")
			channel := fs.String("channel", "", "")
			asJSON := fs.Bool("json", false, "")
			return func(e *Env, args []string) error {
				if len(args) != 0 {
					return usagef("unexpected arguments %q", args)
				}
				if *root == "" {
					return usagef("--root is required")
				}
				if (*bundleFile == "") == (*repoLoc == "") {
					return usagef("give exactly one of --bundle and --repo")
				}
				if *repoLoc != "" && *product == "" {
					return usagef("--repo needs --product")
				}
				if *bundleFile != "" && *version != "" {
					return usagef("--version applies to --repo only")
				}
				rootData, err := durable.ReadFile(durable.OS, *root, trust.MaxRootSize)
				if err != nil {
					return fmt.Errorf("failed to read trusted root: %w", err)
				}
				opts := verify.Options{Root: rootData, Model: *model, Product: *product, Version: *version, Channel: *channel}
				if *hwRev != "" {
					r, err := strconv.ParseUint(*hwRev, 10, 32)
					if err != nil {
						return usagef("--hw-rev %q is not a non-negative integer", *hwRev)
					}
					r32 := uint32(r)
					opts.HWRev = &r32
				}
				var rep *verify.Report
				if *bundleFile != "" {
					f, err := os.Open(*bundleFile)
					if err != nil {
						return err
					}
					defer f.Close()
					rep, err = verify.Bundle(e.Ctx, f, opts)
					if err != nil {
						return err
					}
				} else {
					rep, err = verify.Repo(e.Ctx, *repoLoc, opts)
					if err != nil {
						return err
					}
				}
				if *asJSON {
					enc := json.NewEncoder(e.Stdout)
					enc.SetIndent("", "  ")
					return enc.Encode(rep)
				}
				printReport(e, rep)
				return nil
			}
		},
	})
}

func printReport(e *Env, r *verify.Report) {
	w := tabwriter.NewWriter(e.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "OK\t%s %s verified (%s)\n", r.Product, r.Version, r.Source)
	fmt.Fprintf(w, "target\t%s\n", r.TargetPath)
	fmt.Fprintf(w, "payload\t%d bytes, sha256 %s\n", r.Length, r.SHA256)
	comp := r.Compression
	if comp == "" {
		comp = "none"
	}
	fmt.Fprintf(w, "installed image\t%d bytes, sha256 %s (compression %s)\n", r.InstalledLength, r.InstalledSHA256, comp)
	fmt.Fprintf(w, "security version\t%d\n", r.SecurityVersion)
	hw := r.HWRev
	if hw == "" {
		hw = "any"
	}
	fmt.Fprintf(w, "models / hw rev / channel\t%s / %s / %s\n", strings.Join(r.Models, ","), hw, r.Channel)
	for _, ri := range r.Roles {
		fmt.Fprintf(w, "role %s\tv%d, expires %s, threshold %d of %d keys\n", ri.Role, ri.Version, ri.Expires.UTC().Format(time.RFC3339), ri.Threshold, ri.Keys)
	}
	fmt.Fprintf(w, "checks passed\t%s\n", strings.Join(r.Checks, ", "))
	w.Flush()
}
